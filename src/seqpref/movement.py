"""Adapter movement: how far each stage moves the effective LoRA update, and in which direction.

For a LoRA module, the effective weight update is ΔW = s·B·A with s = α/r (α/√r with rsLoRA),
B of shape (out, r) and A of shape (r, in). After stage k the adapter holds ΔW_k; the stage's own
update is U_k = ΔW_k − ΔW_{k−1} (ΔW_0 = 0). Reads saved adapters only (safetensors + config), never
a model. ``python -m seqpref.movement OUT --run JSON ADAPTER_DIR...`` (stage 1, 2, … in order).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import torch

from seqpref import plan, provenance, tables

log = logging.getLogger("seqpref.movement")


def lora_scaling(adapter_config: dict) -> float:
    """The scale s of ΔW = s·B·A from a PEFT ``adapter_config.json`` dict (α/r, or α/√r with rsLoRA).

    Raises ``ValueError`` for adapters whose update is not s·B·A alone: per-module rank/α patterns,
    DoRA (a magnitude vector), LoRA biases, or fully trained ``modules_to_save``.
    """
    unsupported = {
        key: adapter_config.get(key)
        for key in ("rank_pattern", "alpha_pattern", "use_dora", "lora_bias", "modules_to_save")
        if adapter_config.get(key)
    }
    if unsupported:
        raise ValueError(f"adapter movement needs a plain LoRA (ΔW = s·B·A); this adapter has {unsupported}")
    r, alpha = adapter_config["r"], adapter_config["lora_alpha"]
    return alpha / math.sqrt(r) if adapter_config.get("use_rslora") else alpha / r


@dataclass(frozen=True)
class LowRank:
    """A matrix kept as the product ``left @ right`` and never formed: left (out, q), right (q, in).

    A LoRA update ΔW = s·B·A is ``LowRank(s·B, A)`` with q = r; the difference of two stages' updates
    is rank ≤ 2r. Norms and inner products are computed from q×q matrices in float64, so movement at
    8B-model shapes needs one module's factors at a time, not the ~28 GB of dense ΔW per stage that
    Llama-3.1-8B with r = 32 on every linear layer would take.
    """

    left: torch.Tensor
    right: torch.Tensor

    def __sub__(self, other: "LowRank") -> "LowRank":
        return LowRank(torch.cat([self.left, -other.left], dim=1), torch.cat([self.right, other.right], dim=0))

    def inner(self, other: "LowRank") -> float:
        """Frobenius inner product ⟨L₁R₁, L₂R₂⟩ = tr((L₁ᵀL₂)(R₂R₁ᵀ)) = Σ (L₁ᵀL₂) ⊙ (R₁R₂ᵀ), in float64."""
        gram_left = self.left.double().T @ other.left.double()  # (q1, q2)
        gram_right = self.right.double() @ other.right.double().T  # (q1, q2)
        return float((gram_left * gram_right).sum())

    def dense(self) -> torch.Tensor:
        """The (out, in) matrix itself (tests and small modules only)."""
        return self.left @ self.right


def _module_name(key: str, part: str) -> str:
    return key.split(f".{part}.")[0].removeprefix("base_model.model.")


def factored_updates(weights: dict[str, torch.Tensor], scaling: float) -> dict[str, LowRank]:
    """ΔW = scaling·B·A per LoRA module as :class:`LowRank`, keyed by the module's name
    (``model.layers.0.self_attn.q_proj``).

    ``weights`` is a saved adapter's state dict (``…<module>.lora_A.weight`` (r, in) and
    ``…<module>.lora_B.weight`` (out, r)).
    """
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        for part in ("lora_A", "lora_B"):
            if f".{part}." in key:
                modules.setdefault(_module_name(key, part), {})[part] = tensor
    missing = [name for name, parts in modules.items() if len(parts) != 2]
    if missing:
        raise ValueError(f"modules without both lora_A and lora_B: {missing[:5]}")
    return {
        name: LowRank(scaling * parts["lora_B"].float(), parts["lora_A"].float())
        for name, parts in sorted(modules.items())
    }


def load_updates(adapter_dir: str | Path) -> dict[str, LowRank]:
    """Effective updates ΔW (:class:`LowRank`) of the adapter saved in ``adapter_dir``, every module at once."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    return factored_updates(load_file(str(adapter_dir / "adapter_model.safetensors")), lora_scaling(config))


def stream_modules(adapter_dirs: list[str | Path]) -> Iterator[tuple[str, list[LowRank]]]:
    """``(module, [ΔW after stage 1, 2, …])`` for every LoRA module of the saved adapters, one module
    at a time: only that module's factors of every stage are in memory (safetensors reads lazily).
    Every stage must adapt the same modules (``ValueError`` otherwise)."""
    from safetensors import safe_open

    adapter_dirs = [Path(d) for d in adapter_dirs]
    scalings = [lora_scaling(json.loads((d / "adapter_config.json").read_text())) for d in adapter_dirs]
    with contextlib.ExitStack() as stack:
        handles = [
            stack.enter_context(safe_open(str(d / "adapter_model.safetensors"), framework="pt")) for d in adapter_dirs
        ]
        keys = [{_module_name(k, "lora_A"): k for k in h.keys() if ".lora_A." in k} for h in handles]
        for directory, handle in zip(adapter_dirs, handles):
            other = [k for k in handle.keys() if ".lora_A." not in k and ".lora_B." not in k]
            if other:  # e.g. lora_embedding_A/B or a trained module: not an s·B·A update
                raise ValueError(f"{directory}: tensors that are not LoRA A/B factors: {other[:3]}")
        for stage, stage_keys in enumerate(keys[1:], start=2):
            if set(stage_keys) != set(keys[0]):
                raise ValueError(f"stage {stage} adapts other modules than stage 1")
        for name in sorted(keys[0]):
            factors = []
            for handle, stage_keys, scaling in zip(handles, keys, scalings):
                key_a = stage_keys[name]
                key_b = key_a.replace(".lora_A.", ".lora_B.")
                factors.append(LowRank(scaling * handle.get_tensor(key_b).float(), handle.get_tensor(key_a).float()))
            yield name, factors


def _norm(squared: float) -> float:
    return math.sqrt(max(squared, 0.0)) if squared == squared else float("nan")  # rounding below 0 is a zero norm


def _cosine(dot: float, squared_a: float, squared_b: float) -> float:
    denominator = _norm(squared_a) * _norm(squared_b)
    return dot / denominator if denominator > 0 else float("nan")


def _module_sums(totals: list[LowRank]) -> list[dict[str, float]]:
    """Per stage k of one module: ‖U_k‖², ‖ΔW_k‖², ⟨U_k, U_{k−1}⟩ and ‖U_{k−1}‖² (the last two NaN at
    stage 1), with U_k = ΔW_k − ΔW_{k−1} and ΔW_0 = 0."""
    sums, previous_total, previous_update = [], None, None
    for total in totals:
        update = total - previous_total if previous_total is not None else total
        dot = squared_previous = float("nan")
        if previous_update is not None:
            dot, squared_previous = update.inner(previous_update), previous_update.inner(previous_update)
        sums.append(
            {"update": update.inner(update), "total": total.inner(total), "dot": dot, "previous": squared_previous}
        )
        previous_total, previous_update = total, update
    return sums


def module_rows(modules: Iterable[tuple[str, list[LowRank]]]) -> list[dict]:
    """Per stage (1-based) and module, plus module ``all`` (every module concatenated): the norm of
    the stage's update U_k = ΔW_k − ΔW_{k−1}, the norm of ΔW_k, and cos(U_k, U_{k−1}) (NaN at stage 1).

    Takes ``(module, [ΔW_1, …, ΔW_K])`` pairs (:func:`stream_modules`); ``all`` sums the modules'
    squared norms and inner products, which gives the norm and cosine of the concatenated updates.
    """
    per_module, totals = [], None
    for name, stages in modules:
        sums = _module_sums(stages)
        if totals is None:
            totals = [dict.fromkeys(("update", "total", "dot", "previous"), 0.0) for _ in sums]
        if len(sums) != len(totals):
            raise ValueError(f"module {name} has {len(sums)} stages, others {len(totals)}")
        for accumulated, own in zip(totals, sums):
            for key in accumulated:
                accumulated[key] += own[key]
        per_module.append((name, sums))

    def row(stage, name, s):
        return {
            "stage": stage,
            "module": name,
            "update_norm": _norm(s["update"]),
            "total_norm": _norm(s["total"]),
            "cosine_previous": _cosine(s["dot"], s["update"], s["previous"]),
        }

    rows = []
    for stage, total in enumerate(totals or [], start=1):
        rows.append(row(stage, "all", total))
        rows.extend(row(stage, name, sums[stage - 1]) for name, sums in per_module)
    return rows


def movement_rows(updates_by_stage: list[dict[str, LowRank]]) -> list[dict]:
    """:func:`module_rows` of stages given as ``{module: ΔW}`` dicts (stage 1, 2, … in order)."""
    for stage, total in enumerate(updates_by_stage[1:], start=2):
        if set(total) != set(updates_by_stage[0]):
            raise ValueError(f"stage {stage} adapts other modules than stage 1")
    names = sorted(updates_by_stage[0]) if updates_by_stage else []
    return module_rows((name, [stage[name] for stage in updates_by_stage]) for name in names)


def run_movement(adapter_dirs: list[str], run: dict) -> pd.DataFrame:
    """The MOVEMENT table of one run from its adapters of stages 1..K (in order)."""
    rows = module_rows(stream_modules(adapter_dirs))
    frame = pd.DataFrame(rows)
    for key in ("setting", "method", "order", "seed"):
        frame[key] = run[key]
    frame["objective"] = [plan.trained_at(run["method"], run["order"], s) for s in frame["stage"]]
    return frame[tables.MOVEMENT.names]


def main(argv=None) -> None:
    """CLI: adapter movement of one run (``adapter_movement`` rule)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="movement Parquet to write")
    parser.add_argument("adapters", nargs="+", help="adapter directories of stages 1..K, in order")
    parser.add_argument("--run", required=True, help="JSON: setting, method, order, seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run = json.loads(args.run)
    frame = run_movement(args.adapters, run)
    tables.write_table(frame, args.out, tables.MOVEMENT, provenance.provenance("adapter_movement", {"run": run}))
    summary = frame[frame.module == "all"][["stage", "update_norm", "cosine_previous"]].round(4)
    log.info("movement of %d stages: %s", len(args.adapters), summary.to_dict("records"))


if __name__ == "__main__":
    main()
