"""recsys run's console: the assets' own messages and the failures, not Dagster's framework events."""

from pathlib import Path

import dagster as dg

from recsys_assets.progress import progress_logger


@dg.asset
def talkative(context: dg.AssetExecutionContext) -> None:
    context.log.info("loaded 3/3 days")
    context.log.debug("a detail for the event log only")


@dg.asset(deps=[talkative])
def broken() -> None:
    raise ValueError("the landing file is unreadable")


def test_the_console_shows_asset_messages_and_failures_only(capsys):
    defs = dg.Definitions(assets=[talkative, broken], jobs=[dg.define_asset_job("both")], loggers={"progress": progress_logger})
    result = defs.resolve_job_def("both").execute_in_process(run_config={"loggers": {"progress": {}}}, raise_on_error=False)
    assert not result.success
    lines = capsys.readouterr().out.splitlines()
    assert "  talkative: loaded 3/3 days" in lines
    assert any(line.startswith("  broken: ERROR: ") and "the landing file is unreadable" in line for line in lines)
    assert not any("STEP_START" in line or "a detail" in line or "Started execution" in line for line in lines)
    assert len(lines) <= 4, lines


def test_everything_else_goes_to_the_log_file_and_progress_to_the_terminal(tmp_path):
    """File descriptors, not only sys.stdout: dbt and the GPU jobs are subprocesses."""
    import subprocess
    import sys

    log = tmp_path / "run.log"
    script = f"""
import subprocess, sys, warnings
from pathlib import Path
from recsys_assets.progress import everything_else_to, say
with everything_else_to(Path({str(log)!r})):
    print("dbt: 1 of 12 START sql view model")
    subprocess.run([sys.executable, "-c", "import sys; print('a subprocess line'); print('a progress bar', file=sys.stderr)"])
    warnings.warn("a library warning")
    say("ingest_and_features: done in 5 s")
print("after the block")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["ingest_and_features: done in 5 s", "after the block"]
    assert result.stderr == ""
    logged = log.read_text()
    for line in ("dbt: 1 of 12 START", "a subprocess line", "a progress bar", "a library warning"):
        assert line in logged
    assert "ingest_and_features" not in logged
