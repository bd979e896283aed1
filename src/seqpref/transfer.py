"""Pair-level transfer of one objective within one run: backward/forward transfer and the quartile
decomposition (docs/design.md, "Metrics").

Every function takes the objective's ``(n_pairs, n_stages)`` metric matrix (stage 0 = base, the
same pairs in every column), or ``(n_seeds, n_pairs, n_stages)`` for several seeds of the same run,
and the stage that trained it, and returns plain rows for a table (seeds pooled).
"""

from __future__ import annotations

import numpy as np

from seqpref import stats


def backward_forward(values: np.ndarray, own_stage: int, confidence: float = 0.95) -> dict:
    """Backward and forward transfer of one objective, with seed-and-pair CIs
    (:func:`seqpref.stats.crossed_interval`; pairs only with one seed, as ``interval_covers`` says).

    ``final`` = metric(last stage), the run's end point;
    ``bwt`` = metric(last stage) − metric(own stage): what later stages did to it (0 when it is
    trained last); ``fwt`` = metric(own stage − 1) − metric(stage 0): what earlier stages did to it
    before it was trained (0 when it is trained first). Units are the metric's.
    """
    values = np.asarray(values, dtype=float)
    values = values[None] if values.ndim == 2 else values
    last = values.shape[-1] - 1
    if not 1 <= own_stage <= last:
        raise ValueError(f"own stage {own_stage} outside 1..{last}")
    row = {"own_stage": own_stage, "last_stage": last, "interval_covers": stats.covers(values.shape[0])}
    final = stats.crossed_interval(values[:, :, last], confidence)
    row.update({"final": final["mean"], "final_lo": final["lo"], "final_hi": final["hi"]})
    for name, (a, b) in {"bwt": (own_stage, last), "fwt": (0, own_stage - 1)}.items():
        ci = stats.crossed_interval(values[:, :, b] - values[:, :, a], confidence)
        row.update({name: ci["mean"], f"{name}_lo": ci["lo"], f"{name}_hi": ci["hi"]})
    return row


def quartile_of(own_margins: np.ndarray) -> np.ndarray:
    """Quartile (1 = lowest margin … 4 = highest) of each pair by its margin after its own stage.

    Ties are split by position so the quartiles have equal sizes (±1): shape ``(n_pairs,)``, int.
    """
    n = len(own_margins)
    if n < 4:
        raise ValueError(f"need at least 4 pairs for quartiles, got {n}")
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(own_margins, kind="stable")] = np.arange(n)
    return ranks * 4 // n + 1


#: how pairs are put into quartiles (the ``assignment`` column of the quartile table)
ASSIGNMENTS = ("own_margin", "other_seed")


def quartile_rows(
    values: np.ndarray, own_stage: int, confidence: float = 0.95, assignment: str = "own_margin"
) -> list[dict]:
    """Per quartile of the own-stage margin and per later stage k: the mean change since the own
    stage (with CI), the share of pairs whose margin fell, and the share whose sign flipped. With
    seeds, quartiles are assigned within each seed and the rows pool every seed's pairs.

    ``assignment`` says which measurement puts a pair in a quartile. ``own_margin``: the margin after
    the own stage in the same seed, the very number the change is measured from. Any seed-specific
    part of that margin (how well this run happened to fit the pair) then sorts pairs into the top
    quartile *and* is what later training undoes, so "forgetting concentrates in the best-learned
    quartile" can be regression to the mean. ``other_seed``: seed s's pairs are binned by the margins
    another seed (the next one, cyclically) reached on the same pairs after its own stage — a
    measurement of how learnable the pair is that shares none of seed s's training randomness (LoRA
    initialisation, batch order), so no seed-s noise can both select a pair and regress. The other
    seed measures learnability with a reliability below 1 (``binning_correlation``: the seeds'
    correlation of own-stage margins), which flattens a real pattern as well; so read the two together:
    a pattern that survives the other-seed binning (scaled by that correlation) is a property of the
    pairs, one that vanishes far beyond it is regression to the mean. We chose another seed over splitting a pair's tokens in
    two halves: the noise at issue is the run's, which two token halves of one run share. Needs ≥ 2
    seeds (``ValueError`` otherwise).

    A flip is a pair whose margin changed sign between the own stage and stage k (a margin of
    exactly 0 counts as its own sign, so moving from 0 to anything is a flip). A quartile's mean change
    pooled over seeds is a ratio of two ``(S, n)`` tables of the same pairs, Σ change·in-quartile /
    Σ in-quartile, so its interval is :func:`seqpref.stats.fieller_interval`'s (seeds and pairs; pairs
    only with one seed), given for the quartile as it was assigned.
    """
    values = np.asarray(values, dtype=float)
    stacked = values if values.ndim == 3 else values[None]  # (S, n, K)
    n_seeds, n_pairs, n_stages = stacked.shape
    later = list(range(own_stage + 1, n_stages))
    if not later:
        return []
    own_by_seed = stacked[:, :, own_stage]  # (S, n)
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}")
    if assignment == "other_seed" and n_seeds < 2:
        raise ValueError("quartiles assigned on another seed need at least 2 seeds")
    binned_by = own_by_seed if assignment == "own_margin" else np.roll(own_by_seed, -1, axis=0)  # seed s ← seed s+1
    # how well the binning measurement tracks the one the change starts from (1 for own_margin): below 1,
    # a real quartile pattern is flattened too, so diamonds flatter than bars are not RTM by themselves
    reliability = float(np.mean([np.corrcoef(own_by_seed[i], binned_by[i])[0, 1] for i in range(n_seeds)]))
    quartile_by_seed = np.stack([quartile_of(margins) for margins in binned_by])  # (S, n)
    masks = np.stack([quartile_by_seed == q for q in range(1, 5)], axis=2).astype(float)  # (S, n, 4)
    changes_by_seed = stacked[:, :, later] - own_by_seed[:, :, None]  # (S, n, L)
    numerators = (changes_by_seed[:, :, :, None] * masks[:, :, None, :]).reshape(n_seeds, n_pairs, -1)  # (S, n, L*4)
    # point estimates pool the pairs of every seed
    own, quartile, binned = own_by_seed.ravel(), quartile_by_seed.ravel(), binned_by.ravel()
    changes = changes_by_seed.reshape(n_seeds * n_pairs, len(later))
    pooled = stacked.reshape(n_seeds * n_pairs, n_stages)
    rows = []
    for i, stage in enumerate(later):
        flipped = np.sign(pooled[:, stage]) != np.sign(own)
        for q in range(1, 5):
            mask, column = quartile == q, i * 4 + q - 1
            ci = stats.fieller_interval(numerators[:, :, column], masks[:, :, q - 1], confidence)
            rows.append(
                {
                    "assignment": assignment,
                    "binning_correlation": reliability,
                    "own_stage": own_stage,
                    "stage": stage,
                    "quartile": q,
                    "n": int(mask.sum()),
                    "own_margin_min": float(binned[mask].min()),
                    "own_margin_max": float(binned[mask].max()),
                    "mean_change": float(changes[mask, i].mean()),
                    "mean_change_lo": ci["lo"],
                    "mean_change_hi": ci["hi"],
                    "share_fell": float((changes[mask, i] < 0).mean()),
                    "share_flipped": float(flipped[mask].mean()),
                }
            )
    return rows
