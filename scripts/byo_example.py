#!/usr/bin/env python3
"""The "bring your own model" example: a tiny Llama 3.1-style model folder made with
transformers, and the JSONL data configs/example-hf.toml trains it on.

    .venv/bin/python scripts/byo_example.py [MODEL_DIR]   # default runs/byo/base
    .venv/bin/python scripts/byo_example.py --data        # rewrite tests/fixtures/byo/*.jsonl

MODEL_DIR gets what a Hugging Face model folder holds: config.json, model.safetensors
(random weights, a few hundred KB), generation_config.json, and the tokenizer files with
Llama 3.1's chat template. The tokenizer is the small one of tests/fixtures/chat/llama3.1
(built by scripts/chat_fixtures.py: Llama 3's special tokens, the BOS its post-processor
adds, the real Llama 3.1 template) plus Llama 3.1's reserved `<|finetune_right_pad_id|>`
named as the pad token, as Llama 3 fine-tuning recipes do: padding with the EOS would make
transformers' sequence-classification pooling skip the EOS a reward model reads its score
at. No downloads. The integration test actors/tests/byo_model.rs runs this, then the three
stages on it, then checks the results in transformers.

The data (--data) is deterministic and committed; it uses every form `rlhf` reads: SFT
`{"prompt", "response"}` and `{"messages"}`, RM `{"prompt", "chosen", "rejected"}` and
`{"prompt", "responses", "ranking"}`, PPO `{"prompt"}`.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "chat", "llama3.1")
DATA = os.path.join(ROOT, "tests", "fixtures", "byo")
PAD = "<|finetune_right_pad_id|>"


def make_model(out):
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    tokenizer.add_special_tokens({"pad_token": PAD})
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        # Llama 3.1's scaled rotary frequencies, with a tiny original context.
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eot_id|>")],
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # transformers 5 writes its loading flags into tokenizer_config.json; a folder one
    # downloads has none.
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        tokenizer_config = json.load(f)
    for key in ("is_local", "local_files_only"):
        tokenizer_config.pop(key, None)
    with open(path, "w") as f:
        json.dump(tokenizer_config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    # Llama 3.1 Instruct's sampling defaults and its two stop ids.
    GenerationConfig.from_pretrained(TOKENIZER).save_pretrained(out)
    print(f"wrote {out}: {sum(p.numel() for p in model.parameters())} parameters, vocab {len(tokenizer)}")


# A small world to talk about: each fact is an SFT demonstration, an RM preference (the
# fact over a wrong or evasive answer) and a PPO prompt.
FACTS = [
    ("Where does the river Avel run?", "The Avel runs past the mill and into the sea."),
    ("What is the capital of Dunford?", "The capital of Dunford is Dunford town."),
    ("Where does Ada live?", "Ada lives in the town of Dunford, in the hills."),
    ("How many goats does Ada have?", "Ada has three goats."),
    ("Name a river in the north.", "The river Avel is in the north."),
    ("What stands by the river Avel?", "A mill stands by the river Avel."),
    ("Where do the goats graze?", "The goats graze in the hills past the mill."),
    ("What does the mill grind?", "The mill grinds wheat into flour."),
    ("Who runs the mill?", "Tom runs the mill by the river."),
    ("What is past the mill?", "The sea is past the mill."),
    ("Where is Dunford?", "Dunford is in the hills in the north."),
    ("What does Ada drink in the morning?", "Ada drinks cafe au lait in the morning."),
]
WRONG = [
    "The sea runs into the hills.",
    "Nobody knows.",
    "I cannot help with that.",
    "Ada has nine goats.",
    "The mill is the capital.",
    "It is in the south.",
]
SYSTEM = "You are a terse assistant."


def write_jsonl(name, records):
    path = os.path.join(DATA, name)
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {path}: {len(records)} records")


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def make_data():
    """Every fact in several of the forms users bring: rlhf's own and TRL's standard and
    conversational ones (src/data/mod.rs lists them)."""
    os.makedirs(DATA, exist_ok=True)
    sft, rm, prompts = [], [], []
    for i, (q, a) in enumerate(FACTS):
        p, pa = FACTS[(i + 1) % len(FACTS)]
        # SFT: a plain pair, TRL's conversational prompt/completion with a system message,
        # and a two-turn conversation (both assistant turns are trained).
        sft.append({"prompt": q, "response": a})
        sft.append({
            "prompt": [{"role": "system", "content": SYSTEM}, user(q)],
            "completion": [assistant(a)],
        })
        sft.append({"messages": [user(p), assistant(pa), user(q), assistant(a)], "category": "chat"})
        wrong = [WRONG[(i + k) % len(WRONG)] for k in range(3)]
        # RM: a pair with its prompt implicit in the two conversations (TRL's form), and
        # K = 3 in a rotating order (ranking lists indices best first).
        rm.append({
            "chosen": [user(q), assistant(a)],
            "rejected": [user(q), assistant(wrong[0])],
        })
        shown = [wrong[1], a, wrong[2]] if i % 2 else [a, wrong[2], wrong[1]]
        rm.append({
            "prompt": q,
            "responses": shown,
            "ranking": [shown.index(a), shown.index(wrong[1]), shown.index(wrong[2])],
            "category": "closed_qa",
        })
        # PPO: a plain prompt, and a conversation whose reference answer is dropped.
        prompts.append({"prompt": q})
        prompts.append({"messages": [user(f"{q} Answer in one sentence."), assistant(a)]})
    write_jsonl("sft.jsonl", sft)
    write_jsonl("rm.jsonl", rm)
    write_jsonl("prompts.jsonl", prompts)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--data"]:
        make_data()
    elif len(args) <= 1 and not any(a.startswith("-") for a in args):
        make_model(args[0] if args else os.path.join("runs", "byo", "base"))
    else:
        sys.exit(__doc__)
