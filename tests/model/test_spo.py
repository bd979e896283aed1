"""SPO: the penalty's sign conditions, its gradient against finite differences, and a trained stage."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from seqpref import base_model, lab, logps, methods, tokenization, train
from seqpref.methods import spo
from seqpref.options import LoraOptions, TrainOptions


def test_penalty_is_zero_when_the_policy_is_already_ahead_and_positive_otherwise():
    policy = torch.tensor([-1.0, -2.0, -3.0])
    assert spo.spo_penalty(policy, torch.tensor([-1.5, -2.0, -3.5]), penalty=2.0).item() == 0.0
    behind = spo.spo_penalty(policy, torch.tensor([-0.5, -2.0, -3.0]), penalty=2.0)
    assert behind.item() == pytest.approx(2.0 * 0.5 / 3)


def _chosen_batch(tokenizer, pairs: pd.DataFrame):
    """Right-padded chosen sequences with the completion mask TRL's collator builds."""
    rows = [tokenization.tokenize_pair(tokenizer, r.prompt, r.chosen, r.rejected, None) for r in pairs.itertuples()]
    width = max(len(r.prompt_ids) + len(r.chosen_ids) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n, m = len(r.prompt_ids), len(r.chosen_ids)
        ids[i, : n + m] = torch.tensor(r.prompt_ids + r.chosen_ids)
        mask[i, : n + m] = 1
        completion[i, n : n + m] = 1
    return ids, mask, completion


@pytest.fixture(scope="module")
def lora_model(tiny_base):
    from peft import get_peft_model

    model, tokenizer = base_model.load_base(tiny_base)
    model = get_peft_model(model, LoraOptions(r=2, alpha=4).peft_config()).double()  # adapters too
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    pairs = lab.make_pairs(lab.LabObjective(prefer={"opener": "comply"}), 4, seed=7, id_prefix="s")
    return model, _chosen_batch(tokenizer, pairs)


def test_lookahead_raises_the_preferred_likelihood(lora_model):
    model, (ids, mask, completion) = lora_model
    with torch.no_grad():
        now = spo.completion_logps(model, ids, mask, completion)
    ahead = spo.lookahead_logps(model, ids, mask, completion, lookahead_lr=1e-5)
    assert (ahead > now).all()  # one small SFT step makes every y_w more likely
    penalty = spo.spo_penalty(spo.completion_logps(model, ids, mask, completion), ahead, 1.0)
    assert penalty.item() > 0  # so the current policy is behind: positive penalty


def _completion_logps_by_hand(model, ids, mask, completion) -> torch.Tensor:
    """Σ over completion tokens of log p(token), per row, from the logits: written here, not spo's."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    token = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token * completion[:, 1:]).sum(dim=1)


def test_lookahead_is_one_explicit_sft_step(lora_model):
    """log π_θ̃ with θ̃ = θ − η ∇(−mean log π_θ(y_w)), θ̃ built here by an explicit SGD step on a copy of
    the model (trainable parameters only), equals spo.lookahead_logps; and its first-order change in η is
    ∇log π(y_i) · mean_j ∇log π(y_j), the gate's alignment reading in spo's docstring."""
    import copy

    model, (ids, mask, completion) = lora_model
    for eta in (1e-3, 1e-1):
        stepped = copy.deepcopy(model)
        params = [p for p in stepped.parameters() if p.requires_grad]
        grads = torch.autograd.grad(-_completion_logps_by_hand(stepped, ids, mask, completion).mean(), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(eta * g)
            expected = _completion_logps_by_hand(stepped, ids, mask, completion)
        torch.testing.assert_close(
            spo.lookahead_logps(model, ids, mask, completion, lookahead_lr=eta), expected, rtol=0, atol=1e-9
        )
    params = [p for p in model.parameters() if p.requires_grad]
    per_row = [
        torch.cat([g.ravel() for g in torch.autograd.grad(row, params, retain_graph=True)])
        for row in _completion_logps_by_hand(model, ids, mask, completion)
    ]
    mean_grad = torch.stack(per_row).mean(dim=0)
    eta = 1e-6
    with torch.no_grad():
        now = _completion_logps_by_hand(model, ids, mask, completion)
    slope = (spo.lookahead_logps(model, ids, mask, completion, lookahead_lr=eta) - now) / eta
    torch.testing.assert_close(slope, torch.stack([g @ mean_grad for g in per_row]), rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("offsets", [[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5]])
def test_penalty_gradient_matches_finite_differences(lora_model, offsets):
    """θ̃ is a stop-gradient, so the look-ahead log-probs are a fixed target here; with half of the
    pairs ahead of it, only the others contribute (the relu's mask)."""
    model, (ids, mask, completion) = lora_model
    with torch.no_grad():
        ahead = spo.completion_logps(model, ids, mask, completion) + torch.tensor(offsets, dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]

    def penalty():
        return spo.spo_penalty(spo.completion_logps(model, ids, mask, completion), ahead, 1.5)

    grads = torch.autograd.grad(penalty(), params)
    direction = [
        torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=p.dtype) for i, p in enumerate(params)
    ]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()
    # the model runs in float64 but transformers keeps parts of it (rotary embeddings) in float32,
    # so finite differences are noisy below eps ~1e-4 and agree to ~0.5% above it
    eps = 1e-3
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
        plus = penalty().item()
        for p, d in zip(params, direction):
            p.sub_(2 * eps * d)
        minus = penalty().item()
        for p, d in zip(params, direction):
            p.add_(eps * d)
    assert abs(analytic) > 1e-6
    assert (plus - minus) / (2 * eps) == pytest.approx(analytic, rel=2e-2)


def test_penalty_gradient_is_lambda_weighted_nll_of_the_gated_pairs_whatever_eta(lora_model):
    """θ̃ is detached, so ∇ penalty = λ/B · Σ_{kept} ∇[−log π(y_w)] for the real look-ahead at any η that
    keeps the same pairs; η moves only the penalty's value (≈ linear in η), not its gradient."""
    model, (ids, mask, completion) = lora_model
    params = [p for p in model.parameters() if p.requires_grad]
    lam, batch = 1.5, ids.shape[0]
    found = {}
    for eta in (1e-6, 1e-5):
        ahead = spo.lookahead_logps(model, ids, mask, completion, lookahead_lr=eta)
        policy = spo.completion_logps(model, ids, mask, completion)
        kept = spo.gate(policy, ahead)
        grads = torch.autograd.grad(spo.spo_penalty(policy, ahead, lam), params)
        nll = -(spo.completion_logps(model, ids, mask, completion) * kept).sum() * lam / batch
        expected = torch.autograd.grad(nll, params)
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12)
        with torch.no_grad():
            found[eta] = (kept.clone(), spo.spo_penalty(policy, ahead, lam).item(), grads)
    (kept_a, value_a, grads_a), (kept_b, value_b, grads_b) = found[1e-6], found[1e-5]
    assert kept_a.all() and torch.equal(kept_a, kept_b)
    for a, b in zip(grads_a, grads_b):  # the same push at 10x the look-ahead step
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert value_b / value_a == pytest.approx(10.0, rel=0.05)  # the logged value only tracks η


def test_spo_stage_trains_and_logs_its_penalty(tiny_base, pair_files, tmp_path):
    options = TrainOptions(beta=0.1, learning_rate=3e-3, batch_size=16, max_length=64, lora={"r": 4, "alpha": 8})
    run = {"setting": "lab", "method": "spo", "order": "comply-x", "seed": 0, "stage": 1, "objective": "comply"}
    summary = train.train_stage(
        tiny_base,
        pair_files["pairs"],
        pair_files["base_logps"],
        str(tmp_path / "a"),
        str(tmp_path / "log.parquet"),
        options,
        run,
        method_options=spo.SPOOptions(penalty=1.0),
    )
    log = pd.read_parquet(tmp_path / "log.parquet")
    penalties = log[log.metric == "spo/penalty"]["value"]
    assert len(penalties) == summary["steps"] and penalties.max() > 0
    gate = log[log.metric == "spo/gate_share"]["value"]
    assert len(gate) == summary["steps"] and gate.between(0, 1).all() and gate.max() > 0
    # its budget counts the look-ahead's three passes over the chosen responses beside the DPO pass
    spent = dict(zip(log["metric"], log["value"]))
    _, tokenizer = base_model.load_base(tiny_base)
    tokenized = logps.tokenize_frame(tokenizer, pd.read_parquet(pair_files["pairs"]), 64)
    chosen = sum(len(t.prompt_ids) + len(t.chosen_ids) for t in tokenized)
    rejected = sum(len(t.prompt_ids) + len(t.rejected_ids) for t in tokenized)
    assert spent["budget/pairs"] == len(tokenized) and spent["budget/tokens"] == 4 * chosen + rejected
    with pytest.raises(ValueError, match="train_stage trains a sequential method"):
        train.train_stage(
            tiny_base,
            pair_files["pairs"],
            pair_files["base_logps"],
            str(tmp_path / "m"),
            str(tmp_path / "m.parquet"),
            options,
            {**run, "method": "mix"},
        )


def test_spo_penalty_ignores_lora_dropout(tiny_base, pair_files, tmp_path):
    """With LoRA dropout 0.5 and a look-ahead step of η = 1e-12, θ̃ = θ: the penalty must be 0. Had the
    look-ahead and policy forwards drawn their own dropout masks, the ReLU of the mask noise would
    make it positive at every step."""
    options = TrainOptions(
        beta=0.1, learning_rate=3e-3, batch_size=16, max_length=64, lora={"r": 4, "alpha": 8, "dropout": 0.5}
    )
    penalty = methods.options("spo", penalty=1.0, lookahead_lr=1e-12)
    run = {"setting": "lab", "method": "spo", "order": "comply-x", "seed": 0, "stage": 1, "objective": "comply"}
    previous = tmp_path / "start"
    train.train_stage(
        tiny_base,
        pair_files["pairs"],
        pair_files["base_logps"],
        str(previous),
        str(tmp_path / "log0.parquet"),
        TrainOptions(beta=0.1, learning_rate=3e-3, batch_size=16, max_length=64, lora={"r": 4, "alpha": 8}),
        run,
    )
    train.train_stage(
        tiny_base,
        pair_files["pairs"],
        pair_files["base_logps"],
        str(tmp_path / "b"),
        str(tmp_path / "log.parquet"),
        options,
        {**run, "stage": 2},
        str(previous),
        method_options=penalty,
    )
    log = pd.read_parquet(tmp_path / "log.parquet")
    penalties = log[log.metric == "spo/penalty"]["value"]
    assert len(penalties) > 0
    assert penalties.max() < 1e-6, penalties.tolist()
