#!/usr/bin/env python3
"""The transformers side of actors/tests/byo_model.rs: what transformers makes of the
folders `rlhf ppo` and `rlhf rm` saved.

    byo_check.py POLICY_DIR RM_DIR PROMPT MAX_NEW_TOKENS RESPONSE

Prints one JSON object:
  prompt_ids:   AutoTokenizer(POLICY_DIR).apply_chat_template([user PROMPT],
                add_generation_prompt=True, tokenize=True)
  new_ids:      AutoModelForCausalLM(POLICY_DIR).generate(greedy, MAX_NEW_TOKENS) after the
                prompt, cut before the first of generation_config's eos_token_id
  completion:   new_ids decoded, special tokens kept (as `rlhf generate` prints them)
  chat_template: the template AutoTokenizer read from POLICY_DIR and from RM_DIR
  score:        AutoModelForSequenceClassification(RM_DIR) on the templated PROMPT's ids,
                RESPONSE's, then the EOS (how `rlhf` reads a reward), and the config's
                reward_bias (transformers' score is rlhf's minus it for Llama models)
"""

import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer


def ids_of(encoded):
    """apply_chat_template(tokenize=True) returns a BatchEncoding in transformers 5."""
    return list(encoded["input_ids"]) if hasattr(encoded, "keys") else list(encoded)


def main():
    policy_dir, rm_dir, prompt, max_new_tokens, response = sys.argv[1:6]
    torch.set_num_threads(1)
    user = [{"role": "user", "content": prompt}]

    tok = AutoTokenizer.from_pretrained(policy_dir)
    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32).eval()
    prompt_ids = ids_of(tok.apply_chat_template(user, add_generation_prompt=True, tokenize=True))
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=int(max_new_tokens),
            do_sample=False,
            temperature=None,
            top_p=None,
        )
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    new_ids = []
    for t in out[0, len(prompt_ids):].tolist():
        if t in eos:
            break
        new_ids.append(t)

    rm_tok = AutoTokenizer.from_pretrained(rm_dir)
    rm = AutoModelForSequenceClassification.from_pretrained(rm_dir, dtype=torch.float32).eval()
    # The prompt, then the response encoded on its own, then the EOS, as rlhf trains and
    # scores a reward model.
    prompt_text = rm_tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    scored = (
        rm_tok(prompt_text, add_special_tokens=False)["input_ids"]
        + rm_tok(response, add_special_tokens=False)["input_ids"]
        + [rm_tok.eos_token_id]
    )
    with torch.no_grad():
        score = rm(torch.tensor([scored])).logits[0, 0].item()

    print(json.dumps({
        "prompt_ids": prompt_ids,
        "new_ids": new_ids,
        "completion": tok.decode(new_ids, skip_special_tokens=False),
        "chat_template": tok.chat_template,
        "rm_chat_template": rm_tok.chat_template,
        "rm_class": type(rm).__name__,
        "score": score,
        "reward_bias": getattr(rm.config, "reward_bias", None),
    }))


if __name__ == "__main__":
    main()
