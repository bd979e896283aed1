# Config validation, wildcard constraints, paths and input functions shared by every rule.

import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

import seqpref
from seqpref import guard, gguf_import, methods, plan
from seqpref.config import check_config
from seqpref.launch import gpu_resources, step
from seqpref.options import TrainOptions, recorded_options

# every problem named with its key and what was expected, then the defaults filled in: the schema's
# file with what the code owns (dataclass defaults, the method registry; seqpref.config.schema)
config.update(check_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"))
for _setting in config["settings"]:
    plan.orders(config, _setting)  # a listed order that is not a permutation fails here, by name

# the Python that runs snakemake runs the steps too (a venv need not be activated): its folder goes
# first on the PATH the rules' shell commands see, so their `python` is this one (under --sdm conda,
# the rule's environment, environment.yml, is activated after and comes first).
# seqpref itself is this checkout's, in whichever environment a step runs (set, not required: no envvars)
os.environ.update(
    PATH=os.pathsep.join(filter(None, [os.path.dirname(sys.executable), os.environ.get("PATH")])),
    PYTHONPATH=os.pathsep.join(filter(None, [str(Path(seqpref.__file__).parents[1]), os.environ.get("PYTHONPATH")])),
)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# whether steps that import torch start warm (:func:`step`)
os.environ.update(SEQPREF_WARM_START=str(int(config["warm_start"])))
ENV = "../../environment.yml"  # every rule's conda environment: what pyproject.toml pins

RESULTS = config["results"].rstrip("/")
# train options that change how a stage runs, not what it trains: passed as resources, so that
# changing them reruns nothing and the retrain guard ignores them
EXECUTION_ONLY = guard.EXECUTION_OPTIONS
RUN = plan.RUN_PATTERN
FIGURES = [
    "method_comparison",
    "margin_trajectory",
    "transfer_heatmap",
    "pair_scatter",
    "training_curves",
    "quartile_bars",
    "flip_plot",
    "gradient_cosine",
    "adapter_movement",
    "sham_control",
    "pareto_front",
]
FIGURE_CODE = Path(seqpref.__file__).parent / "figures"


wildcard_constraints:
    setting="[A-Za-z0-9_]+",
    objective="[A-Za-z0-9_]+",
    method="|".join(methods.names()),
    order="[A-Za-z0-9_]+(-[A-Za-z0-9_]+)+",
    seed=r"\d+",
    stage=r"\d+",
    split="train|eval",


# ---- how a step starts and what a model-loading step asks for: seqpref.launch (step, gpu_resources)


def as_json(value):
    """A stable JSON string of a config slice (params are compared by value for reruns)."""
    return json.dumps(value, sort_keys=True)


# ---- the base model -------------------------------------------------------------------------


def base_kind():
    """How the base model is had: "lab" (built by the DAG), "gguf" (a GGUF file imported by the DAG)
    or "transformers" (an id or directory loaded as it is)."""
    if config["base_model"] == "lab":
        return "lab"
    return "gguf" if gguf_import.is_gguf(config["base_model"]) else "transformers"


BASE_DIR = f"{RESULTS}/base_model"
BASE_RECORD = {"lab": "pretrain.json", "gguf": "import.json"}
BASE_FILES = [f"{BASE_DIR}/{name}" for name in ("config.json", "model.safetensors", "tokenizer.json")] + (
    [f"{BASE_DIR}/{BASE_RECORD[base_kind()]}"] if base_kind() in BASE_RECORD else []
)


def gguf_file():
    """The GGUF file of ``base_model`` (a packaged name resolved to where pip put it)."""
    try:
        return str(gguf_import.resolve(config["base_model"]))
    except FileNotFoundError as error:
        raise WorkflowError(str(error)) from None


def base_model():
    """What the steps load as the base: the directory the DAG builds or imports, or the configured id/path."""
    return config["base_model"] if base_kind() == "transformers" else BASE_DIR


def base_inputs(wildcards=None):
    """The base model's files when the DAG builds or imports it; nothing for a model loaded by id."""
    return [] if base_kind() == "transformers" else BASE_FILES


def model_options():
    """Options every step that loads a model shares (dtype, attention)."""
    return {"dtype": config["dtype"], "attn_implementation": config["attn_implementation"]}


def train_options():
    """TrainOptions of every trained stage: the shared ``train`` block and the model options (what a
    stage does beyond them is its method's, :func:`method_options`)."""
    train = {k: v for k, v in config["train"].items() if k not in EXECUTION_ONLY}
    return {**train, **model_options()}


def method_options(method, setting):
    """``method_options.<method>`` as the runs of ``setting`` see it (seqpref.methods.base.Method.setting_options):
    changing another method's options, or a weight of another setting's objective, retrains nothing here."""
    return methods.get(method).setting_options(
        config["method_options"][method], setting, plan.objectives(config, setting)
    )


def expected_train_options(run):
    """The resolved options (as recorded beside an adapter, seqpref.options.recorded_options) the config
    now gives a stage of ``run``; None when the config no longer has the run."""
    key = {k: run[k] for k in ("setting", "method", "order", "seed")}
    if key not in plan.runs(config):
        return None
    recorded = recorded_options(
        TrainOptions(**train_options()), methods.options(run["method"], **method_options(run["method"], run["setting"]))
    )
    return {k: v for k, v in recorded.items() if k not in EXECUTION_ONLY}


def share_prompt_flag():
    """``--share-prompt 0|1`` of every step that runs the model (a resource, like checkpoint_every:
    changing it reruns nothing)."""
    return int(config["share_prompt"])


def score_options():
    """ScoreOptions (seqpref.score): β and max_length of training (the same tokenization), the score
    batch size and precision (``score.dtype``)."""
    return as_json(
        {
            "beta": config["train"]["beta"],
            "max_length": config["train"]["max_length"],
            "batch_size": config["score"]["batch_size"],
            **model_options(),
            "dtype": config["score"]["dtype"],
        }
    )


def base_logps_options(wildcards):
    """LogpsOptions (seqpref.logps) of one split's base log-probs: the train split is the training reference, computed in
    the training dtype; the eval split is the evaluation reference, in the scoring dtype (a sham's reference, which has
    no split wildcard, is a training reference)."""
    dtype = config["score"]["dtype"] if getattr(wildcards, "split", "train") == "eval" else config["dtype"]
    return as_json(
        {
            "max_length": config["train"]["max_length"],
            "batch_size": config["score"]["batch_size"],
            **model_options(),
            "dtype": dtype,
        }
    )


# a changed training option must not silently delete finished adapters (protected() does not stop root);
# checked where the DAG is planned, not again in each job's own snakemake (a SLURM job's), which only
# runs what was planned and would pay torch's import for it
if not config[guard.OPT_IN] and not (workflow.remote_exec or workflow.subprocess_exec):
    _conflicts = list(guard.retrain_conflicts(RESULTS, expected_train_options))
    if _conflicts:
        raise WorkflowError(guard.conflict_message(_conflicts))


# whatever else reruns a finished stage (an input, a diagnostics option, --forcerun, the opt-in) cannot
# delete its adapter either: each run hard-links the finished adapters aside before any job starts, and
# keeps, once it ends, only those it replaced (seqpref.guard.keep_aside); not with --no-hooks
def _release_replaced():
    kept = guard.release_unchanged(RESULTS)
    if kept:
        print(guard.replaced_message(kept, RESULTS), file=sys.stderr)


onstart:
    if not (workflow.remote_exec or workflow.subprocess_exec):
        _release_replaced()  # what a killed run kept of adapters it did not replace
        guard.keep_aside(RESULTS)


onsuccess:
    if not (workflow.remote_exec or workflow.subprocess_exec):
        _release_replaced()


onerror:
    if not (workflow.remote_exec or workflow.subprocess_exec):
        _release_replaced()


# ---- data and runs --------------------------------------------------------------------------


def data_path(setting, objective, split):
    return f"{RESULTS}/data/{setting}/{objective}/{split}.parquet"


def data_reports():
    """Every objective's report.json (rows kept and dropped, token lengths), in config order."""
    return [
        f"{RESULTS}/data/{setting}/{objective}/report.json"
        for setting in config["settings"]
        for objective in plan.objectives(config, setting)
    ]


def data_memory_mb(setting, objective):
    """Memory of prepare_data: a public dataset's rows are read whole (UltraFeedback's 64k rows carry
    four completions each with their annotations); lab and file objectives are small."""
    source = config["settings"][setting]["objectives"][objective]["source"]
    return 2000 if source in ("lab", "file") else 16000


def base_logps_path(setting, objective, split):
    return f"{RESULTS}/base_logps/{setting}/{objective}/{split}.parquet"


def adapter_files(run_dir, stage):
    directory = f"{RESULTS}/adapters/{run_dir}/stage{stage}"
    return {
        "weights": f"{directory}/adapter_model.safetensors",
        "config": f"{directory}/adapter_config.json",
    }


def run_of(wildcards):
    return {
        "setting": wildcards.setting,
        "method": wildcards.method,
        "order": wildcards.order,
        "seed": int(wildcards.seed),
    }


def train_inputs(wildcards):
    """Train pairs and base log-probs of the stage's objective, and the previous stage's adapter."""
    stage = int(wildcards.stage)
    objective = plan.stage_objective(wildcards.order, stage)
    inputs = {
        "pairs": data_path(wildcards.setting, objective, "train"),
        "base_logps": base_logps_path(wildcards.setting, objective, "train"),
        "base": base_inputs(),
    }
    if stage > 1:
        inputs["previous"] = adapter_files(RUN.format(**wildcards), stage - 1)["weights"]
    return {**inputs, **earlier_inputs(wildcards)}


def trained_outputs(name):
    """A trained stage's outputs (``name`` "stage" or "sham"): its adapter, protected, and its training log."""
    folder = f"{RESULTS}/adapters/{RUN}/{name}{{stage}}"
    return {
        "weights": protected(f"{folder}/adapter_model.safetensors"),
        "config": protected(f"{folder}/adapter_config.json"),
        "train_log": f"{RESULTS}/train_logs/{RUN}/{name}{{stage}}.parquet",
    }


def train_resources():
    """A trained stage's resources: a GPU step's (:func:`gpu_resources`), share_prompt and how often it
    checkpoints. How often to checkpoint is how a job runs, not what it computes: a resource, which
    (unlike params) changing does not rerun finished stages."""
    return {
        **gpu_resources("train"),
        "share_prompt": share_prompt_flag(),
        "checkpoint_every": config["train"]["checkpoint_every"],
    }


def train_params(name):
    """Params every trained stage's command shares (``name`` "stage" or "sham"): the base model, the
    adapter's folder, the checkpoints' folder and the stage's options."""
    return {
        "base": base_model(),
        "out_dir": lambda wc, output: os.path.dirname(output.weights),
        "checkpoint_dir": lambda wc: f"{RESULTS}/checkpoints/{RUN.format(**wc)}/{name}{wc.stage}",
        "options": as_json(train_options()),
        "method_options": lambda wc: as_json(method_options(wc.method, wc.setting)),
    }


def stage_run(wildcards, **extra):
    """The ``--run`` record of a sequential stage (or its sham: ``extra``), as JSON."""
    stage = int(wildcards.stage)
    return as_json(
        {**run_of(wildcards), "stage": stage, "objective": plan.stage_objective(wildcards.order, stage), **extra}
    )


def needs_earlier(wildcards):
    """Whether a sequential stage reads the earlier objectives' train pairs: for the gradient
    diagnostics, or because its method composes batches from them (replay)."""
    return config["diagnostics"]["enabled"] or methods.get(wildcards.method).batches is not None


def earlier_inputs(wildcards):
    """Train pairs and base log-probs of every objective trained before this stage, when read (:func:`needs_earlier`)."""
    if not needs_earlier(wildcards):
        return {}
    inputs = {}
    for name in plan.stage_objectives(wildcards.order)[: int(wildcards.stage) - 1]:
        inputs[f"earlier_pairs_{name}"] = data_path(wildcards.setting, name, "train")
        inputs[f"earlier_logps_{name}"] = base_logps_path(wildcards.setting, name, "train")
    return inputs


def earlier_objective_args(wildcards):
    """``--earlier NAME STAGE TRAIN_PAIRS BASE_LOGPS`` for each objective trained before this stage."""
    if not needs_earlier(wildcards):
        return ""
    names = plan.stage_objectives(wildcards.order)[: int(wildcards.stage) - 1]
    return " ".join(
        f"--earlier {name} {k} {data_path(wildcards.setting, name, 'train')} {base_logps_path(wildcards.setting, name, 'train')}"
        for k, name in enumerate(names, start=1)
    )


def score_path(run_dir, stage):
    return f"{RESULTS}/scores/{run_dir}/stage{stage}.parquet"


def single_objective_run(setting, objective, seed):
    """The run dir whose stage 1 is ``objective``'s single-objective run: the order of
    ``methods.SINGLE_OBJECTIVE`` (sequential DPO) that starts with it."""
    return RUN.format(
        setting=setting,
        method=methods.SINGLE_OBJECTIVE,
        order=plan.optimum_order(config, setting, objective),
        seed=seed,
    )


def optimum_scores(wildcards):
    """A method that reads f* (maxright): the stage-1 score file of each objective's single-objective
    DPO run (same seed), for every objective whose f* the config does not type."""
    if methods.get(wildcards.method).single_objective != "scores":
        return {}
    typed = method_options(wildcards.method, wildcards.setting).get("optimum", {})
    return {
        f"optimum_{name}": score_path(single_objective_run(wildcards.setting, name, wildcards.seed), 1)
        for name in plan.objectives(config, wildcards.setting)
        if name not in typed
    }


def single_objective_adapters(wildcards):
    """A post-hoc method's inputs (merge): the stage-1 adapter of every objective's single-objective
    DPO run (same seed), in config order."""
    return [
        adapter_files(single_objective_run(wildcards.setting, name, wildcards.seed), 1)["weights"]
        for name in plan.objectives(config, wildcards.setting)
    ]


def merge_stage_adapters(wildcards):
    """Merge stage k: the single-objective adapters of the first k objectives (config order)."""
    return single_objective_adapters(wildcards)[: int(wildcards.stage)]


def merge_options():
    """How adapters are merged (method_options.merge without the λ grid, whose weights each rule
    passes itself: editing the grid reruns only the front points that change)."""
    return {k: v for k, v in config["method_options"]["merge"].items() if k != "lambdas"}


def merge_weights(stage=None, point=None):
    """The adapters' weights of merge stage ``stage`` or of front point ``point`` (seqpref.methods.merge)."""
    from seqpref.methods import merge

    options = merge.MergeOptions(**config["method_options"]["merge"])
    return merge.stage_weights(options, stage) if point is None else merge.front_weights(options, point)


def front_points(setting):
    """Indices of the merge front's λ grid: a two-objective setting's, when merge runs; else none."""
    if "merge" not in config["methods"] or len(plan.objectives(config, setting)) != 2:
        return []
    return list(range(len(config["method_options"]["merge"]["lambdas"])))


def joint_train_inputs(wildcards):
    """Train pairs and base log-probs of every objective, the previous stage's adapter, and
    maxright's single-objective score files."""
    names = plan.objectives(config, wildcards.setting)
    inputs = {
        "pairs": [data_path(wildcards.setting, n, "train") for n in names],
        "base_logps": [base_logps_path(wildcards.setting, n, "train") for n in names],
        "base": base_inputs(),
        **optimum_scores(wildcards),
    }
    if int(wildcards.stage) > 1:
        inputs["previous"] = adapter_files(RUN.format(**wildcards), int(wildcards.stage) - 1)["weights"]
    return inputs


def joint_objective_args(wildcards):
    """``--objective NAME TRAIN_PAIRS BASE_LOGPS`` for every objective (config order), and maxright's
    ``--optimum NAME SCORES``."""
    names = plan.objectives(config, wildcards.setting)
    args = [
        f"--objective {n} {data_path(wildcards.setting, n, 'train')} {base_logps_path(wildcards.setting, n, 'train')}"
        for n in names
    ]
    args += [f"--optimum {key[len('optimum_'):]} {path}" for key, path in optimum_scores(wildcards).items()]
    return " ".join(args)


def eval_objective_args(wildcards):
    """``--objective NAME EVAL_PAIRS BASE_LOGPS`` for every objective of the setting."""
    return " ".join(
        f"--objective {name} {data_path(wildcards.setting, name, 'eval')} {base_logps_path(wildcards.setting, name, 'eval')}"
        for name in plan.objectives(config, wildcards.setting)
    )


def eval_inputs(wildcards):
    """Eval pairs and their base log-probs, for every objective of the setting."""
    names = plan.objectives(config, wildcards.setting)
    return [data_path(wildcards.setting, n, "eval") for n in names] + [
        base_logps_path(wildcards.setting, n, "eval") for n in names
    ]


def all_runs():
    return plan.runs(config)


# ---- the sham stage (controls.sham) ----------------------------------------------------------


def sham_stages(run):
    """Stages of ``run`` that get a sham: every stage >= 2 of a method that has shams, when controls.sham."""
    if not config["controls"]["sham"] or not methods.get(run["method"]).sham:
        return []
    return list(range(2, plan.n_stages(run["order"]) + 1))


def sham_train_inputs(wildcards):
    """The sham's pairs and base log-probs (stage k's objective, this seed's swapped half), and the
    real stage k-1 adapter it continues."""
    objective = plan.stage_objective(wildcards.order, int(wildcards.stage))
    folder = f"{RESULTS}/sham/{wildcards.setting}/{objective}/seed{wildcards.seed}"
    reference = (
        f"{folder}/base_logps.parquet"
        if config["controls"]["sham_design"] == "half_swap"
        else sham_reference_path(RUN.format(**wildcards), wildcards.stage)
    )
    return {
        "pairs": f"{folder}/train.parquet",
        "base_logps": reference,
        "base": base_inputs(),
        "previous": adapter_files(RUN.format(**wildcards), int(wildcards.stage) - 1)["weights"],
        **({} if methods.get(wildcards.method).batches is None else earlier_inputs(wildcards)),
        # a distance-matched sham reads how far the real stage moved the adapter
        **(
            {"real_log": f"{RESULTS}/train_logs/{RUN.format(**wildcards)}/stage{wildcards.stage}.parquet"}
            if config["controls"]["sham_match_distance"]
            else {}
        ),
    }


def sham_reference_path(run_dir, stage):
    """The sham's DPO reference under sham_design previous_reference: the stage k-1 model's log-probs of
    the sham's (half-swapped) train pairs."""
    return f"{RESULTS}/sham/{run_dir}/reference{stage}.parquet"


def sham_reference_inputs(wildcards):
    """The sham's pairs, the base model and the stage k-1 adapter whose log-probs are the sham's reference."""
    objective = plan.stage_objective(wildcards.order, int(wildcards.stage))
    return {
        "pairs": f"{RESULTS}/sham/{wildcards.setting}/{objective}/seed{wildcards.seed}/train.parquet",
        "base": base_inputs(),
        **adapter_files(RUN.format(**wildcards), int(wildcards.stage) - 1),
    }


def sham_adapter_files(run_dir, stage):
    directory = f"{RESULTS}/adapters/{run_dir}/sham{stage}"
    return {"weights": f"{directory}/adapter_model.safetensors", "config": f"{directory}/adapter_config.json"}


def sham_train_logs():
    """The training logs of every sham stage and, in the same order, of the real stage it shams."""
    runs = [(plan.run_dir(run), stage) for run in all_runs() for stage in sham_stages(run)]
    return {
        "sham_logs": [f"{RESULTS}/train_logs/{d}/sham{k}.parquet" for d, k in runs],
        "stage_logs": [f"{RESULTS}/train_logs/{d}/stage{k}.parquet" for d, k in runs],
    }


def sham_score_files():
    """Every sham stage's pair scores, in run order."""
    return [
        f"{RESULTS}/scores/{plan.run_dir(run)}/sham{stage}.parquet" for run in all_runs() for stage in sham_stages(run)
    ]


def score_files():
    return [
        score_path(plan.run_dir(run), stage) for run in all_runs() for stage in range(plan.n_stages(run["order"]) + 1)
    ]


def train_logs():
    """Training logs of every trained stage (a post-hoc method trains nothing)."""
    return [
        f"{RESULTS}/train_logs/{plan.run_dir(run)}/stage{stage}.parquet"
        for run in all_runs()
        if plan.trains(run["method"])
        for stage in range(1, plan.n_stages(run["order"]) + 1)
    ]


def diagnostics_files():
    """Gradient diagnostics of sequential runs (a joint stage has no earlier objectives)."""
    return [
        f"{RESULTS}/diagnostics/{plan.run_dir(run)}/stage{stage}.parquet"
        for run in all_runs()
        if plan.is_sequential(run["method"])
        for stage in range(1, plan.n_stages(run["order"]) + 1)
    ]


def front_runs():
    """``(run, point index, λ)`` of every merge front point (two-objective settings)."""
    lambdas = config["method_options"]["merge"]["lambdas"]
    return [
        (run, i, lambdas[i]) for run in all_runs() if run["method"] == "merge" for i in front_points(run["setting"])
    ]


def front_score_files():
    """The merge front's pair scores, in :func:`front_runs` order."""
    return [f"{RESULTS}/scores/{plan.run_dir(run)}/front{i}.parquet" for run, i, _ in front_runs()]


def front_lambdas():
    """λ of each of :func:`front_score_files`."""
    return [lam for _, _, lam in front_runs()]


def movement_files():
    return [f"{RESULTS}/movement/{plan.run_dir(run)}.parquet" for run in all_runs()]


def final_outputs():
    """What `snakemake` builds by default: the tables, every figure and every data report."""
    reports = data_reports() + [f"{RESULTS}/tables/data_report.tsv", f"{RESULTS}/tables/verdicts.tsv"]
    tables = [
        f"{RESULTS}/tables/{name}.parquet"
        for name in (
            "pairs",
            "summary",
            "transfer",
            "quartiles",
            "controls",
            "training",
            "diagnostics",
            "movement",
            "pareto",
            "hypervolume",
        )
    ]
    drawn = [name for name in FIGURES if name != "sham_control" or config["controls"]["sham"]]  # no sham, no rows
    figures = [f"{RESULTS}/figures/{name}.{ext}" for name in drawn for ext in ("png", "pdf")]
    return reports + tables + figures
