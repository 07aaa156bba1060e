"""Dagster resources: warehouse, landing zone, dbt, artifact store (and, as layers arrive, GPU jobs)."""

from resources import settings
from resources.artifacts import ArtifactStore
from resources.dbt import dbt_resource
from resources.landing import LandingZone
from resources.notifier import notifier_resource
from resources.splits import EvaluationSplit
from resources.warehouse import warehouse_resource


def default_resources() -> dict:
    """Resources for the embedded default, resolved from RECSYS_HOME / RECSYS_LANDING_DIR now."""
    warehouse = warehouse_resource()
    return {
        "warehouse": warehouse,
        "landing": LandingZone(path=str(settings.landing_dir())),
        "dbt": dbt_resource(warehouse.database),
        "artifacts": ArtifactStore(root=str(settings.artifacts_dir())),
        "splits": EvaluationSplit(),
        "notifier": notifier_resource(),
    }
