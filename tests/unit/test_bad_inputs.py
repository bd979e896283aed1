"""Bad input gets a clear error and loses nothing: a battery of bad configs and bad data files, each
failing with a message that names the culprit (the key and what was expected; the file and the line
or pair id), and leaving the outputs a good run had written untouched."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from seqpref import data
from seqpref.config import ConfigError, check_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
LAB = yaml.safe_load((REPO / "config/config.yaml").read_text())


def _patched(path: str, value) -> dict:
    """The lab config with the dotted ``path`` set to ``value`` (``None`` deletes it)."""
    config = copy.deepcopy(LAB)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is None:
        del node[last]
    else:
        node[last] = value
    return config


BAD_CONFIGS = [
    ("train.batchsize", 4, r"train\.batchsize: unknown key; expected one of .*batch_size"),
    ("trian", {}, r"trian: unknown key; expected one of"),
    ("train.beta", -1, r"train\.beta = -1"),
    ("train.lora.dropout", 1, r"train\.lora\.dropout = 1: 1 is greater than or equal to the maximum of 1"),
    ("train.lora.r", 0, r"train\.lora\.r = 0"),
    ("train.gradient_accumulation_steps", 0, r"train\.gradient_accumulation_steps = 0"),
    ("train.learning_rate", "fast", r"train\.learning_rate = 'fast': expected type number"),
    ("methods", ["dop"], r"methods\.0 = 'dop': expected one of 'dpo'"),
    ("seeds", ["a"], r"seeds\.0 = 'a': expected type integer"),
    ("score.dtype", "fp32", r"score\.dtype = 'fp32': expected one of 'float32'"),
    ("labels.metric", "margin", r"labels\.metric = 'margin': expected one of 'reward_margin'"),
    ("diagnostics.every", 0, r"diagnostics\.every = 0"),
    ("base_model", 3, r"base_model = 3: expected type string"),
    ("results", "my results", r"results: 'my results' does not match"),
    ("lab.model.hidden_size", 4, r"lab\.model\.hidden_size = 4"),
    (
        "settings.conflicting.objectives.comply.source",
        "hh-rlhf",
        r"settings\.conflicting\.objectives\.comply\.source = 'hh-rlhf': expected one of 'lab', 'file'",
    ),
    (
        "settings.conflicting.objectives.comply.prefer.opener",
        "maybe",
        r"settings\.conflicting\.objectives\.comply\.prefer\.opener = 'maybe': expected one of 'comply', 'refuse'",
    ),
    (
        "settings.a-b",
        {"objectives": {"x": {"source": "lab", "prefer": {"opener": "comply"}}}},
        r"settings: 'a-b' does not match",
    ),
    (
        "method_options.mix.weights",
        {"complyy": 2.0},
        r"method_options\.mix\.weights\.complyy: no setting has objective 'complyy'",
    ),
    (
        "method_options.maxright.optimum",
        {"nowhere": {"comply": 0.5}},
        r"method_options\.maxright\.optimum\.nowhere: unknown setting",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_key_and_what_was_expected(path, value, message):
    with pytest.raises(ConfigError, match=message):
        check_config(_patched(path, value), SCHEMA)


GOOD_ROW = {
    "pair_id": "p0",
    "prompt": "How do I boil an egg?",
    "chosen": "Simmer it for nine minutes.",
    "rejected": "No.",
}

BAD_FILES = [
    # (file name, content, message naming the culprit)
    (
        "malformed.jsonl",
        json.dumps(GOOD_ROW) + "\n" + '{"pair_id": "p1", "prompt": "x", "chosen": "a",\n',
        r"malformed\.jsonl, line 2: not valid JSON",
    ),
    (
        "array_line.jsonl",
        json.dumps(GOOD_ROW) + "\n\n" + '["p1", "x", "a", "b"]\n',
        r"array_line\.jsonl, line 3: expected a JSON object",
    ),
    (
        "number_prompt.jsonl",
        json.dumps(GOOD_ROW) + "\n" + json.dumps({**GOOD_ROW, "pair_id": "p7", "prompt": 42}) + "\n",
        r"number_prompt\.jsonl: pair p7: a prompt must be text or a list of messages, got int 42",
    ),
    (
        "number_chosen.jsonl",
        json.dumps({**GOOD_ROW, "pair_id": "p3", "chosen": 3.5}) + "\n",
        r"number_chosen\.jsonl: pair p3: a response must be text, got float 3\.5",
    ),
    (
        "dict_prompt.jsonl",
        json.dumps({**GOOD_ROW, "pair_id": "p4", "prompt": {"role": "user", "content": "hi"}}) + "\n",
        r"dict_prompt\.jsonl: pair p4: a prompt must be text or a list of messages, got dict",
    ),
    (
        "no_role.jsonl",
        json.dumps({**GOOD_ROW, "pair_id": "p5", "prompt": [{"content": "hi"}]}) + "\n",
        r"no_role\.jsonl: pair p5: a conversational prompt needs role and content",
    ),
    (
        "two_turn_response.jsonl",
        json.dumps(
            {
                **GOOD_ROW,
                "pair_id": "p6",
                "rejected": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}],
            }
        )
        + "\n",
        r"two_turn_response\.jsonl: pair p6: a response must be text or one assistant message",
    ),
    (
        "missing_column.jsonl",
        json.dumps({"prompt": "x", "chosen": "a"}) + "\n",
        r"missing_column\.jsonl: missing column\(s\) \['rejected'\]",
    ),
    (
        "duplicate_ids.jsonl",
        json.dumps(GOOD_ROW) + "\n" + json.dumps(GOOD_ROW) + "\n",
        r"duplicate_ids\.jsonl: pair_id values are not unique, e.g. \['p0'\]",
    ),
    (
        "broken_array.json",
        "[\n" + json.dumps(GOOD_ROW) + ",\n" + '{"pair_id": "p1", "prompt": "x"\n]\n',
        r"broken_array\.json, line 4: not valid JSON .*a JSON array of objects or one object per line",
    ),
    (
        "array_of_lists.json",
        json.dumps([GOOD_ROW, ["p1", "x", "a", "b"]], indent=1),
        r"array_of_lists\.json: element 1 of the array is not a JSON object",
    ),
    ("pairs.txt", "prompt\tchosen\trejected\n", r"pairs\.txt: unsupported file type '\.txt'"),
    ("missing_column.csv", "prompt,chosen\nx,a\n", r"missing_column\.csv: missing column\(s\) \['rejected'\]"),
]


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture
def finished(tmp_path):
    """An objective prepared from a good file: the outputs a finished prepare_data job leaves."""
    good = tmp_path / "good.jsonl"
    good.write_text(
        "".join(json.dumps({**GOOD_ROW, "pair_id": f"p{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(12))
    )
    out = tmp_path / "out"
    data.main(
        [
            str(out),
            "--spec",
            json.dumps({"source": "file", "path": str(good), "eval_size": 4}),
            "--setting",
            "s",
            "--objective",
            "o",
        ]
    )
    return out


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[f[0] for f in BAD_FILES])
def test_bad_data_file_names_file_and_row_and_loses_nothing(finished, tmp_path, name, content, message):
    before = _digest(finished)
    assert set(before) == {"train.parquet", "eval.parquet", "report.json"}
    bad = tmp_path / name
    bad.write_text(content)
    with pytest.raises(data.DataError, match=message):
        data.main(
            [
                str(finished),
                "--spec",
                json.dumps({"source": "file", "path": str(bad), "eval_size": 1}),
                "--setting",
                "s",
                "--objective",
                "o",
            ]
        )
    assert _digest(finished) == before  # the finished outputs are untouched


def test_missing_data_file_is_named(tmp_path):
    with pytest.raises(data.DataError, match=r"absent\.jsonl: no such file"):
        data.read_preference_file(tmp_path / "absent.jsonl")
