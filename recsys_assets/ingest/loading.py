"""Validate landing files and load them into the warehouse's ``raw`` schema.

Pure functions over a DuckDB connection, so tests can drive them without Dagster.

Every input row ends up in exactly one place: the raw table, or ``raw.quarantine`` with the
rule it broke and a message naming file, column, row and value. A day (or a snapshot) is
replaced inside one transaction, so a crash never leaves half a partition and re-running
replaces rather than appends; a replace that would shrink it by surprise stops first
(shrink.py). Contract breaks that no row-level quarantine can express (an unreadable file, a
missing required column, a float column that is not whole numbers, an event whose day cannot
be told) raise ``LandingDataError`` instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import duckdb

from recsys_assets.ingest.column_types import coerce_float_integer_columns
from recsys_assets.ingest.contracts import CONTRACTS, SQL_TYPES, TableContract, value_rules
from recsys_assets.ingest.shrink import RowCounts, ShrinkGuard, shrink_problem
from resources.warehouse import transaction
from resources.landing import LandingDataError, LandingFile, load_as_text, source_timezone

_LINEAGE = "_source_file VARCHAR, _source_row BIGINT, _loaded_at TIMESTAMP"


@dataclass
class LoadResult:
    table: str
    partition_key: str
    files: int
    rows_read: int
    rows_loaded: int
    quarantined_by_rule: Counter = field(default_factory=Counter)
    coerced_columns: dict[str, str] = field(default_factory=dict)
    shrink_accepted: str | None = None

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined_by_rule.values())


def ensure_raw_schema(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for contract in CONTRACTS.values():
        event_date = "event_date DATE, " if contract.name not in ("users", "items") else ""
        columns = ", ".join(f"{c.name} {SQL_TYPES[c.kind]}" for c in contract.columns)
        conn.execute(f"CREATE TABLE IF NOT EXISTS raw.{contract.name} ({event_date}{columns}, {_LINEAGE})")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS raw.quarantine (source_table VARCHAR, partition_key VARCHAR, source_file VARCHAR, "
        "source_row BIGINT, rule VARCHAR, reason VARCHAR, record VARCHAR, quarantined_at TIMESTAMP)"
    )


def load_snapshot(conn, table: str, files: list[LandingFile], zone: str, guard: ShrinkGuard) -> LoadResult:
    """Replace ``raw.<table>`` with the validated contents of the snapshot files."""
    contract = CONTRACTS[table]
    coerced = _stage(conn, contract, files, zone, partition_key="snapshot")
    _flag_duplicates(conn, contract)
    scope = "partition_key = 'snapshot'"
    return _replace(conn, contract, files, "snapshot", where="true", scope=scope, guard=guard, coerced=coerced)


def load_event_day(
    conn,
    table: str,
    files: list[LandingFile],
    day: date,
    partitions: tuple[date, date],
    zone: str,
    guard: ShrinkGuard,
    owns_outside: bool = False,
) -> LoadResult:
    """Replace the rows of ``day`` in ``raw.<table>`` with the day's validated events.

    ``partitions`` is the first and last daily partition. With ``owns_outside`` (the last day
    of a run: ``files`` then include the dated files outside the partitions) the load also
    replaces the quarantine of the days outside them, each row under its own day as key.
    """
    contract = CONTRACTS[table]
    coerced = _stage(conn, contract, files, zone, partition_key=day.isoformat())
    _route_rows_to_day(conn, day, *partitions, owns_outside=owns_outside)
    _flag_unknown_references(conn, contract)
    _flag_duplicates(conn, contract)
    scope = _quarantine_scope(day, *partitions, owns_outside=owns_outside)
    where = f"event_date = DATE '{day}'"
    return _replace(conn, contract, files, day.isoformat(), where=where, scope=scope, guard=guard, coerced=coerced, event_date=day)


def _stage(conn, contract: TableContract, files: list[LandingFile], zone: str, partition_key: str) -> dict[str, str]:
    """Temp table ``staged``: the files' rows as text, typed once, with the first broken value rule per row."""
    load_as_text(conn, files, {c.name: c.required for c in contract.columns}, view="landing_text")
    coerced = coerce_float_integer_columns(conn, "landing_text", contract.integer_columns)
    typed = ", ".join(f"{c.typed_sql()} AS {c.typed}" for c in contract.columns)
    with source_timezone(conn, zone):  # text timestamps without an offset are in the source zone
        conn.execute(f"CREATE OR REPLACE TEMP TABLE landing_typed AS SELECT *, {typed} FROM landing_text")
    rules = [rule for column in contract.columns for rule in value_rules(column)]
    rule_case = "CASE " + " ".join(f"WHEN {cond} THEN '{name}'" for cond, name, _ in rules) + " END"
    reason_case = "CASE " + " ".join(f"WHEN {cond} THEN {message}" for cond, _, message in rules) + " END"
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE staged AS SELECT *, {rule_case} AS _rule, {reason_case} AS _reason, "
        f"'{partition_key}' AS _key FROM landing_typed"
    )
    conn.execute("DROP TABLE landing_text; DROP TABLE landing_typed")
    return coerced


def _route_rows_to_day(conn, day: date, first: date, last: date, owns_outside: bool) -> None:
    """Keep the rows that belong to ``day``, or to no partition at all.

    A dated file holds its day: a row stamped with another day is quarantined. An undated file
    holds any day: its rows are routed by their UTC timestamp, and a row without a readable
    timestamp cannot be routed at all, which is an error rather than a silent drop. Rows of a
    day before the first or after the last partition are quarantined under that day.
    """
    unroutable = conn.execute("SELECT _file, _row, ts FROM staged WHERE _file_day IS NULL AND _v_ts IS NULL LIMIT 1").fetchone()
    if unroutable:
        file, row, ts = unroutable
        raise LandingDataError(
            f"{file}: row {row}, column ts: {ts!r} is not a timestamp, so its day cannot be told. "
            "Fix the value, or move such rows into a dated file (<table>/YYYY-MM-DD.csv) to quarantine them."
        )
    row_day = "coalesce(_file_day, CAST(_v_ts AS DATE))"
    owned = [f"{row_day} = DATE '{day}'"]
    owned += [f"{row_day} NOT BETWEEN DATE '{first}' AND DATE '{last}'"] if owns_outside else []
    conn.execute(f"DELETE FROM staged WHERE NOT ({' OR '.join(owned)})")
    conn.execute(
        f"""UPDATE staged SET _key = {row_day}::VARCHAR, _rule = coalesce(_rule, CASE WHEN {row_day} < DATE '{first}'
                THEN 'before first partition' ELSE 'after last partition' END),
            _reason = coalesce(_reason, CASE WHEN {row_day} < DATE '{first}'
                THEN 'day ' || {row_day} || ' is before the first daily partition {first} (RECSYS_FIRST_DAY)'
                ELSE 'day ' || {row_day} || ' has no daily partition yet (the last is {last}); it loads with its own partition' END)
        WHERE {row_day} NOT BETWEEN DATE '{first}' AND DATE '{last}'"""
    )
    conn.execute(
        "UPDATE staged SET _rule = 'ts outside file day', "
        "_reason = 'ts ' || ts || ' is on ' || CAST(_v_ts AS DATE) || ' (UTC), not on ' || _file_day || ', the day this file holds' "
        "WHERE _rule IS NULL AND CAST(_v_ts AS DATE) <> _file_day"
    )


def _flag_unknown_references(conn, contract: TableContract) -> None:
    for column, snapshot in contract.references:
        typed = contract.column(column).typed
        conn.execute(
            f"UPDATE staged SET _rule = 'unknown {column}', "
            f"_reason = '{column} ' || {column} || ' is not in the {snapshot} snapshot' "
            f"WHERE _rule IS NULL AND NOT EXISTS (SELECT 1 FROM raw.{snapshot} s WHERE s.{column} = staged.{typed})"
        )


def _flag_duplicates(conn, contract: TableContract) -> None:
    """Quarantine every repeat of a key; the first occurrence (by file, then row) is kept."""
    key = ", ".join(contract.column(c).typed for c in contract.key)
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


def _quarantine_scope(day: date, first: date, last: date, owns_outside: bool) -> str:
    """The quarantine rows a day's load replaces: its own, and those of the days outside the
    partitions when it owns them (ISO day keys order like the days they name)."""
    outside = f" OR partition_key < '{first}' OR partition_key > '{last}'" if owns_outside else ""
    return f"partition_key = '{day}'{outside}"


def _check_shrink(conn, contract: TableContract, key: str, where: str, files, guard: ShrinkGuard) -> str | None:
    """Raise when the replace would shrink the table or day by surprise; the accepted problem, if allowed."""
    before = RowCounts(
        conn.execute(f"SELECT count(*) FROM raw.{contract.name} WHERE {where}").fetchone()[0],
        conn.execute("SELECT count(*) FROM raw.quarantine WHERE source_table = ? AND partition_key = ?", [contract.name, key]).fetchone()[0],
    )
    loaded, quarantined = conn.execute("SELECT count(*) FILTER (_rule IS NULL), count(*) FILTER (_rule IS NOT NULL) FROM staged WHERE _key = ?", [key]).fetchone()
    problem = shrink_problem(before, RowCounts(loaded, quarantined), guard.max_shrink_share, snapshot=key == "snapshot")
    if problem is None or guard.allow_shrink:
        return problem
    read = ", ".join(str(f.path) for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    found = f"files read: {read}" if files else "no landing file holds it"
    unread = f"; files in the landing folder that no table reads: {', '.join(guard.unread_files[:10])}" if guard.unread_files else ""
    what = f"raw.{contract.name}" + ("" if key == "snapshot" else f" day {key}")
    raise LandingDataError(
        f"{what}: refusing to replace it: {problem}; {found}{unread}. Nothing was changed. Fix the export, or, "
        f"if the shrink is deliberate, re-run with allow_shrink: true in the config of raw/{contract.name}."
    )


def _replace(
    conn, contract: TableContract, files, key: str, where: str, scope: str, guard: ShrinkGuard, coerced, event_date: date | None = None
) -> LoadResult:
    accepted = _check_shrink(conn, contract, key, where, files, guard)
    columns = ", ".join(c.typed for c in contract.columns)
    event_date_sql = f"DATE '{event_date}', " if event_date else ""
    record = "to_json({" + ", ".join(f"'{c.name}': {c.name}" for c in contract.columns) + "})::VARCHAR"
    order = "_v_ts" if event_date else contract.column(contract.key[0]).typed
    with transaction(conn):
        conn.execute(f"DELETE FROM raw.{contract.name} WHERE {where}")
        conn.execute(
            f"INSERT INTO raw.{contract.name} SELECT {event_date_sql}{columns}, _file, _row, now() "
            f"FROM staged WHERE _rule IS NULL ORDER BY {order}"
        )
        conn.execute(f"DELETE FROM raw.quarantine WHERE source_table = ? AND ({scope})", [contract.name])
        conn.execute(
            f"INSERT INTO raw.quarantine SELECT ?, _key, _file, _row, _rule, _reason, {record}, now() "
            "FROM staged WHERE _rule IS NOT NULL ORDER BY _key, _file, _row",
            [contract.name],
        )
    counts = dict(conn.execute("SELECT coalesce(_rule, 'loaded'), count(*) FROM staged GROUP BY ALL").fetchall())
    conn.execute("DROP TABLE staged")
    loaded = counts.pop("loaded", 0)
    return LoadResult(contract.name, key, len(files), loaded + sum(counts.values()), loaded, Counter(counts), coerced, accepted)
