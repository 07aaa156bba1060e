"""Evaluation layer: classic baselines and offline metrics against held-out purchases."""

GROUP = "evaluation"
OWNERS = ["team:ml"]
