"""seqpref.data_report: every objective's report.json as one table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from seqpref import data, data_report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def test_table_has_one_row_per_report_and_every_reason(tmp_path):
    lab = data.prepare(
        {"source": "lab", "prefer": {"opener": "comply"}, "train_size": 30, "eval_size": 10},
        tmp_path / "lab",
        0,
        "s",
        "comply",
    )
    hh = data.prepare(
        {"source": "hh_rlhf", "dataset": str(FIXTURES / "hh_rlhf.jsonl"), "eval_size": 1, "revision": "0123abc"},
        tmp_path / "hh",
        0,
        "s",
        "hh",
    )
    out = tmp_path / "data_report.tsv"
    data_report.main([str(out), str(tmp_path / "lab/report.json"), str(tmp_path / "hh/report.json")])
    table = pd.read_csv(out, sep="\t")
    assert table["objective"].tolist() == ["comply", "hh"]
    assert table["source"].tolist() == ["lab", "hh_rlhf"]
    assert table.loc[1, "revision"] == "0123abc" and table.loc[1, "dataset"].endswith("hh_rlhf.jsonl")
    # hh's own reasons appear as columns, 0 for the lab objective that cannot have them
    for reason in ("no_assistant", "prompt_mismatch", "duplicate", "over_length"):
        assert table.loc[1, f"dropped_{reason}"] == hh["dropped"][reason]["count"], reason
    assert table.loc[0, "dropped_no_assistant"] == 0
    assert table.loc[1, "dropped_no_assistant"] == 1
    for column in ("rows_read", "pairs_formed", "rows_kept", "train_pairs", "eval_pairs", "unused_pairs"):
        assert table[column].tolist() == [lab[column], hh[column]], column
    json.dumps(hh)


def test_token_columns_when_the_tokenizer_measured(tmp_path):
    from seqpref import base_model

    tokenizer = base_model.train_tokenizer([f"user : the tea {i} ? assistant : sure ." for i in range(40)], 300)
    report = data.prepare(
        {"source": "lab", "prefer": {"opener": "comply"}, "train_size": 30, "eval_size": 10},
        tmp_path / "lab",
        0,
        "s",
        "comply",
        tokenizer=tokenizer,
        max_length=40,
    )
    row = data_report.report_row(report)
    assert row["max_length"] == 40
    for split in ("train", "eval"):
        longest = report["tokens"][split]["longest"]
        assert (row[f"{split}_tokens_p50"], row[f"{split}_tokens_max"]) == (longest["p50"], longest["max"])
        assert row[f"{split}_truncated"] == report["tokens"][split]["truncated"]["count"]
    assert row["train_truncated"] + row["eval_truncated"] > 0  # lab pairs run past 40 byte-level tokens
