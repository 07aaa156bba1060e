"""Partition definitions shared by the asset layers."""

from partitions.daily import daily_partitions

__all__ = ["daily_partitions"]
