"""Dagster resources: warehouse, landing zone, dbt, artifact store (and, as layers arrive, GPU jobs)."""

from resources import settings
from resources.artifacts import ArtifactStore
from resources.candidate_engine import candidate_engine_resource
from resources.dbt import dbt_resource
from resources.generation import GenerationSettings
from resources.gpu_jobs import gpu_job_runner
from resources.landing import LandingZone
from resources.notifier import notifier_resource
from resources.splits import EvaluationSplit
from resources.warehouse import warehouse_resource


def default_resources() -> dict:
    """Resources for the embedded default, resolved from RECSYS_HOME / RECSYS_LANDING_DIR now."""
    warehouse = warehouse_resource()
    artifacts = ArtifactStore(root=str(settings.artifacts_dir()))
    return {
        "warehouse": warehouse,
        "landing": LandingZone(path=str(settings.landing_dir())),
        "dbt": dbt_resource(warehouse.database),
        "artifacts": artifacts,
        "gpu_jobs": gpu_job_runner(artifacts),  # RECSYS_GPU_MODE: local subprocess or Kubernetes pod
        "candidate_engine": candidate_engine_resource(artifacts),  # RECSYS_CANDIDATE_ENGINE: sklearn or spark
        "splits": EvaluationSplit(),
        "generation": GenerationSettings(),  # one setting for the product's lists and their evaluation
        "notifier": notifier_resource(),
    }
