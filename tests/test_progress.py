"""recsys run's console: the assets' own messages and the failures, not Dagster's framework events."""

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
