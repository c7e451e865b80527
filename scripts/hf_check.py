#!/usr/bin/env python3
"""Check that a checkpoint directory loads cleanly in transformers and reproduces expected outputs.

Usage:
    hf_check.py MODEL_DIR EXPECTED_SAFETENSORS [--score [--pooled]]
    hf_check.py --jobs JOBS_JSON

--jobs runs many checks in one process (transformers imports once): JOBS_JSON is a list
of {"model_dir", "expected", "score": bool, "pooled": bool}; every job runs, each failure
is reported, and the exit status is the worst one.

MODEL_DIR is loaded with AutoModelForCausalLM (or AutoModelForSequenceClassification with
--score) in fp32 eval mode. Loading must report no missing, unexpected or mismatched keys.

EXPECTED_SAFETENSORS must contain `input_ids` and `attention_mask` ([B, T], integer) and
either `logits` ([B, T, V], compared at positions with mask 1) or, with --score,
`score_logits` ([B], compared at the last position with mask 1 of each row, computed as
model.score(hidden_states[-1]) so it does not depend on HF's pad-token based pooling).
position_ids = cumsum(mask) - 1, with 1 at pad positions (HF left-padding rule).

With --score --pooled the model is called as a user of a reward model calls it,
model(input_ids, attention_mask).logits[:, 0]: transformers' own pooling (the last token
that is not config.pad_token_id, so the config must have one at batch > 1) and its default
positions (so the batch must be right padded).

Exit status: 0 when the max abs diff is <= --atol (default 1e-4); 1 on a numeric mismatch;
2 on a loading problem (missing/unexpected/mismatched keys, bad files, bad arguments).
"""

import argparse
import os
import sys

import torch


class Failed(Exception):
    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


def fail(msg, code=2):
    raise Failed(msg, code)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", nargs="?")
    ap.add_argument("expected", nargs="?")
    ap.add_argument("--score", action="store_true", help="load as sequence classification, compare score_logits")
    ap.add_argument("--pooled", action="store_true",
                    help="with --score: transformers' own pad-token pooling, as a user calls the model")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--jobs", help="a JSON list of checks to run in this one process")
    args = ap.parse_args()

    import json

    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    if args.jobs:
        with open(args.jobs) as fh:
            jobs = json.load(fh)
    elif args.model_dir and args.expected:
        jobs = [{"model_dir": args.model_dir, "expected": args.expected, "score": args.score, "pooled": args.pooled}]
    else:
        ap.error("give MODEL_DIR EXPECTED, or --jobs JOBS_JSON")
    worst = 0
    for job in jobs:
        try:
            check(job["model_dir"], job["expected"], job.get("score", False), job.get("pooled", False), args.atol)
        except Failed as e:
            print(f"hf_check: FAIL: {job['model_dir']}: {e}", file=sys.stderr)
            worst = max(worst, e.code)
    sys.exit(worst)


def check(model_dir, expected, score, pooled, atol):
    """One folder against one expected file; raises Failed (code 1 numbers, 2 loading)."""
    from argparse import Namespace

    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    args = Namespace(model_dir=model_dir, expected=expected, score=score, pooled=pooled, atol=atol)

    if not os.path.isdir(args.model_dir):
        fail(f"model dir {args.model_dir!r} does not exist")
    if not os.path.isfile(args.expected):
        fail(f"expected file {args.expected!r} does not exist")

    cls = AutoModelForSequenceClassification if args.score else AutoModelForCausalLM
    try:
        model, info = cls.from_pretrained(
            args.model_dir,
            dtype=torch.float32,
            output_loading_info=True,
            attn_implementation="eager",
        )
    except Exception as e:  # size mismatches raise here unless ignore_mismatched_sizes=True
        fail(f"from_pretrained({args.model_dir!r}) raised {type(e).__name__}: {e}")
    model = model.to(torch.float32).eval()

    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        vals = info.get(key) or []
        if vals:
            problems.append(f"{key}: {sorted(map(str, vals))}")
    if problems:
        fail(f"loading {args.model_dir!r} as {cls.__name__} reported problems:\n  " + "\n  ".join(problems))

    # HF silently drops some checkpoint keys (_keys_to_ignore_on_load_unexpected, e.g. GPT-2 attn.bias
    # buffers, tied lm_head.weight). Those are not an error, but say so on stderr; also flag non-fp32.
    from safetensors import safe_open

    model_keys = set(model.state_dict().keys())
    index = os.path.join(args.model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        import json

        with open(index) as fh:
            weight_files = sorted(set(json.load(fh)["weight_map"].values()))
    else:
        weight_files = ["model.safetensors"] if os.path.isfile(os.path.join(args.model_dir, "model.safetensors")) else []
    for fname in weight_files:
        with safe_open(os.path.join(args.model_dir, fname), framework="pt") as f:
            for k in f.keys():
                dt = f.get_slice(k).get_dtype()
                if k not in model_keys:
                    print(f"hf_check: note: checkpoint key {k!r} ({fname}) is not a model parameter; "
                          "transformers ignored it silently", file=sys.stderr)
                if dt != "F32":
                    print(f"hf_check: note: checkpoint tensor {k!r} is {dt}, not F32", file=sys.stderr)
    print(f"hf_check: loaded {type(model).__name__} from {args.model_dir} (no missing/unexpected/mismatched keys)")

    exp = load_file(args.expected)
    for k in ("input_ids", "attention_mask"):
        if k not in exp:
            fail(f"{args.expected!r} has no {k!r} (keys: {sorted(exp)})")
    want_key = "score_logits" if args.score else "logits"
    if want_key not in exp:
        fail(f"{args.expected!r} has no {want_key!r} (keys: {sorted(exp)})")

    ids = exp["input_ids"].to(torch.int64)
    mask = exp["attention_mask"].to(torch.int64)
    if ids.shape != mask.shape or ids.dim() != 2:
        fail(f"input_ids {tuple(ids.shape)} / attention_mask {tuple(mask.shape)} must be equal 2-D shapes")
    pos = mask.cumsum(-1) - 1
    pos.masked_fill_(mask == 0, 1)
    valid = mask.bool()

    with torch.no_grad():
        if args.score and args.pooled:
            try:
                got = model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
            except ValueError as e:  # e.g. no pad_token_id at batch > 1
                fail(f"{type(model).__name__} refused the batch: {e}")
            want = exp["score_logits"].float().reshape(-1)
            if got.shape != want.shape:
                fail(f"score_logits shape {tuple(want.shape)} != model output {tuple(got.shape)}")
            diff = (got - want).abs().max().item()
            detail = f"pooled by transformers: got={got.tolist()} want={want.tolist()}"
        elif args.score:
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True)
            hidden = out.hidden_states[-1]  # final norm already applied in transformers
            # last position with mask 1 in each row (== T-1 for left padding)
            idx = torch.arange(ids.shape[1]).expand_as(ids)
            last = torch.where(valid, idx, torch.full_like(idx, -1)).max(-1).values
            if (last < 0).any():
                fail("a row of attention_mask is all zeros")
            got = model.score(hidden[torch.arange(ids.shape[0]), last]).squeeze(-1).float()
            want = exp["score_logits"].float().reshape(-1)
            if got.shape != want.shape:
                fail(f"score_logits shape {tuple(want.shape)} != model output {tuple(got.shape)}")
            diff = (got - want).abs().max().item()
            detail = f"got={got.tolist()} want={want.tolist()}"
        else:
            got = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
            want = exp["logits"].float()
            if got.shape != want.shape:
                fail(f"logits shape {tuple(want.shape)} != model output {tuple(got.shape)}")
            d = (got - want).abs()[valid]  # [n_valid, V]; pad positions ignored
            diff = d.max().item()
            detail = f"compared {int(valid.sum())} positions x {got.shape[-1]} vocab"

    ok = diff <= args.atol  # NaN -> False
    print(f"hf_check: {want_key} max_abs_diff={diff:.3e} (atol {args.atol:g}) {detail}")
    if not ok:
        fail(f"{want_key} max abs diff {diff:.3e} > {args.atol:g}", 1)
    print("hf_check: OK")


if __name__ == "__main__":
    main()
