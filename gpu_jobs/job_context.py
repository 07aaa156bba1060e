"""How a GPU job talks back: through dagster-pipes when Dagster launched it, to the console otherwise.

Every job in gpu_jobs/ opens ``job_context()`` and uses the same three things either way:
``log``, ``extras`` and ``report_asset_materialization``. So a job started from a shell (a
platform engineer debugging on a GPU node) runs exactly the code that the asset runs.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes


class ConsoleContext:
    """The pipes context's surface for a job started by hand: logs to stderr, results to stdout."""

    def __init__(self) -> None:
        self.log = logging.getLogger("gpu_jobs")
        if not self.log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self.log.addHandler(handler)
            self.log.setLevel(logging.INFO)
        self.extras: Mapping[str, Any] = {}

    def report_asset_materialization(
        self, metadata: Mapping[str, Any] | None = None, data_version: str | None = None, asset_key: str | None = None
    ) -> None:
        summary = {"asset_key": asset_key, "data_version": data_version, "metadata": _plain(metadata or {})}
        print(json.dumps(summary, indent=2, default=str))


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Pipes metadata ({"raw_value": v, "type": t} or v) as plain values; embedded images left out."""
    plain = {}
    for key, value in metadata.items():
        if isinstance(value, Mapping) and "raw_value" in value:
            if value.get("type") == "md":
                continue
            value = value["raw_value"]
        plain[key] = value
    return plain


def quiet_progress_bars() -> None:
    """transformers draws a progress bar for every checkpoint it loads or saves: in a job's log (and
    so in the Dagster UI) they are noise between the job's own progress lines."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


@contextmanager
def job_context() -> Iterator[PipesContext | ConsoleContext]:
    quiet_progress_bars()
    if PipesEnvVarParamsLoader().is_dagster_pipes_process():
        with open_dagster_pipes() as pipes:
            yield pipes
    else:
        yield ConsoleContext()
