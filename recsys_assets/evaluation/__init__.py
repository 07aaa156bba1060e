"""Evaluation layer: classic baselines and offline metrics against held-out purchases."""
