"""The reduced lab, run once per session and shared by the workflow tests that read or rerun it."""

from __future__ import annotations

import pytest
from workflow_helpers import SMALL, copy_workflow, snakemake


@pytest.fixture(scope="session")
def lab_run(tmp_path_factory):
    """The reduced lab (tests/workflow/configs/lab_small.yaml) run to completion with
    `snakemake --cores 2`; returns its working directory."""
    workdir = copy_workflow(tmp_path_factory.mktemp("lab"), SMALL)
    snakemake(workdir, "--cores", "2")
    return workdir
