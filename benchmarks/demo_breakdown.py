"""Where a workflow run's time went: per rule, jobs, mean and total seconds, from Snakemake's own log.

    python benchmarks/demo_breakdown.py [.snakemake/log/<run>.snakemake.log ...]

(default: the newest log under .snakemake/log). A job's seconds run from the timestamp Snakemake
printed when it started the job to the one when it reported the job finished (1 s resolution), so
every rule is covered, including those without a ``benchmark:`` file. Prints a table sorted by total
seconds, the sum of job-seconds and the run's wall time (first to last timestamp); with two logs,
a before / after comparison per rule.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3}\s+\d+ \d\d:\d\d:\d\d \d{4})\]")
RULE = re.compile(r"^(?:local)?rule (\w+):")
JOBID = re.compile(r"^\s+jobid: (\d+)")
FINISHED = re.compile(r"^Finished job(?:id)?:? (\d+)")


def job_seconds(log: Path) -> tuple[dict[str, list[float]], float]:
    """``({rule: [seconds per job]}, wall seconds)`` read from one Snakemake log file."""
    stamp = first = None
    started: dict[str, tuple[str, dt.datetime]] = {}
    rule = None
    per_rule: dict[str, list[float]] = collections.defaultdict(list)
    for line in log.read_text().splitlines():
        if m := STAMP.match(line):
            stamp = dt.datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            first = first or stamp
        elif m := RULE.match(line):
            rule = m.group(1)
        elif (m := JOBID.match(line)) and rule is not None:
            started[m.group(1)] = (rule, stamp)
            rule = None
        elif (m := FINISHED.match(line)) and m.group(1) in started:
            name, start = started.pop(m.group(1))
            per_rule[name].append((stamp - start).total_seconds())
    return dict(per_rule), (stamp - first).total_seconds() if first else 0.0


def newest_log() -> Path:
    logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit("no .snakemake/log/*.snakemake.log here; pass a log file")
    return logs[-1]


def main(argv=None) -> None:
    """CLI: print the breakdown of one log, or of two side by side (before, after)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="*", type=Path)
    logs = parser.parse_args(argv).logs or [newest_log()]
    runs = [job_seconds(log) for log in logs]
    rules = sorted({r for per_rule, _ in runs for r in per_rule}, key=lambda r: -sum(runs[0][0].get(r, [0])))
    header = f"{'rule':<22}" + "".join(f"{'jobs':>6}{'mean s':>8}{'sum s':>8}" for _ in runs)
    print(header)
    for rule in rules:
        cells = ""
        for per_rule, _ in runs:
            d = per_rule.get(rule, [])
            cells += f"{len(d):>6}{(sum(d) / len(d) if d else 0):>8.1f}{sum(d):>8.0f}"
        print(f"{rule:<22}{cells}")
    print(f"{'job-seconds':<22}" + "".join(f"{'':>14}{sum(map(sum, p.values())):>8.0f}" for p, _ in runs))
    print(f"{'wall seconds':<22}" + "".join(f"{'':>14}{wall:>8.0f}" for _, wall in runs))


if __name__ == "__main__":
    main()
