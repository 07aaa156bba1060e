"""What `recsys run` prints while it runs: the stages, what the assets say, and what failed.

Dagster's console logger prints every framework event (step starts, inputs, outputs, each
materialization with its metadata): hundreds of lines per stage that bury the few a person
watches. This logger prints the messages the assets themselves log (progress of the long steps:
days loaded, training steps and loss, generation users/s), warnings, and failed steps; the
full event log stays in the instance, where the UI shows it.

``everything_else_to`` sends the rest of what a run prints (dbt's own output, the GPU jobs'
progress bars, library warnings) to a log file, so the terminal keeps the lines above.
"""

import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

# Framework events worth a line: the ones that say something went wrong.
SHOWN_EVENTS = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY}


def progress_line(record: logging.LogRecord) -> str | None:
    """The line a person reads for one log record, or None for framework chatter."""
    meta = getattr(record, "dagster_meta", None) or {}
    event = meta.get("dagster_event")
    if event is not None and event.event_type not in SHOWN_EVENTS and record.levelno < logging.WARNING:
        return None
    if event is None and record.levelno < logging.INFO:
        return None
    step = meta.get("step_key") or meta.get("job_name") or ""
    message = meta.get("orig_message") or record.getMessage()
    if event is not None and event.event_type == dg.DagsterEventType.STEP_FAILURE:
        message = f"{message} {_root_cause(event.step_failure_data.error)}"
    level = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
    return f"  {step}: {level}{message}" if step else f"  {level}{message}"


def _root_cause(error) -> str:
    """The user's exception (Dagster wraps it), as its one-line message; the traceback is in the UI."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[-1] if error is not None else ""


# Where progress lines go: the terminal saved by everything_else_to, else stdout.
_CONSOLE: list = []


def say(line: str) -> None:
    print(line, file=_CONSOLE[-1] if _CONSOLE else sys.stdout, flush=True)


@contextmanager
def everything_else_to(log_file: Path):
    """While the block runs, the process's stdout and stderr (file descriptors 1 and 2, so dbt and
    the GPU job subprocesses too) go to ``log_file``; ``say`` keeps writing to the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    with log_file.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        _CONSOLE.append(terminal)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            _CONSOLE.pop()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            terminal.close()


class _ProgressHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        line = progress_line(record)
        if line is not None:
            say(line)


@dg.logger(description="The asset messages, warnings and failures of a run, one line each (recsys run).")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.Logger("recsys_progress", level=logging.DEBUG)
    log.addHandler(_ProgressHandler())
    return log


class Stage:
    """Prints a stage's first line and, when it ends, how long it took and what it materialized."""

    def __init__(self, log, name: str, detail: str = ""):
        self.log, self.name, self.started = log, name, time.monotonic()
        log(f"{name}{': ' + detail if detail else ''}")

    def done(self, result) -> None:
        materialized = len(result.get_asset_materialization_events())
        outcome = "done" if result.success else "FAILED"
        self.log(f"{self.name}: {outcome} in {time.monotonic() - self.started:.0f} s, {materialized} materializations")
