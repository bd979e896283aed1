"""The pair metrics, defined once.

Every Parquet column, aggregate, figure and test uses these functions, so a metric is never written
twice. All inputs are array-likes of equal shape ``(n_pairs,)``; log-probabilities are summed over the
response tokens (the EOS appended at training included), in nats.

Notation (docs/design.md, "Metrics"): for a pair (x, y_w, y_l) and a model θ,
Δ_θ(y) = logp_θ(y|x) − logp_base(y|x).
"""

from __future__ import annotations

import numpy as np


def reward_margin(logp_chosen, logp_rejected, ref_logp_chosen, ref_logp_rejected) -> np.ndarray:
    """Implicit-reward margin Δ_θ(y_w) − Δ_θ(y_l) against the base model.

    Takes policy and base (reference) log-probs of chosen and rejected, each ``(n,)`` in nats;
    returns ``(n,)`` in nats. It is exactly 0 when the policy is the base model.
    """
    return (np.asarray(logp_chosen) - np.asarray(ref_logp_chosen)) - (
        np.asarray(logp_rejected) - np.asarray(ref_logp_rejected)
    )


def dpo_margin(reward_margin_nats, beta: float) -> np.ndarray:
    """DPO-relativistic margin β·reward_margin: the argument of the DPO sigmoid. ``(n,)`` → ``(n,)``
    (a torch tensor stays a tensor, with its graph)."""
    if hasattr(reward_margin_nats, "detach"):
        return beta * reward_margin_nats
    return beta * np.asarray(reward_margin_nats)


def dpo_loss(dpo_margin_values):
    """The DPO loss −log σ(β·reward_margin) (Rafailov et al., 2023, eq. 7) of each pair, from its
    ``dpo_margin`` (= β·reward_margin, :func:`dpo_margin`): ``(n,)`` → ``(n,)`` in nats. Written as
    log(1 + e^−z), which is exact for large |z|. A torch tensor gives a tensor (with its graph)."""
    if hasattr(dpo_margin_values, "detach"):  # a torch tensor: softplus(−z) = log(1 + e^−z)
        import torch.nn.functional as F

        return F.softplus(-dpo_margin_values)
    return np.logaddexp(0.0, -np.asarray(dpo_margin_values, dtype=np.float64))


def dpo_eval_loss(scores, objective: str) -> float:
    """Mean DPO loss (nats) of ``objective``'s scored pairs in a pair-score frame (``tables.PAIR_SCORES``,
    whose ``dpo_margin`` carries the β it was scored with): MAXRIGHT's f*."""
    margins = scores.loc[scores["objective"] == objective, "dpo_margin"].to_numpy(dtype=float)
    if len(margins) == 0:
        raise ValueError(f"the score file has no pairs of objective {objective!r}")
    return float(np.mean(dpo_loss(margins)))


def correct(reward_margin_nats) -> np.ndarray:
    """Per-pair score 1[reward_margin > 0] + ½·1[reward_margin = 0] as float ``(n,)``; its mean is ``rel_accuracy``.

    A tie counts ½: at stage 0 (the base model) every margin is exactly 0, so the base's
    rel_accuracy is 0.5, chance, and an objective whose margins merely jitter around 0 after a later
    stage shows a change near 0 instead of +0.5 (counting ties as wrong made that jitter read as
    "positive transfer").
    """
    margins = np.asarray(reward_margin_nats)
    return (margins > 0).astype(np.float64) + 0.5 * (margins == 0)


def rel_accuracy(reward_margin_nats) -> float:
    """Relative accuracy: share of pairs where the policy prefers y_w more than the base does, ties
    counting ½ (0..1; 0.5 at the base model)."""
    return float(np.mean(correct(reward_margin_nats)))


def ln_margin(logp_chosen, logp_rejected, n_tokens_chosen, n_tokens_rejected) -> np.ndarray:
    """Length-normalised policy margin logp(y_w)/|y_w| − logp(y_l)/|y_l| in nats per token, ``(n,)``.

    Reference-free: it is not 0 at the base model. Token counts must be ≥ 1.
    """
    n_w = np.asarray(n_tokens_chosen, dtype=np.float64)
    n_l = np.asarray(n_tokens_rejected, dtype=np.float64)
    if np.any(n_w < 1) or np.any(n_l < 1):
        raise ValueError("ln_margin needs at least one response token per side")
    return np.asarray(logp_chosen) / n_w - np.asarray(logp_rejected) / n_l


def pair_metrics(frame, beta: float):
    """Add the metric columns to a pair-score frame in place and return it.

    Takes a DataFrame with ``logp_chosen``, ``logp_rejected``, ``ref_logp_chosen``,
    ``ref_logp_rejected``, ``n_tokens_chosen`` and ``n_tokens_rejected``; adds ``reward_margin`` and
    ``dpo_margin`` (nats) and ``ln_margin`` (nats/token).
    """
    frame["reward_margin"] = reward_margin(
        frame["logp_chosen"], frame["logp_rejected"], frame["ref_logp_chosen"], frame["ref_logp_rejected"]
    )
    frame["dpo_margin"] = dpo_margin(frame["reward_margin"], beta)
    frame["ln_margin"] = ln_margin(
        frame["logp_chosen"], frame["logp_rejected"], frame["n_tokens_chosen"], frame["n_tokens_rejected"]
    )
    return frame
