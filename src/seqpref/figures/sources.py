"""Which source files draw a figure: its own module and every ``seqpref.figures`` module it imports,
transitively (read with ``ast``, nothing imported), so that a figure rule can list them as inputs and
editing a shared module (``common.py``, the method colours in ``method_comparison.py``) redraws
exactly the figures that use it. Kept free of matplotlib: the workflow calls it at every parse.
"""

from __future__ import annotations

import ast
from pathlib import Path

FIGURES = Path(__file__).parent
PACKAGE = "seqpref.figures"


def imported_figure_modules(path: Path) -> set[str]:
    """Names of the ``seqpref.figures`` modules that the module at ``path`` imports (``common``, …)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            names.update(alias.name for alias in node.names if (FIGURES / f"{alias.name}.py").is_file())
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE + "."):
            names.add(node.module[len(PACKAGE) + 1 :].split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(
                alias.name[len(PACKAGE) + 1 :].split(".")[0]
                for alias in node.names
                if alias.name.startswith(PACKAGE + ".")
            )
    return names


def figure_code(name: str) -> list[str]:
    """Paths (sorted) of figure ``name``'s module and of every figure module it imports, transitively."""
    seen, todo = set(), [name]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(imported_figure_modules(FIGURES / f"{module}.py") - seen)
    return sorted(str(FIGURES / f"{module}.py") for module in seen)
