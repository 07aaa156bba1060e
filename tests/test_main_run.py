"""The README's first command, end to end: ``recsys run`` on a fresh home fills every table.

The same command as ``make run`` (synthetic marketplace, DuckDB, CPU), only smaller: every
layer runs for real, through the definitions the UI loads, with the default settings. The
run itself is the session fixture ``main_run`` (tests/conftest.py), shared with the quality
tests.
"""

from tests.conftest import MAIN_RUN_USERS


def test_every_user_gets_recommendations_in_the_product_table(main_run):
    users, missing = main_run.query(
        "SELECT count(DISTINCT u.user_id), count(*) FILTER (WHERE r.user_id IS NULL) "
        "FROM staging.stg_users u LEFT JOIN (SELECT DISTINCT user_id FROM marts.user_recommendations) r USING (user_id)",
    )[0]
    assert users == MAIN_RUN_USERS
    # A user whose every chain named only unknown ids gets no row; on a trained model that is rare.
    assert missing <= MAIN_RUN_USERS // 20
    # Full lists: the likelihood ranking's pool is topped up with popular items to max_items (200).
    (full_share,) = main_run.query(
        "SELECT avg((n = 200)::INT) FROM (SELECT user_id, count(*) AS n FROM marts.user_recommendations GROUP BY 1)"
    )[0]
    assert full_share >= 0.95


def test_the_llm_and_every_baseline_are_scored(main_run):
    from recsys_assets.evaluation.baseline_assets import BASELINES

    models = {model for (model,) in main_run.query("SELECT DISTINCT model FROM marts.recommendation_metrics")}
    assert models == {"llm", "llm_chains", *(b.key.path[-1].removeprefix("baseline_") for b in BASELINES)}


def test_the_likelihood_ranking_fills_lists_past_what_the_chains_generate(main_run):
    (served, chains_only) = main_run.query(
        "SELECT avg(n) FILTER (WHERE recommender = 'llm'), avg(n) FILTER (WHERE recommender = 'llm_chains') "
        "FROM (SELECT recommender, user_id, count(*) AS n FROM evaluation.recommendations GROUP BY 1, 2)"
    )[0]
    product = main_run.query("SELECT count(*) / count(DISTINCT user_id) FROM marts.user_recommendations")[0][0]
    assert served > 2 * chains_only and product > 2 * chains_only, (served, chains_only, product)


def test_the_product_table_records_the_promoted_model_version(main_run):
    from recsys_assets.keys import MODEL_PROMOTION
    from resources.artifacts import latest_metadata

    promotion = latest_metadata(main_run.instance(), MODEL_PROMOTION)
    served = {version for (version,) in main_run.query("SELECT DISTINCT model_version FROM marts.user_recommendations")}
    assert served == {promotion["model_version"]}


def test_every_run_belongs_to_a_named_stage_job(main_run):
    runs = main_run.instance().get_runs()
    assert {run.job_name for run in runs} == {"ingest_and_features", "train_and_evaluate", "serve_shards", "marts"}


def test_the_run_prints_its_stages_and_the_tables(main_run):
    assert "ingest_and_features: every landing day" in main_run.result.stdout and "serve_shards: shard 1/" in main_run.result.stdout
    assert "marts.user_recommendations" in main_run.result.stdout  # the closing table listing
