"""Prepare one objective's preference data: read or generate it, validate every row, split by prompt.

``python -m seqpref.data OUT_DIR --spec JSON`` writes ``train.parquet``, ``eval.parquet`` (columns
``tables.PAIRS``) and ``report.json`` beside them. Rows with an empty prompt, chosen or rejected, or
with chosen == rejected, are dropped and listed by id in the report, never silently. A file missing a
required column fails with the file and the column named.

Sources (``source`` in an objective's config):

- ``lab``: synthetic pairs from :mod:`seqpref.lab` (``prefer``, ``differ``, ``label_noise``);
- ``file``: the user's own Parquet / JSONL / CSV file with ``prompt``, ``chosen`` and ``rejected``
  columns (and optionally ``pair_id``; otherwise ids are the row numbers).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from seqpref import lab, provenance, tables

log = logging.getLogger("seqpref.data")

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")


class DataError(ValueError):
    """A dataset that cannot be used: the message names the file and what is wrong."""


def read_preference_file(path: str | Path) -> pd.DataFrame:
    """Read a Parquet, JSONL or CSV preference file into a frame with ``pair_id`` and ``source``.

    Raises :class:`DataError` naming the file and each missing column of ``prompt``, ``chosen``,
    ``rejected``. Columns beyond those are kept, as JSON in ``source``, for later analysis.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    readers = {
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False),
        ".json": lambda p: pd.read_json(p, lines=True, dtype=False),
        ".csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
    }
    if suffix not in readers:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected one of {sorted(readers)}")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    frame = readers[suffix](path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; a preference file needs {list(REQUIRED_COLUMNS)}"
            f" (found {list(frame.columns)})"
        )
    if "pair_id" not in frame.columns:
        frame.insert(0, "pair_id", [f"row{i:06d}" for i in range(len(frame))])
    frame["pair_id"] = frame["pair_id"].astype(str)
    duplicated = frame["pair_id"][frame["pair_id"].duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"{path}: pair_id values are not unique, e.g. {duplicated[:5]}")
    extra = [c for c in frame.columns if c not in ("pair_id", *REQUIRED_COLUMNS)]
    frame["source"] = [
        json.dumps({c: _jsonable(row[c]) for c in extra}, sort_keys=True, default=str)
        for _, row in frame[extra].iterrows()
    ] if extra else "{}"
    return frame[["pair_id", *REQUIRED_COLUMNS, "source"]]


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _is_empty(value) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, np.ndarray)):
        return len(value) == 0
    return False


def validate_pairs(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Drop unusable rows; returns ``(kept, report)``.

    A row is dropped when its prompt, chosen or rejected is empty (``empty_prompt``,
    ``empty_chosen``, ``empty_rejected``) or when chosen == rejected (``identical``). The report
    holds ``rows_in``, ``rows_kept`` and, per reason, the count and the ids dropped (first reason
    that applies).
    """
    reasons = {"empty_prompt": [], "empty_chosen": [], "empty_rejected": [], "identical": []}
    keep = np.ones(len(frame), dtype=bool)
    for i, (pair_id, prompt, chosen, rejected) in enumerate(
        zip(frame["pair_id"], frame["prompt"], frame["chosen"], frame["rejected"])
    ):
        for reason, bad in (
            ("empty_prompt", _is_empty(prompt)),
            ("empty_chosen", _is_empty(chosen)),
            ("empty_rejected", _is_empty(rejected)),
            ("identical", not _is_empty(chosen) and str(chosen) == str(rejected)),
        ):
            if bad:
                reasons[reason].append(str(pair_id))
                keep[i] = False
                break
    report = {
        "rows_in": int(len(frame)),
        "rows_kept": int(keep.sum()),
        "dropped": {reason: {"count": len(ids), "ids": ids} for reason, ids in reasons.items()},
    }
    return frame[keep].reset_index(drop=True), report


def split_by_prompt(frame: pd.DataFrame, eval_size: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out whole prompts: returns ``(train, eval)`` with no prompt in both.

    Prompts are shuffled with ``seed`` and taken into eval until it holds at least ``eval_size`` pairs.
    """
    prompts = frame["prompt"].map(lambda p: json.dumps(p) if not isinstance(p, str) else p)
    unique = prompts.drop_duplicates().to_numpy()
    rng = np.random.default_rng(seed)
    rng.shuffle(unique)
    counts = prompts.value_counts()
    chosen_prompts, total = set(), 0
    for prompt in unique:
        if total >= eval_size:
            break
        chosen_prompts.add(prompt)
        total += int(counts[prompt])
    is_eval = prompts.isin(chosen_prompts).to_numpy()
    if is_eval.all() or not is_eval.any():
        raise DataError(f"cannot hold out {eval_size} eval pairs from {len(frame)} pairs by prompt")
    return frame[~is_eval].reset_index(drop=True), frame[is_eval].reset_index(drop=True)


OBJECTIVE_DEFAULTS = {
    "lab": {"differ": {}, "label_noise": 0.0, "train_size": 256, "eval_size": 128},
    "file": {"train_size": None, "eval_size": 500},
}


def with_defaults(spec: dict) -> dict:
    """An objective's config with the defaults of its ``source`` filled in (a new dict)."""
    if spec.get("source") not in OBJECTIVE_DEFAULTS:
        raise DataError(f"unknown objective source {spec.get('source')!r}; expected one of {sorted(OBJECTIVE_DEFAULTS)}")
    return {**OBJECTIVE_DEFAULTS[spec["source"]], **spec}


def load_objective(spec: dict, lab_seed: int, setting: str, objective: str) -> pd.DataFrame:
    """All pairs of one objective from its config ``spec`` (before validation and splitting)."""
    spec = with_defaults(spec)
    kind = spec["source"]
    if kind == "lab":
        objective_spec = lab.LabObjective(
            prefer=spec["prefer"], differ=spec.get("differ", {}), label_noise=spec.get("label_noise", 0.0)
        )
        n = spec["train_size"] + spec["eval_size"]
        return lab.make_pairs(objective_spec, n, lab.stable_seed(lab_seed, setting, objective), objective)
    if kind == "file":
        return read_preference_file(spec["path"])
    raise DataError(f"objective {setting}/{objective}: unknown source {kind!r}; expected 'lab' or 'file'")


def prepare(spec: dict, out_dir: str | Path, lab_seed: int, setting: str, objective: str) -> dict:
    """Load, validate and split one objective into ``out_dir``; returns the data report."""
    out_dir = Path(out_dir)
    spec = with_defaults(spec)
    frame = load_objective(spec, lab_seed, setting, objective)
    kept, report = validate_pairs(frame)
    if kept.empty:
        raise DataError(f"objective {setting}/{objective}: no usable pairs left (report: {json.dumps(report)})")
    train, evaluation = split_by_prompt(kept, spec["eval_size"], lab.stable_seed(lab_seed, setting, objective, "split"))
    if spec.get("train_size") and len(train) > spec["train_size"]:
        train = train.iloc[: spec["train_size"]]
    options = {"spec": spec, "lab_seed": lab_seed, "setting": setting, "objective": objective}
    record = provenance.provenance("prepare_data", options)
    tables.write_table(train, out_dir / "train.parquet", tables.PAIRS, record)
    tables.write_table(evaluation, out_dir / "eval.parquet", tables.PAIRS, record)
    report.update({"setting": setting, "objective": objective, "train_pairs": len(train), "eval_pairs": len(evaluation)})
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv=None) -> None:
    """CLI: prepare one objective (``prepare_data`` rule)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--spec", required=True, help="JSON of the objective's config")
    parser.add_argument("--lab-seed", type=int, default=0)
    parser.add_argument("--setting", required=True)
    parser.add_argument("--objective", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = prepare(json.loads(args.spec), args.out_dir, args.lab_seed, args.setting, args.objective)
    dropped = {k: v["count"] for k, v in report["dropped"].items() if v["count"]}
    log.info(
        "%s/%s: %d rows in, %d kept (dropped: %s); %d train, %d eval",
        args.setting,
        args.objective,
        report["rows_in"],
        report["rows_kept"],
        dropped or "none",
        report["train_pairs"],
        report["eval_pairs"],
    )


if __name__ == "__main__":
    main()
