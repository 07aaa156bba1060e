"""The packages are layered: no import cycle, and the operations modules load without the code location."""

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("recsys_assets", "resources", "partitions", "gpu_jobs", "synthetic_marketplace")


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in it (a deferred import is still a dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found |= {name for name in names if name in known}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = [path for package in PACKAGES for path in (PROJECT / package).rglob("*.py")]
    known = {module_name(path) for path in paths}
    graph = {}
    for path in paths:
        name = module_name(path)
        # A package's __init__ is imported with any of its modules: not an edge back.
        graph[name] = {dep for dep in imported_modules(path, known) if dep != name and not name.startswith(f"{dep}.")}
    return graph


def test_no_import_cycle_among_the_modules():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_the_runner_and_the_sensors_load_without_the_code_location():
    check = "import sys, recsys_assets.runner, recsys_assets.sensors; assert 'recsys_assets.definitions' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", check], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
