"""The retrain guard on hand-built adapter folders."""

from __future__ import annotations

import json

from seqpref import guard

RUN = {"setting": "s", "method": "dpo", "order": "a-b", "seed": 0, "stage": 1, "objective": "a"}
OPTIONS = {"beta": 0.1, "learning_rate": 0.001, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}


def _adapter(results, run, options, weights=True):
    directory = results / "adapters" / run["setting"] / run["method"] / run["order"] / f"seed{run['seed']}" / f"stage{run['stage']}"
    directory.mkdir(parents=True)
    (directory / "training_options.json").write_text(json.dumps({"options": options, "run": run}))
    if weights:
        (directory / "adapter_model.safetensors").write_bytes(b"x")
    return directory


def test_changed_options_names_nested_keys_and_keys_on_one_side():
    """A key on one side only is a change: a new option's default changes the stage's params, and
    Snakemake would rerun (delete) the adapter for it."""
    new = {"beta": 0.1, "learning_rate": 0.002, "lora": {"r": 16, "alpha": 16, "dropout": 0.0}, "added_later": 1}
    assert guard.changed_options(OPTIONS, new) == ["added_later: (absent) -> 1", "learning_rate: 0.001 -> 0.002",
                                                   "lora.r: 8 -> 16"]
    assert guard.changed_options(OPTIONS, dict(OPTIONS)) == []


def test_a_new_default_is_a_conflict_and_execution_options_are_not(tmp_path):
    recorded = {**OPTIONS, "checkpoint_every": 20, "method_options": {"weights": {}}}
    adapter = _adapter(tmp_path, RUN, recorded)
    expected = lambda run: {**OPTIONS, "share_prompt": True, "method_options": {"weights": {}, "equal_pairs": False}}  # noqa: E731
    conflicts = list(guard.retrain_conflicts(tmp_path, expected))
    assert conflicts == [(str(adapter), ["method_options.equal_pairs: (absent) -> False"])]
    assert "did not exist when the adapter was trained" in guard.conflict_message(conflicts)


def test_conflicts_only_for_runs_the_config_still_has_and_finished_adapters(tmp_path):
    changed = _adapter(tmp_path, RUN, OPTIONS)
    _adapter(tmp_path, {**RUN, "stage": 2}, {**OPTIONS, "learning_rate": 0.002})  # already trained as now
    _adapter(tmp_path, {**RUN, "setting": "gone"}, OPTIONS)  # no longer in the config
    _adapter(tmp_path, {**RUN, "order": "b-a"}, OPTIONS, weights=False)  # never finished
    expected = lambda run: None if run["setting"] == "gone" else {**OPTIONS, "learning_rate": 0.002}  # noqa: E731
    conflicts = list(guard.retrain_conflicts(tmp_path, expected))
    assert conflicts == [(str(changed), ["learning_rate: 0.001 -> 0.002"])]
    message = guard.conflict_message(conflicts)
    assert "1 finished adapter(s)" in message and str(changed) in message and "allow_retrain: true" in message
