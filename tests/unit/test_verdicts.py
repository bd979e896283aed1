"""The verdict table: one row per run, objective and later stage, read off the summary and controls."""

from __future__ import annotations

import pandas as pd

from seqpref import aggregate, controls, verdicts
from test_aggregate import _scores
from test_controls import OPTIONS, _movement, _sham


def test_verdicts_carry_change_interval_label_and_control(tmp_path):
    pairs = _scores(margins={"a": [0.0, 2.0, 0.5], "b": [0.0, 0.0, 2.0]})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    table = controls.control_rows(pairs, _sham({"a": 2.0, "b": 0.0}, pairs), summary, OPTIONS, _movement(0.4))
    frame = verdicts.verdict_rows(summary, table)
    assert list(frame.columns) == verdicts.COLUMNS
    (row,) = frame.to_dict("records")  # a is the only objective with a stage after its own
    assert (row["objective"], row["stage"], row["trained_at_stage"], row["role"]) == ("a", 2, "b", "earlier")
    assert row["change_lo"] < row["change"] < row["change_hi"] < 0 and row["label"] == "degradation"
    assert row["interval_covers"] == "pairs (1 seed)"
    assert row["control_label"] == "control_invalid" and "0.40x as far" in row["control_invalid_reason"]
    path = tmp_path / "verdicts.tsv"
    verdicts.write_tsv(frame, path)
    back = pd.read_csv(path, sep="\t")
    assert back.loc[0, "label"] == "degradation" and list(back.columns) == verdicts.COLUMNS


def test_joint_runs_and_runs_without_a_sham():
    pairs = _scores(margins={"a": [0.0, 2.0, 1.0], "b": [0.0, 1.0, 2.0]})
    pairs["method"] = "mix"
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    frame = verdicts.verdict_rows(summary, None)
    assert set(frame["objective"]) == {"a", "b"} and set(frame["label"]) == {"trained"}
    assert (frame["control_label"] == "").all()
