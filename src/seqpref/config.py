"""The config's schema and its check, with messages a user can act on: each names the key and what was
expected.

The schema is built at check time (:func:`schema`), one home per fact:
``workflow/schemas/config.schema.yaml`` holds the structure, the types, the constraints and the
descriptions; the code fills in what it owns. Each dataclass-backed key takes its default from its
options dataclass (:data:`SECTIONS`, :mod:`seqpref.options`); the ``methods`` list and
``method_options`` come from the registry (:mod:`seqpref.methods`), one block per method built from
its options dataclass (field names, JSON types from the annotations, defaults, the ``help`` and the
``schema`` constraints of each field's metadata; no other key). A schema file that names a key its
dataclass lacks, lacks one the dataclass has, or repeats a default the dataclass owns fails every
parse (:class:`SchemaError`).

:func:`check_config` turns each violation into one line such as
``train.batchsize: unknown key; expected one of batch_size, beta, ...`` (jsonschema alone reports a
dump of the whole sub-schema), fills in the defaults the way snakemake's ``validate`` does, then checks
what one key says about another: method options naming objectives or settings, method options their
dataclass rejects, and figure options naming a method the study does not run.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from seqpref import methods
from seqpref.options import (
    DiagnosticsOptions,
    LabelOptions,
    LabModelOptions,
    LogpsOptions,
    LoraOptions,
    TrainOptions,
)


class ConfigError(ValueError):
    """The config does not match the schema; the message lists every problem, one per line."""


class SchemaError(ValueError):
    """The schema file and the options dataclasses disagree (a key on one side only, or a default the
    schema repeats); the message names the key and the dataclass."""


#: TrainOptions fields that are top-level config keys (shared with scoring and the base log-probs)
TOP_LEVEL = ("dtype", "attn_implementation", "share_prompt")

#: config section (a path of keys) -> (the options dataclass that owns its defaults, its keys there).
#: The section's schema properties must be exactly these keys (the top level: include them).
SECTIONS: dict[tuple[str, ...], tuple[type, tuple[str, ...]]] = {
    (): (TrainOptions, TOP_LEVEL),
    ("train",): (TrainOptions, tuple(f.name for f in fields(TrainOptions) if f.name not in TOP_LEVEL)),
    ("train", "lora"): (LoraOptions, tuple(f.name for f in fields(LoraOptions))),
    ("score",): (LogpsOptions, ("batch_size", "dtype")),
    ("labels",): (LabelOptions, tuple(f.name for f in fields(LabelOptions))),
    ("diagnostics",): (DiagnosticsOptions, tuple(f.name for f in fields(DiagnosticsOptions))),
}

#: sections whose keys are their dataclass's fields but whose defaults are left to the dataclass (the
#: config passes only what it sets: lab.model's defaults are LabModelOptions' alone)
KEYS_ONLY: dict[tuple[str, ...], type] = {("lab", "model"): LabModelOptions}

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def field_default(f):
    """The default of dataclass field ``f`` as the config writes it (a tuple as a list), or ``MISSING``;
    a default that is itself options (a nested section, e.g. ``train.lora``) is ``MISSING`` too."""
    if f.default is not MISSING:
        value = f.default
    elif f.default_factory is not MISSING:
        value = f.default_factory()
    else:
        return MISSING
    if is_dataclass(value):
        return MISSING
    return list(value) if isinstance(value, tuple) else value


def json_type(hint) -> dict:
    """The JSON schema of a Python type annotation: ``float | None`` -> ``{"type": ["number", "null"]}``,
    ``dict[str, float]`` -> an object of numbers, ``list[float]`` -> an array of numbers. ``TypeError``
    for a type the config cannot hold."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [json_type(arg) for arg in args]
        if all(set(part) == {"type"} for part in parts):
            return {"type": [part["type"] for part in parts]}
        return {"anyOf": parts}
    if hint is list or origin is list:
        return {"type": "array", **({"items": json_type(args[0])} if args else {})}
    if hint is dict or origin is dict:
        return {"type": "object", **({"additionalProperties": json_type(args[1])} if args else {})}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    raise TypeError(f"no JSON schema type for {hint!r}")


def method_schema(method: methods.Method) -> dict:
    """The ``method_options.<name>`` block of ``method``, from its options dataclass: one property per
    field (its JSON type, default, ``help`` as description, and the field metadata's ``schema``
    constraints), no other key, ``{}`` by default."""
    hints = typing.get_type_hints(method.options)
    properties = {}
    for f in fields(method.options):
        spec = json_type(hints[f.name])
        if "help" in f.metadata:
            spec["description"] = f.metadata["help"]
        spec.update(f.metadata.get("schema", {}))
        default = field_default(f)
        if default is not MISSING:
            spec["default"] = default
        properties[f.name] = spec
    return {
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "description": method.summary,
        "properties": properties,
    }


def _node(schema: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        schema = schema["properties"][key]
    return schema


def _check_keys(schema: dict, path: tuple[str, ...], cls: type, keys: tuple[str, ...]) -> None:
    """Raise :class:`SchemaError` unless the schema's properties at ``path`` are ``keys`` (at the top
    level: include them), naming ``cls``."""
    where = ".".join(path) or "(top level)"
    properties = _node(schema, path).get("properties", {})
    missing, extra = set(keys) - set(properties), set(properties) - set(keys)
    if missing or (path and extra):
        raise SchemaError(
            f"{where}: the schema's keys and {cls.__name__}'s fields differ: only in the dataclass "
            f"{sorted(missing)}, only in the schema {sorted(extra) if path else []}"
        )


def schema(path: str | Path) -> dict:
    """The config schema the workflow checks against: the YAML at ``path`` with each dataclass-backed
    key's default (:data:`SECTIONS`), the ``methods`` list and ``method_options`` (the registry) filled
    in. Raises :class:`SchemaError` where the YAML and a dataclass disagree on a section's keys, or the
    YAML gives a default a dataclass owns."""
    built = yaml.safe_load(Path(path).read_text())
    for section, (cls, keys) in SECTIONS.items():
        _check_keys(built, section, cls, keys)
        properties = _node(built, section)["properties"]
        owned = {f.name: f for f in fields(cls)}
        for key in keys:
            default = field_default(owned[key])
            if default is MISSING:
                continue
            if "default" in properties[key]:
                raise SchemaError(
                    f"{'.'.join(section + (key,))}: the schema repeats a default; {cls.__name__}.{key} owns it"
                )
            properties[key]["default"] = default
    for section, cls in KEYS_ONLY.items():
        _check_keys(built, section, cls, tuple(f.name for f in fields(cls)))
    listing = "; ".join(f"{name}: {m.summary}" for name, m in methods.REGISTRY.items())
    methods_node = built["properties"]["methods"]
    methods_node["items"] = {"enum": methods.names()}
    methods_node["description"] = f"{methods_node.get('description', '').strip()} Registered: {listing}"
    built["properties"]["method_options"]["properties"] = {
        name: method_schema(method) for name, method in methods.REGISTRY.items()
    }
    return built


def _filling_defaults(validator_class):
    """``validator_class`` that sets each missing property to a copy of its schema default while it
    validates (jsonschema's recipe, as snakemake's ``validate`` uses it)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, spec in properties.items():
                if "default" in spec:
                    instance.setdefault(name, copy.deepcopy(spec["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    return validators.extend(validator_class, {"properties": properties_with_defaults})


def with_defaults(config: dict, schema: dict) -> dict:
    """A copy of ``config`` (valid against ``schema``) with every missing key that has a schema default
    set to it, nested sections included."""
    filled = copy.deepcopy(config)
    _filling_defaults(Draft202012Validator)(schema).validate(filled)
    return filled


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
                lines.append(
                    f"method_options.{method}.weights.{name}: no setting has objective {name!r}; "
                    f"expected one of {', '.join(sorted(known))}"
                )
        for setting, typed in ((options or {}).get("optimum", {}) or {}).items():
            if setting not in settings:
                lines.append(
                    f"method_options.{method}.optimum.{setting}: unknown setting; expected one of "
                    f"{', '.join(sorted(settings))}"
                )
                continue
            objectives = settings[setting].get("objectives", {})
            for name in typed or {}:
                if name not in objectives:
                    lines.append(
                        f"method_options.{method}.optimum.{setting}.{name}: not an objective of "
                        f"{setting!r}; expected one of {', '.join(objectives)}"
                    )
    mix = (config.get("method_options") or {}).get("mix") or {}
    batch = (config.get("train") or {}).get("batch_size")
    if mix.get("equal_pairs") and "mix" in (config.get("methods") or []) and batch:
        for setting, spec in settings.items():
            n = len(spec.get("objectives", {}))
            if n and batch % n:
                lines.append(
                    f"method_options.mix.equal_pairs: train.batch_size {batch} does not divide among "
                    f"{setting!r}'s {n} objectives; expected a multiple of {n}"
                )
    return lines


def method_dataclass_errors(config: dict) -> list[str]:
    """Method options their options dataclass rejects (its ``__post_init__``, e.g. a merge combination
    that needs a density), as each configured method's runs of each setting would see them: one line
    each, naming the block."""
    lines = []
    for name in config.get("methods", []):
        method = methods.get(name)
        block = (config.get("method_options") or {}).get(name) or {}
        for setting, spec in config.get("settings", {}).items():
            try:
                method.options(**method.setting_options(block, setting, list(spec.get("objectives", {}))))
            except (TypeError, ValueError) as error:
                lines.append(f"method_options.{name}: {error}")
                break
    return lines


def figure_method_errors(config: dict) -> list[str]:
    """Figure options that name a method the study does not run (``figures.<figure>.method`` not in
    ``methods``): one line each, naming the key and the methods configured."""
    configured = config.get("methods", [])
    return [
        f"figures.{figure}.method = {options['method']!r}: not a method of this study; expected one of "
        f"{', '.join(configured)} (methods), or null for the default"
        for figure, options in (config.get("figures") or {}).items()
        if (options or {}).get("method") is not None and options["method"] not in configured
    ]


def check_config(config: dict, schema_path: str | Path) -> dict:
    """Check ``config`` against the schema built from the YAML at ``schema_path`` (:func:`schema`),
    then what its keys say about each other (:func:`method_option_errors`,
    :func:`method_dataclass_errors`, :func:`figure_method_errors`). Returns a copy of ``config`` with
    the defaults filled in (``config`` itself is left as it is); raises :class:`ConfigError` listing
    every problem, one per line."""
    built = schema(schema_path)
    problems = config_errors(config, built)
    filled = {} if problems else with_defaults(config, built)
    if not problems:
        problems = method_option_errors(filled) + method_dataclass_errors(filled) + figure_method_errors(filled)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return filled
