"""Config checks at parse time: a bad value is named with what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seqpref.config import ConfigError, check_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def _lab() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("dropout", [1, 1.5, -0.1])
def test_lora_dropout_outside_0_1_is_rejected_at_parse_time(dropout):
    config = _lab()
    config["train"]["lora"]["dropout"] = dropout
    with pytest.raises(ConfigError, match=rf"train\.lora\.dropout = {dropout}"):
        check_config(config, SCHEMA)


def test_lora_dropout_just_below_1_and_0_pass():
    for dropout in (0.0, 0.05, 0.99):
        config = _lab()
        config["train"]["lora"]["dropout"] = dropout
        check_config(config, SCHEMA)


@pytest.mark.parametrize(
    "config_file", ["config.yaml", "real.yaml", "paper.yaml", "public.yaml"]
)  # methods.yaml is an overlay
def test_shipped_configs_pass_the_check(config_file):
    check_config(yaml.safe_load((REPO / "config" / config_file).read_text()), SCHEMA)


def test_score_dtype_is_checked():
    config = _lab()
    config["score"] = {"dtype": "fp32"}
    with pytest.raises(ConfigError, match=r"score\.dtype = 'fp32': expected one of 'float32'"):
        check_config(config, SCHEMA)


def test_mix_at_equal_pairs_needs_a_batch_that_divides_among_the_objectives():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["method_options"]["mix"] = {"equal_pairs": True}
    config["train"]["batch_size"] = 15  # the lab's settings have two objectives
    with pytest.raises(ConfigError, match=r"mix\.equal_pairs: train\.batch_size 15 does not divide.*multiple of 2"):
        check_config(config, SCHEMA)
    config["train"]["batch_size"] = 16
    check_config(config, SCHEMA)


def test_a_number_yaml_reads_as_text_gets_a_hint():
    config = yaml.safe_load(
        (REPO / "config/config.yaml").read_text().replace("learning_rate: 0.001", "learning_rate: 1e-3", 1)
    )
    assert config["train"]["learning_rate"] == "1e-3"  # PyYAML (YAML 1.1): no dot, so not a float
    with pytest.raises(
        ConfigError,
        match=r"train\.learning_rate = '1e-3': expected type number; YAML reads 1e-3 "
        r"as text: write it with a dot",
    ):
        check_config(config, SCHEMA)
