"""A snapshot of every asset spec and check: an unintended change to the graph shows in review.

The snapshot (tests/snapshots/asset_specs.json) is the graph as a reviewer reads it: per asset
its group, owners, kinds, partitions, automation, freshness, pool and upstream keys; per check
its asset, name and whether it blocks. After an intended change, regenerate it and commit the
diff with the change:

    .venv/bin/python -m tests.test_asset_specs
"""

import json
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_specs.json"


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return f"{type(partitions_def).__name__}(cron={partitions_def.cron_schedule!r})"  # the start follows the data
    return type(partitions_def).__name__


def spec_snapshot(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for spec in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        node = graph.get(spec.key)
        assets[spec.key.to_user_string()] = {
            "group": spec.group_name,
            "owners": sorted(spec.owners),
            "kinds": sorted(spec.kinds),
            "partitions": _partitions(spec.partitions_def),
            "automation": str(spec.automation_condition.get_label() or spec.automation_condition.name)
            if spec.automation_condition
            else None,
            "freshness": repr(node.freshness_policy) if node.freshness_policy else None,
            "pools": sorted(node.pools or []),
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
        }
    checks = sorted(
        f"{key.asset_key.to_user_string()}:{key.name}{' (blocking)' if graph.get_check_spec(key).blocking else ''}"
        for key in graph.asset_check_keys
    )
    return {"assets": assets, "checks": checks}


def current() -> dict:
    from recsys_assets.definitions import defs

    return json.loads(json.dumps(spec_snapshot(defs)))


def test_the_graph_matches_its_snapshot():
    expected = json.loads(SNAPSHOT.read_text())
    actual = current()
    assert actual["checks"] == expected["checks"]
    assert sorted(actual["assets"]) == sorted(expected["assets"])
    for key, spec in expected["assets"].items():
        assert actual["assets"][key] == spec, f"{key} changed; if intended: python -m tests.test_asset_specs"


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
