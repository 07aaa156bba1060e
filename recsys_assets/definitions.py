"""The code location: every layer's assets, checks, jobs and resources, assembled once."""

import dagster as dg

from recsys_assets.candidates.assets import candidate_assets, candidate_checks
from recsys_assets.features.assets import feature_assets
from recsys_assets.ingest.assets import ingest_assets
from recsys_assets.llm_data.assets import llm_data_assets
from resources import default_resources

defs = dg.Definitions(
    assets=[*ingest_assets, *feature_assets, *llm_data_assets, *candidate_assets],
    asset_checks=[*candidate_checks],
    resources=default_resources(),
)
