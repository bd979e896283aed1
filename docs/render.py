"""Render every number the documentation quotes about a study or a benchmark from its table.

The pages under ``docs/`` hold such numbers only between markers::

    <!-- render: NAME -->
    ...text this script writes...
    <!-- /render -->

and each NAME is a function below that reads the committed snapshots under ``docs/data/`` (copies of a
study's ``tables/`` or a benchmark's output; ``docs/data/README.md`` says which command made each).

    python docs/render.py             # rewrite every marked block in docs/*.md and README.md
    python docs/render.py --check     # exit 1 naming each block whose text differs from its rendering
    python docs/render.py --workflow  # first refresh docs/data/workflow.json from Snakemake (dry runs)

``tests/unit/test_docs.py`` runs the check, so a page and its table cannot disagree.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from seqpref import methods
from seqpref.options import LabelOptions

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
DATA = DOCS / "data"
BLOCK = re.compile(r"(<!-- render: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /render -->)", re.DOTALL)
RENDERERS: dict[str, Callable[[], str]] = {}
#: every snapshot a renderer has read in this process (``tests/unit/test_docs.py`` checks none is unused)
READ: set[Path] = set()


def snapshot(*parts: str) -> Path:
    """``docs/data/<parts...>``, noted in :data:`READ` as read by a renderer."""
    path = DATA.joinpath(*parts)
    READ.add(path)
    return path


#: the configs whose planned jobs the docs quote: label -> ``snakemake --configfile`` arguments
PLANS = {
    "lab (`config/config.yaml`)": ["config/config.yaml"],
    "lab with every method (`config/config.yaml config/methods.yaml`)": ["config/config.yaml", "config/methods.yaml"],
    "real model (`config/real.yaml`)": ["config/real.yaml"],
    "real model on Gemma 3 270M (`--config base_model=pip:gemma3-270m`)": ["config/real.yaml"],
    "public data (`config/public.yaml`)": ["config/public.yaml"],
    "paper grid (`config/paper.yaml`)": ["config/paper.yaml"],
}
PLAN_EXTRA = {"real model on Gemma 3 270M (`--config base_model=pip:gemma3-270m`)": ["base_model=pip:gemma3-270m"]}

#: the rules' resources as Snakemake parses them (printed as one JSON line)
RULE_RESOURCES = """
import json
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
with SnakemakeApi(OutputSettings(quiet=True)) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                            config_settings=ConfigSettings(configfiles=[Path("config/config.yaml")]),
                            snakefile=Path("Snakefile"), workdir=Path("."))
    def constant(resource):
        try:
            return resource.value
        except ValueError:
            return None
    gpu = sorted(rule.name for rule in workflow._workflow.rules if str(constant(rule.resources.get("gpu"))) == "1")
print("GPU" + json.dumps(gpu))
"""


def renderer(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register the decorated function (no arguments, returns markdown) as the renderer of block ``name``."""

    def register(function: Callable[[], str]) -> Callable[[], str]:
        RENDERERS[name] = function
        return function

    return register


def num(value: float, digits: int = 2, sign: bool = True) -> str:
    """``value`` with ``digits`` decimals, a sign when ``sign``, and a true minus sign (−)."""
    return f"{value:{'+' if sign else ''}.{digits}f}".replace("-", "−")


def ci(value: float, lo: float, hi: float, digits: int = 2) -> str:
    """``+v [+lo, +hi]``: a value and its interval."""
    return f"{num(value, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


def pct(share: float) -> str:
    """A share as a whole percentage (``0.677`` -> ``68%``)."""
    return f"{share * 100:.0f}%".replace("-", "−")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def study(name: str, table_name: str) -> pd.DataFrame:
    """The snapshot of a study's table ``docs/data/<name>/<table_name>`` (Parquet or TSV)."""
    path = snapshot(name, table_name)
    return pd.read_csv(path, sep="\t") if path.suffix == ".tsv" else pd.read_parquet(path)


def earlier(summary: pd.DataFrame, method: str = "dpo") -> pd.DataFrame:
    """The earlier objective's rows at the last stage of ``method``'s runs, with its own-stage level beside it."""
    last = summary[(summary["method"] == method) & (summary["role"] == "earlier")]
    own = summary[(summary["method"] == method) & (summary["role"] == "trained")]
    own = own.rename(columns={"reward_margin": "own_margin", "rel_accuracy": "own_accuracy"})
    keys = ["setting", "order", "objective"]
    return last.merge(own[keys + ["own_margin", "own_accuracy"]], on=keys).reset_index(drop=True)


def arrow(order: str) -> str:
    """``a-b`` -> ``a → b``."""
    return order.replace("-", " → ")


# --- the real-model study (config/real.yaml) -------------------------------------------------------------------

REAL_BUILT = {
    "concise_vs_detailed": "conflicting: the same pairs, preferences swapped",
    "concise_vs_spelling": "independent: other attribute, disjoint prompts, equal lengths",
}


@renderer("real.dpo")
def real_dpo(name: str = "real") -> str:
    """Sequential DPO on the real files: the earlier objective after the later stage, per setting and order
    (``name``: the study's snapshot folder)."""
    rows, seen = [], set()
    for r in earlier(study(name, "summary.parquet")).itertuples():
        rows.append(
            [
                f"`{r.setting}`" if r.setting not in seen else "",
                REAL_BUILT.get(r.setting, "") if r.setting not in seen else "",
                f"{arrow(r.order)}: {num(r.own_margin, 2, False)} → {num(r.reward_margin, 2, False)} "
                f"(change {ci(r.reward_margin_change, r.reward_margin_change_lo, r.reward_margin_change_hi)})",
                f"`{r.label}`",
            ]
        )
        seen.add(r.setting)
    return table(
        [
            "setting",
            "by construction",
            "DPO, earlier objective after the later stage (reward margin, nats, 95% interval over pairs: one seed)",
            "label",
        ],
        rows,
    )


@renderer("real.dpo_shares")
def real_dpo_shares(name: str = "real") -> str:
    """The earlier objectives' change as a share of their own gain, per setting."""
    rows = earlier(study(name, "summary.parquet"))
    parts = []
    for setting, group in rows.groupby("setting", sort=True):
        shares = ", ".join(f"{pct(r.share_of_own_gain)} ({r.objective})" for r in group.itertuples())
        parts.append(f"`{setting}`: {shares}")
    return "The earlier objective's change as a share of what its own stage taught it: " + "; ".join(parts) + ".\n"


@renderer("real.controls")
def real_controls(name: str = "real") -> str:
    """The real study's sham controls, one row per sequential run."""
    return controls_table(study(name, "controls.parquet"), digits=1)


def controls_table(controls: pd.DataFrame, digits: int, method: str = "dpo") -> str:
    """Real stage, sham stage, their difference, the sham on its own objective, distance ratio, control label."""
    rows = []
    for r in controls[controls["method"] == method].itertuples():
        rows.append(
            [
                r.setting,
                arrow(r.order),
                r.objective,
                ci(r.change_real, r.change_real_lo, r.change_real_hi, digits),
                ci(r.change_sham, r.change_sham_lo, r.change_sham_hi, digits),
                ci(r.specific, r.specific_lo, r.specific_hi, digits),
                f"{num(r.sham_own_change)} of {num(r.real_own_change)}",
                f"{r.change_norm_ratio:.2f}",
                f"`{r.control_label}`",
            ]
        )
    return table(
        [
            "setting",
            "order",
            "earlier objective",
            "real stage",
            "sham stage",
            "specific (real − sham)",
            "sham on its own objective, of the real stage's",
            "‖Δθ‖ sham / real",
            "control label",
        ],
        rows,
    )


@renderer("real.time")
def real_time() -> str:
    """The real study's wall time on 2 CPU cores, from its Snakemake log (``docs/data/real/snakemake.log``)."""
    jobs, wall = log_run(snapshot("real", "snakemake.log"))
    return (
        f"It takes **{minutes(wall)} on 2 CPU cores**: {jobs} jobs of `snakemake --cores 2 --configfile config/real.yaml` on a "
        f"fresh `results/real` ({wall} s; `docs/data/real/snakemake.log`), run with `previous_reference` shams, "
        "whose `sham_reference` jobs the default design does not plan.\n"
    )


@renderer("real.changed")
def real_changed(name: str = "real") -> str:
    """The conflicting setting's control on the real model: how far its sham taught the sham's own objective."""
    controls = study(name, "controls.parquet")
    rows = controls[(controls["method"] == "dpo") & (controls["setting"] == "concise_vs_detailed")]
    if set(rows["control_label"]) != {"control_invalid"} or not (rows["sham_own_change"] > 0).all():
        raise ValueError("the conflicting setting's controls are no longer all invalid by a sham that taught it")
    shares = " and ".join(pct(r.sham_own_change / r.real_own_change) for r in rows.itertuples())
    changes = " and ".join(num(r.change_real, 2) for r in rows.itertuples())
    summary = earlier(study(name, "summary.parquet"))
    summary = summary[summary["setting"] == "concise_vs_detailed"]
    of_gain = " and ".join(pct(r.reward_margin_change / r.own_margin) for r in summary.itertuples())
    return (
        f"The conflicting rows are `control_invalid`: the sham moved its own objective by {shares} of what the "
        f"real stage taught it (the validity tolerance, `labels.sham_own_tolerance`, is "
        f"{pct(LabelOptions().sham_own_tolerance)}), so it taught the preference and is no null there. The raw "
        f"`degradation` (the later stage erases the earlier preference: {changes} nats, {of_gain} of the own gain) "
        "stands on its own; whether it is specific to the preferences, this control cannot say.\n"
    )


@renderer("real.timing")
def real_timing() -> str:
    """SmolLM2 on CPU: training and scoring speed in fp32 and bf16, bf16's scoring error at the script's
    learning rate and at the paper's 5e-5 (``benchmarks/real_model.py``), and the real study's mean job
    times (``--jobs results/real``)."""
    r, jobs = bench("real_model"), bench("real_jobs")
    train, score = r["train"], r["score"]
    scorer = r["scorer"]
    now, before = scorer["completion positions (now)"], scorer["all positions (before)"]
    rows = [
        [
            "training, one optimiser step of 8 pairs (accumulation 2)",
            f"{train['float32']['s_per_step']:.1f} s ({train['float32']['tokens_per_s']:.0f} tokens/s)",
            f"{train['bfloat16']['s_per_step']:.1f} s ({train['bfloat16']['tokens_per_s']:.0f} tokens/s)",
        ],
        [
            "scoring with the adapter attached, pairs/s",
            f"{score['fp32 unmerged']['pairs_per_s']:.2f}",
            f"{score['bf16 unmerged']['pairs_per_s']:.2f}",
        ],
        [
            "the fp32 scorer, pairs/s: logits at completion positions only (now) / at every position (before), "
            "each round",
            "; ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(now, before)),
            "—",
        ],
    ]
    low = bench("real_model_lr5e-5")
    for run in (r, low):
        error, fp32 = run["error"], run["score"]["fp32 unmerged"]["mean_margin"]
        rows.append(
            [
                f"scoring error: mean \\|pair margin − fp32 margin\\| after {run['pairs'] // 8} steps at lr "
                f"{run['learning_rate']:g} (fp32 mean margin {fp32:.2f} nats)",
                "—",
                f"{error['bf16 unmerged']['mean_abs_nats']:.2f} nats unmerged, "
                f"{error['bf16 merged']['mean_abs_nats']:.2f} merged (mean differences "
                f"{num(error['bf16 unmerged']['mean_nats'])} / {num(error['bf16 merged']['mean_nats'])})",
            ]
        )
    rules = jobs["rules"]
    mean = {name: rules[name]["mean_s"] for name in ("train_stage", "score_stage", "base_logps", "import_base_model")}
    return (
        f"Measured with {command(r)} and {command(low)} ({r['threads']} thread; {r['pairs']} train pairs of "
        f"~{train['float32']['tokens_per_pair']:.0f} tokens per pair, chat template included, {r['eval_pairs']} "
        f"eval pairs):\n\n"
        + table(["", "fp32", "bf16"], rows)
        + f"\nThe benchmark's process peaked at {train['float32']['peak_rss_mb_so_far'] / 1024:.1f} GB by the end "
        f"of fp32 training (the model, its optimiser state and one stage's activations). Mean job times in the run "
        f"above ({command(jobs)}): training stage {mean['train_stage']:.0f} s, scoring {mean['score_stage']:.0f} s, "
        f"base log-probs {mean['base_logps']:.0f} s, import {mean['import_base_model']:.0f} s.\n"
    )


@renderer("movement.memory")
def movement_memory() -> str:
    """Peak memory of the adapter-movement step at Llama-3.1-8B shapes (``benchmarks/movement_memory.py``)."""
    r = bench("movement_memory")
    return (
        f"Adapter movement at Llama-3.1-8B shapes ({command(r)}: {r['stages']} stages, r = {r['rank']}, all "
        f"linear layers): low rank, module by module, peaks at {r['low_rank_rss_mb'] / 1024:.1f} GB for all "
        f"{r['layers']} layers (+{(r['low_rank_rss_mb'] - r['imports_rss_mb']) / 1024:.1f} GB over the imports alone); "
        f"dense ΔW, as before, took +{r['dense_mb_per_layer'] / 1024:.1f} GB over the imports *per layer*, "
        f"≈ {r['dense_all_layers_mb'] / 1024:.0f} GB for {r['layers']} layers (extrapolated linearly from "
        f"{r['dense_layers']} layer).\n"
    )


@renderer("public.time")
def public_time() -> str:
    """The public study's wall time, from its Snakemake log (``docs/data/public/snakemake.log``)."""
    jobs, wall = log_run(snapshot("public", "snakemake.log"))
    return (
        f"It takes **{minutes(wall)}** for `snakemake --cores 2 --configfile config/public.yaml` on a fresh `results/public` "
        f"({jobs} jobs, {wall} s; `docs/data/public/snakemake.log`).\n"
    )


@renderer("gemma.import")
def gemma_import() -> str:
    """What importing Gemma 3 270M took in the Gemma study (``benchmarks/real_model.py --jobs``)."""
    r = bench("gemma_jobs")
    job = r["rules"]["import_base_model"]
    return (
        f"Importing it took {job['mean_s']:.0f} s and a peak RSS of {job['peak_rss_mb'] / 1024:.1f} GB in the study "
        f"below ({command(r)}).\n"
    )


#: the real setting whose Pareto points and hypervolumes the docs quote (the other's hypervolumes are all ~0)
REAL_FRONT = "concise_vs_spelling"


@renderer("real.alright")
def real_alright(name: str = "real") -> str:
    """ALRIGHT against DPO on the real files: budgets, dominance and hypervolumes."""
    verdicts = study(name, "verdicts.tsv")
    joint = verdicts[verdicts["method"] == "alright"]
    hv = study(name, "hypervolume.parquet").set_index(["setting", "method"])
    pareto = study(name, "pareto.parquet")
    lines = [
        f"The joint `alright` spends the sequential runs' budget ({joint['pairs_seen_total'].max()} pairs, "
        f"{joint['optimizer_steps_total'].max()} optimiser steps, "
        f"{joint['tokens_total'].min() / 1000:.1f}k–{joint['tokens_total'].max() / 1000:.1f}k tokens over the two "
        "stages, `tables/verdicts.tsv`)."
    ]
    for setting, group in pareto[pareto["setting"] == REAL_FRONT].groupby("setting"):
        dominated = group[group["dominated"]]
        a, d = hv.loc[(setting, "alright")], hv.loc[(setting, "dpo")]
        lines.append(
            f"On `{setting}`: {len(dominated)} of {len(group)} points shown dominated "
            f"({', '.join(f'{m} {arrow(o)}' for m, o in zip(dominated.method, dominated.order)) or 'none'}); "
            f"hypervolume (nats²) alright {hv_text(a)}, dpo {hv_text(d)} (best single order "
            f"{d.best_point_hypervolume:.0f} [{d.best_point_hypervolume_lo:.0f}, {d.best_point_hypervolume_hi:.0f}])."
        )
    return "\n".join(lines) + "\n"


def hv_text(row: pd.Series, digits: int = 0) -> str:
    """A hypervolume with its interval, unsigned."""
    return f"{row.hypervolume:.{digits}f} [{row.hypervolume_lo:.{digits}f}, {row.hypervolume_hi:.{digits}f}]"


# --- the real-model study on Gemma 3 270M (config/real.yaml, base_model: pip:gemma3-270m) ------------------------

for _kind, _render in {
    "dpo": real_dpo,
    "dpo_shares": real_dpo_shares,
    "controls": real_controls,
    "alright": real_alright,
}.items():
    RENDERERS[f"gemma.{_kind}"] = lambda render=_render: render("gemma")


@renderer("gemma.own")
def gemma_own() -> str:
    """Each objective's own stage 1 on both models (reward margin change, nats, and pairs ranked right after it)."""
    rows = []
    for label, name in (("SmolLM2-135M-Instruct", "real"), ("Gemma 3 270M", "gemma")):
        summary = study(name, "summary.parquet")
        own = summary[(summary["method"] == "dpo") & (summary["role"] == "trained") & (summary["stage"] == 1)]
        rows += [
            [
                label,
                f"`{r.setting}`",
                r.objective,
                ci(r.reward_margin_change, r.reward_margin_change_lo, r.reward_margin_change_hi),
                pct(r.rel_accuracy),
            ]
            for r in own.sort_values(["setting", "objective"]).itertuples()
        ]
    return table(
        ["model", "setting", "objective (own stage 1)", "change (nats, 95% interval)", "ranked right after"], rows
    )


@renderer("gemma.run")
def gemma_run() -> str:
    """The Gemma study's wall time and job count, from the end of its Snakemake log (``docs/data/gemma/run.txt``)."""
    text = snapshot("gemma", "run.txt").read_text()
    done = re.search(r"(\d+) of (\d+) steps \(100%\) done", text)
    hours, minutes, seconds = re.search(r"Elapsed time: (\d+):(\d+):(\d+)", text).groups()
    return (
        f"{done.group(2)} jobs in {int(hours) * 60 + int(minutes)} min {int(seconds)} s "
        "(`snakemake --cores 2`, 2 CPU cores).\n"
    )


# --- public human preference data (config/public.yaml) --------------------------------------------------------


@renderer("public.curve")
def public_curve() -> str:
    """The learning curve that chose the public study's budget."""
    curve = study("public-curve", "learning_curve.tsv")
    steps = sorted(curve["step"].unique())
    rows = []
    for objective, group in curve.groupby("objective"):
        by_step = group.set_index("step")
        rows.append(
            [objective, str(int(group["eval_pairs"].iloc[0]))]
            + [
                f"{ci(r.margin_change, r.lo, r.hi)}, {pct(r.ranked_right)} ranked right"
                for r in (by_step.loc[s] for s in steps)
            ]
        )
    pairs = curve.drop_duplicates("step").set_index("step")["pairs_trained"]
    return table(["own stage", "eval pairs"] + [f"{s} steps ({pairs[s]} pairs)" for s in steps], rows)


@renderer("public.data")
def public_data() -> str:
    """The public study's splits from its data report (``docs/data/public/data_report.tsv``) and the
    helpful eval split (``helpful_eval.parquet``): truncation, drops, eval sizes, prompts shared."""
    report = study("public", "data_report.tsv").set_index("objective")
    harmless, helpful = report.loc["harmless"], report.loc["helpful"]
    evals = study("public", "helpful_eval.parquet")
    longer = (evals["chosen"].str.len() > evals["rejected"].str.len()).mean()
    return (
        f"Each stage trains on {harmless['train_pairs']} pairs; `max_length: {harmless['max_length']}` truncates "
        f"{harmless['train_truncated']} of the {harmless['train_pairs']} harmless train pairs, and "
        f"{harmless['dropped_over_length']} harmless pairs whose prompt alone fills it were dropped. Eval: "
        f"{harmless['eval_pairs']} harmless pairs and {helpful['eval_pairs']} helpful pairs on only "
        f"{evals['prompt'].nunique()} prompts (PandaLM's test set forms {helpful['pairs_formed']} pairs); in "
        f"{pct(longer)} of the helpful eval pairs the preferred response is the longer one.\n"
    )


@renderer("public.findings")
def public_findings() -> str:
    """What the public-data study finds, per objective: own stage, cross effects, sham, specific, ALRIGHT."""
    summary = study("public", "summary.parquet")
    controls = study("public", "controls.parquet").set_index("objective")
    dpo = summary[summary["method"] == "dpo"]
    objectives = sorted(dpo["objective"].unique())
    first = dpo[(dpo["stage"] == 1)].set_index(["order", "objective"])
    late = earlier(summary).set_index("objective")
    joint = summary[(summary["method"] == "alright") & (summary["stage"] == summary["stage"].max())].set_index(
        "objective"
    )
    rows = {
        "own stage 1 (DPO)": [],
        "the other objective during that stage": [],
        "earlier objective after the later stage": [],
        "sham at stage 2 (same text, preferences cancelled)": [],
        "specific (real − sham)": [],
        "control": [],
        "ALRIGHT, both objectives jointly, after its two stages": [],
    }
    for o in objectives:
        other = next(x for x in objectives if x != o)
        own = first.loc[(f"{o}-{other}", o)]
        cross = first.loc[(f"{other}-{o}", o)]
        e, c, j = late.loc[o], controls.loc[o], joint.loc[o]
        rows["own stage 1 (DPO)"].append(
            f"{ci(own.reward_margin, own.reward_margin_lo, own.reward_margin_hi)}, {pct(own.rel_accuracy)} ranked right"
        )
        rows["the other objective during that stage"].append(
            f"{ci(cross.reward_margin_change, cross.reward_margin_change_lo, cross.reward_margin_change_hi)} ({other} trained)"
        )
        rows["earlier objective after the later stage"].append(
            f"{ci(e.reward_margin_change, e.reward_margin_change_lo, e.reward_margin_change_hi)}: `{e.label}` "
            f"(ranked right {pct(e.own_accuracy)} → {pct(e.rel_accuracy)}, "
            f"{ci(e.rel_accuracy_change * 100, e.rel_accuracy_change_lo * 100, e.rel_accuracy_change_hi * 100, 1)} points)"
        )
        rows["sham at stage 2 (same text, preferences cancelled)"].append(
            f"{ci(c.change_sham, c.change_sham_lo, c.change_sham_hi)}; ‖Δθ‖ {c.change_norm_ratio:.2f}× the real stage's"
        )
        rows["specific (real − sham)"].append(ci(c.specific, c.specific_lo, c.specific_hi))
        validity = "valid" if pd.isna(c.control_invalid_reason) else "not valid"
        rows["control"].append(
            f"{validity} (sham moved its own objective {num(c.sham_own_change)} of "
            f"{num(c.real_own_change)}): `{c.control_label}`"
        )
        rows["ALRIGHT, both objectives jointly, after its two stages"].append(
            ci(j.reward_margin, j.reward_margin_lo, j.reward_margin_hi)
        )
    return table([""] + objectives, [[k] + v for k, v in rows.items()])


@renderer("public.extent")
def public_extent() -> str:
    """The public study's budget, eval sizes, hypervolumes and the half-widths that bound what it can show."""
    summary = study("public", "summary.parquet")
    verdicts = study("public", "verdicts.tsv")
    hv = study("public", "hypervolume.parquet").set_index("method")
    e = earlier(summary)
    half = (e["reward_margin_change_hi"] - e["reward_margin_change_lo"]) / 2
    dpo = verdicts[verdicts["method"] == "dpo"]
    n = summary[summary["stage"] == 1].drop_duplicates("objective").set_index("objective")["n"]
    return (
        f"Every run spends {dpo['pairs_seen_total'].max()} pairs in {dpo['optimizer_steps_total'].max()} optimiser "
        f"steps over its two stages; eval: {', '.join(f'{int(v)} {k} pairs' for k, v in n.items())}. "
        f"Hypervolumes (nats²): alright {hv_text(hv.loc['alright'], 2)}, dpo {hv_text(hv.loc['dpo'], 2)}. "
        f"Effects on the earlier objective below about {half.min():.1f}–{half.max():.1f} nats (the half-widths of "
        "its intervals) cannot be seen.\n"
    )


# --- the lab -----------------------------------------------------------------------------------------------------


@renderer("lab.readings")
def lab_readings() -> str:
    """The lab's earlier objective at the last stage from 2, 3 and 8 seeds (benchmarks/lab_coverage.py)."""
    readings = study("lab-coverage", "readings.tsv")
    wide = {}
    for r in readings.to_dict("records"):
        cell = f"{r['change [95% CI]']} {r['label']}".replace("-", "−")
        wide.setdefault((r["setting"], r["order"], r["objective"]), {})[r["seeds"]] = cell
    sizes = sorted(readings["seeds"].unique())
    rows = [[s, o, obj] + [cells[k] for k in sizes] for (s, o, obj), cells in wide.items()]
    return table(["setting", "order", "earlier objective"] + [f"{k} seeds" for k in sizes], rows)


#: the lab settings docs/results.md describes: name -> (objectives, what they are built to do)
LAB_SETTINGS = {
    "conflicting": (
        '`comply` (opener "sure ,") vs `refuse` (opener "sorry ,")',
        "B prefers what A rejects",
    ),
    "compatible": (
        "`comply` vs `polite` (warm closer, and the complying opener in most pairs: `src/seqpref/lab.py`)",
        "training either raises the other",
    ),
    "independent": ("`comply` vs `warm` (closer)", "different attributes"),
    "partial_conflict": (
        "`warm_comply` vs `warm_refuse`: they disagree on the opener in every pair and both prefer the warm "
        "closer, which differs in half of the pairs",
        "a model positive on both exists (prefer warm, ignore the opener)",
    ),
    "strong_signal": (
        "`safe` (content words) vs `comply_weak` (opener, 30% labels flipped)",
        "an easy, large-margin objective beside a weak one",
    ),
}


def lab_cosines() -> pd.DataFrame:
    """Mean gradient cosine per setting, run (order, seed) and probe kind over a lab stage 2's probes
    (the lab's sequential DPO at its budget: ``docs/data/robustness/x1/diagnostics.parquet``)."""
    diagnostics = pd.read_parquet(snapshot("robustness", "x1", "diagnostics.parquet"))
    diagnostics = diagnostics[diagnostics["method"] == "dpo"]
    return diagnostics.groupby(["setting", "order", "seed", "kind"], as_index=False)["cosine"].mean()


def cosine_range(cosines: pd.DataFrame, kinds: tuple[str, ...], setting: str | None = None) -> str:
    """``lo–hi`` (or ``lo to hi`` when negative) of the per-run mean cosines of ``kinds`` (in ``setting``)."""
    rows = cosines[cosines["kind"].isin(kinds) & ((cosines["setting"] == setting) if setting else True)]
    lo, hi = rows["cosine"].min(), rows["cosine"].max()
    return f"{num(lo, 2, False)} to {num(hi, 2, False)}" if lo < 0 else f"{lo:.2f}–{hi:.2f}"


def label_summary(readings: pd.DataFrame) -> str:
    """The labels of a setting's two orders at each seed count, in as few words as they allow."""
    per_seeds = {}
    for seeds, part in readings.groupby("seeds"):
        labels = list(part["label"])
        per_seeds[seeds] = (
            f"`{labels[0]}` in both orders"
            if len(set(labels)) == 1
            else " and ".join(f"`{label}` ({objective} first)" for label, objective in zip(labels, part["objective"]))
        )
    groups: dict[str, list[int]] = {}
    for seeds, text in per_seeds.items():
        groups.setdefault(text, []).append(int(seeds))
    return "; ".join(
        f"{text} at {', '.join(map(str, sizes[:-1])) + ' and ' if len(sizes) > 1 else ''}{sizes[-1]} seeds"
        for text, sizes in groups.items()
    )


def check_near_orthogonal(cosines: pd.DataFrame) -> None:
    """Raise unless the independent setting's cross cosines are near 0 against the noise floors (every
    |cross| below half the lowest floor): the pages call its gradients near-orthogonal, and not noise."""
    cross = cosines[(cosines["kind"] == "cross") & (cosines["setting"] == "independent")]["cosine"].abs()
    floors = cosines[cosines["kind"].isin(("floor_current", "floor_other"))]["cosine"]
    if cross.empty or floors.empty or cross.max() >= floors.min() / 2:
        raise ValueError("the independent setting's cross cosines are no longer well below the noise floors")


@renderer("lab.settings")
def lab_settings() -> str:
    """The lab's settings, what each is built to do and what sequential DPO shows on them: the earlier
    objective's change at the last stage (8 seeds) and its labels at 2, 3 and 8 seeds
    (``docs/data/lab-coverage/readings.tsv``), and the independent setting's gradient cosines."""
    readings = study("lab-coverage", "readings.tsv")
    readings["change"] = readings["change [95% CI]"].str.split(" ").str[0].astype(float)
    cosines = lab_cosines()
    rows = []
    for setting, (objectives, built) in LAB_SETTINGS.items():
        part = readings[readings["setting"] == setting]
        most = part[part["seeds"] == part["seeds"].max()]
        changes = " and ".join(
            f"{num(r['change'])} nats (its own stage taught it +{r['own gain']:.2f})" for r in most.to_dict("records")
        )
        shown = (
            f"at {int(most['seeds'].iloc[0])} seeds the earlier objective changes by {changes}; {label_summary(part)}"
        )
        if setting == "independent":
            check_near_orthogonal(cosines)
            shown += (
                f"; the two attributes' gradients are near-orthogonal (cos {cosine_range(cosines, ('cross',), setting)}, "
                f"against noise floors of {cosine_range(cosines, ('floor_current', 'floor_other'))})"
            )
        if setting == "partial_conflict":
            shown += '; the joint methods on it: "The baselines on the lab" in [Methods](methods.md)'
        rows.append([f"`{setting}`", objectives, built, shown])
    return table(["setting", "objectives", "by construction", "what the lab shows (sequential DPO)"], rows)


def benchmark_module(name: str):
    """Import ``benchmarks/<name>.py`` (the renderers reuse a benchmark's own table code)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    return __import__(name)


def robustness_budgets() -> list[int]:
    """The budgets (× the lab's epochs) whose tables ``docs/data/robustness/x<budget>/`` keeps."""
    return sorted(int(path.name[1:]) for path in (DATA / "robustness").glob("x*") if path.is_dir())


@renderer("robustness.table")
def robustness_table() -> str:
    """The lab's earlier objective at the last stage, raw and against its sham, at each budget
    (``benchmarks/lab_robustness.py``'s table from each budget's ``controls.parquet``)."""
    label_table = benchmark_module("lab_robustness").label_table
    frames = [
        label_table(pd.read_parquet(snapshot("robustness", f"x{budget}", "controls.parquet")), budget)
        for budget in robustness_budgets()
    ]
    frame = pd.concat(frames, ignore_index=True)
    rows = [
        [str(value).replace("-", "−") if not isinstance(value, str) or value[:1] in "+-" else value for value in row]
        for row in frame.itertuples(index=False)
    ]
    return table(list(frame.columns), rows)


@renderer("robustness.reading")
def robustness_reading() -> str:
    """What the robustness table says at the larger budget: own gains, interval widths, labels, distances."""
    budgets = robustness_budgets()
    frames = {b: pd.read_parquet(snapshot("robustness", f"x{b}", "controls.parquet")) for b in budgets}
    last = {}
    for budget, controls in frames.items():
        rows = controls[controls["stage"] == controls.groupby(["setting", "order"])["stage"].transform("max")]
        last[budget] = rows[rows["role"] == "earlier"]
    low, high = budgets[0], budgets[-1]
    big = last[high]
    width = (big["change_real_hi"] - big["change_real_lo"]).max()
    labels = big["label_real"].value_counts()
    shown = [
        f"`{r.label_real}` ({r.setting}, {r.objective} first)" for r in big.itertuples() if r.label_real != "stable"
    ]
    invalid = int((big["control_label"] == "control_invalid").sum())
    return (
        f"At ×{high} the own gains grow ({big['own_gain'].min():.1f}–{big['own_gain'].max():.1f} nats, against "
        f"{last[low]['own_gain'].min():.2f}–{last[low]['own_gain'].max():.2f} at ×{low}), but the two seeds no longer agree: "
        f"the raw change's interval is up to {width:.0f} nats wide, and {labels.get('stable', 0)} of {len(big)} raw "
        f"labels read `stable`, which here means that no change was shown, not that none happened. Shown: "
        + ", ".join(shown)
        + f". The shams were distance matched at {big['change_norm_ratio'].min():.2f}–{big['change_norm_ratio'].max():.2f}× "
        f"({invalid} `control_invalid`).\n"
    )


@renderer("robustness.time")
def robustness_time() -> str:
    """How long each budget of ``benchmarks/lab_robustness.py`` ran."""
    r = bench("lab_robustness")
    if not all(r["fresh"].values()):
        raise ValueError("lab_robustness.json timed a rerun that reused finished jobs")
    times = ", ".join(f"{minutes(seconds)} at ×{budget[1:]}" for budget, seconds in r["wall_s"].items())
    return f"{command(r)} ran in {times} on {r['cores']} cores.\n"


@renderer("lab.cosines")
def lab_cosines_text() -> str:
    """The lab's gradient noise floors and cross-objective cosines (per-run means over stage 2's probes)."""
    cosines = lab_cosines()
    check_near_orthogonal(cosines)
    return (
        f"In the lab (sequential DPO, 2 seeds, `docs/data/robustness/x1/`) the floors are "
        f"{cosine_range(cosines, ('floor_current', 'floor_other'))} and the independent setting's cross cosine "
        f"{cosine_range(cosines, ('cross',), 'independent')}, so its near-orthogonality is not noise; conflicting "
        f"{cosine_range(cosines, ('cross',), 'conflicting')} (per-run means over a stage's probes).\n"
    )


@renderer("lab.coverage")
def lab_coverage() -> str:
    """Coverage and median width of the tables' interval and the pooled bootstrap on the 8-seed lab."""
    cov = study("lab-coverage", "coverage.parquet")
    g = cov.groupby(["seeds", "interval"]).agg(
        coverage=("covered", "mean"), n=("covered", "size"), width=("width", "median")
    )
    parts = [
        f"at {s} seeds ({g.loc[(s, 'crossed'), 'n']} intervals) the tables' interval covers "
        f"{g.loc[(s, 'crossed'), 'coverage'] * 100:.1f}% with a median width of {g.loc[(s, 'crossed'), 'width']:.2f} "
        f"nats, the pooled bootstrap {g.loc[(s, 'bootstrap'), 'coverage'] * 100:.1f}% at "
        f"{g.loc[(s, 'bootstrap'), 'width']:.2f}"
        for s in sorted(cov["seeds"].unique())
    ]
    return "On the lab itself: " + "; ".join(parts) + ".\n"


@renderer("lab.controls")
def lab_controls() -> str:
    """The lab's sham controls (sequential DPO, the default design) and how many are valid."""
    controls = study("sham-designs", "lab_halfswap_matched.parquet")
    dpo = controls[controls["method"] == "dpo"]
    valid = int(dpo["control_invalid_reason"].isna().sum())
    return (
        f"Every sham moved the adapter {dpo['change_norm_ratio'].min():.2f}–{dpo['change_norm_ratio'].max():.2f}× "
        f"as far as its real stage; {valid} of {len(dpo)} controls are valid.\n\n" + controls_table(controls, 2)
    )


# --- controls: the sham designs ----------------------------------------------------------------------------------

DESIGNS = {
    "halfswap_unmatched": "`half_swap`",
    "halfswap_matched": "`half_swap` + distance match (default)",
    "prevref_unmatched": "`previous_reference`",
    "prevref_matched": "`previous_reference` + distance match",
}


def design_stages(study_name: str, design: str) -> pd.DataFrame:
    """One row per sham stage of a design's controls table: own-change ratio, distance ratio, validity."""
    controls = study("sham-designs", f"{study_name}_{design}.parquet")
    stages = controls.drop_duplicates(["setting", "method", "order", "stage"]).copy()
    reason = stages["control_invalid_reason"].fillna("")
    stages["own_ratio"] = stages["sham_own_change"].abs() / stages["real_own_change"].abs()
    stages["neutral"] = ~reason.str.contains("own objective")
    stages["distance_ok"] = ~reason.str.contains("adapter")
    stages["valid"] = stages["control_invalid_reason"].isna()
    return stages


@renderer("controls.designs_lab")
def designs_lab() -> str:
    """Each sham design on the lab: medians per setting, and counts of neutral, distance-matched, valid shams."""
    rows = []
    for key, label in DESIGNS.items():
        s = design_stages("lab", key)
        by = s.groupby(["setting", "method"])[["own_ratio", "change_norm_ratio"]].median()
        rows.append(
            [
                label,
                f"{by.own_ratio.min():.2f}–{by.own_ratio.max():.2f}",
                f"{by.change_norm_ratio.min():.2f}–{by.change_norm_ratio.max():.2f}",
            ]
            + [f"{int(s[c].sum())} / {len(s)}" for c in ("neutral", "distance_ok", "valid")]
        )
    return table(
        [
            "design",
            "own change, sham / real (median per setting and method)",
            "‖Δθ‖ sham / real (median per setting and method)",
            "neutral",
            "distance",
            "valid",
        ],
        rows,
    )


@renderer("controls.designs_real")
def designs_real() -> str:
    """Each sham design on the real model: the sham on its own objective, per sham, and the distance ratios."""
    rows = []
    for key, label in DESIGNS.items():
        s = design_stages("real", key)
        cells = [
            ", ".join(f"{num(r.sham_own_change)} of {num(r.real_own_change)}" for r in g.itertuples())
            for _, g in s.groupby("setting")
        ]
        lo, hi = s["change_norm_ratio"].min(), s["change_norm_ratio"].max()
        rows.append(
            [label]
            + cells
            + [
                f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}",
                f"{int(s['valid'].sum())} / {len(s)}",
            ]
        )
    settings = sorted(design_stages("real", "halfswap_matched")["setting"].unique())
    return table(["design"] + [f"`{x}` (per sham)" for x in settings] + ["‖Δθ‖ sham / real", "valid"], rows)


# --- calibration (benchmarks/calibration.py) ---------------------------------------------------------------------

INTERVALS = {
    "crossed": "tables (seeds and pairs)",
    "fieller": "share of own gain (Fieller)",
    "bootstrap": "pooled bootstrap (before)",
}


def calibration(name: str = "calibration.out") -> pd.DataFrame:
    """benchmarks/calibration.py's ``key=value`` lines (``docs/data/calibration/<name>``) as a table."""
    lines = snapshot("calibration", name).read_text().splitlines()
    rows = [dict(field.split("=") for field in line.split()) for line in lines if line.startswith("seeds=")]
    frame = pd.DataFrame(rows)
    for column in ("seeds", "coverage", "false_label", "ratio"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


@renderer("calibration.coverage")
def calibration_coverage() -> str:
    """Coverage of a nominal 95% interval per seeds, interval and seed-spread ratio."""
    frame = calibration()
    ratios = sorted(frame["ratio"].unique())
    rows = []
    for seeds, part in frame.groupby("seeds"):
        for interval, label in INTERVALS.items():
            cells = part[part["interval"] == interval].set_index("ratio")["coverage"]
            if seeds == 1 and interval != "crossed":
                continue
            name = "tables (pairs only, against its own run)" if seeds == 1 else label
            rows.append([str(seeds), name] + [f"{cells[r]:.3f}" for r in ratios])
    return table(["seeds", "interval"] + [f"ratio {r:g}" for r in ratios], rows)


@renderer("calibration.hypervolume")
def calibration_hypervolume() -> str:
    """Coverage of the hypervolume interval per seeds and seed-spread ratio (``hypervolume.out``)."""
    frame = calibration("hypervolume.out")
    ratios = sorted(frame["ratio"].unique())
    rows = []
    for seeds, part in frame.groupby("seeds"):
        cells = part.set_index("ratio")["coverage"]
        name = "hypervolume (pairs only)" if seeds == 1 else "hypervolume (seeds and pairs)"
        rows.append([str(seeds), name] + [f"{cells[r]:.3f}" for r in ratios])
    one = frame[frame["seeds"] == 1]["coverage"]
    return table(["seeds", "interval"] + [f"ratio {r:g}" for r in ratios], rows) + (
        f"\nWith one seed no seed effect is drawn, so every ratio is the same case: {len(one)} replicates at "
        f"{one.min():.3f}–{one.max():.3f}, mean {one.mean():.3f}.\n"
    )


@renderer("bench.scoring")
def bench_scoring() -> str:
    """Scoring throughput with and without the prompt once per pair (``benchmarks/scoring_speed.py``)."""
    r = bench("scoring_speed")
    shared, unshared = r["shared"], r["unshared"]

    def padding(arm: dict) -> str:
        share = arm["padding_tokens"] / (arm["real_tokens"] + arm["padding_tokens"])
        return f"{arm['real_tokens']:,} real tokens and {arm['padding_tokens']:,} of padding ({share:.1%})"

    return (
        f"**Scoring throughput** ({command(r)}: SmolLM2-135M-Instruct in fp32, {r['pairs']} real `concise` pairs, "
        f"{r['batch_size']} pairs per batch, {r['threads']} thread, median of {r['rounds']} rounds): "
        f"**{shared['pairs_per_s']:.2f} pairs/s** with each pair's prompt once, in batches of similar packed length, "
        f"against {unshared['pairs_per_s']:.2f} with chosen and rejected as two sequences ({2 * r['batch_size']} per "
        f"batch, sorted by length): {r['shared_over_unshared']:.2f}×. The shared rows hold {padding(shared)}; "
        f"the unshared ones {padding(unshared)}.\n"
    )


#: vs_trl.py's runs the performance page quotes: snapshot name -> what the data is
VS_TRL = {
    "vs_trl_lab": "lab",
    "vs_trl_hh": "hh-rlhf-shaped",
    "vs_trl_smollm2": "SmolLM2-135M-Instruct, real `concise` pairs",
}


@renderer("bench.vs_trl")
def bench_vs_trl() -> str:
    """seqpref's DPO step and stage against TRL's, per data (``benchmarks/vs_trl.py``)."""
    rows = []
    for name, label in VS_TRL.items():
        r = bench(name)
        step, stage = r["step_ms"], r["stage_s"]

        def versus(arm: str) -> str:
            return f"{step[arm]:.1f} ({step[arm] / step['seqpref']:.2f}×)"

        rows.append(
            [
                f"{label} ({command(r)})",
                pct(r["prompt_share"]),
                f"{step['seqpref']:.1f}",
                versus("seqpref_unshared"),
                versus("trl"),
                versus("trl_precompute"),
                f"{stage['seqpref']:.1f} / {stage['trl']:.1f} ({stage['trl'] / stage['seqpref']:.2f}×)",
            ]
        )
    header = ["data (command)", "prompt share of tokens", "seqpref ms/step", "unshared ms/step (× seqpref's time)"]
    header += ["TRL default ms/step (×)", "TRL precompute ms/step (×)", "stage s: seqpref / TRL default (×)"]
    return table(header, rows)


@renderer("bench.vs_trl_reading")
def bench_vs_trl_reading() -> str:
    """What the vs-TRL table says: step ratios, and a lab stage's fixed cost."""
    lab, hh = bench("vs_trl_lab"), bench("vs_trl_hh")

    def faster(r: dict, arm: str) -> str:
        """How many times faster seqpref's step is than ``arm``'s (``arm``'s time over seqpref's)."""
        return f"{r['step_ms'][arm] / r['step_ms']['seqpref']:.2f}×"

    fixed = lab["stage_s"]["seqpref"] - lab["steps"] * lab["step_ms"]["seqpref"] / 1000
    return (
        f"On the lab a seqpref step is {faster(lab, 'trl')} faster than TRL's default; the lab's prompts are short "
        f"({pct(lab['prompt_share'])} of the tokens), so sharing them alone makes a step "
        f"{faster(lab, 'seqpref_unshared')} faster. On hh-rlhf-shaped data (a multi-turn transcript, one-sentence "
        f"replies; prompts {pct(hh['prompt_share'])} of the tokens) sharing alone makes a step "
        f"{faster(hh, 'seqpref_unshared')} faster, and a seqpref step is {faster(hh, 'trl')} faster than TRL's default. "
        f"Much of a lab stage's wall time lies outside its optimiser steps (loading, the base log-probs, "
        f"tokenizing, saving, the first step's warm-up: {fixed:.1f} s of its {lab['stage_s']['seqpref']:.1f} s), so per "
        f"lab stage TRL's default takes {lab['stage_s']['trl'] / lab['stage_s']['seqpref']:.2f}× seqpref's time.\n"
    )


@renderer("bench.warm")
def bench_warm() -> str:
    """The reduced lab run warm and cold (``benchmarks/lab_demo.py`` with and without ``--cold``)."""
    warm, cold = bench("lab_small_warm"), bench("lab_small_cold")

    def rule(name: str) -> str:
        return f"`{name}` {cold['rules'][name]['mean_s']:.1f} s cold against {warm['rules'][name]['mean_s']:.1f} s warm"

    return (
        f"The reduced lab (`{warm['config']}`, {warm['jobs']} benchmarked jobs, {warm['cores']} cores) takes "
        f"**{warm['wall_s']:.0f} s warm against {cold['wall_s']:.0f} s cold** ({cold['wall_s'] / warm['wall_s']:.2f}×; "
        f"{warm['job_seconds']:.0f} against {cold['job_seconds']:.0f} job-seconds): "
        f"{rule('train_stage')}, {rule('score_stage')} a job ({command(warm)}, and the same with `--cold`).\n"
    )


@renderer("aggregate.speed")
def aggregate_speed() -> str:
    """How long aggregation takes on a million pair rows (``benchmarks/aggregate_1m.py``)."""
    r = bench("aggregate_1m")
    return (
        f"{r['rows']:,} pair rows in {r['files']} score files aggregate in {r['aggregate_s']:.1f} s "
        f"({r['n_boot']} bootstrap resamples; {command(r)}).\n"
    )


@renderer("calibration.false_label")
def calibration_false_label() -> str:
    """The largest share of null draws given a label other than ``stable``."""
    frame = calibration()
    return f"`false_label` (share of null draws given any label but `stable`) is at most {frame['false_label'].max():.3f}.\n"


# --- the workflow's own facts (docs/data/workflow.json) ----------------------------------------------------------


def workflow_facts() -> dict:
    """Planned jobs per config (``snakemake -n`` on an empty results folder) and the rules that ask for a GPU."""
    plans = {}
    for label, configs in PLANS.items():
        extra = ["results=/nonexistent/seqpref-docs-plan"] + PLAN_EXTRA.get(label, [])
        out = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--configfile", *configs, "--config", *extra],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        plans[label] = int(re.search(r"^total\s+(\d+)", out, re.MULTILINE).group(1))
    out = subprocess.run([sys.executable, "-c", RULE_RESOURCES], cwd=REPO, capture_output=True, text=True, check=True)
    gpu = json.loads(next(line[3:] for line in out.stdout.splitlines() if line.startswith("GPU")))
    return {"plans": plans, "gpu_rules": gpu}


@renderer("workflow.plans")
def workflow_plans() -> str:
    """What ``snakemake -n`` plans for each shipped config (its ``total``, the target rule ``all`` included)."""
    facts = json.loads(snapshot("workflow.json").read_text())
    return table(["study", "jobs (`snakemake -n`)"], [[k, str(v)] for k, v in facts["plans"].items()])


@renderer("workflow.gpu_rules")
def workflow_gpu_rules() -> str:
    """The rules that ask for a GPU (``gpu=1``)."""
    gpu = json.loads(snapshot("workflow.json").read_text())["gpu_rules"]
    return f"{len(gpu)} rules ask for one GPU: " + ", ".join(f"`{name}`" for name in gpu) + ".\n"


# --- make demo on a fresh clone (the lab study, end to end) --------------------------------------------------


@renderer("demo.breakdown")
def demo_breakdown() -> str:
    """Where ``make demo``'s workflow time went, per rule, from its Snakemake log (``docs/data/demo/``)."""
    per_rule, wall = benchmark_module("demo_breakdown").job_seconds(snapshot("demo", "snakemake.log"))
    rules = sorted(per_rule.items(), key=lambda item: -sum(item[1]))
    rows = [
        [f"`{rule}`", str(len(seconds)), f"{sum(seconds) / len(seconds):.1f}", f"{sum(seconds):.0f}"]
        for rule, seconds in rules[:8]
    ]
    rest = [value for _, seconds in rules[8:] for value in seconds]
    rows.append([f"the other {len(rest)} jobs", str(len(rest)), "", f"{sum(rest):.0f}"])
    total = sum(sum(seconds) for seconds in per_rule.values())
    jobs = sum(len(seconds) for seconds in per_rule.values())
    rows.append(["**all jobs**", str(jobs), "", f"**{total:.0f}**"])
    rows.append(["wall time, 2 cores", "", "", f"{wall:.0f}"])
    return table(["rule", "jobs", "mean s", "sum s"], rows)


@renderer("demo.total")
def demo_total() -> str:
    """``make demo``'s time on a fresh clone, from ``docs/data/demo/make_demo.txt`` (``total=…s workflow=…s``)."""
    text = snapshot("demo", "make_demo.txt").read_text()
    total = int(re.search(r"total=(\d+)s", text).group(1))
    return f"**{total // 60} min {total % 60} s** (installation included).\n"


# --- benchmarks (docs/data/bench/<name>.json, written by each script's --json) ----------------------------


def bench(name: str) -> dict:
    """The ``result`` of ``docs/data/bench/<name>.json``, with the record's ``command`` added under ``_command``."""
    record = json.loads(snapshot("bench", f"{name}.json").read_text())
    return {**record["result"], "_command": record["command"]}


def command(result: dict) -> str:
    """The command that produced a benchmark ``result``, as inline code, without its ``--json PATH``
    (where the numbers went, not how they were measured)."""
    return "`" + re.sub(r" --json(=| )\S+", "", result["_command"]) + "`"


def minutes(seconds: float) -> str:
    """``1558`` -> ``26 min``; under 10 minutes with seconds (``409`` -> ``6 min 49 s``)."""
    seconds = round(seconds)
    if seconds >= 600:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def log_run(path: Path) -> tuple[int, float]:
    """``(jobs, wall seconds)`` of the run a Snakemake log records (``N of N steps (100%) done`` and its
    ``Elapsed time``)."""
    text = path.read_text()
    jobs = int(re.search(r"(\d+) of \1 steps \(100%\) done", text).group(1))
    hours, mins, secs = re.search(r"Elapsed time: (\d+):(\d+):(\d+)", text).groups()
    return jobs, int(hours) * 3600 + int(mins) * 60 + int(secs)


@renderer("bench.checkpoint")
def bench_checkpoint() -> str:
    """What checkpoints cost a lab stage (``benchmarks/checkpoint_overhead.py``)."""
    r = bench("checkpoint_overhead")
    parts = [f"×{row['ratio']:.2f} as long with a checkpoint every {row['every']} steps" for row in r["with"]]
    each = [row["ms_each"] for row in r["with"]]
    return (
        f"What checkpoints cost: a lab stage of {r['steps']} steps takes " + " and ".join(parts) + f" "
        f"({min(each):.0f}–{max(each):.0f} ms per checkpoint; {command(r)}, median of {r['repeats']}, one thread).\n"
    )


@renderer("bench.diagnostics")
def bench_diagnostics() -> str:
    """What the gradient probes cost a lab stage (``benchmarks/diagnostics_overhead.py``)."""
    r = bench("diagnostics_overhead")
    return (
        f"What the probes cost: at `every: {r['every']}` a lab stage of {r['steps']} steps takes ×{r['ratio']:.2f} "
        f"as long with the probes and their noise floors as without ({r['probes']} probes, {r['ms_per_probe']:.0f} ms "
        f"each; {command(r)}, median of {r['repeats']}, one thread).\n"
    )


@renderer("bench.paper_cost")
def bench_paper_cost() -> str:
    """The paper grid's GPU-hours (``benchmarks/paper_cost.py``)."""
    r = bench("paper_cost")
    lengths = (
        "Token lengths come from the data reports."
        if r["measured_lengths"]
        else "Token lengths are assumed for the objectives without a data report (none can be computed without hub "
        "access here); re-run it after `data_report` for the real figure (it says which lengths it used)."
    )
    return (
        f"It assumes {r['train_tokens_per_s'] / 1000:.1f}k training tokens/s per H100 ({r['mfu']:.0%} MFU of "
        f"{r['peak_tflops']:.0f} dense bf16 TFLOP/s; derived, not measured by us) and "
        f"{r['score_tokens_per_s'] / 1000:.1f}k fp32 scoring tokens/s, and {command(r)} gives "
        f"**≈ {r['hours_train']:.0f} GPU-hours of training, {r['hours_score']:.0f} of scoring and "
        f"{r['hours_load']:.0f} of model loads ({r['gpu_jobs']} GPU jobs at {r['load_minutes']:g} min each): "
        f"≈ {r['hours_total']:.0f} H100-hours for {r['seeds']} seeds**. {lengths}\n"
    )


def yes(flag: bool) -> str:
    """``yes`` or ``no``."""
    return "yes" if flag else "no"


@renderer("baselines.table")
def baselines_table() -> str:
    """Every method's final point on the lab's partial-conflict setting (``docs/data/baselines/``, from
    ``benchmarks/lab_baselines.py``): both objectives' margins, the earlier objective's change, dominance, budget."""
    points = study("baselines", "pareto.parquet")
    summary = study("baselines", "summary.parquet")
    x_name, y_name = points["objective_x"].iloc[0], points["objective_y"].iloc[0]
    last = summary[summary["stage"] == summary.groupby(["method", "order"])["stage"].transform("max")]
    earlier_rows = last[last["role"].isin(["earlier", "replayed"])].set_index(["method", "order"])
    registry = methods.names()
    rows = []
    for r in sorted(
        points.itertuples(), key=lambda r: (registry.index(r.method), r.order, -(r.lam if r.lam == r.lam else 9))
    ):
        kind = methods.kind(r.method)
        if r.lam == r.lam:  # a point of the merge front
            name, change = f"{r.method}, λ = {r.lam:g}", ""
        elif kind == methods.JOINT:
            name, change = r.method, "(joint)"
        else:
            e = earlier_rows.loc[(r.method, r.order)]
            change = f"{ci(e.reward_margin_change, e.reward_margin_change_lo, e.reward_margin_change_hi)} `{e.label}`"
            name = (
                f"{r.method}, its stage 2" if kind == methods.POST_HOC else f"{r.method}, {r.order.split('-')[0]} first"
            )
        budget = r.pairs_seen_total == r.pairs_seen_total
        rows.append(
            [
                name,
                ci(r.x, r.x_lo, r.x_hi),
                ci(r.y, r.y_lo, r.y_hi),
                change,
                f"{yes(r.dominated)} / {yes(r.dominated_by_means)}",
                f"{r.pairs_seen_total:.0f}" if budget else "",
                f"{r.tokens_total / 1000:.1f}k" if budget else "",
            ]
        )
    header = ["run", x_name, y_name, "first objective's change, stage 1 → 2", "dominated (shown / by means)"]
    return table(header + ["pairs", "tokens"], rows)


@renderer("baselines.hypervolume")
def baselines_hypervolume() -> str:
    """Each method's hypervolume on the baselines study, largest first, with its best single point's."""
    volumes = study("baselines", "hypervolume.parquet").sort_values("hypervolume", ascending=False)
    parts = []
    for r in volumes.itertuples():
        text = f"{r.method} {r.hypervolume:.2f} [{r.hypervolume_lo:.2f}, {r.hypervolume_hi:.2f}]"
        if r.n_points > 1:
            text += f" (best point {r.best_point_hypervolume:.2f})"
        parts.append(text)
    return "Hypervolumes (nats², union of a method's points [interval]): " + ", ".join(parts) + ".\n"


@renderer("baselines.time")
def baselines_time() -> str:
    """How long the baselines study ran (``benchmarks/lab_baselines.py``)."""
    r = bench("lab_baselines")
    if not r["fresh"]:
        raise ValueError("lab_baselines.json timed a rerun that reused finished jobs")
    return f"{command(r)} ran it in {minutes(r['wall_s'])} on {r['cores']} cores.\n"


@renderer("controls.pilot_cost")
def controls_pilot_cost() -> str:
    """What the distance-matching pilot costs in the lab: a sham job (pilot and sham) against a real stage's
    job, mean seconds in ``make demo``'s run (``docs/data/demo/snakemake.log``)."""
    per_rule, _ = benchmark_module("demo_breakdown").job_seconds(snapshot("demo", "snakemake.log"))
    sham, real = per_rule["train_sham_stage"], per_rule["train_stage"]
    return (
        f"In `make demo`'s lab a `train_sham_stage` job (pilot and sham) took {sum(sham) / len(sham):.1f} s on "
        f"average against {sum(real) / len(real):.1f} s for a `train_stage` job (its Snakemake log, "
        "`docs/data/demo/`; 1 s resolution).\n"
    )


# --- the pages ---------------------------------------------------------------------------------------------------


def pages() -> list[Path]:
    """Every file that may hold marked blocks: docs/*.md and the README."""
    return sorted(DOCS.glob("*.md")) + [REPO / "README.md"]


def render_text(text: str, errors: list[str] | None = None) -> str:
    """``text`` with every marked block's body replaced by its renderer's output (unknown names raise
    KeyError). With ``errors``, a renderer that raises leaves its block as it was and appends
    ``name: error`` there; without, the error propagates."""

    def body(match: re.Match) -> str:
        try:
            return match.group(1) + RENDERERS[match.group("name")]() + match.group(4)
        except Exception as error:
            if errors is None:
                raise
            errors.append(f"{match.group('name')}: {type(error).__name__}: {error}")
            return match.group(0)

    return BLOCK.sub(body, text)


def stale(paths: list[Path] | None = None) -> list[str]:
    """``path: block`` for every marked block whose text differs from its rendering; [] when all agree."""
    found = []
    for path in paths or pages():
        text = path.read_text()
        for match in BLOCK.finditer(text):
            if match.group("body") != RENDERERS[match.group("name")]():
                found.append(f"{path}: {match.group('name')}")
    return found


def main() -> None:
    """Rewrite (or, with --check, verify) every marked block."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a block differs from its rendering")
    parser.add_argument("--workflow", action="store_true", help="refresh docs/data/workflow.json first")
    args = parser.parse_args()
    if args.workflow:
        (DATA / "workflow.json").write_text(json.dumps(workflow_facts(), indent=2) + "\n")
    if args.check:
        differing = stale()
        for line in differing:
            print(f"stale: {line}")
        sys.exit(1 if differing else 0)
    errors: list[str] = []
    for path in pages():
        text = path.read_text()
        if (new := render_text(text, errors)) != text:
            path.write_text(new)
            print(f"rendered {path.relative_to(REPO)}")
    for line in errors:
        print(f"not rendered (left as it was): {line}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
