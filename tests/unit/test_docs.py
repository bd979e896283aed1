"""The documentation: every number it quotes about a study or a benchmark equals what docs/render.py renders
from the snapshots in docs/data/, the README stays a ten-minute read, and the mkdocs site builds strictly."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def render():
    """docs/render.py, imported from its path (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("docs_render", REPO / "docs" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_rendered_block_agrees_with_its_table(render):
    assert render.stale() == [], "run `python docs/render.py` and commit the pages"


def test_a_number_edited_by_hand_is_caught(render, tmp_path):
    page = tmp_path / "results.md"
    text = (REPO / "docs" / "results.md").read_text()
    body = next(render.BLOCK.finditer(text)).group("body")
    edited = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), body, count=1)
    page.write_text(text.replace(body, edited, 1))
    assert len(render.stale([page])) == 1
    page.write_text(render.render_text(page.read_text()))
    assert render.stale([page]) == []


def test_every_marker_names_a_renderer_and_every_renderer_is_used(render):
    used = [m.group("name") for page in render.pages() for m in render.BLOCK.finditer(page.read_text())]
    opened = sum(len(re.findall(r"^<!-- render: ", page.read_text(), re.MULTILINE)) for page in render.pages())
    assert len(used) == opened, "a marker without its closing <!-- /render -->"
    assert set(used) <= set(render.RENDERERS), set(used) - set(render.RENDERERS)
    assert set(render.RENDERERS) <= set(used), f"renderers no page uses: {set(render.RENDERERS) - set(used)}"


def test_the_readme_is_a_ten_minute_read_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert (
        "make demo   # creates .venv, installs seqpref (CPU torch first), runs the lab study, builds results/report.html"
        in readme
    )
    assert "make test   # creates .venv, installs seqpref with test extras, runs the test suite" in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / link).is_file(), link


def test_the_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (it comes with the test extra)")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "results" / "index.html").is_file()


@pytest.mark.workflow
def test_the_quoted_plans_and_gpu_rules_are_the_workflows(render):
    """docs/data/workflow.json (job counts, GPU rules) equals what Snakemake says now."""
    if shutil.which("snakemake") is None and importlib.util.find_spec("snakemake") is None:
        pytest.skip("snakemake is not installed")
    assert render.workflow_facts() == json.loads((REPO / "docs" / "data" / "workflow.json").read_text()), (
        "run `python docs/render.py --workflow` and commit docs/data/workflow.json and the pages"
    )


def test_every_benchmark_record_names_its_script_and_a_clean_commit_of_this_history(render):
    records = sorted((render.DATA / "bench").glob("*.json"))
    assert records, "docs/data/bench holds no benchmark record"
    shallow = (
        subprocess.run(
            ["git", "rev-parse", "--is-shallow-repository"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        != "false"
    )
    for path in records:
        record = json.loads(path.read_text())
        script = record["command"].split()[1]
        assert (REPO / script).is_file(), f"{path.name}: {script} is not in the repository"
        assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]), f"{path.name}: measured on {record['commit']}"
        if not shallow:  # a shallow clone lacks the commits to check against
            ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", record["commit"], "HEAD"], cwd=REPO)
            assert ancestor.returncode == 0, f"{path.name}: commit {record['commit']} is not in this history"
        assert record["result"] and record["cpu"] and record["date"]


def test_every_snapshot_is_read_by_a_renderer(render):
    """A snapshot no renderer reads holds numbers the docs stopped quoting: quote them or remove it."""
    for page in render.pages():
        render.render_text(page.read_text())
    kept = {path for path in render.DATA.rglob("*") if path.is_file() and path.name != "README.md"}
    assert kept - render.READ == set(), sorted(str(p.relative_to(render.DATA)) for p in kept - render.READ)


def test_a_renderer_that_fails_leaves_its_block_and_is_reported(render):
    def broken() -> str:
        raise FileNotFoundError("docs/data/bench/missing.json")

    render.RENDERERS["test.broken"] = broken
    try:
        text = "a\n<!-- render: test.broken -->\nold text\n<!-- /render -->\nb\n"
        errors: list[str] = []
        assert render.render_text(text, errors) == text
        assert errors == ["test.broken: FileNotFoundError: docs/data/bench/missing.json"]
        with pytest.raises(FileNotFoundError):
            render.render_text(text)
    finally:
        del render.RENDERERS["test.broken"]


def test_no_page_quotes_a_number_it_cannot_render():
    for page in sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]:
        assert "not re-rendered" not in page.read_text(), f"{page.name} still quotes a number no snapshot backs"
