"""The experiment grid: which runs, stages and files a config asks for.

A *run* is one (setting, method, order, seed). An order is written as the setting's objective
names joined by ``-`` in training order (``comply-refuse``), so it can be a path component and a
Snakemake wildcard; objective names therefore may not contain ``-``.
"""

from __future__ import annotations

import itertools

ORDER_SEPARATOR = "-"
RUN_PATTERN = "{setting}/{method}/{order}/seed{seed}"


def objectives(config: dict, setting: str) -> list[str]:
    """Objective names of ``setting`` in config order."""
    return list(config["settings"][setting]["objectives"])


def orders(config: dict, setting: str) -> list[str]:
    """Stage orders of ``setting``: every permutation when ``orders`` is ``all``, else the listed ones."""
    names = objectives(config, setting)
    listed = config["settings"][setting].get("orders", "all")
    if listed == "all":
        return [ORDER_SEPARATOR.join(p) for p in itertools.permutations(names)]
    result = []
    for order in listed:
        if sorted(order) != sorted(names):
            raise ValueError(
                f"setting {setting!r}: order {order} must be a permutation of its objectives {names}"
            )
        result.append(ORDER_SEPARATOR.join(order))
    return result


def stage_objectives(order: str) -> list[str]:
    """Objectives in training order: element k−1 is trained at stage k."""
    return order.split(ORDER_SEPARATOR)


def stage_objective(order: str, stage: int) -> str:
    """The objective trained at ``stage`` (≥ 1) of ``order``."""
    names = stage_objectives(order)
    if not 1 <= stage <= len(names):
        raise ValueError(f"order {order!r} has stages 1..{len(names)}, not {stage}")
    return names[stage - 1]


def n_stages(order: str) -> int:
    """Number of training stages of ``order``."""
    return len(stage_objectives(order))


def runs(config: dict) -> list[dict]:
    """Every (setting, method, order, seed) the config asks for, as dicts, in a stable order."""
    return [
        {"setting": setting, "method": method, "order": order, "seed": int(seed)}
        for setting in config["settings"]
        for method in config["methods"]
        for order in orders(config, setting)
        for seed in config["seeds"]
    ]


def run_dir(run: dict) -> str:
    """Relative path of a run: ``setting/method/order/seed{seed}``."""
    return RUN_PATTERN.format(**run)


def role(objective: str, order: str, stage: int) -> str:
    """Where ``objective`` stands at ``stage``: base (stage 0), trained, earlier or later."""
    if stage == 0:
        return "base"
    position = stage_objectives(order).index(objective) + 1
    if position == stage:
        return "trained"
    return "earlier" if position < stage else "later"
