# A reference reward trainer for a pipeline run: transformers' GPT2ForSequenceClassification
# from the run's SFT checkpoint, InstructGPT's K-wise loss over each prompt's C(K,2) pairs,
# batch 16 prompts, AdamW with 10 warm-up steps and a cosine to 0.1x, gradient clip 1, on
# the run's data/rm.jsonl; prints each epoch's training-pair and held-out accuracy (against
# the noiseless data/rm_heldout.jsonl). It checks that `rlhf rm`'s accuracy is what the data
# and the model allow, not a fault of its trainer (README, "What the default reaches").
# Usage: .venv/bin/python scripts/reference_rm.py RUN_DIR LR EPOCHS
import json, sys, math, random, torch
from transformers import GPT2ForSequenceClassification, PreTrainedTokenizerFast
torch.set_num_threads(2); torch.manual_seed(0); random.seed(0)
run, lr, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
ck = f"{run}/sft/checkpoints/best"
tok = PreTrainedTokenizerFast(tokenizer_file=f"{ck}/tokenizer.json")
model = GPT2ForSequenceClassification.from_pretrained(ck, num_labels=1)
eos = model.config.eos_token_id
model.config.pad_token_id = eos
def enc(p, r):
    # The embedded world's built-in chat template, and the EOS the RM stage appends.
    ids = tok(f"<|user|>\n{p}\n<|assistant|>\n{r}", add_special_tokens=False)["input_ids"] + [eos]
    return ids[-160:]
def load(path): return [json.loads(l) for l in open(path)]
train, held = load(f"{run}/data/rm.jsonl"), load(f"{run}/data/rm_heldout.jsonl")
def score(seqs):
    L = max(len(s) for s in seqs)
    ids = torch.tensor([[eos]*(L-len(s)) + s for s in seqs]); mask = torch.tensor([[0]*(L-len(s)) + [1]*len(s) for s in seqs])
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = model.transformer(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state[:, -1]
    return model.score(out).squeeze(-1)
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
B = 16; steps = epochs * math.ceil(len(train)/B); step = 0
def evaluate():
    model.eval(); ok = n = 0
    with torch.no_grad():
        for r in held:
            s = score([enc(r["prompt"], x) for x in r["responses"]]).tolist(); rk = r["ranking"]
            for i in range(len(rk)):
                for j in range(i+1, len(rk)):
                    ok += s[rk[i]] > s[rk[j]]; n += 1
    model.train(); return ok / n
for ep in range(epochs):
    random.shuffle(train); tacc = []
    for b in range(0, len(train), B):
        recs = train[b:b+B]; seqs = []; off = []
        for r in recs: off.append(len(seqs)); seqs += [enc(r["prompt"], x) for x in r["responses"]]
        s = score(seqs); loss = 0
        for r, o in zip(recs, off):
            rk = r["ranking"]; terms = [torch.nn.functional.logsigmoid(s[o+rk[i]] - s[o+rk[j]]) for i in range(len(rk)) for j in range(i+1, len(rk))]
            loss = loss - torch.stack(terms).mean() / len(recs)
            tacc += [(s[o+rk[i]] > s[o+rk[j]]).item() for i in range(len(rk)) for j in range(i+1, len(rk))]
        step += 1; frac = step / steps
        for g in opt.param_groups: g["lr"] = lr * min(1, step / 10) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    print(f"epoch {ep+1}: train pair acc {sum(tacc)/len(tacc):.3f}, held-out acc {evaluate():.3f}", flush=True)
