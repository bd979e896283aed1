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

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
DATA = DOCS / "data"
BLOCK = re.compile(r"(<!-- render: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /render -->)", re.DOTALL)
RENDERERS: dict[str, Callable[[], str]] = {}

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
    path = DATA / name / table_name
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
    text = (DATA / "gemma" / "run.txt").read_text()
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


def calibration() -> pd.DataFrame:
    """benchmarks/calibration.py's ``key=value`` lines as a table."""
    lines = (DATA / "calibration" / "calibration.out").read_text().splitlines()
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
    facts = json.loads((DATA / "workflow.json").read_text())
    return table(["study", "jobs (`snakemake -n`)"], [[k, str(v)] for k, v in facts["plans"].items()])


@renderer("workflow.gpu_rules")
def workflow_gpu_rules() -> str:
    """The rules that ask for a GPU (``gpu=1``)."""
    gpu = json.loads((DATA / "workflow.json").read_text())["gpu_rules"]
    return f"{len(gpu)} rules ask for one GPU: " + ", ".join(f"`{name}`" for name in gpu) + ".\n"


# --- make demo on a fresh clone (the lab study, end to end) --------------------------------------------------


@renderer("demo.breakdown")
def demo_breakdown() -> str:
    """Where ``make demo``'s workflow time went, per rule, from its Snakemake log (``docs/data/demo/``)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from demo_breakdown import job_seconds

    per_rule, wall = job_seconds(DATA / "demo" / "snakemake.log")
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
    text = (DATA / "demo" / "make_demo.txt").read_text()
    total = int(re.search(r"total=(\d+)s", text).group(1))
    return f"**{total // 60} min {total % 60} s** (installation included).\n"


# --- the pages ---------------------------------------------------------------------------------------------------


def pages() -> list[Path]:
    """Every file that may hold marked blocks: docs/*.md and the README."""
    return sorted(DOCS.glob("*.md")) + [REPO / "README.md"]


def render_text(text: str) -> str:
    """``text`` with every marked block's body replaced by its renderer's output (unknown names raise KeyError)."""
    return BLOCK.sub(lambda m: m.group(1) + RENDERERS[m.group("name")]() + m.group(4), text)


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
    for path in pages():
        text = path.read_text()
        if (new := render_text(text)) != text:
            path.write_text(new)
            print(f"rendered {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
