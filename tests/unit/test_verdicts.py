"""The verdict table: one row per run, objective and later stage, read off the summary and controls."""

from __future__ import annotations

import pandas as pd
from test_aggregate import _scores
from test_controls import OPTIONS, _movement, _sham

from seqpref import aggregate, controls, verdicts


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


def test_verdicts_carry_the_budget_spent_through_their_stage():
    pairs = _scores(margins={"a": [0.0, 2.0, 1.0], "b": [0.0, 1.0, 2.0]})
    summary = aggregate.summarise(pairs, OPTIONS)["summary"]
    run = summary[["setting", "method", "order"]].iloc[0].to_dict()
    training = pd.DataFrame(
        [
            {
                **run,
                "seed": seed,
                "stage": stage,
                "objective": "a",
                "step": 4,
                "metric": metric,
                "value": value + seed,
            }  # seeds 0 and 1: the table gives their mean
            for seed in (0, 1)
            for stage in (1, 2)
            for metric, value in (
                ("budget/pairs", 64),
                ("budget/tokens", 3000),
                ("budget/optimizer_steps", 4),
                ("loss", 0.5),
            )
        ]
    )
    (row,) = verdicts.verdict_rows(summary, None, training).to_dict("records")
    assert (row["pairs_seen_total"], row["tokens_total"], row["optimizer_steps_total"]) == (129.0, 6001.0, 9.0)
    assert pd.isna(verdicts.verdict_rows(summary, None).loc[0, "pairs_seen_total"])  # no logs: no budget, not 0


def test_a_total_that_would_leave_a_stage_out_is_unknown():
    from seqpref import budget

    training = pd.DataFrame(
        [
            {
                "setting": "s",
                "method": "dpo",
                "order": "a-b",
                "seed": 0,
                "stage": stage,
                "objective": "a",
                "step": 4,
                "metric": metric,
                "value": 10.0,
            }
            for stage in (2, 3)  # stage 1's log predates the budget rows
            for metric in ("budget/pairs", "budget/tokens", "budget/optimizer_steps")
        ]
    )
    spent = budget.run_budgets(training)
    assert spent["pairs_seen"].tolist() == [10.0, 10.0] and spent["pairs_seen_total"].isna().all()
