"""The method registry: every method seqpref trains, one module each under ``seqpref/methods/``
(in the manner of TRL's ``experimental/<method>/``).

A method module holds its options dataclass, its loss or step and a :class:`~seqpref.methods.base.Method`
record; it is registered by one line below. The plan, the workflow's rules and input functions, the
config check and the figures read this registry (kind, options, colour); ``tests/unit/test_methods.py``
checks that the schema's method list and option blocks agree with it. Adding a method is its module,
one line here, its block in ``workflow/schemas/config.schema.yaml`` and its config.
"""

from __future__ import annotations

from seqpref.methods import alright, dpo, maxright, merge, mix, replay, spo
from seqpref.methods.base import JOINT, KINDS, POST_HOC, SEQUENTIAL, Method

REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        dpo.METHOD,
        spo.METHOD,
        replay.METHOD,
        mix.METHOD,
        alright.METHOD,
        maxright.METHOD,
        merge.METHOD,
    )
}

__all__ = ["JOINT", "KINDS", "POST_HOC", "REGISTRY", "SEQUENTIAL", "Method", "get", "kind", "names", "options"]


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
