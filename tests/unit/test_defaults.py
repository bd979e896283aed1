"""One home per default: each option's default is its options dataclass's, and the config check fills
the config with it (seqpref.config.schema builds the schema from the YAML and the dataclasses); a
schema file that repeats a default, or names a key its dataclass lacks, fails every parse. So
`python -m seqpref.<step>` run by hand does what the DAG does."""

from __future__ import annotations

from dataclasses import MISSING, asdict, fields
from pathlib import Path

import pytest
import yaml

from seqpref import methods
from seqpref.config import SECTIONS, SchemaError, check_config, field_default, schema
from seqpref.dpo_trainer import dpo_config
from seqpref.options import DiagnosticsOptions, LabModelOptions, LogpsOptions, ScoreOptions, TrainOptions

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "workflow/schemas/config.schema.yaml"
SETTINGS = yaml.safe_load((REPO / "config/config.yaml").read_text())["settings"]


def at(node: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        node = node[key]
    return node


@pytest.fixture(scope="module")
def filled() -> dict:
    """A config that sets nothing but its settings, with the defaults the check fills in."""
    return check_config({"settings": SETTINGS}, SCHEMA_FILE)


@pytest.mark.parametrize("section", list(SECTIONS), ids=lambda s: ".".join(s) or "top")
def test_the_check_fills_each_section_with_its_dataclass_defaults(filled, section):
    cls, keys = SECTIONS[section]
    owned = {f.name: f for f in fields(cls)}
    expected = {key: field_default(owned[key]) for key in keys if field_default(owned[key]) is not MISSING}
    assert {key: at(filled, section)[key] for key in expected} == expected


def test_a_changed_dataclass_default_is_the_new_default(monkeypatch):
    """The defaults are read from the dataclass when the config is checked, not copied into the schema."""
    every = next(f for f in fields(DiagnosticsOptions) if f.name == "every")
    monkeypatch.setattr(every, "default", 7)
    assert check_config({"settings": SETTINGS}, SCHEMA_FILE)["diagnostics"]["every"] == 7


def test_the_readers_of_other_sections_keys_share_their_defaults(filled):
    """LogpsOptions and ScoreOptions read keys whose defaults TrainOptions and ``score`` own."""
    sources = {
        "max_length": ("train", "max_length"),
        "batch_size": ("score", "batch_size"),
        "dtype": ("score", "dtype"),
        "attn_implementation": ("attn_implementation",),
        "share_prompt": ("share_prompt",),
        "beta": ("train", "beta"),
    }
    for cls in (LogpsOptions, ScoreOptions):
        for name, value in asdict(cls()).items():
            assert at(filled, sources[name]) == value, (cls.__name__, name)


def test_every_method_block_is_filled_with_its_dataclass_defaults(filled):
    for name in methods.names():
        assert filled["method_options"][name] == asdict(methods.options(name)), name


def _schema_file(tmp_path, edit) -> Path:
    data = yaml.safe_load(SCHEMA_FILE.read_text())
    edit(data["properties"])
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_schema_file_that_repeats_a_dataclass_default_fails(tmp_path):
    path = _schema_file(tmp_path, lambda p: p["train"]["properties"]["beta"].update(default=0.1))
    with pytest.raises(SchemaError, match=r"train\.beta: the schema repeats a default; TrainOptions\.beta owns it"):
        schema(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p["train"]["properties"].update(train_reference={"type": "string"}),
            r"only in the schema \['train_reference'\]",
        ),
        (lambda p: p["diagnostics"]["properties"].pop("every"), r"only in the dataclass \['every'\]"),
        (lambda p: p["lab"]["properties"]["model"]["properties"].pop("steps"), r"LabModelOptions's fields differ"),
    ],
)
def test_a_schema_file_whose_keys_differ_from_the_dataclass_fails(tmp_path, edit, message):
    with pytest.raises(SchemaError, match=message):
        schema(_schema_file(tmp_path, edit))


def test_the_lab_model_defaults_have_one_home_the_dataclass(filled):
    props = schema(SCHEMA_FILE)["properties"]["lab"]["properties"]["model"]["properties"]
    assert set(props) == {f.name for f in fields(LabModelOptions)}
    assert not [k for k, v in props.items() if "default" in v], "lab.model defaults belong to LabModelOptions alone"
    assert filled["lab"]["model"] == {}


def test_dpo_config_is_built_from_the_marked_options_without_copies():
    """Every option marked for DPOConfig reaches it under its name: a non-default value of each one
    shows up in the DPOConfig (a field copied by hand and forgotten would keep TRL's default)."""
    changed = {
        "beta": 0.37,
        "learning_rate": 0.0123,
        "epochs": 2.5,
        "batch_size": 3,
        "gradient_accumulation_steps": 5,
        "max_length": 77,
        "lr_scheduler_type": "cosine",
        "optim": "sgd",
        "warmup_steps": 2.0,
        "weight_decay": 0.01,
        "max_grad_norm": 0.3,
        "logging_steps": 4,
        "activation_checkpointing": True,
    }
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

    figures = schema(SCHEMA_FILE)["properties"]["figures"]["properties"]
    for name, spec in figures.items():
        draw = importlib.import_module(f"seqpref.figures.{name}").draw
        parameters = list(inspect.signature(draw).parameters.values())[1:]  # after the table
        keywords = {p.name: p.default for p in parameters}
        props = spec.get("properties", {})
        assert set(props) == set(keywords), name
        for key, option in props.items():
            value = (
                list(keywords[key]) if isinstance(keywords[key], tuple) else keywords[key]
            )  # a tuple default is a list in YAML
            assert option.get("default") == value, (name, key, option.get("default"), value)
