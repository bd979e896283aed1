"""The method registry: every method seqpref trains, one module each under ``seqpref/methods/``
(in the manner of TRL's ``experimental/<method>/``).

A method module holds its options dataclass, its loss or step and a :class:`~seqpref.methods.base.Method`
record named ``METHOD``; it is registered by one line in :data:`MODULES`. The plan, the workflow's rules
and input functions, the config schema and its check (the ``methods`` list and one ``method_options``
block per method, built from the options dataclass by :func:`seqpref.config.schema`) and the figures
read this registry. Adding a method is its module, its line in :data:`MODULES` and the config that
runs it.
"""

from __future__ import annotations

from importlib import import_module

from seqpref.methods.base import JOINT, KINDS, POST_HOC, SEQUENTIAL, Method

#: the modules under ``seqpref/methods/`` that hold a registered method, one line each, in registry order
#: (the order of legends, tables and the config schema's method list)
MODULES = (
    "dpo",
    "spo",
    "replay",
    "mix",
    "alright",
    "maxright",
    "merge",
)

REGISTRY: dict[str, Method] = {m.name: m for m in (import_module(f"{__name__}.{module}").METHOD for module in MODULES)}

#: the sequential method whose stage 1 is each objective's single-objective run: the f* of methods
#: with ``single_objective = "scores"`` (MAXRIGHT) and the adapters of those with ``"adapters"`` (merge)
#: are read from its runs, ordered to start with that objective (``seqpref.plan.optimum_order``)
SINGLE_OBJECTIVE = "dpo"
assert REGISTRY[SINGLE_OBJECTIVE].kind == SEQUENTIAL

__all__ = [
    "JOINT",
    "KINDS",
    "MODULES",
    "POST_HOC",
    "REGISTRY",
    "SEQUENTIAL",
    "SINGLE_OBJECTIVE",
    "Method",
    "get",
    "kind",
    "names",
    "options",
]


def get(name: str) -> Method:
    """The registered method ``name``; a ``ValueError`` lists the registered ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(REGISTRY)}") from None


def names(*kinds: str) -> list[str]:
    """Registered method names (registry order), of the given kinds only when any are given."""
    return [name for name, m in REGISTRY.items() if not kinds or m.kind in kinds]


def kind(name: str) -> str:
    """``sequential``, ``joint`` or ``post_hoc``."""
    return get(name).kind


def options(name: str, **values):
    """Method ``name``'s options dataclass built from ``values`` (``method_options.<name>``)."""
    return get(name).options(**values)
