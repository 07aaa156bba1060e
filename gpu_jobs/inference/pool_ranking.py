"""One user's list ranked by the model's likelihood: the generated items and the candidate pool together."""

from __future__ import annotations

from collections.abc import Collection

from gpu_jobs.inference.merge import MergedRecommendations
from gpu_jobs.inference.scoring import LikelihoodScorer

GENERATED = "generated"  # the source of an item the chains produced


def pool_items(merged: MergedRecommendations, pool: dict[int, str], catalog: frozenset[int], bought: Collection[int], exclude_bought: bool):
    """Generated items first (their source and chain rank kept), then the pool's other catalog items."""
    items = {item.item_id: (item, GENERATED) for item in merged.items}
    for item_id, source in pool.items():
        if item_id not in items and item_id in catalog and not (exclude_bought and item_id in bought):
            items[item_id] = (None, source)
    return items


def ranked_by_likelihood(scorer: LikelihoodScorer, prefix: str, items: dict, max_items: int | None) -> list[tuple]:
    """(item_id, score, chains_with_item, chain_rank, source) by the model's log-likelihood, best first."""
    item_ids = list(items)
    scores = scorer.score(prefix, item_ids)
    order = sorted(range(len(item_ids)), key=lambda i: (-scores[i], item_ids[i]))[:max_items]
    rows = []
    for index in order:
        generated, source = items[item_ids[index]]
        chains = generated.chains_with_item if generated else 0
        rows.append((item_ids[index], float(scores[index]), chains, generated.rank if generated else None, source))
    return rows
