"""Type a column once, per file, before any row is judged.

An exporter that writes a whole id or count column as floats (pandas does, for an integer
column with one null: ``1000001.0``) has not produced bad rows, it has used the wrong type
for the column. Such a column is coerced back to integers when that loses nothing, and fails
its file (naming column, row and value) when it would. What remains for the row rules is what
they are for: single bad values.
"""

from __future__ import annotations

import duckdb

from resources.landing import LandingDataError

# A value written as a float: 12.0, 12., .5, 1.2e+18 (the text DuckDB gives a DOUBLE, too).
_FLOAT_TEXT = r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)"
_NON_FINITE = "('nan', '-nan', 'inf', '+inf', '-inf', 'infinity', '+infinity', '-infinity')"
# Integers up to 2**53 survive a trip through a double exactly; a larger whole double may not
# be the id that was exported.
_EXACT_DOUBLE = 2**53


def _float_column_files(conn: duckdb.DuckDBPyConnection, view: str, column: str) -> list[str]:
    """Files whose every value of ``column`` is written as a float (non-finite words aside)."""
    value = f'trim("{column}")'
    rows = conn.execute(
        f"""
        SELECT _file FROM {view} WHERE {value} <> ''
        GROUP BY _file
        HAVING bool_and(regexp_full_match({value}, '{_FLOAT_TEXT}') OR lower({value}) IN {_NON_FINITE})
           AND bool_or(regexp_full_match({value}, '{_FLOAT_TEXT}'))
        """
    ).fetchall()
    return [file for (file,) in rows]


def _whole(value: str) -> str:
    """SQL: the float text is a whole number small enough that its double was the exported integer.

    The bound holds for CSV text too: float text in an export was a double before it was text.
    """
    as_double = f"TRY_CAST({value} AS DOUBLE)"
    return f"({as_double} = trunc({as_double}) AND abs({as_double}) <= {_EXACT_DOUBLE})"


def coerce_float_integer_columns(conn: duckdb.DuckDBPyConnection, view: str, columns: list[str]) -> dict[str, str]:
    """Rewrite whole-number float columns of ``view`` as integers, per file; returns what was coerced.

    Raises LandingDataError for a float column holding a value that is not a whole number (or
    too large to be exact in a double): the column is wrong as a whole, not that row.
    """
    coerced = {}
    for column in columns:
        value = f'trim("{column}")'
        for file in _float_column_files(conn, view, column):
            lossy = conn.execute(
                f"SELECT _row, {value} FROM {view} WHERE _file = ? AND regexp_full_match({value}, '{_FLOAT_TEXT}') "
                f"AND NOT {_whole(value)} ORDER BY _row LIMIT 1",
                [file],
            ).fetchone()
            if lossy:
                row, shown = lossy
                raise LandingDataError(
                    f"{file}: column {column} is written as floats and row {row} holds {shown!r}, which is not a whole "
                    f"number that fits a float exactly (|x| <= 2^53), so the column cannot be read as integers. "
                    f"Export {column} as an integer column (in pandas: astype('Int64'))."
                )
            conn.execute(
                f"""UPDATE {view} SET "{column}" = CASE
                    WHEN regexp_full_match({value}, '[+-]?\\d+\\.0*') THEN regexp_replace({value}, '\\.0*$', '')
                    ELSE CAST(CAST({value} AS DOUBLE) AS HUGEINT)::VARCHAR END
                WHERE _file = ? AND regexp_full_match({value}, '{_FLOAT_TEXT}')""",
                [file],
            )
            coerced[f"{file}:{column}"] = "float -> integer (every value a whole number)"
    return coerced
