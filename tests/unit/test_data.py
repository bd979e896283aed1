"""seqpref.data: validation, reading files, prompt-level splits and the prepare step."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from seqpref import data, tables

ROWS = [
    # pair_id, prompt, chosen, rejected
    ("ok1", "p1", "good", "bad"),
    ("noprompt", "", "good", "bad"),
    ("nochosen", "p2", "", "bad"),
    ("norejected", "p3", "good", ""),
    ("ws_prompt", "  \t", "good", "bad"),
    ("ws_chosen", "p4", " \n ", "bad"),
    ("ws_rejected", "p5", "good", "   "),
    ("same", "p6", "same text", "same text"),
    ("ok2", "p7", "yes", "no"),
    ("none_rejected", "p8", "good", None),
    ("both_empty", "p9", "", ""),
    ("again_ok1", "p1", "good", "bad"),  # the same pair as ok1
]


def _frame(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["pair_id", "prompt", "chosen", "rejected"])


def test_validate_pairs_drops_and_reports_each_reason():
    kept, report = data.validate_pairs(_frame())
    assert kept["pair_id"].tolist() == ["ok1", "ok2"]
    assert kept.index.tolist() == [0, 1]
    assert report["rows_in"] == 12
    assert report["rows_kept"] == 2
    dropped = report["dropped"]
    assert set(dropped) == {"empty_prompt", "empty_chosen", "empty_rejected", "identical", "duplicate"}
    assert dropped["empty_prompt"] == {"count": 2, "ids": ["noprompt", "ws_prompt"]}
    # both_empty is counted once, under the first reason that applies
    assert dropped["empty_chosen"] == {"count": 3, "ids": ["nochosen", "ws_chosen", "both_empty"]}
    assert dropped["empty_rejected"] == {"count": 3, "ids": ["norejected", "ws_rejected", "none_rejected"]}
    assert dropped["identical"] == {"count": 1, "ids": ["same"]}
    assert dropped["duplicate"] == {"count": 1, "ids": ["again_ok1"]}
    total = sum(v["count"] for v in dropped.values())
    assert total + report["rows_kept"] == report["rows_in"]
    json.dumps(report)  # the report is JSON-serialisable


def test_validate_pairs_keeps_clean_frame_untouched():
    frame = _frame([("a", "p", "x", "y"), ("b", "q", "x ", "x")])  # differ only by whitespace: kept
    kept, report = data.validate_pairs(frame)
    assert kept["pair_id"].tolist() == ["a", "b"]
    assert report["rows_kept"] == 2
    assert all(v == {"count": 0, "ids": []} for v in report["dropped"].values())


def _write_inputs(tmp_path):
    frame = pd.DataFrame(
        {
            "pair_id": ["a", "b", "c"],
            "prompt": ["p one", "p two", "p three"],
            "chosen": ["yes", "sure", "ok"],
            "rejected": ["no", "nope", "never"],
            "lang": ["en", "de", "fr"],
        }
    )
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in frame.to_dict(orient="records")) + "\n")
    csv = tmp_path / "pairs.csv"
    frame.to_csv(csv, index=False)
    parquet = tmp_path / "pairs.parquet"
    frame.to_parquet(parquet, index=False)
    return frame, {"jsonl": jsonl, "csv": csv, "parquet": parquet}


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_read_preference_file(tmp_path, kind):
    frame, paths = _write_inputs(tmp_path)
    got = data.read_preference_file(paths[kind])
    assert list(got.columns) == ["pair_id", "prompt", "chosen", "rejected", "source"]
    assert got["pair_id"].tolist() == ["a", "b", "c"]
    assert got["prompt"].tolist() == frame["prompt"].tolist()
    assert got["chosen"].tolist() == frame["chosen"].tolist()
    assert got["rejected"].tolist() == frame["rejected"].tolist()
    # columns beyond the required ones are kept as JSON in source
    assert [json.loads(s) for s in got["source"]] == [{"lang": "en"}, {"lang": "de"}, {"lang": "fr"}]


def test_read_preference_file_without_pair_id_numbers_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "d", "chosen": "e", "rejected": "f"}\n'
    )
    got = data.read_preference_file(path)
    assert got["pair_id"].tolist() == ["row000000", "row000001"]
    assert got["source"].tolist() == ["{}", "{}"]


def test_read_preference_file_numeric_pair_ids_become_strings(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"pair_id": [10, 11], "prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e", "f"]}).to_parquet(
        path
    )
    got = data.read_preference_file(path)
    assert got["pair_id"].tolist() == ["10", "11"]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_missing_rejected_column_names_file_and_column(tmp_path, kind):
    frame = pd.DataFrame({"prompt": ["p"], "chosen": ["c"]})
    path = tmp_path / f"broken.{kind}"
    if kind == "jsonl":
        path.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    elif kind == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    with pytest.raises(data.DataError) as info:
        data.read_preference_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "rejected" in message
    listed = message.replace(str(path), "").split(";")[0]
    assert "'rejected'" in listed and "'chosen'" not in listed  # only the missing one is listed


def test_unsupported_suffix_and_missing_file(tmp_path):
    with pytest.raises(data.DataError, match="unsupported"):
        data.read_preference_file(tmp_path / "pairs.txt")
    with pytest.raises(data.DataError, match="no such file"):
        data.read_preference_file(tmp_path / "absent.jsonl")


def test_duplicate_pair_ids_raise(tmp_path):
    path = tmp_path / "dup.csv"
    pd.DataFrame({"pair_id": ["x", "x"], "prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e", "f"]}).to_csv(
        path, index=False
    )
    with pytest.raises(data.DataError, match="x"):
        data.read_preference_file(path)


def _many_prompts(n_prompts=40, per_prompt=(1, 2, 3)) -> pd.DataFrame:
    rows = []
    for p in range(n_prompts):
        for j in range(per_prompt[p % len(per_prompt)]):
            rows.append((f"id{p}-{j}", f"prompt {p}", f"c{p}{j}", f"r{p}{j}"))
    return _frame(rows)


def test_split_by_prompt_no_prompt_in_both():
    frame = _many_prompts()
    train, evaluation = data.split_by_prompt(frame, eval_size=15, seed=0)
    assert set(train["prompt"]).isdisjoint(set(evaluation["prompt"]))
    assert len(train) + len(evaluation) == len(frame)
    assert sorted(train["pair_id"].tolist() + evaluation["pair_id"].tolist()) == sorted(frame["pair_id"])
    # eval holds at least eval_size pairs, and stops soon after (at most one prompt's worth more)
    assert 15 <= len(evaluation) < 15 + 3
    # deterministic given the seed; another seed holds out other prompts
    again = data.split_by_prompt(frame, eval_size=15, seed=0)[1]
    assert again["pair_id"].tolist() == evaluation["pair_id"].tolist()
    other = data.split_by_prompt(frame, eval_size=15, seed=1)[1]
    assert set(other["prompt"]) != set(evaluation["prompt"])


def test_split_by_prompt_too_large_raises():
    frame = _many_prompts(n_prompts=3)
    with pytest.raises(data.DataError):
        data.split_by_prompt(frame, eval_size=100, seed=0)


def test_prepare_lab_spec(tmp_path):
    spec = {"source": "lab", "prefer": {"opener": "comply"}, "train_size": 60, "eval_size": 20}
    out = tmp_path / "prep"
    report = data.prepare(spec, out, lab_seed=0, setting="conflicting", objective="comply")
    train = pd.read_parquet(out / "train.parquet")
    evaluation = pd.read_parquet(out / "eval.parquet")
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))

    assert pq.read_schema(out / "train.parquet").names == tables.PAIRS.names
    assert pq.read_schema(out / "eval.parquet").names == tables.PAIRS.names
    assert on_disk["setting"] == "conflicting" and on_disk["objective"] == "comply"
    assert on_disk["rows_read"] == on_disk["pairs_formed"] == 80  # train_size + eval_size lab pairs
    dropped = sum(v["count"] for v in on_disk["dropped"].values())
    assert on_disk["rows_kept"] == 80 - dropped
    assert on_disk["train_pairs"] == len(train)
    assert on_disk["eval_pairs"] == len(evaluation)
    assert len(evaluation) >= 20
    assert len(train) <= 60
    assert len(train) + len(evaluation) + on_disk["unused_pairs"] == on_disk["rows_kept"]
    assert on_disk["tokens"] is None  # no tokenizer given
    assert set(train["prompt"]).isdisjoint(set(evaluation["prompt"]))
    assert set(train["pair_id"]).isdisjoint(set(evaluation["pair_id"]))
    assert all(pid.startswith("comply-") for pid in np.concatenate([train["pair_id"], evaluation["pair_id"]]))
    record = tables.read_provenance(out / "eval.parquet")
    assert record["step"] == "prepare_data"
    assert record["options"]["objective"] == "comply"

    # same inputs, same data
    again = data.prepare(spec, tmp_path / "again", lab_seed=0, setting="conflicting", objective="comply")
    assert again == report
    assert pd.read_parquet(tmp_path / "again" / "eval.parquet").equals(evaluation)


def test_prepare_file_spec_reports_dropped_rows(tmp_path):
    rows = [
        {"pair_id": f"id{i}", "prompt": f"prompt {i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(30)
    ]
    rows[3]["chosen"] = ""
    rows[7]["rejected"] = rows[7]["chosen"]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = {"source": "file", "path": str(path), "train_size": 100, "eval_size": 10}
    out = tmp_path / "prep"
    data.prepare(spec, out, lab_seed=0, setting="s", objective="mine")
    report = json.loads((out / "report.json").read_text())
    assert report["pairs_formed"] == 30 and report["rows_kept"] == 28
    assert report["dropped"]["empty_chosen"] == {"count": 1, "ids": ["id3"]}
    assert report["dropped"]["identical"] == {"count": 1, "ids": ["id7"]}
    assert report["train_pairs"] + report["eval_pairs"] == 28
    ids = set(pd.read_parquet(out / "train.parquet")["pair_id"]) | set(pd.read_parquet(out / "eval.parquet")["pair_id"])
    assert "id3" not in ids and "id7" not in ids and len(ids) == 28


def test_prepare_unknown_source_raises(tmp_path):
    with pytest.raises(data.DataError, match="unknown objective source"):
        data.prepare({"source": "web", "eval_size": 1}, tmp_path, lab_seed=0, setting="s", objective="o")


def test_objective_defaults_depend_on_the_source():
    lab_spec = data.with_defaults({"source": "lab", "prefer": {"opener": "comply"}})
    assert lab_spec["train_size"] == 256 and lab_spec["eval_size"] == 128 and lab_spec["label_noise"] == 0.0
    file_spec = data.with_defaults({"source": "file", "path": "x.jsonl", "eval_size": 10})
    assert file_spec == {"source": "file", "path": "x.jsonl", "eval_size": 10, "train_size": None}
    with pytest.raises(data.DataError, match="unknown objective source"):
        data.with_defaults({"source": "hub"})


def test_config_schema_accepts_a_file_objective_beside_lab_ones(tmp_path):
    """The config check fills schema defaults; defaults inside the objectives' oneOf branches
    used to leak lab keys into file objectives and reject them."""
    from pathlib import Path

    import yaml

    from seqpref.config import check_config

    repo = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((repo / "config/config.yaml").read_text())
    config["settings"]["mine"] = {
        "objectives": {"a": {"source": "file", "path": "a.jsonl"}, "b": {"source": "lab", "prefer": {"closer": "warm"}}}
    }
    filled = check_config(config, repo / "workflow/schemas/config.schema.yaml")
    assert filled["settings"]["mine"]["objectives"]["a"] == {"source": "file", "path": "a.jsonl"}


def test_a_json_file_may_hold_an_array_of_pairs(tmp_path):
    """A ``.json`` file is JSON lines or one JSON array of objects (an array spanning lines was reported
    as "line 1: not valid JSON")."""
    rows = [
        {"pair_id": f"p{i}", "prompt": f"Question {i}?", "chosen": "Yes, like this.", "rejected": "No."}
        for i in range(3)
    ]
    (tmp_path / "array.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "lines.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    array, lines = (data.read_json(tmp_path / name) for name in ("array.json", "lines.json"))
    pd.testing.assert_frame_equal(array, lines)
    assert array["pair_id"].tolist() == ["p0", "p1", "p2"]
