"""Build the four real-English preference files from the hand-written ``qa.jsonl``.

Run from the repository root (paths are relative to this script's folder)::

    python resources/real_prefs/build.py

``qa.jsonl`` holds 200 items ``q001``..``q200``, each with a ``prompt`` (or, for a conversation,
``messages``: a list of ``{"role", "content"}`` turns ending with a user turn), a one-sentence
``short`` answer and a ``detailed`` answer that starts with exactly the ``short`` text. This script
writes, with columns ``pair_id``, ``prompt``, ``chosen``, ``rejected`` (``prompt`` is the messages
list for a conversation item, otherwise the prompt string), rows in id order:

- ``concise_vs_detailed/concise.jsonl``   items 1-150:   chosen = short,    rejected = detailed
- ``concise_vs_detailed/detailed.jsonl``  items 1-150:   chosen = detailed, rejected = short
- ``concise_vs_spelling/concise.jsonl``   items 1-100:   chosen = short,    rejected = detailed
- ``concise_vs_spelling/spelling.jsonl``  items 101-200: chosen = detailed, rejected = detailed with typos

``pair_id`` is ``f"{objective}-{id}"``. Typos (:func:`inject_typos`) are seeded per item with
``random.Random(id)``, so the output is byte-identical on every run. Standard library only.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "qa.jsonl"
TYPO_EVERY = 6  # about one eligible word in six gets a typo
MIN_TYPO_LEN = 4  # eligible words: purely alphabetic, at least this many letters
_WORD = re.compile(r"^([^A-Za-z]*)([A-Za-z]+)([^A-Za-z]*)$")  # punctuation, letters, punctuation


def read_items(path: Path = SOURCE) -> list[dict]:
    """The QA items in id order, checked: unique ids and prompts, ``detailed`` starts with ``short``."""
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [item["id"] for item in items]
    assert ids == sorted(ids), "qa.jsonl must be in id order"
    assert len(set(ids)) == len(ids), "duplicate ids in qa.jsonl"
    assert len({item["prompt"] for item in items}) == len(items), "duplicate prompts in qa.jsonl"
    for item in items:
        assert item["detailed"].startswith(item["short"] + " "), f"{item['id']}: detailed must start with short"
        messages = item["messages"]
        if messages is not None:
            assert messages[-1]["role"] == "user", f"{item['id']}: a conversation must end with a user turn"
            assert messages[-1]["content"] == item["prompt"], f"{item['id']}: prompt must be the last user turn"
    return items


def prompt_of(item: dict):
    """The pair's prompt: the messages list for a conversation item, else the prompt string."""
    return item["messages"] if item["messages"] is not None else item["prompt"]


def _typo(word: str, rng: random.Random) -> str:
    """One typo inside ``word`` (first and last letters kept): swap two adjacent inner letters,
    drop one inner letter, or double one inner letter; only edits that change the word are drawn."""
    inner = range(1, len(word) - 1)
    edits = [("swap", i) for i in inner if i + 1 < len(word) - 1 and word[i] != word[i + 1]]
    edits += [("drop", i) for i in inner] + [("double", i) for i in inner]
    op, i = rng.choice(edits)
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def inject_typos(text: str, seed: str) -> str:
    """``text`` with typos in about one in :data:`TYPO_EVERY` eligible words (at least one).

    Eligible: a whitespace-separated token that is letters only (optionally wrapped in punctuation,
    e.g. ``'word',``) with at least :data:`MIN_TYPO_LEN` letters. Whitespace is kept as is, so the
    word count (and every sentence's word count) is unchanged. Seeded with ``random.Random(seed)``.
    """
    rng = random.Random(seed)
    tokens = re.split(r"(\s+)", text)
    eligible = [k for k, token in enumerate(tokens) if (m := _WORD.match(token)) and len(m.group(2)) >= MIN_TYPO_LEN]
    count = max(1, round(len(eligible) / TYPO_EVERY))
    for k in sorted(rng.sample(eligible, count)):
        lead, word, trail = _WORD.match(tokens[k]).groups()
        tokens[k] = lead + _typo(word, rng) + trail
    return "".join(tokens)


def pairs(items: list[dict], objective: str, chosen_key: str) -> list[dict]:
    """Rows preferring ``chosen_key`` (``short`` or ``detailed``) over the other answer."""
    rejected_key = "detailed" if chosen_key == "short" else "short"
    return [
        {
            "pair_id": f"{objective}-{it['id']}",
            "prompt": prompt_of(it),
            "chosen": it[chosen_key],
            "rejected": it[rejected_key],
        }
        for it in items
    ]


def spelling_pairs(items: list[dict]) -> list[dict]:
    """Rows preferring the detailed answer over the same text with typos (equal word counts)."""
    rows = []
    for it in items:
        rejected = inject_typos(it["detailed"], seed=f"{it['id']}")
        assert rejected != it["detailed"] and len(rejected.split()) == len(it["detailed"].split()), it["id"]
        rows.append(
            {"pair_id": f"spelling-{it['id']}", "prompt": prompt_of(it), "chosen": it["detailed"], "rejected": rejected}
        )
    return rows


def write(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as JSONL (UTF-8, ``\\n`` line ends), checking chosen != rejected."""
    assert all(row["chosen"] != row["rejected"] for row in rows), path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    conversations = sum(isinstance(row["prompt"], list) for row in rows)
    print(f"{path.relative_to(HERE)}: {len(rows)} pairs ({conversations} conversational)")


def main() -> None:
    items = read_items()
    assert len(items) == 200, f"expected 200 items, got {len(items)}"
    first150, first100, last100 = items[:150], items[:100], items[100:]
    write(HERE / "concise_vs_detailed" / "concise.jsonl", pairs(first150, "concise", "short"))
    write(HERE / "concise_vs_detailed" / "detailed.jsonl", pairs(first150, "detailed", "detailed"))
    write(HERE / "concise_vs_spelling" / "concise.jsonl", pairs(first100, "concise", "short"))
    write(HERE / "concise_vs_spelling" / "spelling.jsonl", spelling_pairs(last100))


if __name__ == "__main__":
    main()
