"""With a chat template, the trainer and the scorer see the same token ids for every pair."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from seqpref import base_model, data, dpo_trainer, logps, tables, train
from seqpref.options import TrainOptions

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }} :{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant :{% endif %}"
)
RUN = {"setting": "chat", "method": "dpo", "order": "a-b", "seed": 0, "stage": 1, "objective": "a"}


@pytest.fixture(scope="module")
def chat_base(tiny_base, tmp_path_factory):
    """The tiny lab model saved with a chat template on its tokenizer."""
    model, tokenizer = base_model.load_base(tiny_base)
    tokenizer.chat_template = CHAT_TEMPLATE
    out = tmp_path_factory.mktemp("chat_base")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def chat_pairs():
    """Multi-turn conversations (as hh-rlhf gives them) and plain prompts, in PAIRS columns."""
    rows = []
    for i in range(6):
        rows.append(
            {
                "pair_id": f"conv{i}",
                "prompt": [
                    {"role": "user", "content": f"how do i cook the rice {i} ?"},
                    {"role": "assistant", "content": "with water ."},
                    {"role": "user", "content": "and then ?"},
                ],
                "chosen": f"sure , boil it {i} minutes .",
                "rejected": "no .",
            }
        )
        rows.append(
            {
                "pair_id": f"plain{i}",
                "prompt": f"user : tell me the tea {i} ? assistant :",
                "chosen": " sure , tea is warm .",
                "rejected": " no , go away .",
            }
        )
    return data.as_pairs(pd.DataFrame(rows).assign(source="{}"))


def test_trainer_token_ids_equal_the_scorers(chat_base, chat_pairs, tmp_path):
    """The ids TRL's DPOTrainer tokenizes from our training dataset equal tokenize_frame's, pair by pair."""
    from trl import DPOConfig, DPOTrainer

    model, tokenizer = base_model.load_base(chat_base)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    base = logps.pair_logps(model, tokenizer, chat_pairs, max_length=None, batch_size=4)
    dataset = dpo_trainer.training_dataset(chat_pairs, base, tokenizer)
    config = DPOConfig(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        max_length=None,
        precompute_ref_log_probs=False,
    )
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    ours = logps.tokenize_frame(tokenizer, chat_pairs, max_length=None)
    assert len(trainer.train_dataset) == len(ours) == 12
    end_of_turn = tokenizer.convert_tokens_to_ids("</s>")
    for example, mine, pair_id in zip(trainer.train_dataset, ours, chat_pairs["pair_id"]):
        assert example["pair_id"] == pair_id
        assert example["prompt_ids"] == mine.prompt_ids
        assert example["chosen_ids"] == mine.chosen_ids
        assert example["rejected_ids"] == mine.rejected_ids
        assert mine.chosen_ids[-1] == end_of_turn  # the template closes the assistant turn; it is scored
    # the template really was applied: a conversation's prompt ids render its every turn
    first = tokenizer.decode(ours[0].prompt_ids)
    assert "assistant :with water ." in first.replace("<s>", "") and first.count("user :") == 2
    # and a plain prompt became one user turn
    assert tokenizer.decode(ours[1].prompt_ids) == "<s>user :user : tell me the tea 0 ? assistant :</s><s>assistant :"


def test_chat_stage_trains_and_scores_on_the_base_reference(chat_base, chat_pairs, tmp_path):
    """A full stage on conversational pairs: TRL drops nothing, and the score table's token counts
    match the base log-probs (the scorer refuses any mismatch)."""
    from seqpref import score

    model, tokenizer = base_model.load_base(chat_base)
    pairs_path, logps_path = tmp_path / "pairs.parquet", tmp_path / "base.parquet"
    tables.write_table(chat_pairs, pairs_path, tables.PAIRS, {})
    tables.write_table(logps.pair_logps(model, tokenizer, chat_pairs, 256, 4), logps_path, tables.LOGPS, {})
    options = TrainOptions(beta=0.1, learning_rate=1e-3, batch_size=6, max_length=256, lora={"r": 4, "alpha": 8})
    summary = train.train_stage(
        chat_base,
        str(pairs_path),
        str(logps_path),
        str(tmp_path / "stage1"),
        str(tmp_path / "log.parquet"),
        options,
        RUN,
    )
    assert summary["steps"] == 2
    run = {**{k: RUN[k] for k in ("setting", "method", "order", "seed")}, "stage": 1, "trained_objective": "a"}
    scores = score.score_stage(
        run,
        [("a", str(pairs_path), str(logps_path))],
        {"beta": 0.1, "max_length": 256, "batch_size": 4, "dtype": "auto", "attn_implementation": None},
        base=chat_base,
        adapter=str(tmp_path / "stage1"),
    )
    assert len(scores) == 12 and scores["reward_margin"].abs().max() > 0
    assert json.loads(chat_pairs.loc[0, "prompt_messages"])[0]["role"] == "user"
