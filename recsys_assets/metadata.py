"""How results become materialization metadata a person reads in the Dagster UI.

Tables are Dagster tables (rendered inline, typed columns), not markdown: a markdown table of a
float-typed frame prints item ids as ``9.73905e+08`` and sits behind "Show Markdown". Ids and
counts stay integers, floats are rounded to what a person compares, durations read as durations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

FLOAT_DIGITS = 4


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series) or _whole_numbers(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def _whole_numbers(series: pd.Series) -> bool:
    """A float column with missing values that otherwise holds whole numbers is an integer column that
    pandas widened to hold NaN (ids after an outer join, say): it reads as integers."""
    if not pd.api.types.is_float_dtype(series) or not series.isna().any():
        return False
    present = series.dropna()
    return len(present) > 0 and bool(np.all(np.mod(present, 1) == 0)) and bool((present.abs() < 2**53).all())


def _cell(value, column_type: str):
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if column_type == "int":
        return int(value)
    if column_type == "float":
        return round(float(value), FLOAT_DIGITS)
    if column_type == "bool":
        return bool(value)
    return str(value)


def frame_table(frame: pd.DataFrame, index: str | None = None) -> dg.TableMetadataValue:
    """``frame`` as a Dagster table; ``index`` names the index as a first column (dropped when None)."""
    if index is not None:
        frame = frame.rename_axis(index).reset_index()
    frame = frame.rename(columns=str)
    types = {column: _column_type(frame[column]) for column in frame.columns}
    schema = dg.TableSchema(columns=[dg.TableColumn(column, kind) for column, kind in types.items()])
    records = [
        dg.TableRecord({column: _cell(value, types[column]) for column, value in zip(frame.columns, row)})
        for row in frame.itertuples(index=False, name=None)
    ]
    return dg.MetadataValue.table(records, schema=schema)


def duration(seconds: float) -> str:
    """``1661.96`` -> ``27 min 42 s``; under a minute, seconds to one decimal."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def _round_floats(value):
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS)
    if isinstance(value, dict):
        return {key: _round_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_round_floats(item) for item in value]
    return value


def rounded(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A job's reported metadata with its floats rounded, in JSON values too (a loss to 4 decimals, not 16)."""
    def readable(value):
        if isinstance(value, dg.FloatMetadataValue) and value.value is not None:
            return dg.MetadataValue.float(round(value.value, FLOAT_DIGITS))
        if isinstance(value, dg.JsonMetadataValue):
            return dg.MetadataValue.json(_round_floats(value.data))
        return value

    return {name: readable(value) for name, value in metadata.items()}


def plain(value: dg.MetadataValue) -> Any:
    """A metadata value as plain JSON-able data (a table as its rows), for alerts and logs."""
    if isinstance(value, dg.TableMetadataValue):
        return [record.data for record in value.records]
    return value.value
