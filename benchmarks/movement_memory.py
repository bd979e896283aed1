"""Peak memory of the adapter-movement step at Llama-3.1-8B shapes: dense ΔW (the old way) vs low rank.

    python benchmarks/movement_memory.py [--stages 3] [--rank 32] [--dense-layers 1]

Writes ``--stages`` random LoRA adapters shaped like Llama-3.1-8B with r = ``--rank`` on every linear
layer (32 layers; q/o 4096→4096, k/v 4096→1024, gate/up 4096→14336, down 14336→4096; float32, as
PEFT saves them) to a temporary folder, then runs in fresh subprocesses, each reporting its peak RSS:

* ``low_rank``: ``seqpref.movement.run_movement`` on all 32 layers (what the rule runs now);
* ``dense``: the computation the rule ran before, ΔW = s·B·A formed for every module of every stage
  (float32) and the norms and cosines taken from the dense matrices, on ``--dense-layers`` layers
  only (32 layers would need ~28 GB per stage); its peak is extrapolated linearly to 32 layers
  (memory per layer measured as the peak minus an import-only baseline);
* ``baseline``: the imports alone.

Also prints how far the two computations differ on the layers both ran: the old dense path summed
~10^8 float32 squares per module, which is off by up to a few percent at these shapes; the
low-rank path works in float64 (``tests/model/test_movement.py`` checks it against dense float64).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from record import json_argument, write_record

LAYERS = 32
SHAPES = {  # module → (out, in) of Llama-3.1-8B
    "self_attn.q_proj": (4096, 4096),
    "self_attn.k_proj": (1024, 4096),
    "self_attn.v_proj": (1024, 4096),
    "self_attn.o_proj": (4096, 4096),
    "mlp.gate_proj": (14336, 4096),
    "mlp.up_proj": (14336, 4096),
    "mlp.down_proj": (4096, 14336),
}

CHILD = r"""
import json, resource, sys, math
import torch
mode, dirs, layers = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
result = {}
if mode == "low_rank":
    from seqpref import movement
    rows = movement.module_rows(movement.stream_modules(dirs))
    result["all"] = [r for r in rows if r["module"] == "all"]
elif mode == "dense":
    from safetensors.torch import load_file
    stages = []
    for d in dirs:  # the old movement.effective_updates: every module's dense ΔW of every stage
        cfg = json.load(open(f"{d}/adapter_config.json"))
        w = load_file(f"{d}/adapter_model.safetensors")
        s = cfg["lora_alpha"] / cfg["r"]
        mods = {}
        for k, t in w.items():
            if int(k.split(".layers.")[1].split(".")[0]) >= layers:
                continue
            for part in ("lora_A", "lora_B"):
                if f".{part}." in k:
                    mods.setdefault(k.split(f".{part}.")[0], {})[part] = t.float()
        stages.append({n: s * p["lora_B"] @ p["lora_A"] for n, p in sorted(mods.items())})
    rows, prev_total, prev_update = [], None, None
    for k, total in enumerate(stages, start=1):
        update = {n: w - prev_total[n] if prev_total else w for n, w in total.items()}
        u = torch.cat([x.ravel() for x in update.values()])
        p = torch.cat([x.ravel() for x in prev_update.values()]) if prev_update else None
        cos = float((u * p).sum() / (u.norm() * p.norm())) if p is not None else float("nan")
        rows.append({"stage": k, "update_norm": float(u.norm()), "cosine_previous": cos})
        prev_total, prev_update = total, update
    result["all"] = rows
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def write_adapters(root: Path, stages: int, rank: int, layers: int) -> list[str]:
    """Random LoRA adapters (PEFT's file layout) at 8B shapes; returns their directories."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    dirs = []
    for stage in range(1, stages + 1):
        weights = {}
        for layer in range(layers):
            for module, (out, inp) in SHAPES.items():
                prefix = f"base_model.model.model.layers.{layer}.{module}"
                weights[f"{prefix}.lora_A.weight"] = torch.randn(rank, inp, generator=generator) * inp**-0.5
                weights[f"{prefix}.lora_B.weight"] = torch.randn(out, rank, generator=generator) * 1e-3
        directory = root / f"stage{stage}"
        directory.mkdir(parents=True)
        save_file(weights, str(directory / "adapter_model.safetensors"))
        (directory / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 2 * rank}))
        dirs.append(str(directory))
        del weights
    return dirs


def child(mode: str, dirs: list[str], layers: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, json.dumps(dirs), str(layers)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--dense-layers", type=int, default=1)
    json_argument(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        full = write_adapters(Path(tmp) / "full", args.stages, args.rank, LAYERS)
        size_mb = sum(Path(d, "adapter_model.safetensors").stat().st_size for d in full) / 2**20
        part = write_adapters(Path(tmp) / "part", args.stages, args.rank, args.dense_layers)
        baseline = child("baseline", full, LAYERS)["peak_rss_mb"]
        low = child("low_rank", full, LAYERS)
        low_part = child("low_rank", part, args.dense_layers)
        dense = child("dense", part, args.dense_layers)
    per_layer = (dense["peak_rss_mb"] - baseline) / args.dense_layers
    print(
        f"{args.stages} stages of a Llama-3.1-8B-shaped LoRA, r={args.rank}, 32 layers x 7 modules "
        f"({size_mb:.0f} MB of adapters on disk)"
    )
    print(f"imports only:            peak RSS {baseline:8.0f} MB")
    print(
        f"low rank, 32 layers:     peak RSS {low['peak_rss_mb']:8.0f} MB  (+{low['peak_rss_mb'] - baseline:.0f} MB over imports)"
    )
    print(
        f"dense, {args.dense_layers} layer(s):         peak RSS {dense['peak_rss_mb']:8.0f} MB  "
        f"(+{per_layer:.0f} MB per layer over imports)"
    )
    print(f"dense, 32 layers (extrapolated): {baseline + per_layer * LAYERS:8.0f} MB")
    worst = max(
        abs(a["update_norm"] - b["update_norm"]) / b["update_norm"] for a, b in zip(low_part["all"], dense["all"])
    )
    print(
        f"low rank (float64 Gram matrices) vs the old dense float32 path on {args.dense_layers} layer(s): max relative "
        f"difference of update norms {worst:.2e} -- the dense path's float32 reduction over ~10^8 entries; "
        "tests/model/test_movement.py checks low rank against dense float64 to 1e-9"
    )
    write_record(
        args.json,
        {
            "stages": args.stages,
            "rank": args.rank,
            "layers": LAYERS,
            "dense_layers": args.dense_layers,
            "adapters_mb": size_mb,
            "imports_rss_mb": baseline,
            "low_rank_rss_mb": low["peak_rss_mb"],
            "dense_rss_mb": dense["peak_rss_mb"],
            "dense_mb_per_layer": per_layer,
            "dense_all_layers_mb": baseline + per_layer * LAYERS,
            "max_relative_difference": worst,
        },
    )


if __name__ == "__main__":
    main()
