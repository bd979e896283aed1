"""seqpref.data with the public-dataset sources, conversational prompts, and the token-length report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from seqpref import base_model, data, loaders, tables
from seqpref.tokenization import render_transcript

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"

# a Llama-3-like chat template in miniature: role header, content, end of turn
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    """A byte-level BPE tokenizer trained here (no hub): one token per byte at worst."""
    texts = [f"the quick brown fox {i} jumps over the lazy dog" for i in range(50)]
    return base_model.train_tokenizer(texts, vocab_size=300)


def _spec(source, name, **options):
    return {"source": source, "dataset": str(FIXTURES / f"{name}.jsonl"), "eval_size": 1, **options}


def _prepare(tmp_path, spec, **kwargs):
    out = tmp_path / spec["source"]
    report = data.prepare(spec, out, lab_seed=0, setting="s", objective="o", **kwargs)
    return report, pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "eval.parquet")


@pytest.mark.parametrize(
    "source, normalise, options",
    [
        ("hh_rlhf", loaders.normalise_hh_rlhf, {}),
        ("helpsteer2", loaders.normalise_helpsteer2, {"attribute": "helpfulness"}),
        ("pku_saferlhf", loaders.normalise_pku_saferlhf, {"preference": "safer"}),
        ("ultrafeedback", loaders.normalise_ultrafeedback, {"aspect": "helpfulness"}),
    ],
)
def test_prepare_public_source_from_local_rows(tmp_path, source, normalise, options):
    """Every pair the loader forms lands in train or eval, its drops are in the report by reason."""
    report, train, evaluation = _prepare(tmp_path, _spec(source, source, **options))
    rows = loaders.read_rows(str(FIXTURES / f"{source}.jsonl"))
    pairs, dropped = normalise(rows, **options)
    assert report["rows_read"] == len(rows)
    assert report["pairs_formed"] == len(pairs) == report["rows_kept"]
    assert sorted(train["pair_id"].tolist() + evaluation["pair_id"].tolist()) == sorted(pairs["pair_id"])
    for reason, ids in dropped.items():
        assert report["dropped"][reason] == {"count": len(ids), "ids": ids}
    assert set(train["prompt"]).isdisjoint(evaluation["prompt"])
    assert report["source"]["source"] == source and report["source"]["revision"] is None
    for frame in (train, evaluation):
        by_id = pairs.set_index("pair_id")
        for row in frame.itertuples():
            expected = by_id.loc[row.pair_id]
            assert (row.chosen, row.rejected, row.source) == (expected.chosen, expected.rejected, expected.source)


def test_hh_rlhf_conversations_are_stored_as_messages_and_transcript(tmp_path):
    _, train, evaluation = _prepare(tmp_path, _spec("hh_rlhf", "hh_rlhf"))
    pairs, _ = loaders.normalise_hh_rlhf(loaders.read_rows(str(FIXTURES / "hh_rlhf.jsonl")))
    stored = pd.concat([train, evaluation]).set_index("pair_id")
    multi_turn = [p for p in pairs.itertuples() if len(p.prompt) > 1]
    assert multi_turn, "the fixture has a multi-turn conversation"
    for pair in pairs.itertuples():
        row = stored.loc[pair.pair_id]
        assert json.loads(row.prompt_messages) == pair.prompt
        assert row.prompt == render_transcript(pair.prompt)
        assert row.prompt.startswith("\n\nHuman: ") and row.prompt.endswith("\n\nAssistant:")


def test_public_source_missing_column_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"prompt": "p", "response": "r", "helpfulness": 3}) + "\n")
    with pytest.raises(data.DataError, match=r"lacks column\(s\) \['chosen', 'rejected'\] that source 'hh_rlhf' reads"):
        data.prepare({"source": "hh_rlhf", "dataset": str(path)}, tmp_path / "o", 0, "s", "o")


def test_source_defaults_pin_nothing_and_name_the_public_ids():
    spec = data.with_defaults({"source": "hh_rlhf", "data_dir": "helpful-base"})
    assert spec["dataset"] == "Anthropic/hh-rlhf" and spec["revision"] is None and spec["split"] == "train"
    assert data.with_defaults({"source": "helpsteer2"})["attribute"] == "helpfulness"
    assert data.with_defaults({"source": "pku_saferlhf"})["preference"] == "safer"
    assert data.with_defaults({"source": "ultrafeedback"})["pairing"] == "best_vs_worst"


def test_read_rows_passes_id_revision_subset_and_data_dir_to_load_dataset(monkeypatch):
    """A dataset id goes to datasets.load_dataset with the pinned revision (no hub here: it is recorded)."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.Dataset.from_dict({"chosen": ["a"], "rejected": ["b"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = loaders.read_rows("Anthropic/hh-rlhf", split="test", revision="abc123", data_dir="harmless-base")
    assert calls == [("Anthropic/hh-rlhf", None, {"data_dir": "harmless-base", "split": "test", "revision": "abc123"})]
    assert rows.to_dict("records") == [{"chosen": "a", "rejected": "b"}]


def test_as_pairs_conversational_file_rows():
    frame = pd.DataFrame(
        {
            "pair_id": ["a", "b"],
            "prompt": [
                [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "Grüße?"},
                ],
                "plain",
            ],
            "chosen": [[{"role": "assistant", "content": "yes"}], "c"],
            "rejected": ["no", "r"],
            "source": ["{}", "{}"],
        }
    )
    pairs = data.as_pairs(frame)
    assert list(pairs.columns) == tables.PAIRS.names
    assert pairs.loc[0, "prompt"] == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: Grüße?\n\nAssistant:"
    assert json.loads(pairs.loc[0, "prompt_messages"])[2] == {"role": "user", "content": "Grüße?"}
    assert pairs.loc[0, "chosen"] == "yes" and pd.isna(pairs.loc[1, "prompt_messages"])
    bad = frame.assign(prompt=[[{"content": "no role"}], "plain"])
    with pytest.raises(data.DataError, match="pair a: a conversational prompt needs role and content"):
        data.as_pairs(bad)
    with pytest.raises(data.DataError, match="pair b: a response must be text or one assistant message"):
        data.as_pairs(frame.assign(rejected=["no", [{"role": "user", "content": "x"}]]))


def test_empty_message_in_a_conversation_is_an_empty_prompt():
    frame = data.as_pairs(
        pd.DataFrame(
            {
                "pair_id": ["a", "b"],
                "prompt": [[{"role": "user", "content": "  "}], [{"role": "user", "content": "q"}]],
                "chosen": ["x", "x"],
                "rejected": ["y", "y"],
            }
        )
    )
    kept, report = data.validate_pairs(frame)
    assert kept["pair_id"].tolist() == ["b"] and report["dropped"]["empty_prompt"]["ids"] == ["a"]


def _length_file(tmp_path, tokenizer):
    """40 pairs of distinct prompts: one whose prompt alone is 80+ tokens, three with long responses."""
    rows = [
        {"pair_id": f"p{i:02d}", "prompt": f"question {i} ?", "chosen": " yes", "rejected": " no"} for i in range(40)
    ]
    rows[5]["prompt"] = "fox " * 80
    for i in (7, 8, 30):
        rows[i]["chosen"] = " dog" * 60
    path = tmp_path / "lengths.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_over_length_pairs_dropped_and_truncation_reported(tmp_path, tokenizer):
    path = _length_file(tmp_path, tokenizer)
    spec = {"source": "file", "path": str(path), "eval_size": 10}
    report, train, evaluation = _prepare(tmp_path, spec, tokenizer=tokenizer, max_length=48)
    assert report["dropped"]["over_length"] == {"count": 1, "ids": ["p05"]}
    assert report["rows_kept"] == 39 == report["train_pairs"] + report["eval_pairs"]
    assert "p05" not in set(train["pair_id"]) | set(evaluation["pair_id"])
    tokens = report["tokens"]
    assert tokens["max_length"] == 48
    cut = sorted(tokens["train"]["truncated"]["ids"] + tokens["eval"]["truncated"]["ids"])
    assert cut == ["p07", "p08", "p30"]
    lengths = data.token_lengths(tokenizer, pd.concat([train, evaluation]))
    assert sorted(lengths.loc[lengths["longest"] > 48, "pair_id"]) == cut
    assert tokens["train"]["pairs"] == len(train) and tokens["eval"]["pairs"] == len(evaluation)
    assert tokens["train"]["chosen"]["max"] == lengths.set_index("pair_id").loc[train["pair_id"], "chosen"].max()
    assert tokens["train"]["truncated"]["share"] == round(len(tokens["train"]["truncated"]["ids"]) / len(train), 4)
    # without max_length nothing is over-length and nothing is called truncated
    report, _, _ = _prepare(tmp_path / "nolimit", spec, tokenizer=tokenizer, max_length=None)
    assert report["dropped"]["over_length"]["count"] == 0 and "truncated" not in report["tokens"]["train"]


def test_token_lengths_follow_the_chat_template(tmp_path, tokenizer):
    """With a chat template every prompt is rendered as a user turn: more tokens than the plain text."""
    pairs = data.as_pairs(
        pd.DataFrame({"pair_id": ["a"], "prompt": ["question ?"], "chosen": [" yes"], "rejected": [" no"]})
    )
    plain = data.token_lengths(tokenizer, pairs)
    templated = tokenizer.__class__.from_pretrained(_saved(tokenizer, tmp_path))
    templated.chat_template = CHAT_TEMPLATE
    chat = data.token_lengths(templated, pairs)
    header = len(templated("<|user|>")["input_ids"]) - 1  # minus <s>
    assert chat.loc[0, "prompt"] > plain.loc[0, "prompt"] + header - 1


def _saved(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    return str(tmp_path / "tok")


def test_train_size_takes_a_seeded_sample_in_file_order(tmp_path, tokenizer):
    rows = [{"pair_id": f"p{i:03d}", "prompt": f"q {i}", "chosen": "a", "rejected": "b"} for i in range(200)]
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = {"source": "file", "path": str(path), "eval_size": 20, "train_size": 50}
    report, train, _ = _prepare(tmp_path, spec, tokenizer=tokenizer, max_length=64)
    assert len(train) == 50 == report["train_pairs"]
    ids = train["pair_id"].tolist()
    assert ids == sorted(ids)  # file order kept
    assert ids != [f"p{i:03d}" for i in range(50)] and int(ids[-1][1:]) > 100  # not the first 50 rows
    assert report["unused_pairs"] == report["rows_kept"] - 50 - report["eval_pairs"]
    again, train_again, _ = _prepare(tmp_path / "again", spec, tokenizer=tokenizer, max_length=64)
    assert train_again["pair_id"].tolist() == ids
    # the tokenizer only measures: without it, the same sample
    _, untokenized, _ = _prepare(tmp_path / "plain", spec)
    assert untokenized["pair_id"].tolist() == ids


def test_no_eval_prompt_of_a_setting_is_trained_on_in_that_setting(tmp_path):
    """Two objectives over one prompt pool (two attributes of one dataset), with different eval sizes
    and drops: every eval prompt of either is absent from both train splits."""
    rows_a = [
        {"pair_id": f"a{i}", "prompt": f"q {i % 60}", "chosen": f"ca{i}", "rejected": f"ra{i}"} for i in range(240)
    ]
    rows_b = [
        {"pair_id": f"b{i}", "prompt": f"q {i % 60}", "chosen": f"cb{i}", "rejected": f"rb{i}"}
        for i in range(240)
        if i % 7
    ]  # b lacks some pairs, as ties drop differently per attribute
    specs = {}
    for name, rows, eval_size in (("a", rows_a, 20), ("b", rows_b, 50)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        specs[name] = {"source": "file", "path": str(path), "eval_size": eval_size}
    splits, reports = {}, {}
    for name in specs:
        siblings = {o: s for o, s in specs.items() if o != name}
        reports[name] = data.prepare(specs[name], tmp_path / name, 0, "shared", name, siblings=siblings)
        splits[name] = {
            split: set(pd.read_parquet(tmp_path / name / f"{split}.parquet")["prompt"]) for split in ("train", "eval")
        }
    eval_prompts = splits["a"]["eval"] | splits["b"]["eval"]
    assert not eval_prompts & (splits["a"]["train"] | splits["b"]["train"])
    assert splits["a"]["eval"] <= splits["b"]["eval"]  # the same prompt order in both objectives
    assert reports["a"]["held_out_for_siblings"] > 0 and reports["b"]["held_out_for_siblings"] == 0
    for report in reports.values():
        assert (
            report["train_pairs"] + report["eval_pairs"] + report["held_out_for_siblings"] + report["unused_pairs"]
        ) == report["rows_kept"]
    # without siblings, a's train would hold b's eval prompts
    alone = data.split_by_prompt(
        data.as_pairs(data.read_preference_file(specs["a"]["path"])), 20, data.split_seed(0, "shared")
    )[0]
    assert set(alone["prompt"]) & splits["b"]["eval"]
