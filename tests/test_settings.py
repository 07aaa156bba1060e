"""The environment is read in one place (resources/settings.py), and the README's table is that place's."""

import re
import subprocess
from pathlib import Path

import pytest

from resources import settings

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
# A read of the environment (writes such as setdefault or assignment are not reads).
ENVIRONMENT_READ = re.compile(r"os\.environ\.get\(|os\.getenv\(|\bin os\.environ\b|os\.environ\[[^\]]+\](?!\s*=)")


def test_the_readme_table_is_the_settings_module():
    text = README.read_text()
    table = text.split("<!-- settings:start -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    assert table == settings.markdown_table(), "regenerate the README's settings table from resources/settings.py"


def tracked_sources(*folders: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", *folders], cwd=PROJECT, capture_output=True, text=True, check=True)
    return [PROJECT / name for name in listed.stdout.split() if name.endswith((".py", ".yml", ".yaml", "Dockerfile"))]


def test_every_variable_the_code_names_is_a_documented_setting():
    named = set()
    for path in tracked_sources("recsys_assets", "resources", "partitions", "gpu_jobs", "dbt_project", "deploy"):
        named |= set(re.findall(r"\bRECSYS_[A-Z_]*[A-Z]\b", path.read_text()))
    assert named - set(settings.SWITCHES) == set()


def test_only_the_settings_module_reads_the_environment():
    """gpu_jobs/ runs in the GPU image without this package, so it reads its one variable itself."""
    readers = [
        path.relative_to(PROJECT).as_posix()
        for path in tracked_sources("recsys_assets", "resources", "partitions")
        if path.suffix == ".py" and ENVIRONMENT_READ.search(path.read_text())
    ]
    assert readers == ["resources/settings.py"]


def test_an_unknown_setting_or_value_says_what_to_do(monkeypatch):
    with pytest.raises(KeyError, match="add it to resources/settings.py"):
        settings.value("RECSYS_TYPO")
    monkeypatch.setenv("RECSYS_CANDIDATE_ENGINE", "sparkk")
    with pytest.raises(ValueError, match="RECSYS_CANDIDATE_ENGINE='sparkk': expected one of sklearn, spark"):
        settings.candidate_engine()
