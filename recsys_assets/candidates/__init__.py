"""Candidates layer: item/user vectors, interest clusters, similar items and users (see assets.py)."""
