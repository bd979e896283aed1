"""merge: the single-objective adapters merged after training, with PEFT's ``add_weighted_adapter``
(task arithmetic on LoRA adapters: ``cat``, ``linear``, TIES, DARE, magnitude pruning).

The adapters are those the DAG already trains: for each objective o, stage 1 of the ``dpo`` order that
starts with o (the same adapters MAXRIGHT's f* is read from), same seed. A merge run has the stage
columns of a sequential run in the setting's config order: stage k merges the adapters of the first k
objectives with weight ``weight_sum / k`` each, so stage 1 is the first objective's adapter
(× weight_sum) and stage n the merge of all; the roles read as sequentially (trained = the objective
merged in at k). Budget: the merged adapters took one sequential stage each, the sequential run's
steps in all; merging trains nothing.

For a two-objective setting the ``lambdas`` grid also traces a front: the adapters merged with weights
(λ·s, (1 − λ)·s), s = weight_sum, λ the first objective's, each merge scored (scores/<run>/front<i>).

``cat`` is exact: the merged ΔW is Σ_i w_i·ΔW_i (rank r·n). ``linear`` scales A and B by √w each
(ΔW has cross terms B_i·A_j: PEFT calls it a rough approximation); the ``*_svd`` variants apply TIES /
DARE / pruning to the ΔW's and truncate the result back to rank r; ``ties``, ``dare_*`` and
``magnitude_prune`` apply them to the A and B factors separately.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from seqpref.methods.base import POST_HOC, Method

COMBINATIONS = (
    "cat",
    "linear",
    "svd",
    "ties",
    "ties_svd",
    "dare_linear",
    "dare_ties",
    "dare_linear_svd",
    "dare_ties_svd",
    "magnitude_prune",
    "magnitude_prune_svd",
)
NEEDS_DENSITY = tuple(c for c in COMBINATIONS if c.startswith(("ties", "dare", "magnitude")))


@dataclass
class MergeOptions:
    """``method_options.merge``."""

    combination: str = field(
        default="cat",
        metadata={
            "help": "PEFT combination_type; cat is exact (the weighted sum of the adapters' updates).",
            "schema": {"enum": list(COMBINATIONS)},
        },
    )
    density: float | None = field(
        default=None,
        metadata={
            "help": "share of entries kept by ties / dare / magnitude_prune, in (0, 1]; required by them.",
            "schema": {"exclusiveMinimum": 0, "maximum": 1},
        },
    )
    majority_sign_method: str = field(
        default="total", metadata={"help": "TIES sign election.", "schema": {"enum": ["total", "frequency"]}}
    )
    weight_sum: float = field(
        default=1.0,
        metadata={
            "help": "s: stage k weighs each of its k adapters s/k; the front weighs (λ·s, (1−λ)·s). TIES and DARE-TIES "
            "average the entries whose signs agree, so their merge is ~1/k of a cat merge at the same s: "
            "s = k gives them a sum.",
            "schema": {"exclusiveMinimum": 0},
        },
    )
    lambdas: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0],
        metadata={
            "help": "λ grid of the front (two-objective settings): the first objective's share of weight_sum.",
            "schema": {"minItems": 1, "uniqueItems": True, "items": {"type": "number", "minimum": 0, "maximum": 1}},
        },
    )

    def __post_init__(self):
        if self.combination not in COMBINATIONS:
            raise ValueError(f"merge.combination must be one of {COMBINATIONS}, got {self.combination!r}")
        if self.combination in NEEDS_DENSITY and not (self.density is not None and 0 < self.density <= 1):
            raise ValueError(f"merge.combination {self.combination} needs a density in (0, 1], got {self.density}")
        if self.majority_sign_method not in ("total", "frequency"):
            raise ValueError(
                f"merge.majority_sign_method must be total or frequency, got {self.majority_sign_method!r}"
            )
        if self.weight_sum <= 0:
            raise ValueError(f"merge.weight_sum must be > 0, got {self.weight_sum}")
        if any(not 0 <= x <= 1 for x in self.lambdas) or len(set(self.lambdas)) != len(self.lambdas):
            raise ValueError(f"merge.lambdas must be distinct values in [0, 1], got {self.lambdas}")


def stage_weights(options: MergeOptions, stage: int) -> list[float]:
    """Weights of the first ``stage`` objectives' adapters at ``stage``: weight_sum/stage each."""
    return [options.weight_sum / stage] * stage


def front_weights(options: MergeOptions, index: int) -> list[float]:
    """Weights of a two-objective setting's adapters at front point ``index``: (λ·s, (1 − λ)·s)."""
    lam = options.lambdas[index]
    return [lam * options.weight_sum, (1 - lam) * options.weight_sum]


def merged_model(base: str, adapters: list[str], weights: list[float], options: MergeOptions, seed: int = 0):
    """The base model (float32) with ``adapters`` loaded as ``o0, o1, …`` and their merge added as the
    "default" adapter by PEFT's ``add_weighted_adapter``; returns the ``PeftModel``.

    Adapters of weight 0 are left out: TIES elects signs and averages over the adapters before the
    weights apply, so a weight-0 adapter would still prune and dilute the others (the front's ends
    would not be the single adapters). DARE's random pruning draws from torch's generator, seeded
    with ``seed`` here (PEFT does not seed it), so a merge is reproducible.
    """
    import torch
    from peft import PeftModel

    from seqpref.base_model import load_base

    kept = [(path, w) for path, w in zip(adapters, weights) if w != 0]
    if not kept:
        raise ValueError("every adapter has weight 0: nothing to merge")
    model, _ = load_base(base, "float32")
    model = PeftModel.from_pretrained(model, kept[0][0], adapter_name="o0")
    for i, (path, _) in enumerate(kept[1:], start=1):
        model.load_adapter(path, adapter_name=f"o{i}")
    if any(getattr(config, "use_rslora", False) for config in model.peft_config.values()):
        raise ValueError("merge assumes plain LoRA scaling α/r; rsLoRA adapters are not supported")
    torch.manual_seed(seed)
    model.add_weighted_adapter(
        [f"o{i}" for i in range(len(kept))],
        [w for _, w in kept],
        adapter_name="default",
        combination_type=options.combination,
        density=options.density,
        majority_sign_method=options.majority_sign_method,
        svd_full_matrices=False,
    )
    return model


def build(
    base: str,
    adapters: list[str],
    weights: list[float],
    options: MergeOptions,
    out_dir: str,
    record: dict | None = None,
) -> dict:
    """Merge ``adapters`` (directories) with ``weights`` and save the merge, alone, as the adapter in
    ``out_dir`` (written to a staging folder and moved into place, with ``merge.json`` recording what
    was merged). Returns that record."""
    if len(adapters) != len(weights) or not adapters:
        raise ValueError(f"merge needs one weight per adapter, got {len(adapters)} adapters and {len(weights)} weights")
    seed = int((record or {}).get("run", {}).get("seed", 0))
    model = merged_model(base, adapters, weights, options, seed)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="merge-", dir=out.parent))
    model.save_pretrained(staging, selected_adapters=["default"])
    info = {
        "adapters": list(adapters),
        "weights": list(weights),
        "options": asdict(options),
        "seed": seed,
        **(record or {}),
    }
    (staging / "merge.json").write_text(json.dumps(info, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(staging):
        os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)
    return info


def main(argv=None) -> None:
    """CLI (``merge_stage`` / ``merge_front`` rules): ``python -m seqpref.methods.merge BASE OUT_DIR
    --adapter DIR ... --weights JSON --options JSON [--run JSON]``."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="base model id or directory")
    parser.add_argument("out_dir", help="adapter directory to write")
    parser.add_argument("--adapter", action="append", required=True, help="an adapter directory to merge, in order")
    parser.add_argument("--weights", required=True, help="JSON list: one weight per adapter")
    parser.add_argument("--options", default="{}", help="JSON of MergeOptions")
    parser.add_argument("--run", default="{}", help="JSON recorded with the merge (setting, order, seed, stage)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    info = build(
        args.base,
        args.adapter,
        json.loads(args.weights),
        MergeOptions(**json.loads(args.options)),
        args.out_dir,
        {"run": json.loads(args.run)},
    )
    logging.getLogger("seqpref.merge").info("merged %s", json.dumps(info))


METHOD = Method(
    name="merge",
    kind=POST_HOC,
    options=MergeOptions,
    colour="#999999",
    summary="post hoc: the single-objective adapters merged (PEFT add_weighted_adapter)",
    build=build,
    single_objective="adapters",
)

if __name__ == "__main__":
    main()
