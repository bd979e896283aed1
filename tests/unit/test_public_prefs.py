"""The public preference files in resources/public_prefs: the stored upstream bytes, each loader on
the real upstream rows (expected counts derived here from the raw files, independently of the
loaders), and build.py (checksum guard, byte-identical output equal to the committed study files)."""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seqpref import config, data, loaders

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "resources" / "public_prefs"
SOURCES = json.loads((FOLDER / "SOURCES.json").read_text(encoding="utf-8"))["sources"]
BY_LOADER = {entry["study"]["loader"]: entry for entry in SOURCES}
HH, PANDALM, LLAMAFACTORY = (
    BY_LOADER[name] for name in ("normalise_hh_rlhf", "normalise_pandalm", "normalise_llamafactory_dpo")
)
ASSISTANT = "\n\nAssistant:"


def _raw_json(entry: dict) -> list[dict]:
    return json.loads((FOLDER / entry["file"]).read_text(encoding="utf-8"))


def _normalised(entry: dict):
    rows = loaders.read_rows(str(FOLDER / entry["file"]))
    return rows, *getattr(loaders, entry["study"]["loader"])(rows, prefix=entry["study"]["prefix"])


def _counts(dropped: dict) -> dict:
    return {reason: len(ids) for reason, ids in dropped.items() if ids}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- stored upstream files ---------------------------------------------------------------------


@pytest.mark.parametrize("entry", SOURCES, ids=lambda e: e["repository"])
def test_stored_files_are_the_upstream_blobs(entry):
    """The stored bytes are git's blob at the recorded commit (its sha1 recomputed here), the
    recorded sha256 is theirs, and the licence file is there."""
    content = (FOLDER / entry["file"]).read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() == entry["git_blob"]
    assert hashlib.sha256(content).hexdigest() == entry["sha256"] and len(content) == entry["bytes"]
    assert len(entry["commit"]) == 40 and int(entry["commit"], 16) >= 0
    assert entry["file"] == f"upstream/{entry['repository']}/{entry['upstream_path']}"
    licence = (FOLDER / entry["licence_file"]).read_bytes()
    assert {"MIT": b"MIT License", "Apache-2.0": b"Apache License"}[entry["licence"]] in licence
    assert hashlib.sha256(licence).hexdigest() == entry["licence_sha256"]


# ---- Anthropic hh-rlhf harmless-base test ------------------------------------------------------


def test_hh_harmless_counts_from_the_raw_transcripts():
    """prompt_mismatch: the two transcripts differ before their last assistant turn; empty: a last
    response that is blank. Computed on the raw text, not with the loader's splitter."""
    with gzip.open(FOLDER / HH["file"], "rt", encoding="utf-8") as handle:
        raw = [json.loads(line) for line in handle]
    mismatch = [
        i
        for i, r in enumerate(raw)
        if r["chosen"][: r["chosen"].rfind(ASSISTANT)] != r["rejected"][: r["rejected"].rfind(ASSISTANT)]
    ]
    empty = [
        i
        for i, r in enumerate(raw)
        if i not in mismatch
        and any(not r[k][r[k].rfind(ASSISTANT) + len(ASSISTANT) :].strip() for k in ("chosen", "rejected"))
    ]
    rows, pairs, dropped = _normalised(HH)
    assert len(rows) == len(raw) == HH["rows"]
    assert dropped["prompt_mismatch"] == [f"row{i}" for i in mismatch]
    assert dropped["empty"] == [f"row{i}" for i in empty]
    assert _counts(dropped) == {k: v for k, v in {"prompt_mismatch": len(mismatch), "empty": len(empty)}.items() if v}
    assert len(pairs) == len(raw) - len(mismatch) - len(empty)


def test_hh_multi_turn_row_is_split_into_messages_in_order():
    """A real multi-turn row: messages alternate user / assistant in transcript order and end with
    the user; rendering them back with the response gives the raw transcript again."""
    with gzip.open(FOLDER / HH["file"], "rt", encoding="utf-8") as handle:
        raw = [json.loads(line) for line in handle]
    _, pairs, _ = _normalised(HH)
    by_row = {json.loads(p["source"])["row"]: p for p in pairs.to_dict("records")}
    row = next(i for i, r in enumerate(raw) if r["chosen"].count("\n\nHuman:") >= 3 and i in by_row)
    pair = by_row[row]
    turns = raw[row]["chosen"].count("\n\nHuman:") + raw[row]["chosen"].count(ASSISTANT) - 1
    assert [m["role"] for m in pair["prompt"]] == ["user", "assistant"] * (turns // 2) + ["user"]
    speaker = {"user": "Human", "assistant": "Assistant"}
    for key in ("chosen", "rejected"):
        rendered = "".join(f"\n\n{speaker[m['role']]}: {m['content']}" for m in pair["prompt"])
        assert (rendered + f"{ASSISTANT} {pair[key]}").split() == raw[row][key].split()
    assert pair["prompt"][0]["content"] == raw[row]["chosen"].split("\n\nHuman: ")[1].split(ASSISTANT)[0].strip()


# ---- PandaLM test set --------------------------------------------------------------------------


def _pandalm_expected(raw: list[dict]) -> tuple[collections.Counter, dict, int]:
    """Majority labels and drops computed from the raw rows: (label counts, drops by reason, pairs)."""
    labels, drops, seen = collections.Counter(), collections.Counter(), set()
    for row in raw:
        votes = collections.Counter(row[f"annotator{k}"] for k in (1, 2, 3))
        label, count = votes.most_common(1)[0]
        labels[label if count >= 2 else None] += 1
        if count < 2:
            drops["no_majority"] += 1
        elif label == 0:
            drops["tie"] += 1
        elif not (isinstance(row["response1"], str) and isinstance(row["response2"], str)):
            drops["not_text"] += 1
        elif not row["response1"].strip() or not row["response2"].strip():
            drops["empty"] += 1
        else:
            prompt = row["instruction"] + (f"\n\n{row['input']}" if row["input"].strip() else "")
            key = (prompt, row[f"response{label}"], row[f"response{3 - label}"])
            drops["duplicate"] += key in seen
            seen.add(key)
    return labels, {k: v for k, v in drops.items() if v}, len(seen)


def test_pandalm_majority_counts_from_the_raw_json():
    raw = _raw_json(PANDALM)
    labels, drops, expected_pairs = _pandalm_expected(raw)
    assert labels == {0: 105, 1: 422, 2: 472}  # the label distribution PandaLM's README publishes
    rows, pairs, dropped = _normalised(PANDALM)
    assert len(rows) == len(raw) == PANDALM["rows"]
    assert _counts(dropped) == drops
    assert len(pairs) == expected_pairs == len(raw) - sum(drops.values())
    assert len(pairs) + drops["empty"] + drops["not_text"] + drops["duplicate"] == labels[1] + labels[2]


def test_pandalm_chosen_is_the_majority_response_and_prompt_joins_the_input():
    raw = {row["idx"]: row for row in _raw_json(PANDALM)}
    _, pairs, _ = _normalised(PANDALM)
    with_input = without_input = 0
    for pair in pairs.to_dict("records"):
        source = json.loads(pair["source"])
        row = raw[source["idx"]]
        votes = [row[f"annotator{k}"] for k in (1, 2, 3)]
        assert source["votes"] == votes and votes.count(source["chosen_response"]) >= 2
        label = source["chosen_response"]
        assert (pair["chosen"], pair["rejected"]) == (row[f"response{label}"], row[f"response{3 - label}"])
        if row["input"]:
            assert pair["prompt"] == f"{row['instruction']}\n\n{row['input']}"
            with_input += 1
        else:
            assert pair["prompt"] == row["instruction"]
            without_input += 1
    assert with_input and without_input


# ---- LLaMA-Factory dpo_en_demo -----------------------------------------------------------------


def test_llamafactory_counts_from_the_raw_json():
    raw = _raw_json(LLAMAFACTORY)
    keys = [json.dumps([r["conversations"], r["chosen"], r["rejected"]], sort_keys=True) for r in raw]
    rows, pairs, dropped = _normalised(LLAMAFACTORY)
    assert len(rows) == len(raw) == LLAMAFACTORY["rows"]
    assert len(pairs) == len(set(keys))
    assert _counts(dropped) == {"duplicate": len(keys) - len(set(keys))}


def test_llamafactory_conversation_order_and_system_turn():
    raw = _raw_json(LLAMAFACTORY)
    _, pairs, _ = _normalised(LLAMAFACTORY)
    by_row = {json.loads(p["source"])["row"]: p for p in pairs.to_dict("records")}
    role = {"system": "system", "human": "user", "gpt": "assistant"}
    multi = next(i for i, r in enumerate(raw) if len(r["conversations"]) >= 5 and i in by_row)
    system = next(i for i, r in enumerate(raw) if r["conversations"][0]["from"] == "system" and i in by_row)
    for i in (multi, system):
        turns = raw[i]["conversations"]
        assert by_row[i]["prompt"] == [{"role": role[t["from"]], "content": t["value"]} for t in turns]
        assert (by_row[i]["chosen"], by_row[i]["rejected"]) == (raw[i]["chosen"]["value"], raw[i]["rejected"]["value"])
    assert [m["role"] for m in by_row[multi]["prompt"]][:3] == ["user", "assistant", "user"]
    assert by_row[system]["prompt"][0]["role"] == "system"


# ---- study files and build.py ------------------------------------------------------------------


@pytest.mark.parametrize("entry", SOURCES, ids=lambda e: e["study"]["file"])
def test_study_file_is_the_loaders_pairs_with_unique_ids(entry):
    study = _read_jsonl(FOLDER / entry["study"]["file"])
    _, pairs, dropped = _normalised(entry)
    ids = [row["pair_id"] for row in study]
    assert len(ids) == len(set(ids)) == entry["study"]["pairs"]
    assert all(i.startswith(entry["study"]["prefix"] + "-") for i in ids)
    assert study == pairs[["pair_id", "prompt", "chosen", "rejected"]].to_dict("records")
    assert {k: len(v) for k, v in dropped.items()} == entry["study"]["dropped"]
    kept, report = data.validate_pairs(data.as_pairs(data.read_preference_file(FOLDER / entry["study"]["file"])))
    assert len(kept) == len(study), report["dropped"]


def _build(folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(folder / "build.py")], capture_output=True, text=True, env=env, timeout=300
    )


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "public_prefs"
    shutil.copytree(FOLDER, copy)
    return copy


def test_build_refuses_a_modified_upstream_file_and_writes_nothing(tmp_path):
    copy = _copy(tmp_path)
    for entry in SOURCES:
        (copy / entry["study"]["file"]).unlink()
    target = copy / PANDALM["file"]
    target.write_bytes(target.read_bytes().replace(b'"annotator1": 2', b'"annotator1": 1', 1))
    result = _build(copy)
    assert result.returncode != 0
    assert PANDALM["file"] in result.stderr and "sha256" in result.stderr
    assert HH["file"] not in result.stderr and LLAMAFACTORY["file"] not in result.stderr
    assert not any((copy / entry["study"]["file"]).exists() for entry in SOURCES)


def test_build_output_is_byte_identical_and_equals_the_committed_files(tmp_path):
    copy = _copy(tmp_path)
    for entry in SOURCES:
        (copy / entry["study"]["file"]).unlink()
    outputs = []
    for _ in range(2):
        result = _build(copy)
        assert result.returncode == 0, result.stderr
        outputs.append({e["study"]["file"]: (copy / e["study"]["file"]).read_bytes() for e in SOURCES})
    committed = {e["study"]["file"]: (FOLDER / e["study"]["file"]).read_bytes() for e in SOURCES}
    assert outputs[0] == outputs[1] == committed


# ---- registration as workflow sources ----------------------------------------------------------


def test_every_schema_source_has_defaults_and_the_new_ones_validate():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    consts = {
        d["properties"]["source"]["const"] for d in schema["$defs"].values() if "source" in d.get("properties", {})
    }
    assert consts == set(data.OBJECTIVE_DEFAULTS) and set(data.LOADER_OPTIONS) <= consts
    objectives = {"a": {"source": "pandalm", "eval_size": 100}, "b": {"source": "llamafactory_dpo", "eval_size": 50}}
    assert config.config_errors({"settings": {"s": {"objectives": objectives}}}, schema) == []
    for source in ("pandalm", "llamafactory_dpo"):
        assert (ROOT / data.with_defaults({"source": source})["dataset"]).exists()


@pytest.mark.parametrize("entry", [PANDALM, LLAMAFACTORY], ids=lambda e: e["study"]["loader"])
def test_prepare_reads_the_stored_upstream_file_as_a_source(tmp_path, entry):
    source = {"normalise_pandalm": "pandalm", "normalise_llamafactory_dpo": "llamafactory_dpo"}[
        entry["study"]["loader"]
    ]
    spec = {"source": source, "dataset": str(FOLDER / entry["file"]), "eval_size": 40, "train_size": 20}
    report = data.prepare(spec, tmp_path / "out", lab_seed=0, setting="s", objective="o")
    assert report["rows_read"] == entry["rows"] and report["pairs_formed"] == entry["study"]["pairs"]
    assert {k: v["count"] for k, v in report["dropped"].items() if k in entry["study"]["dropped"]} == entry["study"][
        "dropped"
    ]
    assert report["train_pairs"] == 20 and report["eval_pairs"] >= 40
