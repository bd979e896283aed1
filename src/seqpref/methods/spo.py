"""SPO (Stable Preference Optimization, arXiv 2507.07723; seed 002): DPO plus a penalty that keeps the
preferred responses at least as likely as one SFT step would make them.

This is our reconstruction (papers.md §3.2; the exact loss is not verified against the paper):

    L_SPO(θ) = L_DPO(θ) + λ · mean_pairs [ log π_θ̃(y_w|x) − log π_θ(y_w|x) ]₊,
    θ̃ = stopgrad( θ − η ∇_θ L_SFT(θ) ),   L_SFT(θ) = −mean_pairs log π_θ(y_w|x),

with θ the trainable (LoRA) parameters. The penalty is zero when the policy already gives y_w at
least the likelihood one SFT step of size η would give it, and positive otherwise.

What this penalty does, read plainly (pinned by ``tests/model/test_spo.py``): θ̃ is detached, so the
penalty's gradient is λ/B · Σ_{i kept} ∇_θ[−log π_θ(y_w,i|x_i)] — the gradient of the summed-over-tokens
NLL of the chosen responses of the pairs the gate keeps (those with log π_θ̃ > log π_θ), B the batch's
pair count — and it does not depend on η. η only moves the gate: to first order
log π_θ̃(y_i) − log π_θ(y_i) = η ∇log π(y_i)·mean_j ∇log π(y_j), so for small η the gate keeps the pairs
whose chosen-response gradient agrees with the batch's, and the logged penalty value is
≈ λ·η·mean_i[∇log π(y_i)·mean_j ∇log π(y_j)]₊ (~η‖g‖²): a small number that says nothing about the size
of the push. In effect SPO here is DPO plus λ-weighted SFT on the kept chosen responses;
``spo/gate_share`` in the training log is the share of pairs the gate keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from seqpref.methods.base import SEQUENTIAL, Method

if TYPE_CHECKING:  # for annotations only
    import torch

# torch is imported inside the functions: the workflow imports this module (the registry) at every parse


@dataclass
class SPOOptions:
    """``method_options.spo`` in the config."""

    penalty: float = field(default=1.0, metadata={"help": "λ, the penalty's weight.", "schema": {"minimum": 0}})
    lookahead_lr: float | None = field(
        default=None,
        metadata={
            "help": "η of the one-step look-ahead; null = train.learning_rate.",
            "schema": {"exclusiveMinimum": 0},
        },
    )

    def __post_init__(self):
        if self.penalty < 0 or (self.lookahead_lr is not None and self.lookahead_lr <= 0):
            raise ValueError("spo: need penalty >= 0 and lookahead_lr > 0 (or null)")


def completion_logps(model, input_ids, attention_mask, completion_mask, params: dict | None = None) -> torch.Tensor:
    """Sum of completion-token log-probs per sequence, shape ``(B,)`` in nats.

    ``completion_mask`` (B, T) marks response tokens, as TRL's DPO collator builds it; with
    ``params`` (name → tensor) those parameters replace the model's own for this forward.
    """
    import torch
    from torch.func import functional_call

    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if params is None:
        logits = model(**kwargs).logits
    else:
        logits = functional_call(model, params, args=(), kwargs=kwargs, strict=False).logits
    logits = logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):  # log_softmax in at least float32
        logits = logits.float()
    logprobs = torch.log_softmax(logits, dim=-1)
    token = logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token * completion_mask[:, 1:]).sum(dim=1)


def lookahead_logps(model, input_ids, attention_mask, completion_mask, lookahead_lr: float) -> torch.Tensor:
    """log π_θ̃(y|x) per sequence ``(B,)`` after one SFT step of size ``lookahead_lr`` on these
    sequences (trainable parameters only); detached from the graph (θ̃ is a stop-gradient)."""
    import torch

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    sft_loss = -completion_logps(model, input_ids, attention_mask, completion_mask).mean()
    grads = torch.autograd.grad(sft_loss, params, allow_unused=True)
    ahead = {
        name: (p.detach() - lookahead_lr * g) if g is not None else p.detach()
        for name, p, g in zip(names, params, grads)
    }
    with torch.no_grad():
        return completion_logps(model, input_ids, attention_mask, completion_mask, ahead)


def gate(policy_logps: torch.Tensor, ahead_logps: torch.Tensor) -> torch.Tensor:
    """Which pairs the penalty acts on: log π_θ̃(y_w) > log π_θ(y_w), a bool ``(B,)``."""
    return ahead_logps.detach() > policy_logps.detach()


def spo_penalty(policy_logps: torch.Tensor, ahead_logps: torch.Tensor, penalty: float) -> torch.Tensor:
    """λ · mean([log π_θ̃(y_w) − log π_θ(y_w)]₊): scalar; ``policy_logps`` carries the gradient."""
    import torch

    return penalty * torch.relu(ahead_logps.detach() - policy_logps).mean()


def chosen_half(inputs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chosen sequences of a TRL DPO batch (rows ``[:B]`` of ``[chosen; rejected]``)."""
    half = inputs["input_ids"].shape[0] // 2
    return inputs["input_ids"][:half], inputs["attention_mask"][:half], inputs["completion_mask"][:half]


def loss(trainer, model, inputs):
    """SPO's term of a training micro-batch: the penalty on the batch's chosen responses (0-d tensor
    with its graph), with ``spo/penalty`` and ``spo/gate_share`` logged. Takes the trainer (its
    ``method_options`` are :class:`SPOOptions`; η defaults to its learning rate), the model and TRL's
    collated DPO batch."""
    from seqpref.lora import lora_dropout_off

    options = trainer.method_options
    eta = options.lookahead_lr if options.lookahead_lr is not None else trainer.args.learning_rate
    ids, mask, completion = chosen_half(inputs)
    with lora_dropout_off(model):  # θ̃ and θ must see the same network: no dropout masks
        ahead = lookahead_logps(model, ids, mask, completion, eta)
        policy = completion_logps(model, ids, mask, completion)
        term = spo_penalty(policy, ahead, options.penalty)
    trainer.record_metric("spo/penalty", term.item())
    trainer.record_metric("spo/gate_share", gate(policy, ahead).float().mean().item())
    return term


METHOD = Method(
    name="spo",
    kind=SEQUENTIAL,
    options=SPOOptions,
    colour="#56B4E9",
    summary="sequential DPO + the SPO penalty (our reconstruction of seed 002)",
    loss=loss,
    sham=True,
    chosen_passes=3,  # the look-ahead's SFT forward (and backward), the forward at θ̃, the penalty's forward at θ
)
