"""The retrain guard on hand-built adapter folders."""

from __future__ import annotations

import json

from seqpref import guard

RUN = {"setting": "s", "method": "dpo", "order": "a-b", "seed": 0, "stage": 1, "objective": "a"}
OPTIONS = {"beta": 0.1, "learning_rate": 0.001, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}


def _adapter(results, run, options, weights=True):
    directory = (
        results
        / "adapters"
        / run["setting"]
        / run["method"]
        / run["order"]
        / f"seed{run['seed']}"
        / f"stage{run['stage']}"
    )
    directory.mkdir(parents=True)
    (directory / "training_options.json").write_text(json.dumps({"options": options, "run": run}))
    if weights:
        (directory / "adapter_model.safetensors").write_bytes(b"x")
    return directory


def test_changed_options_names_nested_keys_and_keys_on_one_side():
    """A key on one side only is a change: a new option's default changes the stage's params, and
    Snakemake would rerun (delete) the adapter for it."""
    new = {"beta": 0.1, "learning_rate": 0.002, "lora": {"r": 16, "alpha": 16, "dropout": 0.0}, "added_later": 1}
    assert guard.changed_options(OPTIONS, new) == [
        "added_later: (absent) -> 1",
        "learning_rate: 0.001 -> 0.002",
        "lora.r: 8 -> 16",
    ]
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


def test_a_run_keeps_exactly_the_adapters_it_replaced(tmp_path):
    """keep_aside links every finished adapter aside; release_unchanged drops the links of those still
    there and keeps the ones a run deleted or retrained (what Snakemake does to a stage it reruns:
    remove its outputs, then write new ones)."""
    stages = [_adapter(tmp_path, {**RUN, "stage": k}, OPTIONS) for k in (1, 2, 3)]
    unfinished = _adapter(tmp_path, {**RUN, "seed": 1}, OPTIONS, weights=False)
    kept = guard.keep_aside(tmp_path, now=0)
    assert kept == tmp_path / "replaced/19700101T000000Z"
    assert not (kept / unfinished.relative_to(tmp_path)).exists()
    retrained, deleted, untouched = stages
    for name in ("adapter_model.safetensors", "training_options.json"):
        (retrained / name).unlink()
    (retrained / "adapter_model.safetensors").write_bytes(b"new")
    (retrained / "training_options.json").write_text("{}")
    for path in deleted.iterdir():
        path.unlink()
    still = guard.release_unchanged(tmp_path)
    assert still == [kept / retrained.relative_to(tmp_path), kept / deleted.relative_to(tmp_path)]
    assert (kept / retrained.relative_to(tmp_path) / "adapter_model.safetensors").read_bytes() == b"x"
    assert not (kept / untouched.relative_to(tmp_path)).exists()
    assert "2 finished adapter(s) were deleted or retrained" in guard.replaced_message(still, tmp_path)
    # a later run keeps the earlier run's copies and adds only what it replaces itself
    second = guard.keep_aside(tmp_path, now=0)
    assert second == tmp_path / "replaced/19700101T000000Z-2"
    assert guard.release_unchanged(tmp_path) == still


def test_nothing_replaced_leaves_no_folder(tmp_path):
    _adapter(tmp_path, RUN, OPTIONS)
    assert guard.keep_aside(tmp_path) is not None
    assert guard.release_unchanged(tmp_path) == [] and not (tmp_path / "replaced").exists()
    assert guard.keep_aside(tmp_path / "empty") is None


def test_a_stage_retrained_to_the_same_bytes_is_kept_whole(tmp_path):
    """Retraining on CPU may give the same bytes: the run still replaced the files, and the user sees it."""
    stage = _adapter(tmp_path, RUN, OPTIONS)
    guard.keep_aside(tmp_path, now=0)
    weights = stage / "adapter_model.safetensors"
    weights.unlink()
    weights.write_bytes(b"x")  # same bytes, a new file
    (kept,) = guard.release_unchanged(tmp_path)
    assert sorted(p.name for p in kept.iterdir()) == ["adapter_model.safetensors", "training_options.json"]


def test_where_links_fail_copies_are_kept_and_compared_by_content(tmp_path, monkeypatch):
    def no_links(*_):
        raise OSError("links not supported")

    monkeypatch.setattr(guard.os, "link", no_links)
    untouched, changed = (_adapter(tmp_path, {**RUN, "stage": k}, OPTIONS) for k in (1, 2))
    kept = guard.keep_aside(tmp_path, now=0)
    assert (kept / untouched.relative_to(tmp_path) / "adapter_model.safetensors").read_bytes() == b"x"
    (changed / "adapter_model.safetensors").write_bytes(b"y")
    assert guard.release_unchanged(tmp_path) == [kept / changed.relative_to(tmp_path)]
    (changed / "adapter_model.safetensors").write_bytes(b"x")  # back as it was: nothing replaced
    assert guard.release_unchanged(tmp_path) == [] and not (tmp_path / "replaced").exists()
