"""How recommendations are generated: one setting for the product and its evaluation.

``serving/user_recommendations`` and ``evaluation/llm_test_recommendations`` (and the
experiments) take the same ``generation`` resource, so the evaluation scores lists made
exactly as the served ones are: same sampling, same length, same repeat policy.

The repeat policy, when not configured, follows the data: a marketplace where users buy the
same items again (groceries) should see them again; one where they almost never do (durable
goods) should not spend slots on them. The share of the training period's last weeks'
purchases that repeat an earlier purchase of the same user decides, against
``repeat_threshold``.
"""

import dagster as dg

# The training period's last weeks the repeat share is measured on.
REPEAT_WINDOW_DAYS = 28


class GenerationSettings(dg.ConfigurableResource):
    chains: int = 4
    """Independent sampled chains per user, merged into one list of unique items."""
    top_p: float = 0.9
    top_k: int = 50
    temperature: float = 0.7
    max_new_tokens: int = 0
    """Tokens per chain; 0: the longer of the prompt dataset's reserved target length and 1.5 x min_new_tokens."""
    min_new_tokens: int = 40
    """Tokens per chain before the end token may stop it. A model trained on next purchases writes baskets of
    about 3 ids; room for ~12 gives longer lists (default marketplace: HitRate@10 0.45 -> 0.56, 3x the time)."""
    max_items: int = 200
    """Items per user in the list."""
    ranking: str = "likelihood"
    """likelihood: the model scores every generated item and the user's candidate pool by its likelihood after
    the prompt, and the list is that ranking (full lists even when the chains are short); chains: the chains'
    agreement order, generated items only."""
    pool_sources: list[str] = ["own_frequency", "item_to_item", "global_popularity"]
    """Baseline recommenders whose top items form each user's candidate pool for the likelihood ranking: the
    user's own purchases, items co-purchased with them, and the popular items (for cold-start users). These
    three are all there is: their item models are fitted once (llm_data/pool_item_models), so a shard reads
    only its users' purchases."""
    pool_items_per_source: int = 100
    """Items each pool source brings per user (before duplicates across sources merge)."""
    include_bought: bool | None = None
    """Keep items the user already bought. None: decided from the data (see repeat_threshold)."""
    repeat_threshold: float = 0.15
    """With include_bought unset, bought items are kept when at least this share of the training period's
    recent purchases repeat an earlier purchase (synthetic default marketplace ~0.3, durable goods < 0.05)."""
    batch_size: int = 32
    seed: int = 0

    def keep_bought(self, repeat_share: float) -> tuple[bool, str]:
        """The repeat policy and why, for the metadata."""
        if self.include_bought is not None:
            return self.include_bought, f"configured: include_bought={self.include_bought}"
        keep = repeat_share >= self.repeat_threshold
        relation = ">=" if keep else "<"
        return keep, f"auto: {'keep' if keep else 'drop'} bought items (repeat share {repeat_share:.3f} {relation} {self.repeat_threshold})"

    def job_args(self, reserved_target_tokens: int, keep_bought: bool, chains: int | None = None) -> list[str]:
        """These settings as flags of gpu_jobs.generate; ``chains`` overrides the configured count."""
        max_new = self.max_new_tokens or max(reserved_target_tokens, self.min_new_tokens * 3 // 2)
        args = [
            "--chains", str(chains or self.chains), "--top-p", str(self.top_p), "--top-k", str(self.top_k),
            "--temperature", str(self.temperature), "--max-new-tokens", str(max_new),
            "--min-new-tokens", str(min(self.min_new_tokens, max_new)), "--max-items", str(self.max_items),
            "--batch-size", str(self.batch_size), "--seed", str(self.seed), "--ranking", self.ranking,
        ]  # fmt: skip
        return args + (["--include-bought"] if keep_bought else [])


def repeat_share_sql(window_days: int = REPEAT_WINDOW_DAYS) -> str:
    """SQL (one parameter: the training cut-off) for the share of the last ``window_days`` days' distinct
    (user, item) purchases before the cut-off that the user had bought earlier."""
    return f"""
    WITH recent AS (
        SELECT DISTINCT user_id, item_id FROM staging.fct_purchases
        WHERE ts < $1::TIMESTAMP AND ts >= $1::TIMESTAMP - INTERVAL {int(window_days)} DAY
    ), earlier AS (
        SELECT DISTINCT user_id, item_id FROM staging.fct_purchases WHERE ts < $1::TIMESTAMP - INTERVAL {int(window_days)} DAY
    )
    SELECT coalesce(avg(CASE WHEN e.user_id IS NULL THEN 0.0 ELSE 1.0 END), 0.0)
    FROM recent r LEFT JOIN earlier e USING (user_id, item_id)
    """
