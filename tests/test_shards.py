"""User-range shards: keys sort like their ranges, never change, and cover every user once."""

import random

import pytest

from partitions.user_shards import DIGITS, MAX_USER_ID, ShardRange, plan_new_shards, shard_range


def keys(shards: list[ShardRange]) -> list[str]:
    return [shard.key for shard in shards]


def covering(shards: list[ShardRange], user_id: int) -> list[ShardRange]:
    return [shard for shard in shards if shard.contains(user_id)]


def test_keys_round_trip_sort_like_ranges_and_have_no_commas():
    shards = [ShardRange(0, 199), ShardRange(200, 399), ShardRange(10**12, 10**12 + 5), ShardRange(MAX_USER_ID - 1, MAX_USER_ID)]
    assert [shard_range(shard.key) for shard in shards] == shards
    assert sorted(keys(shards)) == keys(shards)
    assert all("," not in key and len(key) == 2 * DIGITS + 2 for key in keys(shards))
    assert ShardRange(0, 199).key == "u0000000000000000000-0000000000000000199"


@pytest.mark.parametrize("bad", ["0000000000000000000-0000000000000000199", "u12-34", "u0000000000000000200-0000000000000000199", "user"])
def test_anything_else_is_not_a_shard_key(bad):
    with pytest.raises(ValueError):
        shard_range(bad)


def test_users_fall_into_grid_cells():
    assert plan_new_shards([5, 150, 250, 990], [], width=100) == [
        ShardRange(0, 99), ShardRange(100, 199), ShardRange(200, 299), ShardRange(900, 999)
    ]


def test_every_user_is_covered_exactly_once_and_planning_is_idempotent():
    rng = random.Random(3)
    users = [rng.randrange(1_000_000, 1_000_000_000) for _ in range(2_000)]
    shards = plan_new_shards(users, [], width=200_000_000)
    assert all(len(covering(shards, user)) == 1 for user in users)
    assert plan_new_shards(users, keys(shards), width=200_000_000) == []


def test_new_users_get_new_shards_and_existing_keys_never_change():
    first = plan_new_shards([10, 20], [], width=100)
    assert first == [ShardRange(0, 99)]
    grown = plan_new_shards([10, 20, 99, 150, 100_000], keys(first), width=100)
    assert grown == [ShardRange(100, 199), ShardRange(100_000, 100_099)]


def test_a_changed_width_never_overlaps_registered_shards():
    registered = keys(plan_new_shards([150], [], width=100))  # u..100-..199
    new = plan_new_shards([50, 150, 250, 950], registered, width=1_000)
    assert new == [ShardRange(0, 99), ShardRange(200, 999)]
    everything = [*map(shard_range, registered), *new]
    assert all(len(covering(everything, user)) == 1 for user in (0, 50, 150, 250, 999))


def test_ids_outside_the_non_negative_int64_range_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="user id -5"):
        plan_new_shards([-5], [], width=100)


def test_the_last_cell_stops_at_the_largest_int64():
    assert plan_new_shards([MAX_USER_ID], [], width=10**18) == [ShardRange(9 * 10**18, MAX_USER_ID)]
