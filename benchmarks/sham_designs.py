"""How valid each sham design is as a null: neutrality and distance per setting, read off the controls
tables of studies run with ``controls.sham_design`` set one way and the other.

    python benchmarks/sham_designs.py previous_reference=results/tables/controls.parquet \
        half_swap=results/lab_half_swap/tables/controls.parquet

For every design and setting, one line per sham stage kind (sequential method): the shams, the median
|sham_own_change| / |real_own_change| (neutrality: 0 is a perfect null, 1 taught the preference as much as
the real stage), how many were neutral within ``labels.sham_own_tolerance``, the median change_norm_ratio
(‖Δθ‖ sham / real) and how many lay in ``labels.sham_distance``, how many controls were valid, and the
control labels given.
"""

from __future__ import annotations

import sys

import pandas as pd

STAGE_KEYS = ["setting", "method", "order", "stage"]


def design_rows(design: str, controls: pd.DataFrame) -> pd.DataFrame:
    """One row per (design, setting, method): the neutrality and distance summary of its sham stages."""
    stages = controls.drop_duplicates(STAGE_KEYS).copy()
    stages["own_ratio"] = stages["sham_own_change"].abs() / stages["real_own_change"].abs()
    stages["neutral"] = ~stages["control_invalid_reason"].fillna("").str.contains("own objective")
    stages["distance_ok"] = ~stages["control_invalid_reason"].fillna("").str.contains("adapter")
    rows = []
    for (setting, method), group in stages.groupby(["setting", "method"]):
        labels = controls[(controls.setting == setting) & (controls.method == method)]["control_label"].value_counts()
        rows.append(
            {
                "design": design,
                "setting": setting,
                "method": method,
                "shams": len(group),
                "own_ratio_median": group["own_ratio"].median(),
                "neutral": int(group["neutral"].sum()),
                "distance_ratio_median": group["change_norm_ratio"].median(),
                "distance_ok": int(group["distance_ok"].sum()),
                "valid": int(group["control_invalid_reason"].isna().sum()),
                "labels": ", ".join(f"{k} {v}" for k, v in labels.items()),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str]) -> None:
    frames = []
    for argument in argv:
        design, _, path = argument.partition("=")
        frames.append(design_rows(design, pd.read_parquet(path)))
    table = pd.concat(frames, ignore_index=True)
    with pd.option_context("display.width", 250, "display.max_colwidth", 90):
        print(table.round(3).to_string(index=False))
    for design, group in table.groupby("design", sort=False):
        print(
            f"design={design} shams={group['shams'].sum()} neutral={group['neutral'].sum()} "
            f"distance_ok={group['distance_ok'].sum()} valid={group['valid'].sum()}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
