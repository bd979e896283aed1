"""Public preference datasets, normalised to prompt / chosen / rejected pairs with stable ids.

Each ``normalise_*`` function takes the dataset's rows as a pandas frame with **the dataset's own
columns** and returns ``(pairs, dropped)``: ``pairs`` has ``pair_id``, ``prompt`` (a string, or a
list of ``{"role", "content"}`` messages for a multi-turn conversation), ``chosen``, ``rejected``
(response strings) and ``source`` (JSON of the fields kept for analysis: ratings, safety labels,
models); ``dropped`` maps a reason to the dropped rows' ids, so nothing is dropped silently.

``pair_id`` is ``<prefix>-<first 12 hex digits of sha1(prompt, chosen, rejected)>``: stable across
reorderings and reloads of the same revision, and equal for duplicated pairs, which are dropped as
``duplicate`` (the first one is kept). Ids of rows dropped before a pair exists are ``row<index>``.

Readers: :func:`read_rows` reads a dataset by id with ``datasets.load_dataset`` (optionally at a
pinned ``revision``) or a local Parquet / JSONL (plain or ``.jsonl.gz``) / JSON (an array or JSON
lines) / CSV file, into a frame of its rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
ULTRAFEEDBACK_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
PANDALM_ANNOTATORS = ("annotator1", "annotator2", "annotator3")
PANDALM_TIE = 0  # an annotator's label: 0 = tie, 1 = response1 better, 2 = response2 better
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}  # sharegpt ``from`` → role
ROW_FILE_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json", ".csv")
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_HH_LAST_ASSISTANT = "\n\nAssistant:"


class DataError(ValueError):
    """A dataset that cannot be used: the message names the file and what is wrong."""


def read_jsonl(path: str | Path) -> pd.DataFrame:
    """A JSON-lines file as a frame, one row per non-blank line; a line that is not a JSON object
    raises :class:`DataError` naming the file and the line number (pandas' reader names neither)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}, line {number}: not valid JSON ({error.msg}, column {error.colno})") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}, line {number}: expected a JSON object with prompt, chosen, rejected; "
                    f"got {type(row).__name__}"
                )
            rows.append(row)
    return pd.DataFrame(rows)


def read_json(path: str | Path) -> pd.DataFrame:
    """A ``.json`` file as a frame: a JSON array of objects (one row each), or else JSON lines
    (:func:`read_jsonl`). A malformed array raises :class:`DataError` with its line and column, an
    element that is not an object with its index."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.lstrip().startswith("["):
        return read_jsonl(path)
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}, line {error.lineno}: not valid JSON ({error.msg}, column {error.colno}); "
            "expected a JSON array of objects or one object per line"
        ) from None
    bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None) if isinstance(rows, list) else 0
    if bad is not None:
        raise DataError(f"{path}: element {bad} of the array is not a JSON object with prompt, chosen, rejected")
    return pd.DataFrame(rows)


def pair_id(prefix: str, prompt, chosen: str, rejected: str) -> str:
    """Content id of a pair: ``prefix-`` + 12 hex digits of sha1 over the JSON of (prompt, chosen, rejected)."""
    digest = hashlib.sha1(json.dumps([prompt, chosen, rejected], ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:12]}"


class _Collector:
    """Accumulates kept pairs and dropped ids by reason; drops content duplicates."""

    def __init__(self, prefix: str, reasons: tuple[str, ...]):
        self.prefix = prefix
        self.rows: list[dict] = []
        self.seen: set[str] = set()
        self.dropped: dict[str, list[str]] = {reason: [] for reason in (*reasons, "empty", "identical", "duplicate")}

    def drop(self, reason: str, identifier: str) -> None:
        self.dropped[reason].append(identifier)

    def add(self, row_index: int, prompt, chosen, rejected, source: dict) -> None:
        if _empty(prompt) or _empty(chosen) or _empty(rejected):
            self.drop("empty", f"row{row_index}")
            return
        if chosen == rejected:
            self.drop("identical", f"row{row_index}")
            return
        identifier = pair_id(self.prefix, prompt, chosen, rejected)
        if identifier in self.seen:
            self.drop("duplicate", identifier)
            return
        self.seen.add(identifier)
        self.rows.append(
            {
                "pair_id": identifier,
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "source": json.dumps(source, sort_keys=True, ensure_ascii=False, default=_plain),
            }
        )

    def result(self) -> tuple[pd.DataFrame, dict[str, list[str]]]:
        return pd.DataFrame(self.rows, columns=["pair_id", "prompt", "chosen", "rejected", "source"]), self.dropped


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _items(value) -> list:
    """A list-valued field as a list: JSONL gives a list, Parquet (``pd.read_parquet``,
    ``Dataset.to_pandas``) a numpy array, a missing one None or NaN (→ [])."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return list(value)


def _empty(value) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, np.ndarray)):
        messages = _items(value)
        return not messages or any(_empty(m.get("content")) for m in messages if isinstance(m, dict))
    return False


def _rating(value) -> float | None:
    """A rating as a float; None for missing, NaN or non-numeric (UltraFeedback's ``"N/A"``)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


# ---- Anthropic/hh-rlhf ------------------------------------------------------------------------


def split_transcript(text: str) -> tuple[list[dict], str] | None:
    """Split an hh-rlhf transcript at its last assistant turn: ``(prompt messages, response)``.

    ``"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: d"`` gives the messages user a,
    assistant b, user c and the response ``d``. None when there is no assistant turn.
    """
    cut = text.rfind(_HH_LAST_ASSISTANT)
    if cut < 0:
        return None
    response = text[cut + len(_HH_LAST_ASSISTANT) :].strip()
    parts = _HH_TURN.split(text[:cut])
    messages = []
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    return messages, response


def normalise_hh_rlhf(rows: pd.DataFrame, prefix: str = "hh") -> tuple[pd.DataFrame, dict]:
    """Pairs of ``Anthropic/hh-rlhf`` (any subset, e.g. ``helpful-base``, ``harmless-base``).

    Each row's ``chosen`` and ``rejected`` transcripts are split at their last assistant turn; the
    prompt is the conversation before it (a message list, multi-turn kept). Dropped: ``no_assistant``
    (a transcript without an assistant turn), ``prompt_mismatch`` (chosen and rejected differ before
    their last assistant turn), and empty, identical and duplicate pairs.
    """
    out = _Collector(prefix, ("no_assistant", "prompt_mismatch"))
    for i, (chosen_text, rejected_text) in enumerate(zip(rows["chosen"], rows["rejected"])):
        chosen, rejected = split_transcript(str(chosen_text)), split_transcript(str(rejected_text))
        if chosen is None or rejected is None:
            out.drop("no_assistant", f"row{i}")
            continue
        if chosen[0] != rejected[0]:
            out.drop("prompt_mismatch", f"row{i}")
            continue
        out.add(i, chosen[0], chosen[1], rejected[1], {"row": i, "turns": len(chosen[0])})
    return out.result()


# ---- nvidia/HelpSteer2 -------------------------------------------------------------------------


def normalise_helpsteer2(
    rows: pd.DataFrame, attribute: str = "helpfulness", min_gap: float = 0.0, prefix: str = "helpsteer2"
) -> tuple[pd.DataFrame, dict]:
    """Pairs of ``nvidia/HelpSteer2`` preferred by one rated ``attribute``.

    Rows with the same prompt are its responses (two per prompt in the dataset); the response rated
    higher on ``attribute`` is chosen (with more than two, the best against the worst). Dropped:
    ``unpaired`` (a prompt with one response), ``missing_rating``, ``tie`` (equal ratings), and
    ``small_gap`` (a rating gap below ``min_gap``), and empty (a null prompt included), identical and
    duplicate pairs.
    """
    if attribute not in HELPSTEER2_ATTRIBUTES:
        raise ValueError(f"helpsteer2 attribute must be one of {HELPSTEER2_ATTRIBUTES}, got {attribute!r}")
    out = _Collector(prefix, ("unpaired", "missing_rating", "tie", "small_gap"))
    frame = rows.reset_index(drop=True)
    for index in frame.index[frame["prompt"].isna()]:  # groupby would drop them without a word
        out.drop("empty", f"row{index}")
    for _, group in frame.groupby("prompt", sort=False):
        first = f"row{group.index[0]}"
        if len(group) < 2:
            out.drop("unpaired", first)
            continue
        ratings = [_rating(v) for v in group[attribute]]
        if any(r is None for r in ratings):
            out.drop("missing_rating", first)
            continue
        best, worst = int(np.argmax(ratings)), int(np.argmin(ratings))
        gap = ratings[best] - ratings[worst]
        if gap == 0:
            out.drop("tie", first)
            continue
        if gap < min_gap:
            out.drop("small_gap", first)
            continue
        chosen, rejected = group.iloc[best], group.iloc[worst]
        source = {
            "attribute": attribute,
            "gap": gap,
            "chosen_ratings": {a: _rating(chosen.get(a)) for a in HELPSTEER2_ATTRIBUTES},
            "rejected_ratings": {a: _rating(rejected.get(a)) for a in HELPSTEER2_ATTRIBUTES},
        }
        out.add(int(group.index[0]), chosen["prompt"], chosen["response"], rejected["response"], source)
    return out.result()


# ---- PKU-Alignment/PKU-SafeRLHF ----------------------------------------------------------------


def normalise_pku_saferlhf(
    rows: pd.DataFrame, preference: str = "safer", safety_differs: bool = False, prefix: str = "pku"
) -> tuple[pd.DataFrame, dict]:
    """Pairs of ``PKU-Alignment/PKU-SafeRLHF``: ``response_0`` vs ``response_1`` preferred by
    ``safer_response_id`` (``preference="safer"``) or ``better_response_id`` (``"better"``, helpfulness).

    With ``safety_differs``, only pairs whose ``is_response_{0,1}_safe`` labels differ are kept
    (dropped as ``same_safety``). Also dropped: ``missing_label`` (no valid preferred id), and empty,
    identical and duplicate pairs. The safety labels and severity levels go into ``source``.
    """
    if preference not in ("safer", "better"):
        raise ValueError(f"pku_saferlhf preference must be 'safer' or 'better', got {preference!r}")
    out = _Collector(prefix, ("missing_label", "same_safety"))
    column = f"{preference}_response_id"
    for i, row in enumerate(rows.to_dict("records")):
        preferred = _rating(row.get(column))
        if preferred not in (0.0, 1.0):
            out.drop("missing_label", f"row{i}")
            continue
        safe = (row.get("is_response_0_safe"), row.get("is_response_1_safe"))
        if safety_differs and safe[0] == safe[1]:
            out.drop("same_safety", f"row{i}")
            continue
        first = int(preferred)
        source = {
            "preference": preference,
            "chosen_safe": safe[first],
            "rejected_safe": safe[1 - first],
            "chosen_severity": row.get(f"response_{first}_severity_level"),
            "rejected_severity": row.get(f"response_{1 - first}_severity_level"),
        }
        out.add(i, row["prompt"], row[f"response_{first}"], row[f"response_{1 - first}"], source)
    return out.result()


# ---- openbmb/UltraFeedback ---------------------------------------------------------------------


def normalise_ultrafeedback(
    rows: pd.DataFrame,
    aspect: str = "helpfulness",
    pairing: str = "best_vs_worst",
    seed: int = 0,
    prefix: str = "ultrafeedback",
) -> tuple[pd.DataFrame, dict]:
    """Pairs of ``openbmb/UltraFeedback`` by one fine-grained ``aspect`` rating.

    Of each instruction's ``completions`` that carry a numeric rating of ``aspect`` (``"N/A"`` is
    missing), ``best_vs_worst`` pairs the highest with the lowest rated; ``random`` pairs two distinct
    ones drawn with ``seed`` (the higher rated is chosen). Dropped: ``too_few_rated`` (fewer than two
    rated completions), ``tie`` (equal ratings), and empty, identical and duplicate pairs.
    """
    if aspect not in ULTRAFEEDBACK_ASPECTS:
        raise ValueError(f"ultrafeedback aspect must be one of {ULTRAFEEDBACK_ASPECTS}, got {aspect!r}")
    if pairing not in ("best_vs_worst", "random"):
        raise ValueError(f"ultrafeedback pairing must be 'best_vs_worst' or 'random', got {pairing!r}")
    rng = np.random.default_rng(seed)
    out = _Collector(prefix, ("too_few_rated", "tie"))
    for i, row in enumerate(rows.to_dict("records")):
        rated = []
        for completion in _items(row.get("completions")):
            annotation = (completion.get("annotations") or {}).get(aspect) or {}
            rating = _rating(annotation.get("Rating"))
            if rating is not None:
                rated.append((rating, completion))
        if len(rated) < 2:
            out.drop("too_few_rated", f"row{i}")
            continue
        if pairing == "best_vs_worst":
            ratings = [r for r, _ in rated]
            a, b = int(np.argmax(ratings)), int(np.argmin(ratings))
        else:
            a, b = (int(k) for k in rng.choice(len(rated), size=2, replace=False))
        if rated[a][0] == rated[b][0]:
            out.drop("tie", f"row{i}")
            continue
        (high, chosen), (low, rejected) = sorted([rated[a], rated[b]], key=lambda item: -item[0])
        source = {
            "aspect": aspect,
            "pairing": pairing,
            "chosen_rating": high,
            "rejected_rating": low,
            "chosen_model": chosen.get("model"),
            "rejected_model": rejected.get("model"),
            "dataset_source": row.get("source"),
        }
        out.add(i, row["instruction"], chosen.get("response"), rejected.get("response"), source)
    return out.result()


# ---- WeOpenML/PandaLM (data/testset-v1.json) ---------------------------------------------------


def pandalm_prompt(instruction: str, input_text) -> str:
    """A PandaLM prompt: ``instruction``, then a blank line and ``input_text`` when that is non-empty
    (``"Rewrite ...\\n\\nIf you have any questions ..."``); ``instruction`` alone otherwise."""
    return instruction if _empty(input_text) else f"{instruction}\n\n{input_text}"


def majority_label(votes) -> int | None:
    """The label (0, 1 or 2) given by a strict majority of ``votes``; None when no label has one.

    A vote that is not 0, 1 or 2 (missing, NaN, text) counts as no vote, so it cannot help a label
    to a majority but still counts in the total.
    """
    labels = [int(v) for v in map(_rating, votes) if v in (0.0, 1.0, 2.0)]
    best = max(set(labels), key=labels.count, default=None)
    return best if best is not None and 2 * labels.count(best) > len(votes) else None


def normalise_pandalm(rows: pd.DataFrame, prefix: str = "pandalm") -> tuple[pd.DataFrame, dict]:
    """Pairs of PandaLM's human-annotated test set (``data/testset-v1.json`` of ``WeOpenML/PandaLM``).

    Each row holds ``instruction``, ``input``, ``response1``, ``response2`` and three annotators'
    labels ``annotator1``..``annotator3`` (0 = tie, 1 or 2 = that response is better). The majority
    label (:func:`majority_label`) picks the chosen response; the prompt is :func:`pandalm_prompt`
    (the instruction, plus a blank line and the input when the input is non-empty). Dropped:
    ``tie`` (the majority label is 0), ``no_majority`` (no label has two of the three votes),
    ``not_text`` (a response that is not a string: the file has six JSON ``true`` values), and empty
    (e.g. an empty response), identical and duplicate pairs. ``source`` keeps ``idx``, ``cmp_key``
    (the two models, response1's first), ``motivation_app``, the votes and the chosen response (1, 2).
    """
    out = _Collector(prefix, ("tie", "no_majority", "not_text"))
    for i, row in enumerate(rows.to_dict("records")):
        votes = [row.get(a) for a in PANDALM_ANNOTATORS]
        label = majority_label(votes)
        if label is None:
            out.drop("no_majority", f"row{i}")
            continue
        if label == PANDALM_TIE:
            out.drop("tie", f"row{i}")
            continue
        responses = (row.get("response1"), row.get("response2"))
        if any(not (isinstance(r, str) or _empty(r)) for r in responses):  # a missing one is "empty"
            out.drop("not_text", f"row{i}")
            continue
        source = {
            "idx": row.get("idx"),
            "cmp_key": row.get("cmp_key"),
            "motivation_app": row.get("motivation_app"),
            "votes": votes,
            "chosen_response": label,
        }
        out.add(
            i, pandalm_prompt(row["instruction"], row.get("input")), responses[label - 1], responses[2 - label], source
        )
    return out.result()


# ---- hiyouga/LLaMA-Factory DPO data in the sharegpt format -------------------------------------


def sharegpt_messages(turns, system=None) -> list[dict] | None:
    """``{"from", "value"}`` turns as ``{"role", "content"}`` messages (:data:`SHAREGPT_ROLES`:
    system, human → user, gpt → assistant), after a system message of ``system`` when it is
    non-empty; None when a turn's ``from`` is another role (e.g. ``function_call``, ``observation``)."""
    messages = [] if _empty(system) else [{"role": "system", "content": system}]
    for turn in _items(turns):
        role = SHAREGPT_ROLES.get(turn.get("from"))
        if role is None:
            return None
        messages.append({"role": role, "content": turn.get("value")})
    return messages


def normalise_llamafactory_dpo(rows: pd.DataFrame, prefix: str = "llamafactory") -> tuple[pd.DataFrame, dict]:
    """Pairs of a LLaMA-Factory preference file in the sharegpt format (e.g. ``data/dpo_en_demo.json``).

    Each row holds ``conversations`` (``{"from", "value"}`` turns ending with a human turn; a
    ``system`` turn first, or an optional ``system`` column, is the system message) and ``chosen`` /
    ``rejected`` (one ``{"from": "gpt", "value"}`` turn each). The prompt is the conversation as a
    message list (:func:`sharegpt_messages`, every turn kept in order, a single turn too); chosen and
    rejected are the two values. Dropped: ``unsupported_role`` (a turn from another role, or a chosen
    or rejected turn not from ``gpt``), ``not_ending_with_user`` (the conversation does not end with a
    human turn), and empty, identical and duplicate pairs. ``source`` keeps the row and the turn count.
    """
    out = _Collector(prefix, ("unsupported_role", "not_ending_with_user"))
    for i, row in enumerate(rows.to_dict("records")):
        messages = sharegpt_messages(row.get("conversations"), row.get("system"))
        chosen, rejected = (row.get(k) if isinstance(row.get(k), dict) else {} for k in ("chosen", "rejected"))
        if messages is None or chosen.get("from") != "gpt" or rejected.get("from") != "gpt":
            out.drop("unsupported_role", f"row{i}")
            continue
        if not messages or messages[-1]["role"] != "user":
            out.drop("not_ending_with_user", f"row{i}")
            continue
        out.add(i, messages, chosen.get("value"), rejected.get("value"), {"row": i, "turns": len(messages)})
    return out.result()


# ---- reading ------------------------------------------------------------------------------------


def row_file_suffix(path: str | Path) -> str:
    """The file type of ``path`` as :func:`read_rows` sees it: its last suffix, or its last two when
    it ends in ``.gz`` (``rows.jsonl.gz`` → ``.jsonl.gz``); a dataset id gives ``""``."""
    path = Path(path)
    return "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix


def read_rows(
    path_or_id: str,
    split: str = "train",
    revision: str | None = None,
    subset: str | None = None,
    data_dir: str | None = None,
) -> pd.DataFrame:
    """The rows of a dataset as a frame: a local file (:data:`ROW_FILE_SUFFIXES`: ``.parquet``,
    ``.jsonl``, gzipped ``.jsonl.gz``, ``.json`` holding a JSON array of objects or JSON lines
    (:func:`read_json`), ``.csv``), or a dataset id read with
    ``datasets.load_dataset(id, subset, data_dir=…, split=…, revision=…)`` (pin ``revision`` to a
    commit for reproducible pairs)."""
    path = Path(path_or_id)
    suffix = row_file_suffix(path)
    if suffix in ROW_FILE_SUFFIXES:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False)
        if suffix == ".json":
            return read_json(path)
        return pd.read_json(path, lines=True, dtype=False)  # gzip inferred from the name
    from datasets import load_dataset

    return load_dataset(path_or_id, subset, data_dir=data_dir, split=split, revision=revision).to_pandas()
