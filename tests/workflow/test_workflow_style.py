"""Catalogue conventions: `snakemake --lint` finds nothing (every rule names the environment, shell
commands read only what the rule passes them), the workflow is snakefmt-formatted, and the
environment file pins what pyproject.toml pins."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.workflow


@pytest.mark.parametrize(
    "configs",
    [
        [],
        ["config/config.yaml", "config/methods.yaml"],
        ["config/real.yaml"],
        ["config/paper.yaml"],
        ["config/public.yaml"],
    ],
    ids=["lab", "methods", "real", "paper", "public"],
)
def test_snakemake_lint_is_clean(configs, tmp_path):
    args = [str(BIN / "snakemake"), "--lint", "--directory", str(REPO)]
    if configs:
        args += ["--configfile", *configs]
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in output, output[-3000:]
    assert "Lints for" not in output


def test_workflow_is_snakefmt_formatted():
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "workflow/rules").glob("*.smk")))]
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", *files], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0].lower()


def test_environment_file_pins_what_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["real"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip, key=_name) == sorted(wanted, key=_name)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert re.fullmatch(r"python=3\.1[12]", python)  # within requires-python
    assert project["requires-python"] == ">=3.11,<3.13"


@pytest.mark.parametrize("caption", sorted((REPO / "workflow/report").glob("*.rst")), ids=lambda p: p.name)
def test_report_captions_are_valid_restructuredtext(caption):
    """Snakemake renders each caption as reStructuredText in the report: an error there (e.g. ``|x|``
    read as an undefined substitution) prints in every `--report` run and garbles the caption."""
    import io

    import docutils.core
    import docutils.utils

    messages = io.StringIO()
    settings = {
        "report_level": docutils.utils.Reporter.ERROR_LEVEL,
        "halt_level": docutils.utils.Reporter.SEVERE_LEVEL + 1,
        "warning_stream": messages,
    }
    tree = docutils.core.publish_doctree(caption.read_text(), settings_overrides=settings)
    assert not messages.getvalue(), messages.getvalue()
    assert not list(tree.findall(docutils.nodes.problematic))
