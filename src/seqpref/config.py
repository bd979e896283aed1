"""Config checks with messages a user can act on: each names the key and what was expected.

Snakemake's own ``validate`` (which the workflow calls next, to fill in the schema's defaults)
reports a failure as a jsonschema dump of the whole sub-schema; :func:`check_config` runs first and
turns each violation into one line such as
``train.batchsize: unknown key; expected one of batch_size, beta, ...``.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match


class ConfigError(ValueError):
    """The config does not match the schema; the message lists every problem, one per line."""


def _where(error: ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _closest_branch_error(error: ValidationError) -> ValidationError:
    """The most telling error among a oneOf's branches, skipping branches whose ``const`` (e.g.
    ``source: lab`` vs ``source: file``) the value does not even claim to be."""
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0], []).append(sub)
    claimed = [errs for errs in branches.values() if not any(e.validator == "const" for e in errs)]
    return best_match([e for errs in (claimed or branches.values()) for e in errs])


def _describe(error: ValidationError) -> list[str]:
    """One or more readable lines for a jsonschema error."""
    where, value, schema = _where(error), error.instance, error.schema
    kind = error.validator
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        unknown = [k for k in value if k not in schema.get("properties", {})]
        prefix = "" if where == "(top level)" else f"{where}."
        expected = f"expected one of {', '.join(allowed)}" if allowed else "no keys are expected here"
        return [f"{prefix}{key}: unknown key; {expected}" for key in unknown]
    if kind in ("oneOf", "anyOf") and error.context:
        consts = [e for e in error.context if e.validator == "const"]
        branches = {e.schema_path[0] for e in error.context}
        if consts and {e.schema_path[0] for e in consts} == branches:  # no branch's const (e.g. source) matches
            wanted = ", ".join(repr(e.schema["const"]) for e in consts)
            return [f"{_where(consts[0])} = {consts[0].instance!r}: expected one of {wanted}"]
        return _describe(_closest_branch_error(error))
    if kind == "minProperties":
        return [f"{where}: needs at least {schema['minProperties']} entries, got {len(value)}"]
    if kind == "enum":
        return [f"{where} = {value!r}: expected one of {', '.join(map(repr, schema['enum']))}"]
    if kind == "const":
        return [f"{where} = {value!r}: expected {schema['const']!r}"]
    if kind == "type":
        expected = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        hint = ""
        if isinstance(value, str) and {"number", "integer"} & set(expected) and _number_text(value):
            # YAML 1.1 (PyYAML) reads a float without a dot, such as 3e-4, as a string
            hint = f"; YAML reads {value} as text: write it with a dot and a signed exponent, e.g. 3.0e-4"
        return [f"{where} = {value!r}: expected type {schema['type']}{hint}"]
    if kind == "required":
        return [f"{where}: {error.message}"]
    if kind == "pattern" or kind == "propertyNames":
        hint = schema.get("description", "")
        return [f"{where}: {error.message}{'; ' + hint if hint else ''}"]
    return [f"{where} = {value!r}: {error.message}"]


def _number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def config_errors(config: dict, schema: dict) -> list[str]:
    """Every schema violation of ``config`` as one readable line (empty when the config is valid)."""
    validator = Draft202012Validator(schema)
    lines: list[str] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        lines.extend(_describe(error))
    return lines


def method_option_errors(config: dict) -> list[str]:
    """Joint-method options that name objectives or settings the config does not have, and a mix at equal
    pairs whose batch does not divide among a setting's objectives: one line each."""
    settings = config.get("settings", {})
    known = {name for setting in settings.values() for name in setting.get("objectives", {})}
    lines = []
    for method, options in (config.get("method_options") or {}).items():
        for name in (options or {}).get("weights", {}) or {}:
            if name not in known:
                lines.append(f"method_options.{method}.weights.{name}: no setting has objective {name!r}; "
                             f"expected one of {', '.join(sorted(known))}")
        for setting, typed in ((options or {}).get("optimum", {}) or {}).items():
            if setting not in settings:
                lines.append(f"method_options.{method}.optimum.{setting}: unknown setting; expected one of "
                             f"{', '.join(sorted(settings))}")
                continue
            objectives = settings[setting].get("objectives", {})
            for name in typed or {}:
                if name not in objectives:
                    lines.append(f"method_options.{method}.optimum.{setting}.{name}: not an objective of "
                                 f"{setting!r}; expected one of {', '.join(objectives)}")
    mix = (config.get("method_options") or {}).get("mix") or {}
    batch = (config.get("train") or {}).get("batch_size")
    if mix.get("equal_pairs") and "mix" in (config.get("methods") or []) and batch:
        for setting, spec in settings.items():
            n = len(spec.get("objectives", {}))
            if n and batch % n:
                lines.append(f"method_options.mix.equal_pairs: train.batch_size {batch} does not divide among "
                             f"{setting!r}'s {n} objectives; expected a multiple of {n}")
    return lines


def check_config(config: dict, schema_path: str | Path) -> None:
    """Raise :class:`ConfigError` listing every problem of ``config`` against the YAML schema at
    ``schema_path``, and joint-method options that name unknown objectives or settings."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    problems = config_errors(config, schema)
    if not problems:
        problems = method_option_errors(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
