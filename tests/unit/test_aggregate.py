"""seqpref.aggregate on a hand-made PAIR_SCORES frame whose outcome is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from seqpref import aggregate, stats, tables
from seqpref.options import LabelOptions

N_PAIRS = 200
BETA = 0.1
NOISE = 0.05
# objective -> reward margin (nats) around which each pair sits after stage 0, 1, 2 of order "a-b"
MARGINS = {"a": [0.0, 2.0, -1.0], "b": [0.0, 0.0, 2.0]}
OPTIONS = LabelOptions(n_boot=300, min_effect=0.25, seed=0)


def _scores(margins=MARGINS, n_pairs=N_PAIRS, seed=0, run_seed=0, order="a-b", rng_seed=0) -> pd.DataFrame:
    """PAIR_SCORES rows of one run: every objective's pairs at every stage."""
    rng = np.random.default_rng(rng_seed)
    names = order.split("-")
    parts = []
    for objective, centres in margins.items():
        # the base log-probs are fixed per pair; only the policy moves
        ref_w = rng.uniform(-30, -5, size=n_pairs)
        ref_l = rng.uniform(-30, -5, size=n_pairs)
        n_w = rng.integers(3, 12, size=n_pairs)
        n_l = rng.integers(3, 12, size=n_pairs)
        for stage, centre in enumerate(centres):
            margin = centre + rng.normal(0.0, NOISE, size=n_pairs)
            shift = rng.normal(0.0, 1.0, size=n_pairs)  # moves both responses: no effect on the margin
            logp_w = ref_w + shift + margin
            logp_l = ref_l + shift
            parts.append(
                pd.DataFrame(
                    {
                        "setting": "conflicting",
                        "method": "dpo",
                        "order": order,
                        "seed": run_seed,
                        "stage": stage,
                        "trained_objective": None if stage == 0 else names[stage - 1],
                        "objective": objective,
                        "pair_id": [f"{objective}-{i:05d}" for i in range(n_pairs)],
                        "logp_chosen": logp_w,
                        "logp_rejected": logp_l,
                        "ref_logp_chosen": ref_w,
                        "ref_logp_rejected": ref_l,
                        "n_tokens_chosen": n_w,
                        "n_tokens_rejected": n_l,
                        "truncated": False,
                        "beta": BETA,
                        "reward_margin": (logp_w - ref_w) - (logp_l - ref_l),
                        "dpo_margin": BETA * ((logp_w - ref_w) - (logp_l - ref_l)),
                        "ln_margin": logp_w / n_w - logp_l / n_l,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def _cell(summary: pd.DataFrame, objective: str, stage: int, **keys) -> pd.Series:
    mask = (summary["objective"] == objective) & (summary["stage"] == stage)
    for key, value in keys.items():
        mask &= summary[key] == value
    rows = summary[mask]
    assert len(rows) == 1, (objective, stage, keys, len(rows))
    return rows.iloc[0]


def _wide(scores: pd.DataFrame, objective: str, column: str) -> np.ndarray:
    """(n_pairs, n_stages) of ``column`` with pairs in sorted pair_id order, built by hand."""
    part = scores[scores["objective"] == objective]
    ids = sorted(part["pair_id"].unique())
    stages = sorted(part["stage"].unique())
    out = np.full((len(ids), len(stages)), np.nan)
    position = {pid: i for i, pid in enumerate(ids)}
    for pid, stage, value in zip(part["pair_id"], part["stage"], part[column]):
        out[position[pid], stage] = value
    return out


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return _scores()


@pytest.fixture(scope="module")
def summary(scores) -> pd.DataFrame:
    return aggregate.summarise(scores, OPTIONS)["summary"]


def test_one_row_per_objective_and_stage(summary):
    assert len(summary) == 6
    assert sorted(zip(summary["objective"], summary["stage"])) == [(o, s) for o in "ab" for s in range(3)]
    assert list(summary.columns) == [c for c in tables.SUMMARY.names if c in summary.columns]
    assert set(tables.SUMMARY.names) <= set(summary.columns)


def test_roles_and_trained_objective(summary):
    expected = {
        ("a", 0): "base",
        ("a", 1): "trained",
        ("a", 2): "earlier",
        ("b", 0): "base",
        ("b", 1): "later",
        ("b", 2): "trained",
    }
    for (objective, stage), role in expected.items():
        assert _cell(summary, objective, stage)["role"] == role, (objective, stage)
    for objective in "ab":
        assert _cell(summary, objective, 0)["trained_objective"] is None or pd.isna(
            _cell(summary, objective, 0)["trained_objective"]
        )
        assert _cell(summary, objective, 1)["trained_objective"] == "a"
        assert _cell(summary, objective, 2)["trained_objective"] == "b"


def test_labels(summary):
    assert _cell(summary, "a", 2)["label"] == "degradation"
    assert _cell(summary, "b", 1)["label"] == "stable"
    assert _cell(summary, "a", 1)["label"] == "trained"
    assert _cell(summary, "b", 2)["label"] == "trained"
    for objective in "ab":
        assert pd.isna(_cell(summary, objective, 0)["label"])
    assert (summary["label_metric"] == "reward_margin").all()


def test_n_and_run_keys(summary):
    assert (summary["n"] == N_PAIRS).all()
    assert (summary["setting"] == "conflicting").all()
    assert (summary["method"] == "dpo").all()
    assert (summary["order"] == "a-b").all()
    assert (summary["n_seeds"] == 1).all()
    assert summary["reward_margin_seed_sd"].isna().all()  # one seed: no spread across seeds


def test_means_and_changes_equal_hand_values(scores, summary):
    for objective in "ab":
        rm = _wide(scores, objective, "reward_margin")
        ln = _wide(scores, objective, "ln_margin")
        for stage in range(3):
            cell = _cell(summary, objective, stage)
            assert cell["reward_margin"] == pytest.approx(rm[:, stage].mean(), abs=1e-12)
            assert cell["dpo_margin"] == pytest.approx(BETA * rm[:, stage].mean(), abs=1e-12)
            assert cell["ln_margin"] == pytest.approx(ln[:, stage].mean(), abs=1e-12)
            share = sum(1.0 if v > 0 else 0.5 if v == 0 else 0.0 for v in rm[:, stage]) / N_PAIRS
            assert cell["rel_accuracy"] == pytest.approx(share, abs=1e-12)
            for metric in ("reward_margin", "dpo_margin", "rel_accuracy", "ln_margin"):
                assert cell[f"{metric}_lo"] <= cell[metric] <= cell[f"{metric}_hi"], (objective, stage, metric)
            if stage == 0:
                assert np.isnan(cell["reward_margin_change"])
                continue
            previous = _cell(summary, objective, stage - 1)
            assert cell["reward_margin_change"] == pytest.approx(
                rm[:, stage].mean() - rm[:, stage - 1].mean(), abs=1e-12
            )
            assert cell["ln_margin_change"] == pytest.approx(ln[:, stage].mean() - ln[:, stage - 1].mean(), abs=1e-12)
            assert cell["rel_accuracy_change"] == pytest.approx(
                cell["rel_accuracy"] - previous["rel_accuracy"], abs=1e-12
            )
    # the designed effects, roughly
    assert _cell(summary, "a", 1)["reward_margin"] == pytest.approx(2.0, abs=0.05)
    assert _cell(summary, "a", 2)["reward_margin_change"] == pytest.approx(-3.0, abs=0.05)
    assert _cell(summary, "a", 1)["rel_accuracy"] == 1.0
    assert _cell(summary, "a", 2)["rel_accuracy"] == 0.0
    assert 0.3 < _cell(summary, "b", 1)["rel_accuracy"] < 0.7


def test_cis_with_one_seed_are_the_pairs_t_interval(scores, summary):
    """One seed: every level and change interval is the t interval over the pairs (P − 1 df), written
    here independently of seqpref.stats, and says it covers pairs only."""
    from scipy import stats as scipy_stats

    t = scipy_stats.t.ppf(0.975, N_PAIRS - 1)
    for objective in "ab":
        rm = _wide(scores, objective, "reward_margin")
        for stage in range(3):
            cell = _cell(summary, objective, stage)
            assert cell["interval_covers"] == "pairs (1 seed)"
            half = t * rm[:, stage].std(ddof=1) / np.sqrt(N_PAIRS)
            assert cell["reward_margin_lo"] == pytest.approx(rm[:, stage].mean() - half, abs=1e-10)
            assert cell["reward_margin_hi"] == pytest.approx(rm[:, stage].mean() + half, abs=1e-10)
            if stage:
                change = rm[:, stage] - rm[:, stage - 1]
                half = t * change.std(ddof=1) / np.sqrt(N_PAIRS)
                assert cell["reward_margin_change_lo"] == pytest.approx(change.mean() - half, abs=1e-10)
                assert cell["reward_margin_change_hi"] == pytest.approx(change.mean() + half, abs=1e-10)


def test_cis_with_seeds_use_the_seed_means_t_interval():
    """Two seeds that disagree by 1 nat at stages ≥ 1: the change's interval is at least the t interval
    with 1 df over the two seed means (12.7 × their standard error), which the pooled bootstrap gave far
    narrower (it can draw only three seed sets)."""
    from scipy import stats as scipy_stats

    first = _scores(run_seed=0, rng_seed=1)
    second = _scores(run_seed=1, rng_seed=1)
    second["reward_margin"] = second["reward_margin"] + np.where(second["stage"] > 0, 1.0, 0.0)
    summary = aggregate.summarise(pd.concat([first, second], ignore_index=True), OPTIONS)["summary"]
    cell = _cell(summary, "a", 1)
    assert cell["interval_covers"] == "pairs and seeds (2 seeds)"
    seed_means = [
        _wide(part, "a", "reward_margin")[:, 1].mean() - _wide(part, "a", "reward_margin")[:, 0].mean()
        for part in (first, second.assign(reward_margin=second["reward_margin"]))
    ]
    half_seed = scipy_stats.t.ppf(0.975, 1) * np.std(seed_means, ddof=1) / np.sqrt(2)
    half = (cell["reward_margin_change_hi"] - cell["reward_margin_change_lo"]) / 2
    assert half >= half_seed - 1e-9 and half_seed > 6  # 12.7 × 0.5
    assert cell["reward_margin_change_lo"] < 0 < cell["reward_margin_change_hi"]
    assert cell["label"] == "trained"


def test_row_order_of_input_does_not_matter(scores, summary):
    shuffled = scores.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = aggregate.summarise(shuffled, OPTIONS)["summary"]
    key = ["objective", "stage"]
    pd.testing.assert_frame_equal(
        again.sort_values(key).reset_index(drop=True), summary.sort_values(key).reset_index(drop=True)
    )


def test_stage_zero_ties_count_half_so_jitter_is_no_transfer():
    """At stage 0 every margin is exactly 0 (the policy is the base). An objective that the next
    stage leaves alone, its margins jittering by ±0.01 nats, must not gain rel_accuracy: ties count
    ½, so stage 0 reads 0.5 and the change is near 0, not +0.5."""
    scores = _scores({"a": [0.0, 2.0, 2.0], "b": [0.0, 0.0, 2.0]}, order="a-b").copy()
    base = scores["stage"] == 0
    scores.loc[base, "logp_chosen"] = scores.loc[base, "ref_logp_chosen"]
    scores.loc[base, "logp_rejected"] = scores.loc[base, "ref_logp_rejected"]
    jitter = (scores["stage"] == 1) & (scores["objective"] == "b")
    scores.loc[jitter, "logp_chosen"] = scores.loc[jitter, "ref_logp_chosen"] + np.random.default_rng(5).uniform(
        -0.01, 0.01, jitter.sum()
    )
    scores.loc[jitter, "logp_rejected"] = scores.loc[jitter, "ref_logp_rejected"]
    from seqpref import metrics

    metrics.pair_metrics(scores, BETA)
    assert (scores.loc[base, "reward_margin"] == 0).all()
    options = LabelOptions(metric="rel_accuracy", n_boot=300, min_effect=0.25, seed=0)
    summary = aggregate.summarise(scores, options)["summary"]
    assert _cell(summary, "b", 0)["rel_accuracy"] == 0.5
    assert _cell(summary, "a", 0)["rel_accuracy"] == 0.5
    b1 = _cell(summary, "b", 1)
    assert abs(b1["rel_accuracy_change"]) < 0.1
    assert b1["label"] == "stable"


def test_positive_transfer_and_several_runs():
    first = _scores(margins={"a": [0.0, 2.0, 3.0], "b": [0.0, 1.0, 2.0]}, run_seed=0, rng_seed=1)
    second = _scores(margins={"b": [0.0, 2.0, 2.0], "a": [0.0, -1.0, 2.0]}, run_seed=0, order="b-a", rng_seed=2)
    summary = aggregate.summarise(pd.concat([first, second], ignore_index=True), OPTIONS)["summary"]
    assert len(summary) == 12
    assert _cell(summary, "a", 2, order="a-b")["label"] == "positive_transfer"  # +1 while b trains
    assert _cell(summary, "b", 1, order="a-b")["label"] == "positive_transfer"
    assert _cell(summary, "b", 1, order="a-b")["role"] == "later"
    assert _cell(summary, "b", 1, order="b-a")["role"] == "trained"
    assert _cell(summary, "a", 1, order="b-a")["label"] == "degradation"
    assert _cell(summary, "a", 1, order="b-a")["role"] == "later"
    assert _cell(summary, "b", 2, order="b-a")["label"] == "stable"  # no change while a trains
    assert _cell(summary, "b", 2, order="b-a")["role"] == "earlier"


def test_small_change_is_stable_even_when_ci_excludes_zero():
    # +0.15 is estimated precisely (CI excludes 0) but is below min_effect 0.25
    scores = _scores(margins={"a": [0.0, 2.0, 2.0], "b": [0.0, 0.15, 2.0]})
    summary = aggregate.summarise(scores, OPTIONS)["summary"]
    cell = _cell(summary, "b", 1)
    assert cell["reward_margin_change_lo"] > 0
    assert cell["label"] == "stable"
    # with a smaller min_effect the same change is positive transfer
    loose = aggregate.summarise(scores, LabelOptions(n_boot=300, min_effect=0.1))["summary"]
    assert _cell(loose, "b", 1)["label"] == "positive_transfer"


def test_label_metric_option(scores):
    summary = aggregate.summarise(scores, LabelOptions(metric="rel_accuracy", n_boot=300, min_effect=0.25))["summary"]
    assert (summary["label_metric"] == "rel_accuracy").all()
    # rel_accuracy of a drops from 1 to 0 at stage 2
    assert _cell(summary, "a", 2)["label"] == "degradation"


def test_invalid_label_options():
    with pytest.raises(ValueError, match="metric"):
        LabelOptions(metric="loss")
    with pytest.raises(ValueError):
        LabelOptions(n_boot=10)
    with pytest.raises(ValueError):
        LabelOptions(min_effect=-1.0)


def test_pair_missing_at_one_stage_raises(scores):
    missing = scores.drop(index=scores.index[(scores["objective"] == "a") & (scores["stage"] == 2)][:1])
    with pytest.raises(ValueError, match="stage"):
        aggregate.summarise(missing, OPTIONS)["summary"]


def test_stage_gap_raises(scores):
    with pytest.raises(ValueError, match="stage"):
        aggregate.summarise(scores[scores["stage"] != 1], OPTIONS)["summary"]


def _write_score_files(scores, directory) -> list[str]:
    """One score file per stage, as score_stage writes them."""
    paths = []
    record = {"step": "score_stage", "config_hash": "x"}
    for stage, part in scores.groupby("stage"):
        path = directory / f"stage{stage}.parquet"
        tables.write_table(part.reset_index(drop=True), path, tables.PAIR_SCORES, record)
        paths.append(str(path))
    return paths


def _outputs(directory):
    return {
        name: str(directory / f"{name}.parquet") for name in ("pairs", "summary", "transfer", "quartiles", "controls")
    }


def test_summary_tables_writes_every_table(tmp_path, scores, summary):
    paths = _write_score_files(scores, tmp_path)
    outputs = _outputs(tmp_path / "out")
    pairs_out, summary_out = Path(outputs["pairs"]), Path(outputs["summary"])
    returned = aggregate.summary_tables(paths, outputs, OPTIONS)["summary"]
    assert all(Path(p).exists() for p in outputs.values())
    assert pq.read_schema(outputs["transfer"]).names == tables.TRANSFER.names
    assert pq.read_schema(outputs["quartiles"]).names == tables.QUARTILES.names
    assert pq.read_schema(pairs_out).names == tables.PAIR_SCORES.names
    assert pq.read_schema(summary_out).names == tables.SUMMARY.names
    pairs_back = pd.read_parquet(pairs_out)
    assert len(pairs_back) == len(scores) == 2 * 3 * N_PAIRS
    summary_back = pd.read_parquet(summary_out)
    assert len(summary_back) == 6
    key = ["objective", "stage"]
    got = summary_back.sort_values(key).reset_index(drop=True)
    want = summary.sort_values(key).reset_index(drop=True)
    np.testing.assert_allclose(got["reward_margin_change"], want["reward_margin_change"], equal_nan=True)
    assert got["label"].tolist() == want["label"].tolist()
    assert got["role"].tolist() == want["role"].tolist()
    assert len(returned) == 6
    record = tables.read_provenance(summary_out)
    assert record["step"] == "aggregate"
    assert record["options"]["labels"]["min_effect"] == OPTIONS.min_effect
    assert record["options"]["inputs"] == 3


def test_summary_tables_raises_on_duplicated_pair_rows(tmp_path, scores):
    paths = _write_score_files(scores, tmp_path)
    outputs = _outputs(tmp_path / "out")
    with pytest.raises(ValueError, match="twice"):
        aggregate.summary_tables(paths + paths[1:2], outputs, OPTIONS)
    assert not any(Path(p).exists() for p in outputs.values())


def test_seeds_are_pooled_into_one_row_with_their_spread():
    first = _scores(run_seed=0, rng_seed=1)
    second = _scores(run_seed=1, rng_seed=1)
    second["reward_margin"] = second["reward_margin"] + np.where(second["stage"] > 0, 1.0, 0.0)
    pooled = aggregate.summarise(pd.concat([first, second], ignore_index=True), OPTIONS)
    summary = pooled["summary"]
    assert len(summary) == 6 and (summary["n_seeds"] == 2).all()
    single = aggregate.summarise(first, OPTIONS)["summary"]
    for stage in range(3):
        cell, alone = _cell(summary, "a", stage), _cell(single, "a", stage)
        shift = 0.5 if stage else 0.0
        assert cell["reward_margin"] == pytest.approx(alone["reward_margin"] + shift, abs=1e-12)
        assert cell["reward_margin_seed_sd"] == pytest.approx(np.sqrt(2) * shift, abs=1e-12)
        if stage:  # seeds that disagree by 1 nat widen the CI beyond the pairs' alone
            assert (
                cell["reward_margin_hi"] - cell["reward_margin_lo"]
                > alone["reward_margin_hi"] - alone["reward_margin_lo"] + 0.3
            )
    transfer = pooled["transfer"]
    assert (transfer["n_seeds"] == 2).all() and "seed" not in transfer.columns
    assert (pooled["quartiles"]["n"] == 2 * N_PAIRS // 4).all()  # quartiles pool both seeds' pairs


def test_a_seed_missing_a_stage_is_named():
    first = _scores(run_seed=0, rng_seed=1)
    second = _scores(run_seed=1, rng_seed=1)
    second = second[second["stage"] < 2]
    with pytest.raises(ValueError, match=r"\(seed, stage\) \[\(1, 2\)\]"):
        aggregate.summarise(pd.concat([first, second], ignore_index=True), OPTIONS)


def test_joint_runs_get_joint_roles_and_every_stage_is_trained():
    scores = _scores(margins={"a": [0.0, 2.0, 1.0], "b": [0.0, 1.0, 2.0]}, rng_seed=1)
    scores["method"], scores["order"] = "mix", "a-b"
    frames = aggregate.summarise(scores, OPTIONS)
    summary = frames["summary"]
    assert set(summary.loc[summary["stage"] > 0, "role"]) == {"joint"}
    assert set(summary.loc[summary["stage"] > 0, "trained_objective"]) == {"joint"}
    # a joint stage trains every objective: `trained`, as a sequential stage's own objective is
    assert set(summary.loc[summary["stage"] > 0, "label"]) == {"trained"}
    assert summary.loc[summary["stage"] > 0, "share_of_own_gain"].isna().all()
    transfer = frames["transfer"].query("metric == 'reward_margin'").set_index("objective")
    assert (transfer["own_stage"] == 1).all()
    assert transfer.at["a", "bwt"] == pytest.approx(
        _cell(summary, "a", 2)["reward_margin"] - _cell(summary, "a", 1)["reward_margin"]
    )
    assert transfer.at["b", "final"] == pytest.approx(_cell(summary, "b", 2)["reward_margin"])


def test_every_method_kind_labels_what_its_stage_trains_trained():
    """One meaning per label, walked over the registry: an objective a stage trains — alone, jointly or
    replayed — is `trained` there, whatever the method; an objective it does not train is not."""
    from seqpref import methods, plan

    for method in methods.names():
        scores = _scores(margins={"a": [0.0, 2.0, -1.0], "b": [0.0, 0.0, 2.0]}, rng_seed=1)
        scores["method"] = method
        scores["trained_objective"] = [plan.trained_at(method, "a-b", s) for s in scores["stage"]]
        summary = aggregate.summarise(scores, OPTIONS)["summary"]
        kind, entry = methods.kind(method), methods.get(method)
        for objective, stage in (("a", 1), ("a", 2), ("b", 1), ("b", 2)):
            cell = _cell(summary, objective, stage)
            trains = (
                kind == methods.JOINT
                or (objective, stage) in (("a", 1), ("b", 2))
                or (objective == "a" and stage == 2 and entry.replays_earlier)
            )
            assert (cell["label"] == "trained") == trains, (method, objective, stage, cell["role"], cell["label"])
        if kind != methods.JOINT and not entry.replays_earlier:
            assert _cell(summary, "a", 2)["label"] == "degradation", method


def test_label_threshold_is_continuous_and_monotone_in_the_own_gain():
    """threshold(g) = max(min_effect, min_share · max(g, 0)): non-decreasing, Lipschitz with constant
    min_share (no jump anywhere, in particular not where the gain's CI starts to clear 0)."""
    gains = np.concatenate([np.linspace(-5, 30, 7001), [0.065, 2.5, 2.5 + 1e-9]])
    gains.sort()
    for min_share, min_effect in ((0.1, 0.25), (0.5, 0.0), (1.0, 3.0), (None, 0.25)):
        values = np.array([stats.label_threshold(g, min_share, min_effect) for g in gains])
        steps = np.diff(values)
        assert (steps >= 0).all()
        assert (steps <= (min_share or 0) * np.diff(gains) + 1e-12).all()
        assert values.min() == min_effect
    assert stats.label_threshold(float("nan"), 0.1, 0.25) == 0.25
    assert stats.label_threshold(12.0, 0.1, 0.25) == pytest.approx(1.2)


def test_relative_criterion_scales_the_label_with_what_the_objective_learned():
    """An earlier objective is judged against its own-stage gain once min_share of it exceeds
    min_effect: +0.6 on a gain of 12 (5%, above min_effect) is stable, −3 on it (25%) degradation;
    the change as a share of the gain carries Fieller's interval."""
    for late, label, share in ((12.6, "stable", 0.05), (9.0, "degradation", -0.25)):
        scores = _scores(margins={"a": [0.0, 12.0, late], "b": [0.0, 0.0, 2.0]})
        cell = _cell(aggregate.summarise(scores, OPTIONS)["summary"], "a", 2)
        assert cell["role"] == "earlier" and cell["label_criterion"] == "relative"
        assert cell["share_of_own_gain"] == pytest.approx(share, abs=0.01)
        assert cell["share_of_own_gain_lo"] < cell["share_of_own_gain"] < cell["share_of_own_gain_hi"]
        assert cell["label_threshold"] == pytest.approx(0.1 * cell["own_gain"])
        assert cell["label"] == label
    # a small gain sets no more than min_effect: losing 0.15 of a 0.2 gain is below it
    cell = _cell(
        aggregate.summarise(_scores(margins={"a": [0.0, 0.2, 0.05], "b": [0.0, 0.0, 2.0]}), OPTIONS)["summary"], "a", 2
    )
    assert cell["label_criterion"] == "absolute" and cell["label_threshold"] == OPTIONS.min_effect
    assert cell["label"] == "stable" and cell["share_of_own_gain"] == pytest.approx(-0.75, abs=0.05)


def test_relative_criterion_needs_a_demonstrated_gain():
    """An objective whose own stage taught it nothing measurable (gain CI includes 0) is judged by
    min_effect: a ratio to a gain of ~0 would call any wobble a huge share."""
    scores = _scores(margins={"a": [0.0, 0.001, -1.0], "b": [0.0, 0.0, 2.0]})
    cell = _cell(aggregate.summarise(scores, OPTIONS)["summary"], "a", 2)
    assert cell["label_criterion"] == "absolute" and cell["label_threshold"] == OPTIONS.min_effect
    assert cell["label"] == "degradation"
    assert np.isnan(cell["share_of_own_gain"]) and np.isnan(cell["share_of_own_gain_lo"])  # no ratio to ~0
