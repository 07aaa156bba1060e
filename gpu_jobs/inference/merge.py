"""From sampled chains to one ranked recommendation list per user (pure, no model).

The method samples N independent chains per user and merges them into one set of unique
items. Ranking: items produced by more chains first (agreement between independent samples
is the model's confidence), then by the earliest position at which any chain produced the
item (the model emits its likeliest items first). Ids outside the catalog are hallucinated
by the model: they are dropped and counted, and the valid-id rate is reported.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from gpu_jobs.prompt_format import parse_item_ids


@dataclass(frozen=True)
class RankedItem:
    item_id: int
    rank: int  # 1-based
    score: float  # share of the chains that produced the item, in (0, 1]
    chains_with_item: int


@dataclass(frozen=True)
class MergeCounts:
    generated_ids: int = 0  # every id parsed from every chain, repeats included
    valid_ids: int = 0  # of those, ids in the catalog
    excluded_bought: int = 0  # valid ids dropped because the user already bought the item
    unique_items: int = 0  # items in the merged list

    @property
    def invalid_ids(self) -> int:
        return self.generated_ids - self.valid_ids

    @property
    def valid_id_rate(self) -> float:
        """Share of generated ids that exist in the catalog; 0.0 when nothing was generated."""
        return self.valid_ids / self.generated_ids if self.generated_ids else 0.0

    def __add__(self, other: MergeCounts) -> MergeCounts:
        return MergeCounts(
            self.generated_ids + other.generated_ids,
            self.valid_ids + other.valid_ids,
            self.excluded_bought + other.excluded_bought,
            self.unique_items + other.unique_items,
        )


@dataclass(frozen=True)
class MergedRecommendations:
    items: list[RankedItem]
    counts: MergeCounts


@dataclass
class _Tally:
    chains: int
    first_position: int


def merge_chains(
    chains: Sequence[str],
    catalog: Collection[int],
    bought: Collection[int] = frozenset(),
    *,
    exclude_bought: bool = True,
    max_items: int | None = None,
) -> MergedRecommendations:
    """Merge one user's chain completions into unique catalog items in rank order."""
    tallies: dict[int, _Tally] = {}
    generated = valid = excluded = 0
    for chain in chains:
        seen_in_chain: set[int] = set()
        for position, item_id in enumerate(parse_item_ids(chain)):
            generated += 1
            if item_id not in catalog:
                continue
            valid += 1
            if exclude_bought and item_id in bought:
                excluded += 1
                continue
            _count(tallies, seen_in_chain, item_id, position)
    ranked = sorted(tallies.items(), key=lambda entry: (-entry[1].chains, entry[1].first_position))[:max_items]
    items = [
        RankedItem(item_id=item_id, rank=rank, score=tally.chains / len(chains), chains_with_item=tally.chains)
        for rank, (item_id, tally) in enumerate(ranked, start=1)
    ]
    return MergedRecommendations(items, MergeCounts(generated, valid, excluded, len(items)))


def _count(tallies: dict[int, _Tally], seen_in_chain: set[int], item_id: int, position: int) -> None:
    """A chain counts once per item however often it repeats it; the earliest position wins."""
    tally = tallies.get(item_id)
    if tally is None:
        tallies[item_id] = _Tally(chains=1, first_position=position)
    elif item_id not in seen_in_chain:
        tally.chains += 1
        tally.first_position = min(tally.first_position, position)
    seen_in_chain.add(item_id)
