"""Prepare one objective's preference data: read or generate it, validate every row, split by prompt.

``python -m seqpref.data OUT_DIR --spec JSON [--tokenizer MODEL --max-length N]`` writes
``train.parquet``, ``eval.parquet`` (columns ``tables.PAIRS``) and ``report.json`` beside them.
Nothing is dropped silently: every dropped row is listed by id and reason in the report (empty
prompt or response, chosen == rejected, a duplicated pair, the dataset's own reasons such as a
rating tie, and ``over_length``: a prompt that alone fills ``max_length``, which TRL would drop).
With a tokenizer, the report also gives each split's token-length distribution and how many pairs
``max_length`` truncates. A file missing a required column fails with the file and the column named.

Sources (``source`` in an objective's config):

- ``lab``: synthetic pairs from :mod:`seqpref.lab` (``prefer``, ``differ``, ``label_noise``);
- ``file``: the user's own Parquet / JSONL / CSV file with ``prompt``, ``chosen`` and ``rejected``
  columns (and optionally ``pair_id``; otherwise ids are the row numbers). A prompt may be a list of
  ``{"role", "content"}`` messages (a conversation), a response a one-message assistant turn;
- ``hh_rlhf``, ``helpsteer2``, ``pku_saferlhf``, ``ultrafeedback``, ``pandalm``, ``llamafactory_dpo``:
  the public datasets, read by id with ``datasets.load_dataset`` (``revision`` pins a commit) or
  from a local copy of their rows, and normalised by :mod:`seqpref.loaders`.

A conversational prompt is stored as its transcript text in ``prompt`` and its messages as JSON in
``prompt_messages``; the trainer and the scorer decide how to render it
(:func:`seqpref.tokenization.model_inputs`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from seqpref import lab, loaders, provenance, tables
from seqpref.loaders import DataError, read_json, read_jsonl
from seqpref.tokenization import model_inputs, render_transcript, tokenize_pair

log = logging.getLogger("seqpref.data")

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")


def read_preference_file(path: str | Path) -> pd.DataFrame:
    """Read a Parquet, JSONL or CSV preference file into a frame with ``pair_id`` and ``source``.

    Raises :class:`DataError` naming the file and each missing column of ``prompt``, ``chosen``,
    ``rejected``. Columns beyond those are kept, as JSON in ``source``, for later analysis.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    readers = {
        ".parquet": pd.read_parquet,
        ".jsonl": read_jsonl,
        ".json": read_json,
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
    frame["source"] = (
        [
            json.dumps({c: _jsonable(row[c]) for c in extra}, sort_keys=True, default=str)
            for _, row in frame[extra].iterrows()
        ]
        if extra
        else "{}"
    )
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


def _response_text(value, pair_id: str):
    """A response as text: a string, or the content of a one-message assistant turn (TRL's format)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], dict) and value[0].get("role") == "assistant":
            return value[0].get("content")
        raise DataError(f"pair {pair_id}: a response must be text or one assistant message, got {value!r:.200}")
    if not (_is_empty(value) or isinstance(value, str)):
        raise DataError(f"pair {pair_id}: a response must be text, got {type(value).__name__} {value!r:.100}")
    return value


def as_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """``pair_id``, ``prompt``, ``chosen``, ``rejected``, ``source`` rows as ``tables.PAIRS`` columns.

    A prompt that is a list of ``{"role", "content"}`` messages becomes its transcript text
    (:func:`seqpref.tokenization.render_transcript`) in ``prompt`` and its messages as JSON in
    ``prompt_messages``; a text prompt keeps ``prompt_messages`` null. A malformed message or
    response raises :class:`DataError` naming the pair.
    """
    texts, messages = [], []
    for pair_id, prompt in zip(frame["pair_id"], frame["prompt"]):
        if isinstance(prompt, np.ndarray):
            prompt = prompt.tolist()
        if isinstance(prompt, list):
            try:
                turns = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
            except (TypeError, KeyError) as error:
                raise DataError(
                    f"pair {pair_id}: a conversational prompt needs role and content in every "
                    f"message ({error!r}); got {prompt!r:.200}"
                ) from None
            texts.append(render_transcript(turns) if turns else "")
            messages.append(json.dumps(turns, ensure_ascii=False) if turns else None)
        elif not (_is_empty(prompt) or isinstance(prompt, str)):
            raise DataError(
                f"pair {pair_id}: a prompt must be text or a list of messages, got "
                f"{type(prompt).__name__} {prompt!r:.100}"
            )
        else:
            texts.append(prompt)
            messages.append(None)
    return pd.DataFrame(
        {
            "pair_id": frame["pair_id"].astype(str).to_numpy(),
            "prompt": texts,
            "prompt_messages": messages,
            "chosen": [_response_text(v, i) for i, v in zip(frame["pair_id"], frame["chosen"])],
            "rejected": [_response_text(v, i) for i, v in zip(frame["pair_id"], frame["rejected"])],
            "source": frame["source"].to_numpy() if "source" in frame.columns else "{}",
        }
    )


def _empty_conversation(messages) -> bool:
    return isinstance(messages, str) and any(_is_empty(m["content"]) for m in json.loads(messages))


def _dropped(ids_by_reason: dict[str, list[str]]) -> dict:
    return {reason: {"count": len(ids), "ids": list(ids)} for reason, ids in ids_by_reason.items()}


def validate_pairs(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Drop unusable rows; returns ``(kept, report)``.

    A row is dropped when its prompt (or any message of a conversational prompt), chosen or rejected
    is empty (``empty_prompt``, ``empty_chosen``, ``empty_rejected``), when chosen == rejected
    (``identical``), or when the same (prompt, chosen, rejected) came earlier (``duplicate``; the first
    is kept). The report holds ``rows_in``, ``rows_kept`` and, per reason, the count and the ids
    dropped (first reason that applies).
    """
    reasons = {"empty_prompt": [], "empty_chosen": [], "empty_rejected": [], "identical": [], "duplicate": []}
    keep = np.ones(len(frame), dtype=bool)
    messages = frame["prompt_messages"] if "prompt_messages" in frame.columns else [None] * len(frame)
    seen: set[tuple] = set()
    for i, (pair_id, prompt, turns, chosen, rejected) in enumerate(
        zip(frame["pair_id"], frame["prompt"], messages, frame["chosen"], frame["rejected"])
    ):
        key = (str(prompt), str(turns), str(chosen), str(rejected))
        for reason, bad in (
            ("empty_prompt", _is_empty(prompt) or _empty_conversation(turns)),
            ("empty_chosen", _is_empty(chosen)),
            ("empty_rejected", _is_empty(rejected)),
            ("identical", not _is_empty(chosen) and str(chosen) == str(rejected)),
            ("duplicate", key in seen),
        ):
            if bad:
                reasons[reason].append(str(pair_id))
                keep[i] = False
                break
        seen.add(key)
    report = {"rows_in": int(len(frame)), "rows_kept": int(keep.sum()), "dropped": _dropped(reasons)}
    return frame[keep].reset_index(drop=True), report


def _prompt_keys(frame: pd.DataFrame) -> pd.Series:
    return frame["prompt"].map(lambda p: json.dumps(p) if not isinstance(p, str) else p)


def prompt_order(prompts: pd.Series, seed: int) -> pd.Series:
    """A seeded pseudo-random position in [0, 1) for each prompt text, the same in every objective.

    Held-out prompts are those with the smallest positions, so objectives of one setting that share
    prompts (two attributes of one dataset) hold out the same ones.
    """

    def position(text: str) -> float:
        digest = hashlib.sha1(f"{seed}\x00{text}".encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    return prompts.map(position)


def eval_cutoff(frame: pd.DataFrame, eval_size: int, seed: int) -> float:
    """The :func:`prompt_order` position up to which prompts are held out: the smallest that gives
    at least ``eval_size`` pairs of ``frame``."""
    positions = prompt_order(_prompt_keys(frame), seed)
    counts = positions.value_counts().sort_index()
    reached = counts.cumsum()
    if reached.iloc[-1] <= eval_size:
        raise DataError(f"cannot hold out {eval_size} eval pairs from {len(frame)} pairs by prompt")
    return float(reached.index[int(np.searchsorted(reached.to_numpy(), eval_size))])


def split_by_prompt(
    frame: pd.DataFrame, eval_size: int, seed: int, train_after: float | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out whole prompts: returns ``(train, eval)`` with no prompt in both.

    Prompts are ordered by :func:`prompt_order` with ``seed``; eval takes them in that order until it
    holds at least ``eval_size`` pairs. Train takes the prompts after ``train_after`` (default: after
    the eval cutoff), so a larger ``train_after`` (another objective's cutoff) keeps that
    objective's eval prompts out of this train split too; prompts in between are used by neither.
    """
    cutoff = eval_cutoff(frame, eval_size, seed)
    positions = prompt_order(_prompt_keys(frame), seed).to_numpy()
    is_eval = positions <= cutoff
    is_train = positions > max(cutoff, train_after if train_after is not None else cutoff)
    if not is_train.any():
        raise DataError(f"no train pairs left of {len(frame)} after holding out {int(is_eval.sum())} eval pairs")
    return frame[is_train].reset_index(drop=True), frame[is_eval].reset_index(drop=True)


_HUB = {"revision": None, "subset": None, "data_dir": None, "split": "train", "train_size": None, "eval_size": 500}
OBJECTIVE_DEFAULTS = {
    "lab": {"differ": {}, "label_noise": 0.0, "train_size": 256, "eval_size": 128},
    "file": {"train_size": None, "eval_size": 500},
    "hh_rlhf": {**_HUB, "dataset": "Anthropic/hh-rlhf"},
    "helpsteer2": {**_HUB, "dataset": "nvidia/HelpSteer2", "attribute": "helpfulness", "min_gap": 0},
    "pku_saferlhf": {**_HUB, "dataset": "PKU-Alignment/PKU-SafeRLHF", "preference": "safer", "safety_differs": False},
    "ultrafeedback": {**_HUB, "dataset": "openbmb/UltraFeedback", "aspect": "helpfulness", "pairing": "best_vs_worst"},
    "pandalm": {**_HUB, "dataset": "resources/public_prefs/upstream/WeOpenML/PandaLM/data/testset-v1.json"},
    "llamafactory_dpo": {
        **_HUB,
        "dataset": "resources/public_prefs/upstream/hiyouga/LLaMA-Factory/data/dpo_en_demo.json",
    },
}
#: the loader's own options of each public dataset source (beyond where to read it)
LOADER_OPTIONS = {
    "hh_rlhf": (loaders.normalise_hh_rlhf, ()),
    "helpsteer2": (loaders.normalise_helpsteer2, ("attribute", "min_gap")),
    "pku_saferlhf": (loaders.normalise_pku_saferlhf, ("preference", "safety_differs")),
    "ultrafeedback": (loaders.normalise_ultrafeedback, ("aspect", "pairing")),
    "pandalm": (loaders.normalise_pandalm, ()),
    "llamafactory_dpo": (loaders.normalise_llamafactory_dpo, ()),
}


def _source_columns(kind: str, options: dict) -> list[str]:
    """The columns a public dataset source reads from the dataset's rows."""
    if kind == "hh_rlhf":
        return ["chosen", "rejected"]
    if kind == "helpsteer2":
        return ["prompt", "response", options["attribute"]]
    if kind == "pku_saferlhf":
        return ["prompt", "response_0", "response_1", f"{options['preference']}_response_id"]
    if kind == "pandalm":
        return ["instruction", "response1", "response2", *loaders.PANDALM_ANNOTATORS]
    if kind == "llamafactory_dpo":
        return ["conversations", "chosen", "rejected"]
    return ["instruction", "completions"]


def with_defaults(spec: dict) -> dict:
    """An objective's config with the defaults of its ``source`` filled in (a new dict)."""
    if spec.get("source") not in OBJECTIVE_DEFAULTS:
        raise DataError(
            f"unknown objective source {spec.get('source')!r}; expected one of {sorted(OBJECTIVE_DEFAULTS)}"
        )
    return {**OBJECTIVE_DEFAULTS[spec["source"]], **spec}


_ROWS: dict[tuple, pd.DataFrame] = {}


def load_objective(spec: dict, lab_seed: int, setting: str, objective: str) -> tuple[pd.DataFrame, dict]:
    """All pairs of one objective from its config ``spec``, before validation and splitting.

    Returns ``(pairs, loaded)``: the pairs as ``tables.PAIRS`` columns, and what loading reports
    (``rows_read`` and ``dropped`` by the dataset's own reasons, empty for ``lab`` and ``file``).
    """
    spec = with_defaults(spec)
    kind = spec["source"]
    if kind == "lab":
        objective_spec = lab.LabObjective(
            prefer=spec["prefer"], differ=spec.get("differ", {}), label_noise=spec.get("label_noise", 0.0)
        )
        n = spec["train_size"] + spec["eval_size"]
        pairs = lab.make_pairs(objective_spec, n, lab.stable_seed(lab_seed, setting, objective), objective)
        return pairs, {"rows_read": len(pairs), "dropped": {}}
    if kind == "file":
        try:
            pairs = as_pairs(read_preference_file(spec["path"]))
        except DataError as error:
            if str(error).startswith(str(spec["path"])):
                raise
            raise DataError(f"{spec['path']}: {error}") from None
        return pairs, {"rows_read": len(pairs), "dropped": {}}
    if kind in LOADER_OPTIONS:
        normalise, option_names = LOADER_OPTIONS[kind]
        if spec["revision"] is None and not Path(spec["dataset"]).suffix:
            log.warning(
                "%s/%s: %s is read at its latest revision; pin `revision` to a commit to reproduce these pairs",
                setting,
                objective,
                spec["dataset"],
            )
        where = (spec["dataset"], spec["split"], spec["revision"], spec["subset"], spec["data_dir"])
        if where not in _ROWS:  # siblings often read the same dataset: read it once per process
            _ROWS[where] = loaders.read_rows(
                where[0], split=where[1], revision=where[2], subset=where[3], data_dir=where[4]
            )
        rows = _ROWS[where]
        options = {name: spec[name] for name in option_names}
        missing = [c for c in _source_columns(kind, options) if c not in rows.columns]
        if missing:
            raise DataError(
                f"{setting}/{objective}: {spec['dataset']} lacks column(s) {missing} that source "
                f"{kind!r} reads (found {list(rows.columns)})"
            )
        if kind == "ultrafeedback":
            options["seed"] = lab.stable_seed(lab_seed, setting, objective, "pairing")
        pairs, dropped = normalise(rows, **options)
        return as_pairs(pairs), {"rows_read": len(rows), "dropped": _dropped(dropped)}
    raise DataError(
        f"objective {setting}/{objective}: unknown source {kind!r}; expected one of {sorted(OBJECTIVE_DEFAULTS)}"
    )


def token_lengths(tokenizer, pairs: pd.DataFrame) -> pd.DataFrame:
    """Untruncated token counts of each pair as training tokenizes it; one row per pair.

    Returns ``pair_id``, ``prompt``, ``chosen``, ``rejected`` (completion tokens, EOS or end-of-turn
    included) and ``longest`` (prompt + the longer response), in tokens.
    """
    rows = []
    for pair_id, p, m, c, r in zip(
        pairs["pair_id"], pairs["prompt"], pairs["prompt_messages"], pairs["chosen"], pairs["rejected"]
    ):
        ids = tokenize_pair(tokenizer, *model_inputs(tokenizer, p, m, c, r), max_length=None)
        n_prompt, n_chosen, n_rejected = len(ids.prompt_ids), len(ids.chosen_ids), len(ids.rejected_ids)
        rows.append((pair_id, n_prompt, n_chosen, n_rejected, n_prompt + max(n_chosen, n_rejected)))
    return pd.DataFrame(rows, columns=["pair_id", "prompt", "chosen", "rejected", "longest"])


def length_summary(lengths: pd.DataFrame, max_length: int | None) -> dict:
    """Token-length distribution of one split and what ``max_length`` truncates.

    Takes :func:`token_lengths` rows; returns per column (prompt, chosen, rejected, longest) the mean,
    p50, p90, p99 and max in tokens, and ``truncated``: the count, share and ids of pairs whose
    prompt + longer response exceeds ``max_length`` (scored and trained on what fits).
    """
    summary = {"pairs": int(len(lengths))}
    for column in ("prompt", "chosen", "rejected", "longest"):
        values = lengths[column].to_numpy(dtype=float)
        summary[column] = {
            "mean": round(float(values.mean()), 1) if len(values) else None,
            **{f"p{q}": float(np.percentile(values, q)) if len(values) else None for q in (50, 90, 99)},
            "max": int(values.max()) if len(values) else None,
        }
    if max_length is not None:
        cut = lengths.loc[lengths["longest"] > max_length, "pair_id"].astype(str).tolist()
        summary["truncated"] = {"count": len(cut), "share": round(len(cut) / max(1, len(lengths)), 4), "ids": cut}
    return summary


def _over_length(lengths: pd.DataFrame, max_length: int | None) -> np.ndarray:
    """Pairs whose prompt alone fills ``max_length``: no response token would be trained or scored."""
    if max_length is None:
        return np.zeros(len(lengths), dtype=bool)
    return (lengths["prompt"] >= max_length).to_numpy()


def sample_train(train: pd.DataFrame, size: int | None, seed: int, tokenizer=None, max_length: int | None = None):
    """The train pairs to keep and their token lengths: ``(train, lengths, over_length_ids)``.

    Pairs are visited in an order shuffled with ``seed`` until ``size`` (None: all) fit
    ``max_length``; kept pairs stay in their original order. Over-length pairs met on the way are
    dropped and returned by id. Without a tokenizer, ``lengths`` is None and nothing is over-length.
    """
    if size is None or len(train) <= size:
        order = np.arange(len(train))
    else:
        order = np.random.default_rng(seed).permutation(len(train))
    if tokenizer is None:
        keep = np.sort(order[:size] if size is not None else order)
        return train.iloc[keep].reset_index(drop=True), None, []
    kept, over, lengths = [], [], []
    chunk = max(64, (size or len(train)) // 8)
    for start in range(0, len(order), chunk):
        index = order[start : start + chunk]
        found = token_lengths(tokenizer, train.iloc[index])
        too_long = _over_length(found, max_length)
        over += found.loc[too_long, "pair_id"].tolist()
        kept += index[~too_long].tolist()
        lengths.append(found[~too_long])
        if size is not None and len(kept) >= size:
            break
    kept = kept[:size] if size is not None else kept
    lengths = pd.concat(lengths, ignore_index=True).iloc[: len(kept)]
    position = np.argsort(kept, kind="stable")
    return (
        train.iloc[np.array(kept, dtype=int)[position]].reset_index(drop=True),
        lengths.iloc[position].reset_index(drop=True),
        over,
    )


def split_seed(lab_seed: int, setting: str) -> int:
    """The seed of every objective's held-out prompts in ``setting`` (one per setting: shared prompts
    are held out together)."""
    return lab.stable_seed(lab_seed, setting, "split")


def sibling_cutoff(siblings: dict[str, dict], lab_seed: int, setting: str) -> float | None:
    """The largest eval cutoff (:func:`eval_cutoff`) of the setting's other objectives ``siblings``
    (name → spec); None when there are none. Train splits start after it, so no prompt held out
    for any objective of a setting is trained on in that setting."""
    cutoffs = []
    for name, spec in siblings.items():
        spec = with_defaults(spec)
        kept, _ = validate_pairs(load_objective(spec, lab_seed, setting, name)[0])
        cutoffs.append(eval_cutoff(kept, spec["eval_size"], split_seed(lab_seed, setting)))
    return max(cutoffs) if cutoffs else None


def prepare(
    spec: dict,
    out_dir: str | Path,
    lab_seed: int,
    setting: str,
    objective: str,
    tokenizer=None,
    max_length: int | None = None,
    siblings: dict[str, dict] | None = None,
) -> dict:
    """Load, validate and split one objective into ``out_dir``; returns the data report.

    The report counts ``rows_read`` (the dataset's rows), ``pairs_formed`` (pairs built from them;
    rows the loader could not pair are in ``dropped`` under the dataset's reasons), ``rows_kept``
    (pairs left after every drop), and ``train_pairs`` + ``eval_pairs`` + ``unused_pairs`` (kept
    pairs beyond ``train_size``; over-length checks stop once ``train_size`` pairs fit) = ``rows_kept``.

    With a ``tokenizer`` (the base model's) and ``max_length`` (training's), pairs whose prompt alone
    fills ``max_length`` are dropped as ``over_length`` and the report gives each split's token
    lengths and truncated pairs (:func:`length_summary`). ``siblings`` (the setting's other
    objectives, name → spec) keep their eval prompts out of this train split
    (:func:`sibling_cutoff`); pairs left out for that are counted as ``held_out_for_siblings``.
    """
    out_dir = Path(out_dir)
    spec = with_defaults(spec)
    frame, loaded = load_objective(spec, lab_seed, setting, objective)
    kept, report = validate_pairs(frame)
    if kept.empty:
        raise DataError(f"objective {setting}/{objective}: no usable pairs left (report: {json.dumps(report)})")
    others = sibling_cutoff(siblings or {}, lab_seed, setting)
    train, evaluation = split_by_prompt(kept, spec["eval_size"], split_seed(lab_seed, setting), train_after=others)
    held_back = len(kept) - len(train) - len(evaluation)
    train, train_lengths, over = sample_train(
        train, spec.get("train_size"), lab.stable_seed(lab_seed, setting, objective, "sample"), tokenizer, max_length
    )
    lengths = None
    if tokenizer is not None:
        eval_lengths = token_lengths(tokenizer, evaluation)
        too_long = _over_length(eval_lengths, max_length)
        over += eval_lengths.loc[too_long, "pair_id"].tolist()
        evaluation, eval_lengths = evaluation[~too_long].reset_index(drop=True), eval_lengths[~too_long]
        lengths = {
            "max_length": max_length,
            "train": length_summary(train_lengths, max_length),
            "eval": length_summary(eval_lengths, max_length),
        }
    if train.empty or evaluation.empty:
        raise DataError(
            f"objective {setting}/{objective}: {len(train)} train and {len(evaluation)} eval pairs "
            f"left after dropping {len(over)} whose prompt fills max_length={max_length}"
        )
    options = {"spec": spec, "lab_seed": lab_seed, "setting": setting, "objective": objective, "max_length": max_length}
    record = provenance.provenance("prepare_data", options)
    tables.write_table(train, out_dir / "train.parquet", tables.PAIRS, record)
    tables.write_table(evaluation, out_dir / "eval.parquet", tables.PAIRS, record)
    dropped = {reason: {"count": 0, "ids": []} for reason in [*loaded["dropped"], *report["dropped"], "over_length"]}
    for reason, entry in [*loaded["dropped"].items(), *report["dropped"].items(), ("over_length", {"ids": over})]:
        dropped[reason]["ids"] += entry["ids"]  # loaders and validation share reasons such as "duplicate"
        dropped[reason]["count"] = len(dropped[reason]["ids"])
    report = {
        "setting": setting,
        "objective": objective,
        "source": {k: v for k, v in spec.items() if k not in ("train_size", "eval_size")},
        "rows_read": loaded["rows_read"],
        "pairs_formed": report["rows_in"],
        "rows_kept": report["rows_kept"] - len(over),
        "dropped": dropped,
        "train_pairs": len(train),
        "eval_pairs": len(evaluation),
        "held_out_for_siblings": held_back,  # eval prompts of another objective of the setting
        "unused_pairs": report["rows_kept"] - len(over) - len(train) - len(evaluation) - held_back,  # > train_size
        "tokens": lengths,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return report


def main(argv=None) -> None:
    """CLI: prepare one objective (``prepare_data`` rule)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--spec", required=True, help="JSON of the objective's config")
    parser.add_argument("--lab-seed", type=int, default=0)
    parser.add_argument("--setting", required=True)
    parser.add_argument("--objective", required=True)
    parser.add_argument("--tokenizer", help="base model id or directory: token lengths and over-length drops")
    parser.add_argument("--max-length", type=int, help="training's max_length (prompt + response tokens)")
    parser.add_argument("--siblings", default="{}", help="JSON: the setting's other objectives, name -> spec")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tokenizer = None
    if args.tokenizer:
        from seqpref.base_model import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    report = prepare(
        json.loads(args.spec),
        args.out_dir,
        args.lab_seed,
        args.setting,
        args.objective,
        tokenizer,
        args.max_length,
        json.loads(args.siblings),
    )
    dropped = {k: v["count"] for k, v in report["dropped"].items() if v["count"]}
    log.info(
        "%s/%s: %d rows read, %d pairs formed, %d kept (dropped: %s); %d train, %d eval",
        args.setting,
        args.objective,
        report["rows_read"],
        report["pairs_formed"],
        report["rows_kept"],
        dropped or "none",
        report["train_pairs"],
        report["eval_pairs"],
    )
    for split in ("train", "eval"):
        cut = ((report["tokens"] or {}).get(split) or {}).get("truncated")
        if cut and cut["count"]:
            log.warning(
                "%s/%s: %d of %d %s pairs exceed max_length=%d and are truncated (ids in report.json)",
                args.setting,
                args.objective,
                cut["count"],
                report[f"{split}_pairs"],
                split,
                args.max_length,
            )


if __name__ == "__main__":
    main()
