"""Progress and results of a GPU job: through dagster-pipes when Dagster launched the job,
to the console when a person runs it by hand (same code path, no Dagster needed)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes


class JobReporter(Protocol):
    def log(self, message: str) -> None: ...

    def materialization(self, metadata: Mapping[str, Any]) -> None: ...


class PipesReporter:
    def __init__(self, context: PipesContext) -> None:
        self.context = context

    def log(self, message: str) -> None:
        self.context.log.info(message)

    def materialization(self, metadata: Mapping[str, Any]) -> None:
        self.context.report_asset_materialization(metadata=dict(metadata))


class ConsoleReporter:
    """Logs to stderr; the final metadata goes to stdout as one JSON object for scripts."""

    def __init__(self, name: str) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
        self.logger = logging.getLogger(name)

    def log(self, message: str) -> None:
        self.logger.info(message)

    def materialization(self, metadata: Mapping[str, Any]) -> None:
        print(json.dumps(dict(metadata), indent=2, default=str))


@contextmanager
def job_reporter(name: str) -> Iterator[JobReporter]:
    if PipesEnvVarParamsLoader().is_dagster_pipes_process():
        with open_dagster_pipes() as context:
            yield PipesReporter(context)
    else:
        yield ConsoleReporter(name)
