"""The experiment grid: which runs, stages and files a config asks for.

A *run* is one (setting, method, order, seed). A sequential method (``dpo``, ``spo``, ``replay``)
runs every order of its setting; a joint method (``mix``, ``alright``, ``maxright``) trains all
objectives at once and a post-hoc one (``merge``) builds its stages from other runs' adapters: both run
one "order", the setting's objectives in config order, with the same stage count (the kinds are the
method registry's, :mod:`seqpref.methods`). An order is written as the setting's objective names joined by ``-`` in training order (``comply-refuse``), so it can be a path component and a
Snakemake wildcard; objective names therefore may not contain ``-``.
"""

from __future__ import annotations

import itertools

from seqpref import methods

ORDER_SEPARATOR = "-"
JOINT = "joint"  # what a joint stage trains, in place of an objective name
#: roles of an objective that the stage trains (alone, jointly with the others, or replayed): their
#: change is labelled ``trained``, whatever the method's kind
TRAINED_ROLES = ("trained", JOINT, "replayed")


def is_joint(method: str) -> bool:
    """True for the methods that train every objective at every stage."""
    return methods.kind(method) == methods.JOINT


def is_sequential(method: str) -> bool:
    """True for the methods that train one objective per stage, in every order."""
    return methods.kind(method) == methods.SEQUENTIAL


def trains(method: str) -> bool:
    """True for the methods whose stages are trained (and so have training logs); False for post-hoc ones."""
    return methods.kind(method) != methods.POST_HOC


RUN_PATTERN = "{setting}/{method}/{order}/seed{seed}"


def stage_seed(seed: int, stage: int) -> int:
    """The seed of a stage's own random draws (a method's batch plan or sampler): each stage of a run draws
    afresh, reproducibly, from the run's ``seed`` and the stage number (1-based)."""
    return int(seed) * 1000 + int(stage)


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
            raise ValueError(f"setting {setting!r}: order {order} must be a permutation of its objectives {names}")
        result.append(ORDER_SEPARATOR.join(order))
    return result


def method_orders(config: dict, setting: str, method: str) -> list[str]:
    """Orders ``method`` runs in ``setting``: all of :func:`orders` when sequential, else the config order."""
    if not is_sequential(method):
        return [ORDER_SEPARATOR.join(objectives(config, setting))]
    return orders(config, setting)


def optimum_order(config: dict, setting: str, objective: str) -> str:
    """The sequential order whose stage 1 is ``objective``'s single-objective run (maxright's f*):
    the first configured order that starts with it, else it followed by the rest in config order."""
    for order in orders(config, setting):
        if stage_objectives(order)[0] == objective:
            return order
    return ORDER_SEPARATOR.join([objective] + [n for n in objectives(config, setting) if n != objective])


def trained_at(method: str, order: str, stage: int) -> str | None:
    """What ``stage`` trains: None at stage 0, ``joint`` for a joint method, else the objective."""
    if stage == 0:
        return None
    if is_joint(method):
        if not 1 <= stage <= n_stages(order):
            raise ValueError(f"order {order!r} has stages 1..{n_stages(order)}, not {stage}")
        return JOINT
    return stage_objective(order, stage)


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
        for order in method_orders(config, setting, method)
        for seed in config["seeds"]
    ]


def run_dir(run: dict) -> str:
    """Relative path of a run: ``setting/method/order/seed{seed}``."""
    return RUN_PATTERN.format(**run)


def role(objective: str, order: str, stage: int, method: str) -> str:
    """Where ``objective`` stands at ``stage``: base (stage 0), trained, earlier or later; ``joint``
    at every stage of a joint method (all objectives are trained together); ``replayed`` for an earlier
    objective of a method whose stages replay earlier pairs. The roles in :data:`TRAINED_ROLES` are
    those the stage trains."""
    if stage == 0:
        return "base"
    if is_joint(method):
        return JOINT
    position = stage_objectives(order).index(objective) + 1
    if position == stage:
        return "trained"
    if position < stage:
        return "replayed" if methods.get(method).replays_earlier else "earlier"
    return "later"


def own_stage(objective: str, order: str, method: str) -> int:
    """The stage that trains ``objective`` (for backward transfer and quartiles); 1 for a joint
    method, which trains every objective from stage 1 on."""
    return 1 if is_joint(method) else stage_objectives(order).index(objective) + 1
