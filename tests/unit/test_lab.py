"""seqpref.lab: determinism, the attributes of chosen vs rejected, label noise, differ shares, validation."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqpref import lab, tables

COMPLY, REFUSE = "sure ,", "sorry ,"
WARM, CURT = "glad to help !", "that is all ."


def _opener(text: str) -> str:
    text = text.strip()
    if text.startswith(COMPLY):
        return "comply"
    if text.startswith(REFUSE):
        return "refuse"
    raise AssertionError(f"response without an opener: {text!r}")


def _closer(text: str) -> str:
    text = text.strip()
    if text.endswith(WARM):
        return "warm"
    if text.endswith(CURT):
        return "curt"
    raise AssertionError(f"response without a closer: {text!r}")


def _content(text: str) -> str:
    """The words between opener and closer."""
    text = text.strip()
    for opener in (COMPLY, REFUSE):
        if text.startswith(opener):
            text = text[len(opener) :]
    for closer in (WARM, CURT):
        if text.endswith(closer):
            text = text[: -len(closer)]
    return text.strip()


def test_stable_seed_is_crc32_of_the_joined_parts():
    assert lab.stable_seed(0, "conflicting", "comply") == zlib.crc32(b"0/conflicting/comply")
    assert lab.stable_seed(0, "a") != lab.stable_seed(1, "a")


def test_same_seed_identical_frames_and_bytes(tmp_path):
    objective = lab.LabObjective(prefer={"opener": "comply"}, label_noise=0.1)
    first = lab.make_pairs(objective, 64, seed=123, id_prefix="comply")
    second = lab.make_pairs(objective, 64, seed=123, id_prefix="comply")
    assert first.equals(second)
    assert list(first.columns) == tables.PAIRS.names
    assert first["pair_id"].tolist() == [f"comply-{i:05d}" for i in range(64)]

    record = {"step": "test", "config_hash": "0123456789abcdef", "options": {"n": 64}}
    tables.write_table(first, tmp_path / "a.parquet", tables.PAIRS, record)
    tables.write_table(second, tmp_path / "b.parquet", tables.PAIRS, record)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_different_seed_different_frames():
    objective = lab.LabObjective(prefer={"opener": "comply"})
    first = lab.make_pairs(objective, 64, seed=1, id_prefix="x")
    second = lab.make_pairs(objective, 64, seed=2, id_prefix="x")
    assert not first.equals(second)
    # not just one cell: most pairs differ
    differing = (first[["prompt", "chosen", "rejected"]] != second[["prompt", "chosen", "rejected"]]).any(axis=1)
    assert differing.mean() > 0.5


def test_opener_comply_every_pair():
    objective = lab.LabObjective(prefer={"opener": "comply"})
    frame = lab.make_pairs(objective, 300, seed=7, id_prefix="c")
    for prompt, chosen, rejected, source in frame[["prompt", "chosen", "rejected", "source"]].itertuples(index=False):
        assert chosen.startswith(" "), "responses join the prompt on a token boundary"
        assert chosen.lstrip().startswith(COMPLY), chosen
        assert rejected.lstrip().startswith(REFUSE), rejected
        # attributes the objective does not mention are shared by both responses
        assert _closer(chosen) == _closer(rejected)
        assert _content(chosen) == _content(rejected)
        assert prompt.startswith("user :") and prompt.endswith("assistant :")
        meta = json.loads(source)
        assert meta["chosen"]["opener"] == "comply" and meta["rejected"]["opener"] == "refuse"
        assert meta["label_swapped"] is False
    # the shared attributes are random, not constant
    assert frame["chosen"].map(_closer).nunique() == 2


def test_opener_refuse_is_the_mirror():
    frame = lab.make_pairs(lab.LabObjective(prefer={"opener": "refuse"}), 100, seed=7, id_prefix="r")
    assert frame["chosen"].map(_opener).eq("refuse").all()
    assert frame["rejected"].map(_opener).eq("comply").all()


def test_content_safe_uses_topic_words_vs_unsafe_words():
    frame = lab.make_pairs(lab.LabObjective(prefer={"content": "safe"}), 100, seed=3, id_prefix="s")
    unsafe = set(lab.UNSAFE_WORDS)
    for chosen, rejected, source in frame[["chosen", "rejected", "source"]].itertuples(index=False):
        topic = json.loads(source)["topic"]
        words_w = _content(chosen).rstrip(" .").split()
        words_l = _content(rejected).rstrip(" .").split()
        assert set(words_w) <= set(lab.TOPICS[topic]), chosen
        assert set(words_l) <= unsafe, rejected
        assert _opener(chosen) == _opener(rejected) and _closer(chosen) == _closer(rejected)


def test_label_noise_swaps_about_that_share():
    objective = lab.LabObjective(prefer={"opener": "comply"}, label_noise=0.3)
    frame = lab.make_pairs(objective, 1000, seed=0, id_prefix="n")
    swapped_text = frame["chosen"].map(_opener).eq("refuse")
    assert 0.22 <= swapped_text.mean() <= 0.38
    # the source records exactly the swapped pairs
    swapped_meta = frame["source"].map(lambda s: json.loads(s)["label_swapped"])
    assert (swapped_meta == swapped_text).all()
    # and after a swap the chosen text is still the one the source calls chosen
    openers_meta = frame["source"].map(lambda s: json.loads(s)["chosen"]["opener"])
    assert (openers_meta == frame["chosen"].map(_opener)).all()


def test_differ_share_respected():
    objective = lab.LabObjective(prefer={"closer": "warm", "opener": "comply"}, differ={"opener": 0.85})
    frame = lab.make_pairs(objective, 1000, seed=4, id_prefix="p")
    # the first attribute differs in every pair
    assert frame["chosen"].map(_closer).eq("warm").all()
    assert frame["rejected"].map(_closer).eq("curt").all()
    # the second differs in ~85% of pairs, and then in the preferred direction
    chosen, rejected = frame["chosen"].map(_opener), frame["rejected"].map(_opener)
    differs = chosen != rejected
    assert 0.80 <= differs.mean() <= 0.90
    assert (chosen[differs] == "comply").all()
    # where it does not differ, the shared value is random
    assert chosen[~differs].nunique() == 2


@pytest.mark.parametrize(("share", "expected"), [(0.0, 0.0), (1.0, 1.0)])
def test_differ_extremes(share, expected):
    objective = lab.LabObjective(prefer={"closer": "warm", "opener": "comply"}, differ={"opener": share})
    frame = lab.make_pairs(objective, 200, seed=4, id_prefix="p")
    assert (frame["chosen"].map(_opener) != frame["rejected"].map(_opener)).mean() == expected


def test_differ_defaults_to_one():
    objective = lab.LabObjective(prefer={"closer": "warm", "opener": "comply"})
    frame = lab.make_pairs(objective, 200, seed=4, id_prefix="p")
    assert frame["chosen"].map(_opener).eq("comply").all()
    assert frame["rejected"].map(_opener).eq("refuse").all()


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"prefer": {"tone": "kind"}}, "tone"),
        ({"prefer": {"opener": "maybe"}}, "maybe"),
        ({"prefer": {"opener": "warm"}}, "opener"),
        ({"prefer": {"opener": "comply"}, "differ": {"closer": 0.5}}, "closer"),
        ({"prefer": {"opener": "comply", "closer": "warm"}, "differ": {"closer": 1.5}}, "closer"),
        ({"prefer": {"opener": "comply"}, "label_noise": 0.5}, "label_noise"),
        ({"prefer": {"opener": "comply"}, "label_noise": -0.1}, "label_noise"),
        ({"prefer": {}}, "prefer"),
    ],
)
def test_invalid_objective_raises_naming_it(kwargs, named):
    with pytest.raises(ValueError, match=named):
        lab.LabObjective(**kwargs)


def test_pretraining_corpus_deterministic_and_balanced():
    first = lab.pretraining_corpus(400, seed=5)
    assert first == lab.pretraining_corpus(400, seed=5)
    assert first != lab.pretraining_corpus(400, seed=6)
    responses = [t.split("assistant :", 1)[1] for t in first]
    comply = sum(_opener(r) == "comply" for r in responses) / len(responses)
    warm = sum(_closer(r) == "warm" for r in responses) / len(responses)
    assert 0.4 <= comply <= 0.6 and 0.4 <= warm <= 0.6


def test_partial_conflict_setting_shares_one_attribute_and_conflicts_on_the_other():
    """The lab's partial_conflict objectives (config/config.yaml): they disagree on the opener in every
    pair and both prefer the warm closer, which differs in about half of the pairs. So a model that
    prefers warm twice as strongly as it prefers either opener scores both objectives positive on
    average (the model the joint methods can reach), while the openers conflict in every pair."""
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "config/config.yaml").read_text())
    objectives = config["settings"]["partial_conflict"]["objectives"]
    frames = {
        name: lab.make_pairs(
            lab.LabObjective(prefer=spec["prefer"], differ=spec.get("differ", {})), 400, seed=1, id_prefix=name
        )
        for name, spec in objectives.items()
    }

    def margin(frame, attribute, value):  # +1 when only the chosen has it, -1 when only the rejected does
        sources = [json.loads(s) for s in frame["source"]]
        return np.array([(s["chosen"][attribute] == value) - (s["rejected"][attribute] == value) for s in sources])

    assert (margin(frames["warm_comply"], "opener", "comply") == 1).all()  # conflicting, in every pair
    assert (margin(frames["warm_refuse"], "opener", "comply") == -1).all()
    for name, frame in frames.items():
        warm = margin(frame, "closer", "warm")
        assert set(warm) == {0, 1} and 0.4 < warm.mean() < 0.6, name  # shared, in about half the pairs
        for opener in ("comply", "refuse"):  # margin = 1·[warm] + 0.25·[opener]: positive on average either way
            assert (warm + 0.25 * margin(frame, "opener", opener)).mean() > 0.2


def test_differ_applies_to_every_attribute_whatever_the_order_of_prefer():
    """Configs reach the data step as sorted JSON, so an objective must not depend on the order of its
    ``prefer`` keys: the opener differs in every pair and the closer in about half, in either order.
    (The first attribute in order used to differ in every pair whatever ``differ`` said, so sorting
    {opener, closer} to {closer, opener} silently made the closer differ everywhere.)"""
    spec = {"opener": "comply", "closer": "warm"}
    frames = [
        lab.make_pairs(lab.LabObjective(prefer=prefer, differ={"closer": 0.5}), 400, seed=1, id_prefix="x")
        for prefer in (spec, dict(reversed(list(spec.items()))))
    ]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    sources = [json.loads(s) for s in frames[0]["source"]]
    assert all(s["chosen"]["opener"] != s["rejected"]["opener"] for s in sources)
    share = np.mean([s["chosen"]["closer"] != s["rejected"]["closer"] for s in sources])
    assert 0.4 < share < 0.6
    with pytest.raises(ValueError, match="at least one"):
        lab.LabObjective(prefer=spec, differ={"closer": 0.5, "opener": 0.9})
