"""dpo: sequential DPO (Rafailov et al., 2023): one LoRA stage per objective, in every order, each
continuing the previous stage's adapter, the reference always the base model (seqpref.train).

The loss is TRL's sigmoid DPO loss; its eval form, −log σ(dpo_margin), is :func:`seqpref.metrics.dpo_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqpref.methods.base import SEQUENTIAL, Method


@dataclass
class DPOOptions:
    """``method_options.dpo``: none of its own; every DPO option (β, learning rate, LoRA, …) is in
    ``train``, shared by every method."""


METHOD = Method(name="dpo", kind=SEQUENTIAL, options=DPOOptions, colour="#0072B2", summary="sequential DPO", sham=True)
