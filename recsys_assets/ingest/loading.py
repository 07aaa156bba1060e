"""Validate landing files and load them into the warehouse's ``raw`` schema.

Pure functions over a DuckDB connection, so tests can drive them without Dagster.

Every input row ends up in exactly one place: the raw table, or ``raw.quarantine`` with the
rule it broke and a message naming file, column, row and value. A day (or a snapshot) is
replaced inside one transaction, so a crash never leaves half a partition and re-running
replaces rather than appends. Contract breaks that no row-level quarantine can express (an
unreadable file, a missing required column, an event whose day cannot be told) raise
``LandingDataError`` instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import duckdb

from resources.landing import LandingDataError, LandingFile, load_as_text


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # id | int | float | timestamp | text
    required: bool = True  # must the column be present in the file
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # a second row with the same key is a duplicate
    references: tuple[tuple[str, str], ...] = ()  # (column, snapshot table) that must know it

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


_EVENT_KEYS = (Column("user_id", "id"), Column("item_id", "id"), Column("ts", "timestamp"))
_EVENT_REFERENCES = (("user_id", "users"), ("item_id", "items"))

CONTRACTS = {
    "users": TableContract(
        "users",
        (
            Column("user_id", "id"),
            Column("gender", "int", required=False, nullable=True),
            Column("age", "int", required=False, nullable=True, minimum=0, maximum=120),
            Column("geo", "text", required=False, nullable=True),
        ),
        key=("user_id",),
    ),
    "items": TableContract(
        "items",
        (
            Column("item_id", "id"),
            Column("category_id", "text", required=False, nullable=True),
            Column("price", "float", required=False, nullable=True, minimum=0),
        ),
        key=("item_id",),
    ),
    "purchases": TableContract(
        "purchases",
        (
            *_EVENT_KEYS,
            Column("price", "float", required=False, nullable=True, minimum=0),
            Column("quantity", "int", required=False, nullable=True, minimum=1),
        ),
        key=("user_id", "item_id", "ts"),
        references=_EVENT_REFERENCES,
    ),
    "wishlist": TableContract("wishlist", _EVENT_KEYS, key=("user_id", "item_id", "ts"), references=_EVENT_REFERENCES),
    "cart": TableContract("cart", _EVENT_KEYS, key=("user_id", "item_id", "ts"), references=_EVENT_REFERENCES),
}

_SQL_TYPES = {"id": "BIGINT", "int": "INTEGER", "float": "DOUBLE", "timestamp": "TIMESTAMP", "text": "VARCHAR"}
_LINEAGE = "_source_file VARCHAR, _source_row BIGINT, _loaded_at TIMESTAMP"


@dataclass
class LoadResult:
    table: str
    partition_key: str
    files: int
    rows_read: int
    rows_loaded: int
    quarantined_by_rule: Counter = field(default_factory=Counter)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined_by_rule.values())


def ensure_raw_schema(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for contract in CONTRACTS.values():
        event_date = "event_date DATE, " if contract.name not in ("users", "items") else ""
        columns = ", ".join(f"{c.name} {_SQL_TYPES[c.kind]}" for c in contract.columns)
        conn.execute(f"CREATE TABLE IF NOT EXISTS raw.{contract.name} ({event_date}{columns}, {_LINEAGE})")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS raw.quarantine (source_table VARCHAR, partition_key VARCHAR, source_file VARCHAR, "
        "source_row BIGINT, rule VARCHAR, reason VARCHAR, record VARCHAR, quarantined_at TIMESTAMP)"
    )


def load_snapshot(conn: duckdb.DuckDBPyConnection, table: str, files: list[LandingFile]) -> LoadResult:
    """Replace ``raw.<table>`` with the validated contents of the snapshot files."""
    contract = CONTRACTS[table]
    _stage(conn, contract, files)
    _flag_duplicates(conn, contract)
    return _replace(conn, contract, files, partition_key="snapshot", where="true", event_date=None)


def load_event_day(conn: duckdb.DuckDBPyConnection, table: str, files: list[LandingFile], day: date) -> LoadResult:
    """Replace the rows of ``day`` in ``raw.<table>`` with the day's validated events."""
    contract = CONTRACTS[table]
    _stage(conn, contract, files)
    _keep_rows_of_day(conn, files, day)
    _flag_unknown_references(conn, contract)
    _flag_duplicates(conn, contract)
    return _replace(conn, contract, files, partition_key=day.isoformat(), where=f"event_date = DATE '{day}'", event_date=day)


def _typed(column: Column, qualifier: str = "") -> str:
    return f"TRY_CAST(trim({qualifier}{column.name}) AS {_SQL_TYPES[column.kind]})"


def _value_rules(column: Column) -> list[tuple[str, str, str]]:
    """(condition, rule, message SQL) for the values of one column, in order of precedence."""
    c, typed, shown = column.name, _typed(column), f"'''' || {column.name} || ''''"
    rules = []
    if not column.nullable:
        rules.append((f"{c} IS NULL OR trim({c}) = ''", f"missing {c}", f"'{c} is missing'"))
    not_null = f"{c} IS NOT NULL AND trim({c}) <> ''"
    if column.kind == "id":
        pattern = f"NOT regexp_full_match(trim({c}), '-?[0-9]{{1,19}}') OR {typed} IS NULL"
        rules.append((f"{not_null} AND ({pattern})", f"bad {c}", f"'{c} is not a 64-bit integer: ' || {shown}"))
    elif column.kind == "int":
        pattern = f"NOT regexp_full_match(trim({c}), '-?[0-9]+') OR {typed} IS NULL"
        rules.append((f"{not_null} AND ({pattern})", f"bad {c}", f"'{c} is not an integer: ' || {shown}"))
    elif column.kind in ("float", "timestamp"):
        what = "a number" if column.kind == "float" else "a timestamp"
        rules.append((f"{not_null} AND {typed} IS NULL", f"bad {c}", f"'{c} is not {what}: ' || {shown}"))
    if column.minimum is not None:
        too_low = "negative" if column.minimum == 0 else f"below {column.minimum:g}"
        rules.append((f"{typed} < {column.minimum}", f"{too_low} {c}", f"'{c} is {too_low}: ' || {c}"))
    if column.maximum is not None:
        too_high = f"above {column.maximum:g}"
        rules.append((f"{typed} > {column.maximum}", f"{c} {too_high}", f"'{c} is {too_high}: ' || {c}"))
    return rules


def _stage(conn: duckdb.DuckDBPyConnection, contract: TableContract, files: list[LandingFile]) -> None:
    """Temp table ``staged``: the files' rows as text, with the first broken value rule per row."""
    load_as_text(conn, files, {c.name: c.required for c in contract.columns}, view="landing_text")
    rules = [rule for column in contract.columns for rule in _value_rules(column)]
    rule_case = "CASE " + " ".join(f"WHEN {cond} THEN '{name}'" for cond, name, _ in rules) + " END"
    reason_case = "CASE " + " ".join(f"WHEN {cond} THEN {message}" for cond, _, message in rules) + " END"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE staged AS SELECT *, {rule_case} AS _rule, {reason_case} AS _reason FROM landing_text")
    conn.execute("DROP TABLE landing_text")


def _keep_rows_of_day(conn: duckdb.DuckDBPyConnection, files: list[LandingFile], day: date) -> None:
    """Keep the rows that belong to ``day``.

    A dated file holds its day: a row stamped with another day is quarantined. An undated file
    holds any day: its rows are routed by timestamp, and a row without a readable timestamp
    cannot be routed at all, which is an error rather than a silent drop.
    """
    undated = [f"'{str(f.path).replace(chr(39), chr(39) * 2)}'" for f in files if f.day is None]
    ts_day = "CAST(TRY_CAST(trim(ts) AS TIMESTAMP) AS DATE)"
    if undated:
        unroutable = conn.execute(
            f"SELECT _file, _row, ts FROM staged WHERE _file IN ({', '.join(undated)}) AND {ts_day} IS NULL LIMIT 1"
        ).fetchone()
        if unroutable:
            file, row, ts = unroutable
            raise LandingDataError(
                f"{file}: row {row}, column ts: {ts!r} is not a timestamp, so its day cannot be told. "
                "Fix the value, or move such rows into a dated file (<table>/YYYY-MM-DD.csv) to quarantine them."
            )
        conn.execute(f"DELETE FROM staged WHERE _file IN ({', '.join(undated)}) AND {ts_day} <> DATE '{day}'")
    conn.execute(
        f"UPDATE staged SET _rule = 'ts outside file day', "
        f"_reason = 'ts ' || ts || ' is not on {day}, the day this file holds' "
        f"WHERE _rule IS NULL AND {ts_day} <> DATE '{day}'"
    )


def _flag_unknown_references(conn: duckdb.DuckDBPyConnection, contract: TableContract) -> None:
    for column, snapshot in contract.references:
        typed = _typed(contract.column(column), qualifier="staged.")
        conn.execute(
            f"UPDATE staged SET _rule = 'unknown {column}', "
            f"_reason = '{column} ' || {column} || ' is not in the {snapshot} snapshot' "
            f"WHERE _rule IS NULL AND NOT EXISTS (SELECT 1 FROM raw.{snapshot} s WHERE s.{column} = {typed})"
        )


def _flag_duplicates(conn: duckdb.DuckDBPyConnection, contract: TableContract) -> None:
    """Quarantine every repeat of a key; the first occurrence (by file, then row) is kept."""
    key = ", ".join(_typed(contract.column(c)) for c in contract.key)
    conn.execute(
        f"""
        UPDATE staged SET _rule = 'duplicate', _reason = 'duplicate of ' || d.first_file || ' row ' || d.first_row
        FROM (
            SELECT _file, _row, first_value(_file) OVER w AS first_file, first_value(_row) OVER w AS first_row,
                   row_number() OVER w AS occurrence
            FROM staged WHERE _rule IS NULL
            WINDOW w AS (PARTITION BY {key} ORDER BY _file, _row)
        ) d
        WHERE staged._file = d._file AND staged._row = d._row AND d.occurrence > 1
        """
    )


def _replace(conn, contract: TableContract, files, partition_key: str, where: str, event_date: date | None) -> LoadResult:
    columns = ", ".join(f"{_typed(c)} AS {c.name}" for c in contract.columns)
    event_date_sql = f"DATE '{event_date}', " if event_date else ""
    record = "to_json({" + ", ".join(f"'{c.name}': {c.name}" for c in contract.columns) + "})::VARCHAR"
    order = "ts" if event_date else contract.key[0]
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"DELETE FROM raw.{contract.name} WHERE {where}")
        conn.execute(
            f"INSERT INTO raw.{contract.name} SELECT {event_date_sql}{columns}, _file, _row, now() "
            f"FROM staged WHERE _rule IS NULL ORDER BY {order}"
        )
        conn.execute("DELETE FROM raw.quarantine WHERE source_table = ? AND partition_key = ?", [contract.name, partition_key])
        conn.execute(
            "INSERT INTO raw.quarantine SELECT ?, ?, _file, _row, _rule, _reason, "
            f"{record}, now() FROM staged WHERE _rule IS NOT NULL ORDER BY _file, _row",
            [contract.name, partition_key],
        )
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    counts = dict(conn.execute("SELECT coalesce(_rule, 'loaded'), count(*) FROM staged GROUP BY ALL").fetchall())
    conn.execute("DROP TABLE staged")
    loaded = counts.pop("loaded", 0)
    return LoadResult(contract.name, partition_key, len(files), loaded + sum(counts.values()), loaded, Counter(counts))
