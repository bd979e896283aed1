"""Every repository file that the code, the workflow and the docs cite by path exists: a moved or
renamed file leaves no reference behind it (a docstring citing a design document that is not in the
repository, a comment naming a test that moved)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("src", "tests", "docs", "workflow", "config", "benchmarks", "resources", "profiles")
CITED = re.compile(r"(?<![\w/.-])((?:%s)/[\w./-]*\w\.(?:py|md|yaml|yml|smk|json|tsv))\b" % "|".join(FOLDERS))


def citing_files() -> list[Path]:
    """The files whose text may cite a repository path: the package, the rules, the docs and the build."""
    files = [REPO / name for name in ("README.md", "Makefile", "pyproject.toml", "Snakefile", "environment.yml")]
    for pattern in (
        "src/seqpref/**/*.py",
        "workflow/**/*.smk",
        "workflow/**/*.yaml",
        "docs/**/*.md",
        "config/*.yaml",
        "profiles/**/*.yaml",
        "benchmarks/*.py",
    ):
        files += sorted(REPO.glob(pattern))
    return [f for f in files if f.is_file()]


def cited_paths(text: str) -> set[str]:
    """Repository-relative file paths in ``text`` (a folder from :data:`FOLDERS`, then a file name)."""
    return {m.group(1) for m in CITED.finditer(text)}


def test_the_path_finder_reads_prose_and_code():
    text = "see docs/design.md, and ``tests/unit/test_x.py``; not results/x.json or a/src/y.py"
    assert cited_paths(text) == {"docs/design.md", "tests/unit/test_x.py"}


def test_every_cited_repository_file_exists():
    missing = {}
    for path in citing_files():
        for cited in cited_paths(path.read_text(encoding="utf-8")):
            if not (REPO / cited).exists():
                missing.setdefault(str(path.relative_to(REPO)), []).append(cited)
    assert len(citing_files()) > 50
    assert not missing, missing
