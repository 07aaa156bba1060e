"""The code location: every layer's assets, checks, jobs and resources, assembled once."""

import dagster as dg

from recsys_assets.automation import automation_sensors, with_layer_policies
from recsys_assets.candidates.assets import candidate_assets, candidate_checks
from recsys_assets.evaluation.assets import evaluation_assets
from recsys_assets.evaluation.experiments import experiment_studies
from recsys_assets.evaluation.llm_test_recommendations import llm_test_recommendations
from recsys_assets.evaluation.promotion import model_promotion
from recsys_assets.features.assets import feature_assets
from recsys_assets.ingest.assets import ingest_assets
from recsys_assets.jobs import jobs
from recsys_assets.llm_data.assets import llm_data_assets
from recsys_assets.marts.assets import marts_for
from recsys_assets.model.assets import model_assets
from recsys_assets.model.inference_engine import inference_engine
from recsys_assets.sensors import operations_sensors
from recsys_assets.serving.assets import user_recommendations
from recsys_assets.serving.shard_users import shard_users
from resources import default_resources

layers = [
    *ingest_assets, *feature_assets, *llm_data_assets, *candidate_assets, *model_assets, inference_engine,
    shard_users, user_recommendations, llm_test_recommendations, *evaluation_assets, model_promotion, experiment_studies,
]  # fmt: skip
# The marts read serving/user_recommendations: they join the graph when a layer above produces it.
marts_assets, marts_checks = marts_for(layers)

defs = dg.Definitions(
    # Freshness and automation by layer (recsys_assets/automation.py), not in the layer modules;
    # every asset's page links to the file that defines it (dbt assets: their .sql, see resources/dbt.py).
    assets=dg.with_source_code_references(with_layer_policies([*layers, *marts_assets])),
    asset_checks=[*candidate_checks, *marts_checks],
    jobs=jobs,
    sensors=[*automation_sensors(), *operations_sensors],
    resources=default_resources(),
)
