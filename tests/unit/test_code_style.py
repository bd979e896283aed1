"""Every Python file of the repository is formatted and linted by ruff, under the one configuration in
pyproject.toml (the Snakefile and rules are checked by snakefmt in tests/workflow/test_workflow_style.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
pytestmark = pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -e '.[test]' installs it)")


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RUFF, *args], cwd=REPO, capture_output=True, text=True)


def test_python_is_formatted():
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_python_passes_the_linter():
    result = _ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_reports_a_defect(tmp_path):
    """The check above can fail: an unused import in a file under the same configuration is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    result = subprocess.run(
        [RUFF, "check", "--config", str(REPO / "pyproject.toml"), str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "F401" in result.stdout
