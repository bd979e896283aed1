"""Helpers shared by the figure modules: the CLI, atomic saving, option checks, labels and the panel grid.

A figure module defines a pure ``draw(table, **options) -> Figure`` and ends with
``if __name__ == "__main__": common.run_cli(draw)``, which gives it the CLI
``python -m seqpref.figures.NAME TABLE STYLE PNG PDF --options JSON``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from seqpref import methods
from seqpref.plan import ORDER_SEPARATOR

#: the style file shipped with the package (the figure rules pass it as STYLE)
STYLE = Path(__file__).with_name("seqpref.mplstyle")

#: unit of each metric, by name prefix (the longest matching prefix wins)
_UNITS = {
    "reward_margin": "nats",
    "dpo_margin": "β·nats",
    "ln_margin": "nats/token",
    "rel_accuracy": "fraction of pairs",
}

#: the label a summary row carries → the marker the heatmap writes in its cell
LABEL_MARKERS = {
    "degradation": "▼",
    "positive_transfer": "▲",
    "redistribution": "◆",
    "stable": "",
    "trained": "",
}


def parse_cli(description: str | None, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``TABLE STYLE PNG PDF [--options JSON]``.

    Takes the parser description and optionally the argument list (default ``sys.argv[1:]``); returns
    a namespace with ``table``, ``style``, ``png``, ``pdf`` (str) and ``options`` (dict parsed from the
    JSON object given to ``--options``; ``{}`` when absent).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("table", help="input Parquet table")
    parser.add_argument("style", help="matplotlib style (a .mplstyle path or a style name)")
    parser.add_argument("png", help="output PNG path")
    parser.add_argument("pdf", help="output PDF path")
    parser.add_argument("--options", default="{}", help="JSON object of draw() keyword arguments")
    args = parser.parse_args(argv)
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as error:
        parser.error(f"--options is not valid JSON: {error}")
    if not isinstance(options, dict):
        parser.error(f"--options must be a JSON object, got {type(options).__name__}")
    args.options = options
    return args


def check_options(draw, options: dict) -> None:
    """Raise ``TypeError`` if ``options`` has a key that ``draw`` does not accept.

    Takes a draw function (first parameter = the table) and a dict of keyword options; returns None.
    The message names the unknown keys and the accepted ones.
    """
    parameters = list(inspect.signature(draw).parameters.values())[1:]
    accepted = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        spec = getattr(sys.modules.get(draw.__module__), "__spec__", None)  # under -m, __module__ is __main__
        where = f"{getattr(spec, 'name', None) or draw.__module__}.{draw.__name__}"
        raise TypeError(f"{where}: unknown option(s) {unknown}; accepted options are {accepted}")


def save(fig, png: str | os.PathLike, pdf: str | os.PathLike) -> None:
    """Write ``fig`` to ``png`` and ``pdf`` atomically, then close it.

    Each file is written to a temporary name with the same extension in the same folder and renamed
    into place, so a failed job never leaves a half-written figure. Returns None.
    """
    try:
        for path in (Path(png), Path(pdf)):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
            fmt = path.suffix.lstrip(".").lower() or None
            metadata = {"CreationDate": None} if fmt == "pdf" else None  # reproducible PDFs
            try:
                fig.savefig(tmp, format=fmt, metadata=metadata)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def run_cli(draw, read_columns: list[str] | None = None, argv: list[str] | None = None) -> None:
    """The CLI of a figure module: read TABLE, draw under STYLE, save PNG and PDF.

    Takes the module's ``draw`` function, optionally the Parquet columns to read (default all) and the
    argument list. Unknown ``--options`` keys raise ``TypeError`` before the table is read. Returns None.
    """
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    module = sys.modules.get(draw.__module__)
    args = parse_cli(getattr(module, "__doc__", None), argv)
    check_options(draw, args.options)
    frame = pd.read_parquet(args.table, columns=read_columns)
    with plt.style.context(args.style):
        fig = draw(frame, **args.options)
        save(fig, args.png, args.pdf)  # inside the context: savefig.dpi comes from the style


def metric_unit(metric: str) -> str:
    """Unit of a metric column name (``reward_margin_change`` → ``nats``); ``""`` if unknown."""
    matches = [prefix for prefix in _UNITS if metric.startswith(prefix)]
    return _UNITS[max(matches, key=len)] if matches else ""


def metric_label(metric: str) -> str:
    """Axis/colorbar label of a metric: its name and unit, e.g. ``reward_margin_change (nats)``."""
    unit = metric_unit(metric)
    return f"{metric} ({unit})" if unit else metric


def is_change_metric(metric: str) -> bool:
    """True for the stage-to-stage change columns (``*_change``)."""
    return metric.endswith("_change")


def order_objectives(order: str) -> list[str]:
    """Objectives of ``order`` in training order (element k−1 is trained at stage k)."""
    return order.split(ORDER_SEPARATOR)


def order_title(setting: str, order: str) -> str:
    """Panel title ``"setting: A → B"`` of one (setting, order)."""
    return f"{setting}: {' → '.join(order_objectives(order))}"


def default_method(frame: pd.DataFrame) -> str:
    """The method a figure draws when its ``method`` option is null (the default): the first sequential
    method with rows in ``frame`` in registry order (:mod:`seqpref.methods`), else the first method with
    rows (registry order, then unregistered names sorted). ``ValueError`` when ``frame`` has none."""
    present = set(frame["method"].dropna())
    ranked = methods.names(methods.SEQUENTIAL) + methods.names() + sorted(present)
    chosen = next((name for name in ranked if name in present), None)
    if chosen is None:
        raise ValueError("no rows with a method to draw")
    return chosen


def select_method(frame: pd.DataFrame, method: str | None, table: str) -> tuple[pd.DataFrame, str]:
    """The rows of ``frame`` (the ``table`` named in messages) whose method is ``method`` (None:
    :func:`default_method`), and that method; ``ValueError`` naming the methods present if none."""
    method = default_method(frame) if method is None else method
    rows = frame[frame["method"] == method]
    if rows.empty:
        present = sorted(frame["method"].dropna().unique().tolist())
        raise ValueError(f"{table}: no rows with method {method!r}; methods present: {present}")
    return rows, method


def panel_grid(frame: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """The row × column layout shared by the figures.

    Takes a frame with ``setting`` and ``order`` columns; returns the settings sorted alphabetically
    (one panel row each) and, per setting, its orders sorted alphabetically (column index = position),
    so every figure lays the same runs out in the same place.
    """
    settings = sorted(frame["setting"].dropna().unique().tolist())
    orders = {s: sorted(frame.loc[frame["setting"] == s, "order"].unique().tolist()) for s in settings}
    return settings, orders


def remove_unused(fig, axes, orders: dict[str, list[str]], settings: list[str]) -> None:
    """Delete the panels of ``axes`` (rows = settings) past each setting's number of orders."""
    for row, setting in enumerate(settings):
        for col in range(len(orders[setting]), axes.shape[1]):
            fig.delaxes(axes[row, col])


def is_bottom(orders: dict[str, list[str]], settings: list[str], row: int, col: int) -> bool:
    """True if panel (``row``, ``col``) has no panel below it (x-axis labels go on these only)."""
    return all(col >= len(orders[s]) for s in settings[row + 1 :])


def objective_colours(objectives) -> dict[str, str]:
    """A stable colour per objective name (sorted names take the style's colour cycle in turn)."""
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return {name: cycle[i % len(cycle)] for i, name in enumerate(sorted(set(objectives)))}


def check_pair_metric(pairs: pd.DataFrame, metric: str) -> None:
    """Raise ``ValueError`` unless ``metric`` is a numeric column of the pair-score table."""
    if metric not in pairs.columns or not pd.api.types.is_numeric_dtype(pairs[metric]):
        raise ValueError(
            f"metric {metric!r} is not a numeric pair-score column (e.g. reward_margin, dpo_margin, ln_margin)"
        )


def error_bars(value, lo, hi) -> np.ndarray:
    """Matplotlib's asymmetric ``yerr``/``xerr`` of values with CIs: ``(2, n)``, distances below and
    above each value (never negative)."""
    value, lo, hi = (np.asarray(x, dtype=float) for x in (value, lo, hi))
    return np.vstack([np.clip(value - lo, 0, None), np.clip(hi - value, 0, None)])


def seeds_note(frame: pd.DataFrame) -> str:
    """How a figure's numbers treat seeds: pooled tables carry ``n_seeds`` (CIs over pairs and seeds);
    per-seed tables carry ``seed`` (lines are seed means with the seeds' range shaded)."""
    if "n_seeds" in frame:
        n = int(frame["n_seeds"].max()) if len(frame) else 0
        return f"{n} seed{'s' if n != 1 else ''} pooled; CIs over pairs{' and seeds' if n > 1 else ''}"
    n = frame["seed"].nunique()
    return f"mean over {n} seed{'s' if n != 1 else ''}" + (" (band: range across seeds)" if n > 1 else "")


def seed_band(ax, rows: pd.DataFrame, x: str, column: str, colour) -> None:
    """Shade, on ``ax``, the range across seeds of ``column`` at every ``x`` (nothing with one seed)."""
    if rows["seed"].nunique() < 2:
        return
    band = rows.groupby(x)[column].agg(["min", "max"]).sort_index()
    ax.fill_between(
        band.index, band["min"].to_numpy(), band["max"].to_numpy(), color=colour, alpha=0.18, linewidth=0, zorder=1
    )
