"""Do the lab's claims hold at 3x its training budget? Raw and sham-corrected labels, side by side.

Runs the lab (config/config.yaml: every setting, seeds 0 and 1) with sequential DPO at its budget
(1 epoch, 16 optimiser steps per stage) and at three times it (3 epochs, 48 steps), the sham control on,
each into its own results folder, then prints per setting, order and earlier objective: the raw change
and label at the last stage, the sham's change, the specific effect (real − sham) and the control label,
and how far the sham moved the adapter relative to the real stage. Nothing is tuned: the lab's
settings are what config/config.yaml says.

    python benchmarks/lab_robustness.py [--cores 2] [--budgets 1 3] [--out results/robustness] [--json PATH]

A rerun reuses what is done. ``docs/data/robustness/x<budget>/`` keeps each budget's ``controls.parquet``
(and the lab's own budget, x1, its ``diagnostics.parquet``), from which ``docs/render.py`` renders the
table (:func:`label_table`) and the lab's gradient cosines; ``--json`` records each budget's wall seconds
and whether it started fresh.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml
from record import json_argument, write_record
from timed_run import snakemake_seconds

REPO = Path(__file__).resolve().parents[1]


def run_budget(epochs: int, out: Path, cores: int) -> tuple[Path, float]:
    """Run the lab's sequential-DPO study with ``epochs`` epochs per stage into ``out``; returns the
    results folder and the seconds it took."""
    folder = out / f"x{epochs}"
    patch = out / f"x{epochs}.yaml"
    out.mkdir(parents=True, exist_ok=True)
    patch.write_text(
        yaml.safe_dump(
            {"results": str(folder), "methods": ["dpo"], "train": {"epochs": epochs}, "controls": {"sham": True}}
        )
    )
    tables = [f"{folder}/tables/{name}.parquet" for name in ("controls", "summary", "diagnostics")]
    return folder, snakemake_seconds(cores, tables, ["config/config.yaml", patch])


def label_table(controls: pd.DataFrame, budget: int) -> pd.DataFrame:
    """One row per setting, order and earlier objective at the last stage of a study's
    ``tables/controls.parquet`` (``controls``), run at ``budget`` times the lab's epochs: own gain, raw
    change and label, sham change, specific effect (nats, [95% interval]), its share of the own gain,
    the control label and the sham's distance ratio."""
    last = controls[controls["stage"] == controls.groupby(["setting", "order"])["stage"].transform("max")]
    last = last[last["role"] == "earlier"]
    rows = pd.DataFrame(
        {
            "budget": f"x{budget}",
            "setting": last["setting"],
            "order": last["order"],
            "objective": last["objective"],
            "own_gain": last["own_gain"].round(2),
            "real": [
                f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                for v, lo, hi in zip(last.change_real, last.change_real_lo, last.change_real_hi)
            ],
            "raw label": last["label_real"],
            "sham": [
                f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                for v, lo, hi in zip(last.change_sham, last.change_sham_lo, last.change_sham_hi)
            ],
            "specific": [
                f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                for v, lo, hi in zip(last.specific, last.specific_lo, last.specific_hi)
            ],
            # no share where Fieller's interval is unbounded (the own gain is not shown to differ from 0)
            "specific / own gain": ["—" if v != v else f"{v:+.0%}" for v in last["specific_share"]],
            "control label": last["control_label"],
            "‖Δθ‖ sham / real": last["change_norm_ratio"].round(2),
        }
    )
    return rows.sort_values(["setting", "order"]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[1, 3], help="epochs per stage (1 = the lab's budget)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/robustness"))
    json_argument(parser)
    args = parser.parse_args()
    args.out = args.out.resolve()
    tables, seconds, fresh = [], {}, {}
    for epochs in args.budgets:
        fresh[f"x{epochs}"] = not (args.out / f"x{epochs}").exists()
        folder, seconds[f"x{epochs}"] = run_budget(epochs, args.out, args.cores)
        print(f"budget x{epochs}: {seconds[f'x{epochs}'] / 60:.1f} min -> {folder}", flush=True)
        tables.append(label_table(pd.read_parquet(folder / "tables/controls.parquet"), epochs))
    print(pd.concat(tables, ignore_index=True).to_markdown(index=False))
    # a rerun reuses finished jobs, so its time is no run time: ``fresh`` says which budgets started empty
    write_record(args.json, {"cores": args.cores, "wall_s": seconds, "fresh": fresh})


if __name__ == "__main__":
    main()
