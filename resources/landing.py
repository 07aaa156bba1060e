"""The landing folder: where raw exports arrive, in the contract of the README.

    <landing>/users.parquet|csv[.gz|.zst]      snapshot (or a users/ folder of part files)
    <landing>/items.parquet|csv[.gz|.zst]      snapshot (or an items/ folder of part files)
    <landing>/purchases.parquet|csv[...]       events, one undated file ...
    <landing>/purchases/**                     ... or a folder of files; a file's day comes from its
                                               name (YYYY-MM-DD.*) or from a Hive folder above it
                                               (dt=YYYY-MM-DD/, date=YYYY-MM-DD/); other files are undated
    wishlist, cart                             like purchases, optional

Everything else under the landing folder is listed by ``skipped_files`` with the reason, so a
re-export in a layout nobody expected shows up in the run's metadata instead of vanishing.

Files are read into DuckDB with every column as text plus the file and row each value came
from, so that validation can name the exact file, column and row of a bad value. CSV is read
in one strict dialect (comma, double quotes, a header line): a ragged or badly quoted line
fails with its file and line, not with a wrong guess of the dialect.
"""

from __future__ import annotations

import csv
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import duckdb

from resources import settings

SNAPSHOT_TABLES = ("users", "items")
EVENT_TABLES = ("purchases", "wishlist", "cart")
OPTIONAL_TABLES = ("wishlist", "cart")
# Longest suffix first: "x.csv.gz" is CSV, DuckDB decompresses .gz and .zst by extension.
FORMATS = {".csv.gz": "csv", ".csv.zst": "csv", ".parquet": "parquet", ".csv": "csv"}
_DAY = r"(\d{4}-\d{2}-\d{2})"
_HIVE_DAY = re.compile(rf"(?:dt|date)={_DAY}")
SKIPPED_LISTED = 50  # the metadata lists this many skipped files, then a count


class LandingDataError(ValueError):
    """Raw input that breaks the landing contract; the message names file, column and row."""


@dataclass(frozen=True)
class LandingFile:
    path: Path
    day: date | None  # the day a dated event file holds, None for undated files

    @property
    def format(self) -> str:
        return file_format(self.path)


def file_format(path: Path) -> str | None:
    name = path.name.lower()
    return next((fmt for suffix, fmt in FORMATS.items() if name.endswith(suffix)), None)


def _stem(path: Path) -> str:
    suffix = next(s for s in FORMATS if path.name.lower().endswith(s))
    return path.name[: -len(suffix)]


def file_day(path: Path, table_folder: Path) -> date | None:
    """The day a file in a table's folder holds: from its name, else from a Hive folder above it."""
    named = re.fullmatch(_DAY, _stem(path))
    hive = [m.group(1) for part in path.relative_to(table_folder).parts[:-1] if (m := _HIVE_DAY.fullmatch(part))]
    days = {d for d in [named.group(1) if named else None, *hive[-1:]] if d}
    if len(days) > 1:
        raise LandingDataError(f"{path}: its name and its folder give different days ({', '.join(sorted(days))}).")
    try:
        return date.fromisoformat(days.pop()) if days else None
    except ValueError as error:
        raise LandingDataError(f"{path}: {error} in its name or folder") from error


def _hidden(parts: tuple[str, ...]) -> bool:
    # Spark and Hadoop's convention: _SUCCESS, _committed_*, .crc checksums are not data.
    return any(part.startswith(("_", ".")) for part in parts)


class LandingZone(dg.ConfigurableResource):
    """Reads the landing folder (``RECSYS_LANDING_DIR``) for the ingest layer.

    ``source_timezone``: the zone of timestamps that carry no offset (default
    ``RECSYS_SOURCE_TIMEZONE``, else UTC). Timestamps with an offset or zone name are read as
    the instant they name; every timestamp lands as a UTC instant.
    """

    path: str = ""
    source_timezone: str = ""

    @property
    def root(self) -> Path:
        return Path(self.path) if self.path else settings.landing_dir()

    @property
    def zone(self) -> str:
        zone = self.source_timezone or settings.source_timezone()
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise LandingDataError(f"source_timezone {zone!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from error
        return zone

    def files(self, table: str) -> list[LandingFile]:
        """All data files of a table, single file and folder layouts alike, in a stable order."""
        found = self._discover(table)
        if not found and table not in OPTIONAL_TABLES:
            raise LandingDataError(
                f"No {table} data in the landing folder {self.root}: expected {table}.parquet, {table}.csv "
                f"(.csv.gz, .csv.zst) or a {table}/ folder of such files. Set RECSYS_LANDING_DIR to your export, "
                f"or run `recsys generate` for a synthetic marketplace.{self._skipped_hint()}"
            )
        return found

    def _discover(self, table: str) -> list[LandingFile]:
        found = [LandingFile(p, None) for p in self._single_files(table)]
        folder = self.root / table
        return found + [LandingFile(p, file_day(p, folder)) for p in self._folder_files(folder)]

    def _single_files(self, table: str) -> list[Path]:
        return [p for p in sorted(self.root.glob(f"{table}.*")) if p.is_file() and file_format(p) and _stem(p) == table]

    @staticmethod
    def _folder_files(folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        paths = (p for p in sorted(folder.rglob("*")) if p.is_file())
        return [p for p in paths if not _hidden(p.relative_to(folder).parts) and file_format(p)]

    def files_for_day(self, table: str, day: date) -> list[LandingFile]:
        """Files that can hold events of ``day``: its dated files and every undated file."""
        return [f for f in self.files(table) if f.day in (None, day)]

    def files_outside(self, table: str, first: date, last: date) -> list[LandingFile]:
        """Dated files of days outside the daily partitions ``first`` .. ``last``: read so that
        their rows are quarantined with the reason, never left in no table."""
        return [f for f in self.files(table) if f.day and not first <= f.day <= last]

    def skipped_files(self) -> dict[str, str]:
        """Every file under the landing folder that no table reads, with the reason."""
        read = {f.path for table in (*SNAPSHOT_TABLES, *EVENT_TABLES) for f in self._discover(table)}
        skipped = {}
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and p not in read):
            parts = path.relative_to(self.root).parts
            if _hidden(parts):
                reason = "hidden (a name starting with _ or .)"
            elif not file_format(path):
                reason = f"not a recognised format ({', '.join(FORMATS)})"
            else:
                reason = f"not a table of the landing contract ({', '.join((*SNAPSHOT_TABLES, *EVENT_TABLES))})"
            skipped[str(Path(*parts))] = reason
        return skipped

    def _skipped_hint(self) -> str:
        skipped = list(self.skipped_files()) if self.root.is_dir() else []
        return f" Files found but not read: {', '.join(skipped[:10])}." if skipped else ""

    def landing_days(self) -> list[date]:
        """Every day with event data in any event table, in order."""
        return sorted({day for table in EVENT_TABLES for day in self.event_days(table)})

    def event_days(self, table: str) -> list[date]:
        """Days with event data: from dated file names and folders, or the timestamps of undated files."""
        files = self.files(table)
        days = {f.day for f in files if f.day}
        undated = [f for f in files if f.day is None]
        if undated:
            with duckdb.connect() as conn, source_timezone(conn, self.zone):
                load_as_text(conn, undated, {"ts": True}, view="undated_ts")
                rows = conn.execute(f"SELECT DISTINCT CAST({utc_instant('ts')} AS DATE) FROM undated_ts").fetchall()
            days |= {d for (d,) in rows if d is not None}
        return sorted(days)


# --- time: one rule for every landing timestamp --------------------------------------------


def utc_instant(text_column: str) -> str:
    """SQL: the UTC instant a landing timestamp names, as a naive TIMESTAMP (NULL if unreadable).

    An offset or zone name in the text is honoured; text without one is in the session's
    TimeZone, which ``source_timezone`` sets to the source zone: never the host's TZ.
    """
    return f"(TRY_CAST(trim({text_column}) AS TIMESTAMPTZ) AT TIME ZONE 'UTC')"


@contextmanager
def source_timezone(conn: duckdb.DuckDBPyConnection, zone: str):
    """Read timestamps in ``zone``, then put the session back on UTC (so now() and casts are UTC)."""
    conn.execute(f"SET TimeZone = '{zone}'")
    try:
        yield conn
    finally:
        conn.execute("SET TimeZone = 'UTC'")


# --- reading files as text -----------------------------------------------------------------

_STRICT_CSV = "delim=',', quote='\"', escape='\"', header=true, auto_detect=false, strict_mode=true, null_padding=false"


def _csv_header(conn: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    # The first physical line (decompressed), parsed by the csv module: the strict read below
    # then gets its columns from the header instead of DuckDB's sniffer guessing a dialect.
    line = conn.execute(
        "SELECT line FROM read_csv(?, columns={'line': 'VARCHAR'}, delim='\\0', quote='', escape='', "
        "header=false, auto_detect=false) LIMIT 1",
        [str(path)],
    ).fetchone()
    if line is None or not (line[0] or "").strip():
        raise LandingDataError(f"{path}: the file has no header line (it is empty once decompressed).")
    header = [name.strip() for name in next(csv.reader([line[0]]))]
    if len(set(header)) != len(header) or "" in header:
        raise LandingDataError(f"{path}: line 1: the header has empty or repeated column names: {line[0]!r}")
    return header


def sniffer_guess(conn: duckdb.DuckDBPyConnection, path: Path) -> str:
    """What DuckDB's CSV sniffer makes of the file: shown when the strict dialect fails."""
    try:
        guess = conn.execute("SELECT Delimiter, Quote, HasHeader, Columns FROM sniff_csv(?)", [str(path)]).fetchone()
    except duckdb.Error as error:
        return f"the CSV sniffer cannot read it either ({str(error).splitlines()[0]})"
    delimiter, quote, header, columns = guess
    names = [column["name"] for column in columns]
    return f"the CSV sniffer guesses delimiter {delimiter!r}, quote {quote!r}, header {header}, columns {names}"


def _read_csv(conn: duckdb.DuckDBPyConnection, path: Path, table: str) -> None:
    header = _csv_header(conn, path)
    columns = "{" + ", ".join(f"'{_sql_text(name)}': 'VARCHAR'" for name in header) + "}"
    try:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv(?, columns={columns}, {_STRICT_CSV})", [str(path)])
    except duckdb.Error as error:
        # DuckDB names the line ("CSV Error on Line: 5", the line, what it expected); the rest
        # of its message is generic advice that does not apply to a contract it must follow.
        detail = " ".join(str(error).split("Possible fixes:")[0].split()).rstrip(".")
        raise LandingDataError(
            f"{path}: not a valid CSV in the landing dialect (comma, double quotes, header line): {detail}. "
            f"The header has {len(header)} columns; {sniffer_guess(conn, path)}."
        ) from error


def read_file_as_text(conn: duckdb.DuckDBPyConnection, f: LandingFile, table: str) -> None:
    """Temp table ``table``: every column of one landing file as text, in file order."""
    if f.path.stat().st_size == 0:
        raise LandingDataError(f"{f.path}: the file is empty (0 bytes); an export that wrote nothing, or a copy that failed.")
    if f.format == "csv":
        _read_csv(conn, f.path, table)
        return
    try:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT COLUMNS(*)::VARCHAR FROM read_parquet(?)", [str(f.path)])
    except duckdb.Error as error:
        raise LandingDataError(f"{f.path}: cannot be read as Parquet: {error}") from error


def load_as_text(conn: duckdb.DuckDBPyConnection, files: list[LandingFile], columns: dict[str, bool], view: str) -> None:
    """Create temp table ``view``: the named columns of all files as text, plus _file, _row and _file_day.

    ``columns`` maps a column name to whether it is required. A missing required column is a
    contract break of the whole file (LandingDataError); a missing optional one reads as NULL.
    ``_row`` is the 1-based data row in the file (for CSV, line = _row + 1 for the header).
    """
    selects = []
    for index, f in enumerate(files):
        raw = f"_landing_{view}_{index}"
        read_file_as_text(conn, f, raw)
        present = {name for (name, *_rest) in conn.execute(f"DESCRIBE {raw}").fetchall()}
        missing = [c for c, required in columns.items() if required and c not in present]
        if missing:
            guess = f" {sniffer_guess(conn, f.path)}." if f.format == "csv" else ""
            raise LandingDataError(
                f"{f.path}: missing required column(s) {', '.join(missing)} (found: {', '.join(sorted(present))}). "
                f"See the landing contract in README.md.{guess}"
            )
        picked = ", ".join(f'"{c}"' if c in present else f"NULL::VARCHAR AS {c}" for c in columns)
        day = f"DATE '{f.day}'" if f.day else "NULL::DATE"
        selects.append(f"SELECT {picked}, '{_sql_text(str(f.path))}' AS _file, rowid + 1 AS _row, {day} AS _file_day FROM {raw}")
    empty = ", ".join(f"NULL::VARCHAR AS {c}" for c in columns) + ", NULL::VARCHAR AS _file, NULL::BIGINT AS _row, NULL::DATE AS _file_day"
    body = " UNION ALL ".join(selects) if selects else f"SELECT {empty} WHERE false"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS {body}")
    for index in range(len(files)):
        conn.execute(f"DROP TABLE _landing_{view}_{index}")


def _sql_text(value: str) -> str:
    return value.replace("'", "''")
