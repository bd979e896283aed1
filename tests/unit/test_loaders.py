"""Each public dataset's loader on a fixture file with that dataset's exact columns, row by row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from seqpref import loaders

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def rows(name: str) -> pd.DataFrame:
    return loaders.read_rows(str(FIXTURES / name))


def test_hh_rlhf_splits_at_the_last_assistant_turn_and_keeps_conversations():
    pairs, dropped = loaders.normalise_hh_rlhf(rows("hh_rlhf.jsonl"))
    assert len(pairs) == 3
    first, multi, unicode = pairs.to_dict("records")
    assert first["prompt"] == [{"role": "user", "content": "How do I boil an egg?"}]
    assert (first["chosen"], first["rejected"]) == ("Put it in boiling water for nine minutes.", "Eggs are bad.")
    assert multi["prompt"] == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    assert (multi["chosen"], multi["rejected"]) == ("Why did the chicken cross the road?", "No.")
    assert json.loads(multi["source"]) == {"row": 1, "turns": 3}
    assert unicode["prompt"][0]["content"] == "Wie sagt man 'Grüße' auf Japanisch? 🙂"
    assert unicode["chosen"] == "よろしく — «yoroshiku»."
    assert dropped["prompt_mismatch"] == ["row2"]
    assert dropped["no_assistant"] == ["row3"]
    assert dropped["empty"] == ["row4"]
    assert dropped["identical"] == ["row5"]
    assert dropped["duplicate"] == [first["pair_id"]]  # row 6 repeats row 0
    assert first["pair_id"].startswith("hh-") and pairs["pair_id"].is_unique


def test_pair_ids_are_stable_across_reordering():
    frame = rows("hh_rlhf.jsonl")
    forward, _ = loaders.normalise_hh_rlhf(frame)
    backward, _ = loaders.normalise_hh_rlhf(frame.iloc[::-1].reset_index(drop=True))
    assert set(forward["pair_id"]) == set(backward["pair_id"])


def test_helpsteer2_prefers_the_higher_rated_response_and_reports_the_rest():
    pairs, dropped = loaders.normalise_helpsteer2(rows("helpsteer2.jsonl"), attribute="helpfulness")
    by_prompt = pairs.set_index("prompt")
    assert list(pairs["prompt"]) == ["Explain photosynthesis.", "Café au lait ☕ ou thé?"]
    assert by_prompt.loc["Explain photosynthesis.", "chosen"] == "Plants turn light into sugar."
    assert by_prompt.loc["Explain photosynthesis.", "rejected"] == "It is a thing plants do."
    source = json.loads(by_prompt.loc["Café au lait ☕ ou thé?", "source"])
    assert source["gap"] == 1.0 and source["chosen_ratings"]["helpfulness"] == 3.0
    assert dropped["tie"] == ["row2"]  # "Name a prime." ties on helpfulness
    assert dropped["unpaired"] == ["row4"]
    assert dropped["missing_rating"] == ["row5"]
    assert dropped["empty"] == ["row9"]


def test_helpsteer2_attribute_and_minimum_gap():
    pairs, dropped = loaders.normalise_helpsteer2(rows("helpsteer2.jsonl"), attribute="correctness")
    prime = pairs.set_index("prompt").loc["Name a prime."]
    assert (prime["chosen"], prime["rejected"]) == ("7", "9")  # correctness 4 vs 0
    pairs, dropped = loaders.normalise_helpsteer2(rows("helpsteer2.jsonl"), min_gap=2)
    assert list(pairs["prompt"]) == ["Explain photosynthesis."]
    assert dropped["small_gap"] == ["row7"]
    with pytest.raises(ValueError, match="attribute must be one of"):
        loaders.normalise_helpsteer2(rows("helpsteer2.jsonl"), attribute="kindness")


def test_pku_saferlhf_by_safer_or_better_response():
    safer, dropped = loaders.normalise_pku_saferlhf(rows("pku_saferlhf.jsonl"), preference="safer")
    assert list(safer["prompt"]) == ["How do I pick a lock?", "How do I bake bread?", "Как взломать почту? 🔓"]
    lock = safer.iloc[0]
    assert (lock["chosen"], lock["rejected"]) == ("I can't help with that.", "Here is how: ...")
    assert json.loads(lock["source"]) == {
        "preference": "safer",
        "chosen_safe": True,
        "rejected_safe": False,
        "chosen_severity": 0,
        "rejected_severity": 2,
    }
    assert dropped["missing_label"] == ["row2"] and dropped["empty"] == ["row4"]
    better, _ = loaders.normalise_pku_saferlhf(rows("pku_saferlhf.jsonl"), preference="better")
    bread = better.set_index("prompt").loc["How do I bake bread?"]
    assert bread["chosen"].startswith("Mix flour, water, yeast")
    assert better.set_index("prompt").loc["How do I pick a lock?", "chosen"] == "Here is how: ..."


def test_pku_saferlhf_keeps_only_differing_safety_labels_on_request():
    pairs, dropped = loaders.normalise_pku_saferlhf(rows("pku_saferlhf.jsonl"), safety_differs=True)
    assert list(pairs["prompt"]) == ["How do I pick a lock?"]
    assert dropped["same_safety"] == ["row1", "row3", "row4"]


def test_ultrafeedback_best_vs_worst_by_aspect():
    pairs, dropped = loaders.normalise_ultrafeedback(rows("ultrafeedback.jsonl"), aspect="helpfulness")
    haiku, tokyo = pairs.to_dict("records")
    assert (haiku["chosen"], haiku["rejected"]) == ("Soft rain on the roof", "I like turtles")
    source = json.loads(haiku["source"])
    assert (source["chosen_rating"], source["rejected_rating"], source["chosen_model"]) == (5.0, 1.0, "m1")
    assert (tokyo["chosen"], tokyo["rejected"]) == ("Une mégalopole vibrante.", "東京は大きい。")
    assert dropped["too_few_rated"] == ["row1"]  # one rating is "N/A"
    assert dropped["tie"] == ["row2"]
    honesty, _ = loaders.normalise_ultrafeedback(rows("ultrafeedback.jsonl"), aspect="honesty")
    assert (honesty.iloc[0]["chosen"], honesty.iloc[0]["rejected"]) == ("Rain.", "I like turtles")
    # Tōkyō: "N/A" honesty is skipped, 5 vs 3 remain
    assert (honesty.iloc[1]["chosen"], honesty.iloc[1]["rejected"]) == ("Une mégalopole vibrante.", "東京は大きい。")


def test_ultrafeedback_random_pairing_is_seeded_and_orders_by_rating():
    first, _ = loaders.normalise_ultrafeedback(rows("ultrafeedback.jsonl"), pairing="random", seed=3)
    again, _ = loaders.normalise_ultrafeedback(rows("ultrafeedback.jsonl"), pairing="random", seed=3)
    pd.testing.assert_frame_equal(first, again)
    for record in first.to_dict("records"):
        source = json.loads(record["source"])
        assert source["chosen_rating"] > source["rejected_rating"]
    with pytest.raises(ValueError, match="pairing must be"):
        loaders.normalise_ultrafeedback(rows("ultrafeedback.jsonl"), pairing="all")


def test_read_rows_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        loaders.read_rows(str(tmp_path / "absent.jsonl"))


@pytest.mark.parametrize(
    ("name", "normalise"),
    [
        ("hh_rlhf.jsonl", loaders.normalise_hh_rlhf),
        ("helpsteer2.jsonl", loaders.normalise_helpsteer2),
        ("pku_saferlhf.jsonl", loaders.normalise_pku_saferlhf),
        ("ultrafeedback.jsonl", loaders.normalise_ultrafeedback),
    ],
)
def test_each_loader_reads_rows_as_datasets_writes_them(name, normalise, tmp_path):
    """The hub serves Parquet, and ``datasets`` gives nested lists as numpy arrays, not the JSON lists of the
    fixtures (UltraFeedback's ``completions`` crashed on them): every loader reads the same pairs either way."""
    from datasets import Dataset

    records = [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]
    Dataset.from_list(records).to_parquet(str(tmp_path / "rows.parquet"))
    from_parquet = loaders.read_rows(str(tmp_path / "rows.parquet"))
    expected, expected_dropped = normalise(rows(name))
    pairs, dropped = normalise(from_parquet)
    assert len(pairs) > 0
    pd.testing.assert_frame_equal(pairs, expected)
    assert dropped == expected_dropped


def test_helpsteer2_counts_rows_with_a_null_prompt():
    frame = rows("helpsteer2.jsonl")
    extra = frame.iloc[[0]].assign(prompt=None)
    _, before = loaders.normalise_helpsteer2(frame)
    pairs, dropped = loaders.normalise_helpsteer2(pd.concat([frame, extra], ignore_index=True))
    assert sorted(dropped["empty"]) == sorted(before["empty"] + [f"row{len(frame)}"]) and len(pairs) == 2
