"""The first daily partition follows the data once, then never moves."""

from datetime import date

from partitions.daily import DEFAULT_FIRST_DAY, resolve_first_day


def test_the_first_landing_day_is_recorded_once_and_kept_when_older_days_vanish(tmp_path):
    record = tmp_path / "home" / "first_day"
    assert resolve_first_day(None, record, lambda: date(2026, 5, 3)) == "2026-05-03"
    assert record.read_text() == "2026-05-03"
    # A later export without its oldest days: the keys stay where they were.
    assert resolve_first_day(None, record, lambda: date(2026, 6, 1)) == "2026-05-03"


def test_a_configured_first_day_wins_and_an_empty_landing_folder_records_nothing(tmp_path):
    record = tmp_path / "first_day"
    assert resolve_first_day("2025-01-01", record, lambda: date(2026, 5, 3)) == "2025-01-01"
    assert resolve_first_day(None, record, lambda: None) == DEFAULT_FIRST_DAY
    assert not record.exists()
