#!/usr/bin/env python3
"""Checks a tokenizer folder saved by rlhf with transformers (called by
tests/chat_templates.rs):

    chat_check.py DIR MESSAGES_JSON EXPECTED_IDS_JSON EOS_IDS_JSON

AutoTokenizer loads DIR; apply_chat_template(MESSAGES, add_generation_prompt=True,
tokenize=True) must give EXPECTED_IDS, or, when that is null, the folder must have no chat
template. GenerationConfig loads DIR with eos_token_id EOS_IDS (an int when there is one).
"""

import json
import sys

from transformers import AutoTokenizer, GenerationConfig


def main():
    folder, messages, expected, eos = sys.argv[1], *map(json.loads, sys.argv[2:5])
    tok = AutoTokenizer.from_pretrained(folder)
    if expected is None:
        assert tok.chat_template is None, f"unexpected chat template: {tok.chat_template!r}"
    else:
        out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(out["input_ids"]) if hasattr(out, "keys") else list(out)
        assert ids == expected, f"transformers {ids}\nrlhf         {expected}"
    stops = GenerationConfig.from_pretrained(folder).eos_token_id
    assert stops == (eos[0] if len(eos) == 1 else eos), f"eos_token_id {stops}, rlhf stops at {eos}"
    print("ok")


if __name__ == "__main__":
    main()
