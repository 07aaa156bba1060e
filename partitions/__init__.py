"""Partition definitions shared by the asset layers."""

from partitions.daily import daily_partitions
from partitions.user_shards import user_shards

__all__ = ["daily_partitions", "user_shards"]
