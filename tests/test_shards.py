"""User-range shards: short keys that never change, every user in one shard, shards of equal size."""

from datetime import date

import numpy as np
import pytest

from partitions.user_shards import MAX_USER_ID, ShardRange, plan_new_shards, shard_range
from synthetic_marketplace.generator import MarketplaceSpec, generate


def keys(shards: list[ShardRange]) -> list[str]:
    return [shard.key for shard in shards]


def covering(shards: list[ShardRange], user_id: int) -> list[ShardRange]:
    return [shard for shard in shards if shard.contains(user_id)]


def sizes(shards: list[ShardRange], users) -> list[int]:
    return [sum(1 for user in users if shard.contains(user)) for shard in shards]


def test_keys_round_trip_are_short_and_have_no_commas():
    shards = [ShardRange(0, 199), ShardRange(200, 399), ShardRange(10**12, 10**12 + 5), ShardRange(MAX_USER_ID - 1, MAX_USER_ID)]
    assert [shard_range(shard.key) for shard in shards] == shards
    assert ShardRange(1201, 2400).key == "u1201-2400"
    assert all("," not in key for key in keys(shards))


def test_keys_of_the_earlier_zero_padded_form_keep_working():
    assert shard_range("u0000000000200000000-0000000000399999999") == ShardRange(200_000_000, 399_999_999)


@pytest.mark.parametrize("bad", ["0000000000000000000-0000000000000000199", "u200-199", "u1-99999999999999999999", "user", "u1-2-3"])
def test_anything_else_is_not_a_shard_key(bad):
    with pytest.raises(ValueError):
        shard_range(bad)


def opaque_marketplace_users() -> np.ndarray:
    spec = MarketplaceSpec(users=3_000, items=200, days=10, end_date=date(2026, 6, 30), seed=42)
    return generate(spec).users["user_id"].to_numpy()


@pytest.mark.parametrize(
    "users",
    [opaque_marketplace_users(), np.arange(1, 3_001), np.concatenate([np.arange(1, 2_001), 10**15 + np.arange(1_000)])],
    ids=["default_marketplace", "dense_1_to_n", "two_clusters"],
)
def test_first_shards_hold_equal_numbers_of_users_however_ids_are_spread(users):
    shards = plan_new_shards(users.tolist(), [], users_per_shard=600)
    counts = sizes(shards, users.tolist())
    assert len(shards) == 5
    assert max(counts) <= 1.5 * min(counts)
    assert all(len(covering(shards, user)) == 1 for user in users.tolist())
    assert plan_new_shards(users.tolist(), keys(shards), users_per_shard=600) == []  # idempotent


def test_new_sequential_users_fill_shards_of_the_same_size_instead_of_one_per_day():
    users = list(range(1, 1_001))
    registered = keys(plan_new_shards(users, [], users_per_shard=500))
    assert registered == ["u0-500", "u501-1000"]
    users += list(range(1_001, 1_051))  # a day of new users
    day_one = plan_new_shards(users, registered, users_per_shard=500)
    assert day_one == [ShardRange(1_001, 1_500)]  # room for the next 450 users
    registered += keys(day_one)
    users += list(range(1_051, 1_601))  # more days
    assert plan_new_shards(users, registered, users_per_shard=500) == [ShardRange(1_501, 2_000)]


def test_users_below_or_between_registered_shards_get_shards_inside_the_gap():
    registered = ["u1000-1999", "u5000-5999"]
    new = plan_new_shards([5, 10, 1_500, 3_000, 3_001, 5_500], registered, users_per_shard=1_000)
    assert new == [ShardRange(0, 999), ShardRange(2_000, 4_999)]
    everything = [*map(shard_range, registered), *new]
    assert all(len(covering(everything, user)) == 1 for user in (0, 10, 1_500, 3_000, 4_999, 5_500))


def test_ids_outside_the_non_negative_int64_range_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="user id -5"):
        plan_new_shards([-5], [], users_per_shard=100)


def test_shards_stop_at_the_largest_int64():
    [first] = plan_new_shards([MAX_USER_ID - 10], [], users_per_shard=10)
    [after] = plan_new_shards([MAX_USER_ID - 10, MAX_USER_ID], [first.key], users_per_shard=10)
    assert after.hi == MAX_USER_ID and after.lo == first.hi + 1
