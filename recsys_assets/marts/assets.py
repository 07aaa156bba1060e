"""Marts layer: tables for product teams, built by dbt on the recommendations.

dbt_project/models/marts/ (tag ``marts``) reads ``marts.user_recommendations``, which the
serving layer writes shard by shard, and rebuilds as one step once the shards are done (the
marts aggregate over every user, so a shard at a time would only repeat the work). Who reads
them is declared in dbt_project/models/exposures.yml.
"""

import dagster as dg

from recsys_assets.features.assets import dbt_build_step
from recsys_assets.keys import USER_RECOMMENDATIONS
from recsys_assets.marts.checks import mart_checks


dbt_marts = dbt_build_step("dbt_marts", select="tag:marts")


def marts_for(upstream: list[dg.AssetsDefinition]) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """The marts and their checks, once ``upstream`` produces the recommendations they read.

    Until the serving layer is in the graph, the dbt source would show up as a dangling asset
    nobody owns, and the marts could not be built: they join the graph with it, by themselves.
    """
    if not any(USER_RECOMMENDATIONS in assets_def.keys for assets_def in upstream):
        return [], []
    return [dbt_marts], mart_checks()
