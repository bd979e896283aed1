"""The shipped SLURM profile covers every rule that asks for a GPU and repeats nothing a rule declares,
and every step starts the one way its needs decide; the rules are read from Snakemake itself, so
adding a rule without its profile entry, or with another launch, fails here (without a cluster;
tests/workflow/test_slurm.py runs one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml
from workflow_helpers import REPO, gpu_rules, parsed_rules

from seqpref import launch

pytestmark = pytest.mark.workflow

PROFILE = REPO / "profiles/slurm/profile.yaml"
#: what a step's shell command starts with, by how it starts (workflow/rules/common.smk, LAUNCH)
GPUS, WARM = launch.step("", "gpu"), launch.step("", "torch")  # the prefixes of a step that loads a model, or torch
#: resources only SLURM reads: the profile's to set
SLURM_ONLY = re.compile(r"slurm_\w+|cpus_per_gpu")


def launches(command: str) -> str:
    """How a shell command starts its step: "gpus", "warm" or "plain"."""
    if command.startswith(GPUS):
        return "gpus"
    return "warm" if command.startswith(WARM) else "plain"


def test_only_steps_that_import_torch_go_through_a_warm_server():
    """The warm server exists to save torch's import: a step that does not import torch (tables,
    figures, data) starts as a plain ``python -m``; every step started through seqpref.warm or
    seqpref.gpus (which hands CPU jobs to seqpref.warm) imports torch when its module is imported."""
    through_server, plain = {}, {}
    for name, rule in parsed_rules().items():
        modules = re.findall(r"python -m ([\w.{}]+)", rule["shell"] or "")
        if launches(rule["shell"] or "") != "plain":
            through_server[name] = modules[1]
        elif modules:
            plain[name] = modules[0]
    assert gpu_rules() <= set(through_server) and set(through_server) - gpu_rules(), through_server
    assert {"seqpref.aggregate", "seqpref.pareto", "seqpref.data"} <= set(plain.values()), plain
    # torch is in sys.modules once the module is imported, or the module imports it in a function
    check = (
        "import ast, importlib, json, sys; module = importlib.import_module(sys.argv[1]); "
        "tree = ast.parse(open(module.__file__).read()); "
        "local = any(n.module.split('.')[0] == 'torch' if isinstance(n, ast.ImportFrom) and n.module "
        "else any(a.name.split('.')[0] == 'torch' for a in n.names) "
        "for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))); "
        "print(json.dumps('torch' in sys.modules or local))"
    )
    for name, module in sorted(through_server.items()):
        out = subprocess.run(
            [sys.executable, "-c", check, module], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout.splitlines()[-1]), (
            f"rule {name} goes through the warm server but {module} does not import torch"
        )


def test_a_step_goes_through_seqpref_gpus_exactly_when_its_rule_asks_for_a_gpu():
    """One launch per need: a rule that asks for a GPU starts its step through seqpref.gpus (which
    gives each local job a GPU of its own), and no other rule does; every rule with a shell command
    runs one seqpref step."""
    gpus = {name for name, rule in parsed_rules().items() if launches(rule["shell"] or "") == "gpus"}
    assert gpus == gpu_rules()
    for name, rule in parsed_rules().items():
        if rule["shell"]:
            assert re.match(
                r"(python -m seqpref\.(gpus|warm) -- )?python -m (seqpref\.|\{params\.module\})", rule["shell"]
            ), name


def test_every_gpu_rule_has_a_gpu_partition_memory_time_and_the_training_signal():
    profile = yaml.safe_load(PROFILE.read_text())
    rules = parsed_rules()
    assert gpu_rules(), "no rule asks for a GPU"
    for name in sorted(gpu_rules()):
        entry = profile["set-resources"].get(name)
        assert entry is not None, f"rule {name} asks for a GPU but profiles/slurm/profile.yaml has no entry for it"
        assert entry.get("slurm_partition") == "gpu" and entry.get("cpus_per_gpu"), name
        resources = {**rules[name]["resources"], **entry}  # what the job asks of SLURM
        assert resources["mem_mb"] >= 8000 and resources["runtime"] >= 60, name
        if name.startswith("train_"):  # a training stage saves a checkpoint on SLURM's warning signal
            assert "--signal=TERM@300" in entry.get("slurm_extra", ""), name
    # and the profile names no rule that does not exist
    assert set(profile["set-resources"]) <= set(rules), set(profile["set-resources"]) - set(rules)
    header = PROFILE.read_text().split("executor:")[0]
    assert all(name in header for name in gpu_rules()), "the profile's header lists the GPU rules"


def test_the_profile_repeats_no_resource_a_rule_declares():
    """Each resource has one home: the rules say what a step needs (a GPU, a workstation's memory and
    time); the profile adds only SLURM's keys and, where a cluster-sized model needs more, a larger
    memory or time. A value equal to the rule's own, a GPU count, or a CPU count that the rule's
    threads already give (SLURM's CPUs are a job's threads unless set) is a second declaration."""
    profile = yaml.safe_load(PROFILE.read_text())
    rules = parsed_rules()
    assert "cpus_per_task" not in profile["default-resources"]  # it would override every rule's threads
    for name, entry in profile["set-resources"].items():
        declared = rules[name]["resources"]
        for key, value in entry.items():
            if SLURM_ONLY.fullmatch(key):
                continue
            assert key in ("mem_mb", "runtime"), f"{name}: {key} is the rule's to declare, not the profile's"
            assert value != declared.get(key), f"{name}: {key} = {value} repeats the rule's own"
            assert value > declared.get(key, 0), f"{name}: {key} = {value} is below the rule's own"
