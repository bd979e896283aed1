"""Adapter movement: how far each stage moves the effective LoRA update, and in which direction.

For a LoRA module, the effective weight update is ΔW = s·B·A with s = α/r (α/√r with rsLoRA),
B of shape (out, r) and A of shape (r, in). After stage k the adapter holds ΔW_k; the stage's own
update is U_k = ΔW_k − ΔW_{k−1} (ΔW_0 = 0). Reads saved adapters only (safetensors + config), never
a model. ``python -m seqpref.movement OUT --run JSON ADAPTER_DIR...`` (stage 1, 2, … in order).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqpref import plan, provenance, tables

log = logging.getLogger("seqpref.movement")


def lora_scaling(adapter_config: dict) -> float:
    """The scale s of ΔW = s·B·A from a PEFT ``adapter_config.json`` dict (α/r, or α/√r with rsLoRA)."""
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        raise ValueError("per-module rank/alpha patterns are not supported")
    r, alpha = adapter_config["r"], adapter_config["lora_alpha"]
    return alpha / math.sqrt(r) if adapter_config.get("use_rslora") else alpha / r


def effective_updates(weights: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """ΔW = scaling·B·A per LoRA module, keyed by the module's name (``model.layers.0.self_attn.q_proj``).

    ``weights`` is a saved adapter's state dict (``…<module>.lora_A.weight`` (r, in) and
    ``…<module>.lora_B.weight`` (out, r)); returns float32 tensors of shape (out, in).
    """
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                name = key.split(marker)[0].removeprefix("base_model.model.")
                modules.setdefault(name, {})[part] = tensor.float()
    missing = [name for name, parts in modules.items() if len(parts) != 2]
    if missing:
        raise ValueError(f"modules without both lora_A and lora_B: {missing[:5]}")
    return {name: scaling * parts["lora_B"] @ parts["lora_A"] for name, parts in sorted(modules.items())}


def load_updates(adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    """Effective updates ΔW of the adapter saved in ``adapter_dir``."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    return effective_updates(load_file(str(adapter_dir / "adapter_model.safetensors")), lora_scaling(config))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def movement_rows(updates_by_stage: list[dict[str, torch.Tensor]]) -> list[dict]:
    """Per stage (1-based) and module, plus module ``all`` (every module concatenated): the norm of
    the stage's update U_k, the norm of ΔW_k, and cos(U_k, U_{k−1}) (NaN at stage 1)."""
    rows = []
    previous_total: dict[str, torch.Tensor] | None = None
    previous_update: dict[str, torch.Tensor] | None = None
    for stage, total in enumerate(updates_by_stage, start=1):
        if previous_total is not None and set(total) != set(previous_total):
            raise ValueError(f"stage {stage} adapts other modules than stage {stage - 1}")
        update = {n: w - previous_total[n] if previous_total else w for n, w in total.items()}
        flat = {
            "all": (
                torch.cat([u.ravel() for u in update.values()]),
                torch.cat([w.ravel() for w in total.values()]),
                torch.cat([u.ravel() for u in previous_update.values()]) if previous_update else None,
            )
        }
        for name in total:
            flat[name] = (update[name], total[name], previous_update[name] if previous_update else None)
        for name, (u, w, u_prev) in flat.items():
            rows.append({
                "stage": stage,
                "module": name,
                "update_norm": float(u.norm()),
                "total_norm": float(w.norm()),
                "cosine_previous": _cosine(u, u_prev) if u_prev is not None else float("nan"),
            })
        previous_total, previous_update = total, update
    return rows


def run_movement(adapter_dirs: list[str], run: dict) -> pd.DataFrame:
    """The MOVEMENT table of one run from its adapters of stages 1..K (in order)."""
    rows = movement_rows([load_updates(d) for d in adapter_dirs])
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
