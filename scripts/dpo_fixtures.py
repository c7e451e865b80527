#!/usr/bin/env python3
"""DPO loss fixtures from TRL's own DPOTrainer: the losses and reward figures its
`_compute_loss` gives on fixed logits, for `rlhf`'s DPO loss to match (src/dpo/tests.rs).

Run from the repository root with the bench venv, which has TRL (scripts/bench_compare.sh
makes it):

    .venv-bench/bin/python scripts/dpo_fixtures.py

It calls `DPOTrainer._compute_loss` on a trainer object that has only the attributes the
loss reads (no model download, no dataset): the "model" returns fixed logits, and the
reference log-probs come precomputed (`precompute_ref_logps`), as TRL's own
`ref_chosen_logps`/`ref_rejected_logps` inputs. Cases:
  - loss_type "sigmoid" (DPO) and "ipo" (IPO, divided by completion length) on batches of
    3 pairs, at two betas;
  - cDPO: TRL 1.12 has no label smoothing on "sigmoid"; its "aot" loss is the cDPO formula
    -(1-e) logsigmoid(beta d) - e logsigmoid(-beta d) on sorted log-ratio differences, and
    on a batch of one pair the sort is the identity, so single-pair "aot" calls give cDPO.
Writes tests/fixtures/dpo/trl_dpo_losses.json:
  {trl_version, cases: [{loss_type, beta, label_smoothing, input_ids [2P][T],
   completion_mask [2P][T], logits [2P][T][V] (rows: P chosen, then P rejected),
   ref_chosen_logps [P], ref_rejected_logps [P], loss, rewards_chosen, rewards_rejected,
   rewards_accuracies, rewards_margins}]}
Deterministic: re-running reproduces the same file.
"""

import json
from collections import defaultdict
from types import SimpleNamespace

import torch
import trl
from trl import DPOTrainer

OUT = "tests/fixtures/dpo/trl_dpo_losses.json"
T, V = 7, 11


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, **_):
        return SimpleNamespace(logits=self.logits)


def trainer(model, loss_type, beta, label_smoothing):
    t = DPOTrainer.__new__(DPOTrainer)
    t.model = model
    t.accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x
    )
    t.aux_loss_enabled = False
    t.ld_alpha = None
    t.precompute_ref_logps = True
    t.f_divergence_type = "reverse_kl"
    t.loss_types = [loss_type]
    t.loss_weights = [1.0]
    t.beta = beta
    t.label_smoothing = label_smoothing
    t.use_weighting = False
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    t._total_train_tokens = 0
    return t


def batch(pairs, gen):
    """Right-padded rows: a prompt of 2-3 tokens, a completion of 1-4, then padding."""
    rows = 2 * pairs
    ids = torch.zeros(rows, T, dtype=torch.long)
    completion = torch.zeros(rows, T, dtype=torch.long)
    attention = torch.zeros(rows, T, dtype=torch.long)
    for r in range(rows):
        prompt = 2 + int(torch.randint(0, 2, (1,), generator=gen))
        length = prompt + 1 + int(torch.randint(0, 4, (1,), generator=gen))
        ids[r, :length] = torch.randint(1, V, (length,), generator=gen)
        completion[r, prompt:length] = 1
        attention[r, :length] = 1
    logits = torch.randn(rows, T, V, generator=gen) * 2.0
    ref_chosen = -torch.rand(pairs, generator=gen) * 8.0
    ref_rejected = -torch.rand(pairs, generator=gen) * 8.0
    return ids, completion, attention, logits, ref_chosen, ref_rejected


def case(loss_type, beta, label_smoothing, pairs, gen):
    ids, completion, attention, logits, ref_chosen, ref_rejected = batch(pairs, gen)
    model = FixedLogits(logits)
    t = trainer(model, loss_type, beta, label_smoothing)
    inputs = {
        "input_ids": ids,
        "attention_mask": attention,
        "completion_mask": completion,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    with torch.no_grad():
        loss = t._compute_loss(model, inputs, return_outputs=False)
    m = t._metrics["train"]
    return {
        "loss_type": loss_type,
        "beta": beta,
        "label_smoothing": label_smoothing,
        "input_ids": ids.tolist(),
        "completion_mask": completion.tolist(),
        "logits": logits.tolist(),
        "ref_chosen_logps": ref_chosen.tolist(),
        "ref_rejected_logps": ref_rejected.tolist(),
        "loss": float(loss),
        "rewards_chosen": m["rewards/chosen"][0],
        "rewards_rejected": m["rewards/rejected"][0],
        "rewards_accuracies": m["rewards/accuracies"][0],
        "rewards_margins": m["rewards/margins"][0],
    }


def main():
    gen = torch.Generator().manual_seed(20261206)
    cases = []
    for loss_type in ["sigmoid", "ipo"]:
        for beta in [0.1, 0.5]:
            cases.append(case(loss_type, beta, 0.0, 3, gen))
    for label_smoothing in [0.1, 0.3]:
        cases.append(case("aot", 0.2, label_smoothing, 1, gen))
    with open(OUT, "w") as f:
        json.dump({"trl_version": trl.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases from TRL {trl.__version__}")


if __name__ == "__main__":
    main()
