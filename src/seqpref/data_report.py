"""Every objective's data report (``report.json`` of ``prepare_data``) as one table.

``python -m seqpref.data_report OUT.tsv REPORT.json ...`` writes one row per objective: where the
pairs came from (source, dataset, revision), how many rows were read, how many pairs were formed and
kept, one ``dropped_<reason>`` column per drop reason met in any report (0 where a source has no
such reason), the train / eval / unused pair counts, and, when the base tokenizer measured them,
token lengths (p50, p99 and max of prompt + the longer response) and the pairs ``max_length``
truncates per split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

_IDENTITY = ["setting", "objective", "source", "dataset", "revision"]
_COUNTS = ["rows_read", "pairs_formed", "rows_kept", "train_pairs", "eval_pairs", "unused_pairs"]


def report_row(report: dict) -> dict:
    """One table row of a ``report.json`` (counts in pairs, lengths in tokens)."""
    source = report.get("source") or {}
    row = {
        "setting": report["setting"],
        "objective": report["objective"],
        "source": source.get("source"),
        "dataset": source.get("dataset") or source.get("path"),
        "revision": source.get("revision"),
        **{key: report.get(key) for key in _COUNTS},
        **{f"dropped_{reason}": entry["count"] for reason, entry in report["dropped"].items()},
    }
    tokens = report.get("tokens") or {}
    if tokens:
        row["max_length"] = tokens.get("max_length")
        for split in ("train", "eval"):
            longest = tokens[split]["longest"]
            row.update(
                {
                    f"{split}_tokens_p50": longest["p50"],
                    f"{split}_tokens_p99": longest["p99"],
                    f"{split}_tokens_max": longest["max"],
                }
            )
            row[f"{split}_truncated"] = (tokens[split].get("truncated") or {}).get("count")
    return row


def data_report_table(paths: list[str | Path]) -> pd.DataFrame:
    """The rows of every report at ``paths``, in that order; absent drop reasons count 0."""
    frame = pd.DataFrame([report_row(json.loads(Path(p).read_text())) for p in paths])
    dropped = sorted(c for c in frame.columns if c.startswith("dropped_"))
    frame[dropped] = frame[dropped].fillna(0).astype(int)
    rest = [c for c in frame.columns if c not in _IDENTITY + _COUNTS + dropped]
    return frame[_IDENTITY + _COUNTS + dropped + rest]


def main(argv=None) -> None:
    """CLI: write the data report table (``data_report`` rule)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="TSV to write")
    parser.add_argument("reports", nargs="+", help="report.json of each objective")
    args = parser.parse_args(argv)
    data_report_table(args.reports).to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
