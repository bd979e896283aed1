"""One home per default: the workflow's defaults live in the schema, and every options dataclass that
the workflow feeds either has the schema's defaults or (the lab model) leaves them to the dataclass
alone. So `python -m seqpref.<step>` run by hand does what the DAG does."""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import yaml

from seqpref import methods
from seqpref.aggregate import LabelOptions
from seqpref.base_model import LabModelOptions
from seqpref.diagnostics import DiagnosticsOptions
from seqpref.logps import LogpsOptions
from seqpref.score import ScoreOptions
from seqpref.train import LoraOptions, TrainOptions, dpo_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def block(*path: str) -> dict:
    """The schema's ``properties`` at a dotted config path."""
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
    return node


def default(*path: str):
    return block(*path)["default"]


def dataclass_defaults(cls) -> dict:
    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


#: TrainOptions fields that are top-level config keys (shared with scoring), not `train` keys
TOP_LEVEL = ("dtype", "attn_implementation", "share_prompt")

#: dataclass field -> the config path whose schema default it must equal
SOURCES = {
    TrainOptions: {**{f.name: ("train", f.name) for f in fields(TrainOptions) if f.name not in TOP_LEVEL + ("lora",)},
                   **{name: (name,) for name in TOP_LEVEL}},
    LoraOptions: {f.name: ("train", "lora", f.name) for f in fields(LoraOptions)},
    LabelOptions: {f.name: ("labels", f.name) for f in fields(LabelOptions) if f.name != "seed"},
    DiagnosticsOptions: {f.name: ("diagnostics", f.name) for f in fields(DiagnosticsOptions)},
    LogpsOptions: {"max_length": ("train", "max_length"), "batch_size": ("score", "batch_size"),
                   "dtype": ("score", "dtype"), "attn_implementation": ("attn_implementation",),
                   "share_prompt": ("share_prompt",)},
    ScoreOptions: {"max_length": ("train", "max_length"), "batch_size": ("score", "batch_size"),
                   "dtype": ("score", "dtype"), "attn_implementation": ("attn_implementation",), "beta": ("train", "beta"),
                   "share_prompt": ("share_prompt",)},
}


@pytest.mark.parametrize("cls", list(SOURCES), ids=lambda c: c.__name__)
def test_options_dataclass_defaults_equal_the_schema(cls):
    defaults = dataclass_defaults(cls)
    mapped = SOURCES[cls]
    unmapped = set(defaults) - set(mapped) - {"lora", "seed"}
    assert not unmapped, f"{cls.__name__} fields with a default but no schema key: {unmapped}"
    wrong = {name: (defaults[name], default(*path)) for name, path in mapped.items() if defaults[name] != default(*path)}
    assert not wrong, f"{cls.__name__} (dataclass, schema): {wrong}"


def test_train_block_has_no_key_the_options_do_not_read():
    """Every `train` key reaches TrainOptions (train_reference, once read by nothing, is gone)."""
    keys = set(block("train")["properties"])
    assert keys == {f.name for f in fields(TrainOptions)} - set(TOP_LEVEL)
    assert "train_reference" not in keys


@pytest.mark.parametrize("name", methods.names())
def test_method_options_defaults_equal_the_schema(name):
    method = methods.get(name)
    schema = block("method_options", name).get("properties", {})
    assert set(schema) == {f.name for f in fields(method.options)}, name
    for key, value in method.option_defaults().items():
        assert schema[key].get("default", {} if isinstance(value, dict) else MISSING) == value, (name, key)


def test_the_lab_model_defaults_have_one_home_the_dataclass():
    props = block("lab", "model")["properties"]
    assert set(props) == {f.name for f in fields(LabModelOptions)}
    assert not [k for k, v in props.items() if "default" in v], "lab.model defaults belong to LabModelOptions alone"


def test_dpo_config_is_built_from_the_marked_options_without_copies():
    """Every option marked for DPOConfig reaches it under its name: a non-default value of each one
    shows up in the DPOConfig (a field copied by hand and forgotten would keep TRL's default)."""
    changed = {"beta": 0.37, "learning_rate": 0.0123, "epochs": 2.5, "batch_size": 3, "gradient_accumulation_steps": 5,
               "max_length": 77, "lr_scheduler_type": "cosine", "optim": "sgd", "warmup_steps": 2.0,
               "weight_decay": 0.01, "max_grad_norm": 0.3, "logging_steps": 4, "activation_checkpointing": True}
    options = TrainOptions(**changed)
    marked = options.dpo_config_fields()
    assert len(marked) == len(changed)
    config = dpo_config(options, {"seed": 3}, "/tmp/unused")
    for name, value in marked.items():
        assert getattr(config, name) == value, name
    assert config.num_train_epochs == 2.5 and config.per_device_train_batch_size == 3


def test_figure_option_defaults_equal_the_schema():
    """A figure's ``draw`` keyword defaults (what `python -m seqpref.figures.<name>` uses by hand) are
    the schema's ``figures.<name>`` defaults, and every schema option is a keyword of ``draw``."""
    import importlib
    import inspect

    figures = block("figures")["properties"]
    for name, schema in figures.items():
        draw = importlib.import_module(f"seqpref.figures.{name}").draw
        parameters = list(inspect.signature(draw).parameters.values())[1:]  # after the table
        keywords = {p.name: p.default for p in parameters}
        props = schema.get("properties", {})
        assert set(props) == set(keywords), name
        for key, spec in props.items():
            value = list(keywords[key]) if isinstance(keywords[key], tuple) else keywords[key]  # a tuple default is a list in YAML
            assert spec.get("default") == value, (name, key, spec.get("default"), value)
