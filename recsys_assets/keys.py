"""Asset keys and warehouse tables that more than one layer names: defined once, here.

A layer's own keys stay in its module (its assets define them); what another layer reads,
checks or waits for is imported from here, so renaming an asset is one edit.
"""

import dagster as dg

# ---- warehouse tables read across layers
FCT_PURCHASES_TABLE = "staging.fct_purchases"
STG_USERS_TABLE = "staging.stg_users"
USER_RECOMMENDATIONS_TABLE = "marts.user_recommendations"  # what product teams read, one shard at a time

# ---- asset keys
RAW_PURCHASES = dg.AssetKey(["raw", "purchases"])
STG_USERS = dg.AssetKey(["staging", "stg_users"])
STG_ITEMS = dg.AssetKey(["staging", "stg_items"])
FCT_PURCHASES = dg.AssetKey(["staging", "fct_purchases"])
ITEM_FEATURES = dg.AssetKey(["features", "item_features"])
ID_TOKENIZER = dg.AssetKey(["llm_data", "id_tokenizer"])
PROMPT_DATASET = dg.AssetKey(["llm_data", "prompt_dataset"])
POOL_ITEM_MODELS = dg.AssetKey(["llm_data", "pool_item_models"])
FINE_TUNED_MODEL = dg.AssetKey(["model", "fine_tuned_model"])
INFERENCE_ENGINE = dg.AssetKey(["model", "inference_engine"])
LLM_TEST_RECOMMENDATIONS = dg.AssetKey(["evaluation", "llm_test_recommendations"])
RECOMMENDATION_METRICS = dg.AssetKey(["evaluation", "recommendation_metrics"])
MODEL_PROMOTION = dg.AssetKey(["evaluation", "model_promotion"])
EXPERIMENT_STUDIES = dg.AssetKey(["evaluation", "experiment_studies"])
SHARD_USERS = dg.AssetKey(["serving", "shard_users"])
USER_RECOMMENDATIONS = dg.AssetKey(["serving", "user_recommendations"])
