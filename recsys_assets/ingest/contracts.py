"""The landing contract of each raw table: its columns, key, references, and the rules a value must keep.

A rule is (condition, rule name, message SQL) over the staged row, where ``<name>`` is the
value as text and ``_v_<name>`` the value typed once (see loading._stage).
"""

from __future__ import annotations

from dataclasses import dataclass

from resources.landing import utc_instant


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # id | int | float | timestamp | text
    required: bool = True  # must the column be present in the file
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None

    @property
    def typed(self) -> str:
        return f"_v_{self.name}"

    def typed_sql(self) -> str:
        """SQL that types the text value; timestamps become UTC instants (landing.utc_instant)."""
        if self.kind == "timestamp":
            return utc_instant(self.name)
        return f"TRY_CAST(trim({self.name}) AS {SQL_TYPES[self.kind]})"


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # a second row with the same key is a duplicate
    references: tuple[tuple[str, str], ...] = ()  # (column, snapshot table) that must know it

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def integer_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.kind in ("id", "int")]


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

SQL_TYPES = {"id": "BIGINT", "int": "INTEGER", "float": "DOUBLE", "timestamp": "TIMESTAMP", "text": "VARCHAR"}


def value_rules(column: Column) -> list[tuple[str, str, str]]:
    """(condition, rule, message SQL) for the values of one column, in order of precedence."""
    c, typed, shown = column.name, column.typed, f"'''' || {column.name} || ''''"
    rules = []
    if not column.nullable:
        rules.append((f"{c} IS NULL OR trim({c}) = ''", f"missing {c}", f"'{c} is missing'"))
    not_null = f"{c} IS NOT NULL AND trim({c}) <> ''"
    if column.kind in ("int", "float"):
        # 'NaN' and 'inf' parse as doubles: without this rule they would load as prices.
        as_double = f"TRY_CAST(trim({c}) AS DOUBLE)"
        rules.append((f"{as_double} IS NOT NULL AND NOT isfinite({as_double})", f"non-finite {c}", f"'{c} is not a finite number: ' || {shown}"))
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
