"""seqpref.tables: exact schemas, provenance metadata, atomic writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqpref import provenance, tables


def _logps(n: int = 4, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pair_id": [f"p{i + offset}" for i in range(n)],
            "logp_chosen": -np.arange(1, n + 1, dtype=float) * 1.5,
            "logp_rejected": -np.arange(1, n + 1, dtype=float) * 2.25,
            "n_tokens_chosen": np.arange(1, n + 1, dtype=np.int64),
            "n_tokens_rejected": np.arange(2, n + 2, dtype=np.int64),
            "truncated": [i % 2 == 0 for i in range(n)],
        }
    )


RECORD = {"step": "unit", "config_hash": "abc", "options": {"x": 1}, "versions": {"pandas": "?"}, "git_commit": "none"}


def test_write_table_round_trips(tmp_path):
    frame = _logps()
    path = tmp_path / "sub" / "dir" / "logps.parquet"  # parents are created
    tables.write_table(frame, path, tables.LOGPS, RECORD)
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert pq.read_schema(path).remove_metadata().equals(tables.LOGPS)
    assert not (tmp_path / "sub" / "dir" / "logps.parquet.tmp").exists()


def test_write_table_uses_schema_column_order(tmp_path):
    frame = _logps()
    shuffled = frame[list(reversed(frame.columns))]
    tables.write_table(shuffled, tmp_path / "t.parquet", tables.LOGPS, RECORD)
    assert pq.read_schema(tmp_path / "t.parquet").names == tables.LOGPS.names
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), frame, check_dtype=False)


def test_write_table_pairs_round_trip_keeps_text(tmp_path):
    frame = pd.DataFrame(
        {
            "pair_id": ["a", "b"],
            "prompt": ["user : hi ? assistant :", "\n\nHuman: ünïcode ✓\n\nAssistant:"],
            "prompt_messages": [None, '[{"role": "user", "content": "ünïcode ✓"}]'],
            "chosen": [" sure , x .", " y"],
            "rejected": [" sorry , x .", " z"],
            "source": ["{}", '{"k": 1}'],
        }
    )
    tables.write_table(frame, tmp_path / "pairs.parquet", tables.PAIRS, RECORD)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "pairs.parquet"), frame, check_dtype=False)


def test_missing_column_raises_naming_it(tmp_path):
    frame = _logps().drop(columns=["n_tokens_rejected"])
    path = tmp_path / "t.parquet"
    with pytest.raises(ValueError, match="n_tokens_rejected"):
        tables.write_table(frame, path, tables.LOGPS, RECORD)
    assert not path.exists()


def test_extra_column_raises_naming_it(tmp_path):
    frame = _logps().assign(surprise_column=1.0)
    path = tmp_path / "t.parquet"
    with pytest.raises(ValueError, match="surprise_column"):
        tables.write_table(frame, path, tables.LOGPS, RECORD)
    assert not path.exists()


def test_provenance_is_readable(tmp_path):
    record = provenance.provenance("unit_test", {"a": 1, "b": [1, 2]})
    path = tmp_path / "t.parquet"
    tables.write_table(_logps(), path, tables.LOGPS, record)
    back = tables.read_provenance(path)
    assert back == record
    for key in ("config_hash", "versions", "git_commit"):
        assert key in back, key
    assert back["step"] == "unit_test"
    assert back["config_hash"] == provenance.config_hash({"b": [1, 2], "a": 1})
    assert back["config_hash"] != provenance.config_hash({"a": 2, "b": [1, 2]})
    assert len(back["config_hash"]) == 16
    assert {"pandas", "pyarrow", "seqpref"} <= set(back["versions"])
    assert back["versions"]["pandas"] == pd.__version__
    assert back["versions"]["pyarrow"] == pa.__version__
    assert isinstance(back["git_commit"], str) and back["git_commit"]
    # the pandas metadata is kept beside ours
    assert b"pandas" in pq.read_schema(path).metadata


def test_package_versions_absent():
    assert provenance.package_versions(["surely-not-an-installed-package-xyz"]) == {
        "surely-not-an-installed-package-xyz": "absent"
    }


def test_failed_write_leaves_no_file_at_target(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"

    def broken_write(table, where, *args, **kwargs):
        with open(where, "wb") as handle:  # a half-written file, then a crash
            handle.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(tables.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        tables.write_table(_logps(), path, tables.LOGPS, RECORD)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # the half-written temporary file is removed too


def test_failed_write_keeps_previous_table_intact(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    tables.write_table(_logps(), path, tables.LOGPS, RECORD)
    before = path.read_bytes()

    def broken_write(table, where, *args, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(tables.pq, "write_table", broken_write)
    with pytest.raises(OSError):
        tables.write_table(_logps(2), path, tables.LOGPS, RECORD)
    assert path.read_bytes() == before


def test_read_tables_concatenates_in_order(tmp_path):
    paths = []
    for k in range(3):
        path = tmp_path / f"t{k}.parquet"
        tables.write_table(_logps(2, offset=10 * k), path, tables.LOGPS, RECORD)
        paths.append(path)
    back = tables.read_tables([paths[2], paths[0], paths[1]])
    assert back["pair_id"].tolist() == ["p20", "p21", "p0", "p1", "p10", "p11"]
    assert tables.read_tables(paths, columns=["pair_id"]).columns.tolist() == ["pair_id"]
    with pytest.raises(ValueError):
        tables.read_tables([])


def test_summary_and_pair_scores_schemas_have_ci_columns():
    for metric in ("reward_margin", "dpo_margin", "rel_accuracy", "ln_margin"):
        for suffix in ("", "_lo", "_hi"):
            assert f"{metric}{suffix}" in tables.SUMMARY.names
    for name in ("stage", "objective", "pair_id", "reward_margin", "ref_logp_chosen", "beta"):
        assert name in tables.PAIR_SCORES.names
