"""The landing folder: where raw exports arrive, in the contract of the README.

    <landing>/users.parquet|csv            snapshot
    <landing>/items.parquet|csv            snapshot
    <landing>/purchases.parquet|csv        events, one file ...
    <landing>/purchases/*.parquet|csv      ... or a folder of files; a file named
                                           YYYY-MM-DD.* holds that day only
    wishlist, cart                         like purchases, optional

Files are read into DuckDB with every column as text plus the file and row each value came
from, so that validation can name the exact file, column and row of a bad value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb

from resources import settings

SNAPSHOT_TABLES = ("users", "items")
EVENT_TABLES = ("purchases", "wishlist", "cart")
OPTIONAL_TABLES = ("wishlist", "cart")
FORMATS = {".parquet": "read_parquet", ".csv": "read_csv"}
_DATED_FILE = re.compile(r"(\d{4}-\d{2}-\d{2})")


class LandingDataError(ValueError):
    """Raw input that breaks the landing contract; the message names file, column and row."""


@dataclass(frozen=True)
class LandingFile:
    path: Path
    day: date | None  # the day a dated event file holds, None for undated files

    @property
    def reader(self) -> str:
        return FORMATS[self.path.suffix.lower()]


def dated(path: Path) -> date | None:
    match = _DATED_FILE.fullmatch(path.stem)
    return date.fromisoformat(match.group(1)) if match else None


class LandingZone(dg.ConfigurableResource):
    """Reads the landing folder (``RECSYS_LANDING_DIR``) for the ingest layer."""

    path: str = ""

    @property
    def root(self) -> Path:
        return Path(self.path) if self.path else settings.landing_dir()

    def files(self, table: str) -> list[LandingFile]:
        """All files of a table, single file and folder layouts alike, in a stable order."""
        candidates = [self.root / f"{table}{suffix}" for suffix in FORMATS]
        folder = self.root / table
        if folder.is_dir():
            candidates += sorted(p for p in folder.iterdir() if p.suffix.lower() in FORMATS)
        found = [LandingFile(p, dated(p) if p.parent == folder else None) for p in candidates if p.is_file()]
        if not found and table not in OPTIONAL_TABLES:
            raise LandingDataError(
                f"No {table} data in the landing folder {self.root}: expected {table}.parquet, {table}.csv "
                f"or a {table}/ folder of such files. Set RECSYS_LANDING_DIR to your export, or run "
                "`recsys generate` for a synthetic marketplace."
            )
        return found

    def files_for_day(self, table: str, day: date) -> list[LandingFile]:
        """Files that can hold events of ``day``: that day's dated file and every undated file."""
        return [f for f in self.files(table) if f.day in (None, day)]

    def event_days(self, table: str) -> list[date]:
        """Days with event data: from dated file names, or from the timestamps of undated files."""
        files = self.files(table)
        days = {f.day for f in files if f.day}
        undated = [f for f in files if f.day is None]
        if undated:
            with duckdb.connect() as conn:
                for f in undated:
                    rows = conn.execute(
                        f"SELECT DISTINCT CAST(TRY_CAST(ts AS TIMESTAMP) AS DATE) FROM {f.reader}(?)", [str(f.path)]
                    ).fetchall()
                    days |= {d for (d,) in rows if d is not None}
        return sorted(days)


def load_as_text(conn: duckdb.DuckDBPyConnection, files: list[LandingFile], columns: dict[str, bool], view: str) -> None:
    """Create temp table ``view``: the named columns of all files as text, plus _file and _row.

    ``columns`` maps a column name to whether it is required. A missing required column is a
    contract break of the whole file (LandingDataError); a missing optional one reads as NULL.
    ``_row`` is the 1-based data row in the file (for CSV, line = _row + 1 for the header).
    """
    selects = []
    for index, f in enumerate(files):
        raw = f"_landing_{view}_{index}"
        try:
            conn.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS SELECT COLUMNS(*)::VARCHAR FROM {f.reader}(?)", [str(f.path)])
        except duckdb.Error as error:
            raise LandingDataError(f"{f.path}: cannot be read as {f.path.suffix[1:]}: {error}") from error
        present = {name for (name, *_rest) in conn.execute(f"DESCRIBE {raw}").fetchall()}
        missing = [c for c, required in columns.items() if required and c not in present]
        if missing:
            raise LandingDataError(
                f"{f.path}: missing required column(s) {', '.join(missing)} (found: {', '.join(sorted(present))}). "
                "See the landing contract in README.md."
            )
        picked = ", ".join(c if c in present else f"NULL::VARCHAR AS {c}" for c in columns)
        selects.append(f"SELECT {picked}, '{_sql_text(str(f.path))}' AS _file, rowid + 1 AS _row FROM {raw}")
    empty = ", ".join(f"NULL::VARCHAR AS {c}" for c in columns) + ", NULL::VARCHAR AS _file, NULL::BIGINT AS _row"
    body = " UNION ALL ".join(selects) if selects else f"SELECT {empty} WHERE false"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS {body}")
    for index in range(len(files)):
        conn.execute(f"DROP TABLE _landing_{view}_{index}")


def _sql_text(value: str) -> str:
    return value.replace("'", "''")
