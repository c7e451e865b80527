#!/usr/bin/env python3
"""LoRA fixtures from `peft`: adapter folders on the tiny fixture models and what the
adapted models compute, for `rlhf`'s LoRA layers, adapter reading and merging to match
(src/model/lora_tests.rs).

Run from the repository root with the bench venv, which has transformers and peft
(`.venv-bench/bin/pip install peft`):

    .venv-bench/bin/python scripts/lora_fixtures.py

For each case it wraps a fixture model with `peft.get_peft_model`, with
`init_lora_weights=False` so that B is random (with B = 0 every adapter is a no-op and
nothing would be checked), saves the adapter folder under tests/fixtures/lora/<case>/, and
writes expected.json: fixed input ids and the adapted model's outputs (LM logits, or the
scalar score of the last token), and the outputs after `merge_and_unload()`.

    .venv-bench/bin/python scripts/lora_fixtures.py --check DIR BASE

instead loads an adapter folder that `rlhf` wrote (DIR) on its base model (BASE) with
`peft.PeftModel.from_pretrained` and prints the outputs on the same ids as JSON, to
compare with `rlhf`'s. Deterministic: re-running reproduces the same files.
"""

import json
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model

ROOT = "tests/fixtures"
IDS = [[5, 17, 33, 2, 61, 8, 90, 41], [12, 3, 77, 54, 9, 26, 70, 1]]

CASES = [
    # name, base fixture, auto class, peft task, targets, fan_in_fan_out
    ("gpt2", "gpt2-tiny", transformers.AutoModelForCausalLM, "CAUSAL_LM",
     ["c_attn", "mlp.c_proj"], True),
    ("llama", "llama-tiny", transformers.AutoModelForCausalLM, "CAUSAL_LM",
     ["q_proj", "v_proj", "down_proj"], False),
    ("gpt2-score", "gpt2-tiny-score", transformers.AutoModelForSequenceClassification,
     "SEQ_CLS", ["c_attn", "c_fc"], True),
]


def outputs(model, task):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(IDS))
    return out.logits.squeeze(-1).tolist() if task == "SEQ_CLS" else out.logits.tolist()


def make(name, base, auto, task, targets, fan_in_fan_out):
    torch.manual_seed(0)
    model = auto.from_pretrained(os.path.join(ROOT, base), dtype=torch.float32).eval()
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                        fan_in_fan_out=fan_in_fan_out, task_type=task,
                        init_lora_weights=False)
    model = get_peft_model(model, config).eval()
    if task == "SEQ_CLS":
        # A trained head differs from the base's: perturb it so the test sees it is read.
        head = model.base_model.model.score.modules_to_save["default"]
        head.weight.data += 0.1 * torch.randn_like(head.weight)
    out_dir = os.path.join(ROOT, "lora", name)
    model.save_pretrained(out_dir)
    adapted = outputs(model, task)
    merged = outputs(model.merge_and_unload(), task)
    expected = {"peft_version": peft.__version__, "base": base, "task": task,
                "input_ids": IDS, "outputs": adapted, "merged": merged}
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f)
    # peft writes its own README.md model card; the fixture does not need it.
    readme = os.path.join(out_dir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    print(f"{out_dir}: {task}, targets {targets}")


def check(adapter_dir, base_dir):
    config = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    task = config["task_type"]
    auto = (transformers.AutoModelForSequenceClassification if task == "SEQ_CLS"
            else transformers.AutoModelForCausalLM)
    model = auto.from_pretrained(base_dir, dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(model, adapter_dir).eval()
    print(json.dumps({"input_ids": IDS, "outputs": outputs(model, task)}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    else:
        for case in CASES:
            make(*case)
