"""The base model: built and pretrained for the lab, or loaded by id / path, the same way for every step.

``python -m seqpref.base_model OUT_DIR --options JSON`` builds the lab base: a byte-level BPE tokenizer
trained offline on the lab corpus, a Llama-architecture model from a ``LlamaConfig``, and a short
causal-LM pretraining run on the same corpus so that base log-probs are meaningful.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from seqpref import lab
from seqpref.options import LabModelOptions

log = logging.getLogger("seqpref.base_model")


def train_tokenizer(texts: list[str], vocab_size: int):
    """Train a byte-level BPE tokenizer on ``texts`` offline; returns a ``PreTrainedTokenizerFast``.

    Like Llama's, it prepends ``<s>`` to every encoded text; ``</s>`` is the EOS that DPO appends to
    responses and ``<pad>`` pads batches.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", padding_side="right"
    )


def build_model(options: LabModelOptions, tokenizer):
    """A randomly initialised ``LlamaForCausalLM`` (float32) sized by ``options`` for ``tokenizer``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=options.hidden_size,
        intermediate_size=options.intermediate_size,
        num_hidden_layers=options.num_hidden_layers,
        num_attention_heads=options.num_attention_heads,
        num_key_value_heads=options.num_key_value_heads,
        max_position_embeddings=options.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(options.seed)
    return LlamaForCausalLM(config)


def pretrain(model, tokenizer, texts: list[str], options: LabModelOptions) -> list[float]:
    """Causal-LM pretraining of ``model`` on ``texts`` (+EOS); returns the loss of every step (nats/token).

    A plain loop: sample a batch → forward → loss → backward → clip → AdamW step, cosine schedule.
    """
    generator = torch.Generator().manual_seed(options.seed)
    encoded = tokenizer([t + tokenizer.eos_token for t in texts], add_special_tokens=True)["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=0.0)
    losses = []
    model.train()
    for step in range(options.steps):
        lr = options.learning_rate * 0.5 * (1 + math.cos(math.pi * step / options.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.randint(len(encoded), (options.batch_size,), generator=generator).tolist()
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in index]}, return_tensors="pt")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # (B, T); pads ignored
        loss = model(**batch, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == options.steps - 1:
            log.info("pretrain step %d/%d loss %.4f lr %.2e", step + 1, options.steps, losses[-1], lr)
    model.eval()
    return losses


def build_lab_base(out_dir: str | os.PathLike, options: LabModelOptions) -> dict:
    """Build, pretrain and save the lab base model and tokenizer to ``out_dir``; returns a summary."""
    start = time.time()
    texts = lab.pretraining_corpus(options.corpus_size, lab.stable_seed(options.seed, "pretrain"))
    tokenizer = train_tokenizer(texts, options.vocab_size)
    model = build_model(options, tokenizer)
    losses = pretrain(model, tokenizer, texts, options)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    summary = {
        "options": asdict(options),
        "parameters": sum(p.numel() for p in model.parameters()),
        "first_loss": losses[0],
        "final_loss": sum(losses[-20:]) / min(20, len(losses)),
        "seconds": round(time.time() - start, 2),
    }
    (out_dir / "pretrain.json").write_text(json.dumps(summary, indent=2))
    return summary


def torch_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_attention(requested: str | None, device_type: str, torch_dtype: torch.dtype) -> str | None:
    """The attention kernel to load the model with: ``requested`` when given; otherwise
    ``flash_attention_2`` on CUDA in bf16/fp16 when the ``flash_attn`` package is installed, and
    None (transformers' default: SDPA for Llama-family models) everywhere else."""
    if requested:
        return requested
    import importlib.util

    half = torch_dtype in (torch.bfloat16, torch.float16)
    if device_type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None


def load_base(name_or_path: str, dtype: str = "auto", attn_implementation: str | None = None):
    """Load the base model and tokenizer by hub id or local path; returns ``(model, tokenizer)``.

    ``dtype="auto"`` means bfloat16 on CUDA and float32 on CPU; attention is
    :func:`resolve_attention`'s. The model is in eval mode on :func:`torch_device`; the tokenizer
    gets a pad token (EOS) if it has none.
    """
    from transformers import AutoModelForCausalLM

    device = torch_device()
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    kwargs = {"dtype": torch_dtype}
    if device.type == "cuda":  # weights go to the GPU as they load: an 8B model in fp32 never sits in host memory
        kwargs["device_map"] = {"": device.index or 0}
    attention = resolve_attention(attn_implementation, device.type, torch_dtype)
    if attention:
        kwargs["attn_implementation"] = attention
    model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs).to(device)
    model.eval()
    return model, load_tokenizer(name_or_path)


def load_tokenizer(name_or_path: str):
    """The base model's tokenizer by hub id or local path, with a pad token (EOS) if it has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def main(argv=None) -> None:
    """CLI: build the lab base model into OUT_DIR."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--options", default="{}", help="JSON of LabModelOptions fields")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = LabModelOptions(**json.loads(args.options))
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))))
    summary = build_lab_base(args.out_dir, options)
    log.info("lab base model: %s", json.dumps(summary))


if __name__ == "__main__":
    main()
