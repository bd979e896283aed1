"""The synthetic grid the figure tests draw: settings, orders and seeds."""

from __future__ import annotations

SETTINGS = {"conflicting": ["comply", "refuse"], "compatible": ["comply", "polite"]}
SEEDS = [0, 1]
N_STAGES = 2


def orders(objectives: list[str]) -> list[str]:
    """Both orders of two objectives, as order strings."""
    return ["-".join(objectives), "-".join(reversed(objectives))]


def runs():
    """(setting, order, seed) of every synthetic run."""
    for setting, objectives in SETTINGS.items():
        for order in orders(objectives):
            for seed in SEEDS:
                yield setting, order, seed
