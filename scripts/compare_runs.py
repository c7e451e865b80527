#!/usr/bin/env python3
"""Whether two `rlhf pipeline` runs computed the same: `python3 scripts/compare_runs.py A B`
with A and B two run directories (e.g. runs/default of two builds). Compares every stage's
metrics.jsonl record by record with timings left out, the labels and the evaluation
answers byte for byte, and eval.json's figures (all but the pipeline's wall time). Prints
one line per file, then SAME or NOT THE SAME; exits 1 when they differ. Behaviour-preserving changes are checked with it."""
import json, os, sys
a, b = sys.argv[1], sys.argv[2]
def records(p):
    out = []
    for l in open(p):
        r = json.loads(l)
        out.append({k: v for k, v in r.items() if 'seconds' not in k and 'per_second' not in k})
    return out
same = True
for stage in ['pretrain', 'sft', 'rm', 'ppo', 'ppo_ptx', 'ppo_gold']:
    pa, pb = os.path.join(a, stage, 'metrics.jsonl'), os.path.join(b, stage, 'metrics.jsonl')
    if not (os.path.exists(pa) and os.path.exists(pb)):
        print(f'{stage}: missing'); same = False; continue
    ra, rb = records(pa), records(pb)
    diff = [i for i, (x, y) in enumerate(zip(ra, rb)) if x != y]
    print(f'{stage}: {len(ra)} vs {len(rb)} records, {len(diff)} differ' + (f' (first at line {diff[0]+1})' if diff else ''))
    same &= len(ra) == len(rb) and not diff
def figures(p):
    e = json.load(open(p))
    e['facts'] = [f for f in e.get('facts', []) if 'wall time' not in f.get('what', '')]
    return e
pa, pb = os.path.join(a, 'eval/eval.json'), os.path.join(b, 'eval/eval.json')
if os.path.exists(pa) and os.path.exists(pb):
    eq = figures(pa) == figures(pb)
    print(f'eval/eval.json (wall time left out): {"identical" if eq else "DIFFERENT"}')
    same &= eq
else:
    print('eval/eval.json: missing'); same = False
for f in ['data/rm.jsonl', 'data/rm_heldout.jsonl', 'eval/responses.jsonl']:
    pa, pb = os.path.join(a, f), os.path.join(b, f)
    if os.path.exists(pa) and os.path.exists(pb):
        eq = open(pa, 'rb').read() == open(pb, 'rb').read()
        print(f'{f}: {"identical" if eq else "DIFFERENT"}')
        same &= eq
    else:
        print(f'{f}: missing'); same = False
print('SAME' if same else 'NOT THE SAME')
sys.exit(0 if same else 1)
