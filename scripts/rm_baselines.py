# Baselines for a pipeline run's reward-model data: how well simple visible features of the
# responses predict the noiseless held-out order (data/rm_heldout.jsonl), beside the reward
# model's accuracy. A word no SFT demonstration uses counts as unknown (an approximation of
# the labeler's lexicon). The bag of words is a logistic regression on the difference of the
# two responses' word counts (plus the four features), trained on the noisy data/rm.jsonl
# pairs. README, "What the default reaches", quotes its figures.
# Usage: .venv/bin/python scripts/rm_baselines.py RUN_DIR
import json, sys, re, collections, torch
run = sys.argv[1]
def load(p): return [json.loads(l) for l in open(p)]
train = load(f"{run}/data/rm.jsonl"); held = load(f"{run}/data/rm_heldout.jsonl")
sft = load(f"{run}/data/sft.jsonl")
tok = lambda s: re.findall(r"[A-Za-z']+|[0-9]+|[^\sA-Za-z0-9]", s.lower())
known = collections.Counter()
for r in sft:
    for k,v in r.items():
        if isinstance(v,str): known.update(tok(v))
def pairs(recs):
    out=[]
    for r in recs:
        rk=r["ranking"]; resp=r["responses"]
        for i in range(len(rk)):
            for j in range(i+1,len(rk)):
                out.append((r, resp[rk[i]], resp[rk[j]]))
    return out
tp=pairs(train); hp=pairs(held)
def feats(r, s):
    w=tok(s); p=set(tok(r["prompt"]))
    unk=sum(1 for x in w if known[x]==0)/max(1,len(w))
    return [len(w)/20, unk, sum(1 for x in w if x in p)/max(1,len(w)), float(s.strip().endswith('.'))]
def acc(f, ps): return sum(1 for (r,a,b) in ps if f(r,a)>f(r,b))/len(ps) + 0.5*sum(1 for (r,a,b) in ps if f(r,a)==f(r,b))/len(ps)
print("pairs train", len(tp), "held", len(hp))
print("fewer unknown words wins:", acc(lambda r,s: -feats(r,s)[1], hp))
print("shorter wins:", acc(lambda r,s: -len(s), hp))
print("more prompt overlap wins:", acc(lambda r,s: feats(r,s)[2], hp))
# bag of words + features logistic
vocab={}
for (r,a,b) in tp:
    for s in (a,b):
        for x in tok(s): vocab.setdefault(x,len(vocab))
cats=sorted({r.get("category","") for r in train})
def vec(r,s):
    v=torch.zeros(len(vocab)+4)
    for x in tok(s):
        if x in vocab: v[vocab[x]]+=1
    v[len(vocab):]=torch.tensor(feats(r,s))
    return v
def mat(ps): return torch.stack([vec(r,a)-vec(r,b) for (r,a,b) in ps])
Xt=mat(tp); Xh=mat(hp)
w=torch.zeros(Xt.shape[1],requires_grad=True)
opt=torch.optim.Adam([w],lr=0.01)
for it in range(300):
    opt.zero_grad(); loss=-torch.nn.functional.logsigmoid(Xt@w).mean()+1e-4*(w*w).sum(); loss.backward(); opt.step()
with torch.no_grad():
    print("BoW logistic train acc", (Xt@w>0).float().mean().item(), "held acc", ((Xh@w>0).float()+0.5*(Xh@w==0).float()).mean().item())
    ch = collections.defaultdict(list)
    for (p,x) in zip(hp, (Xh@w).tolist()): ch[p[0].get("category","")].append(x>0)
    for c,v in sorted(ch.items()): print(f"  {c:20s} {sum(v)/len(v):.3f} n={len(v)}")
