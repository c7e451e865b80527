#!/usr/bin/env python3
"""transformers side of the generation benchmark.

Builds a random fp32 model of the given shape, random (unpadded) prompts, and times
model.generate(do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
               max_new_tokens=N, min_new_tokens=N)
after one warm-up call. Prints one JSON line per timed repeat, then a summary line
{"tokens_per_second_min": ..., "median": ..., "max": ..., "params": ...}
where tokens/s = batch * new_tokens / seconds.

Example:
    .venv/bin/python scripts/bench_generate_hf.py --arch llama --layers 4 --d-model 256 \\
        --heads 8 --kv-heads 4 --vocab 4096 --batch 8 --prompt-len 64 --new-tokens 64
"""

import argparse
import json
import statistics
import sys
import time

import torch


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["gpt2", "llama"], required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--d-model", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--kv-heads", type=int, default=None, help="llama only; defaults to --heads")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--prompt-len", type=int, required=True)
    ap.add_argument("--new-tokens", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = ap.parse_args()
    if args.d_model % args.heads != 0:
        ap.error("--d-model must be divisible by --heads")
    if args.arch == "llama":
        kv = args.kv_heads or args.heads
        if args.heads % kv != 0:
            ap.error("--heads must be divisible by --kv-heads")
    elif args.kv_heads not in (None, args.heads):
        ap.error("--kv-heads is only supported for --arch llama")
    if min(args.layers, args.d_model, args.vocab, args.batch, args.prompt_len, args.new_tokens, args.repeats) < 1:
        ap.error("sizes and --repeats must be >= 1")
    if args.vocab < 3:
        ap.error("--vocab must be >= 3")
    return args


def llama_intermediate(d):
    # ~8/3 * d rounded up to a multiple of 32
    return ((8 * d + 2) // 3 + 31) // 32 * 32


def build_model(args):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    eos = args.vocab - 1
    total = args.prompt_len + args.new_tokens
    if args.arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=args.vocab,
            n_positions=total,
            n_embd=args.d_model,
            n_layer=args.layers,
            n_head=args.heads,
            n_inner=4 * args.d_model,
            activation_function="gelu_new",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=0,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(
            vocab_size=args.vocab,
            hidden_size=args.d_model,
            intermediate_size=llama_intermediate(args.d_model),
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.kv_heads or args.heads,
            max_position_embeddings=max(total, 64),
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=eos,
            pad_token_id=0,
        )
        model = LlamaForCausalLM(cfg)
    return model.to(device=args.device, dtype=torch.float32).eval(), cfg


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(args.seed)

    model, cfg = build_model(args)
    params = sum(p.numel() for p in model.parameters())
    extra = {"intermediate_size": cfg.intermediate_size} if args.arch == "llama" else {"n_inner": cfg.n_inner}
    print(
        json.dumps(
            {
                "event": "model",
                "arch": args.arch,
                "params": params,
                "layers": args.layers,
                "d_model": args.d_model,
                "heads": args.heads,
                "kv_heads": (args.kv_heads or args.heads) if args.arch == "llama" else args.heads,
                "vocab": args.vocab,
                **extra,
                "threads": torch.get_num_threads(),
                "device": args.device,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            }
        ),
        flush=True,
    )

    g = torch.Generator().manual_seed(args.seed + 1)
    # ids in 1..vocab-2: no pad (0), no eos (vocab-1) in the prompt
    prompt = torch.randint(1, args.vocab - 1, (args.batch, args.prompt_len), generator=g).to(args.device)
    mask = torch.ones_like(prompt)
    gen_kwargs = dict(
        attention_mask=mask,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        pad_token_id=0,
        eos_token_id=cfg.eos_token_id,
        use_cache=True,
    )

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run_once():
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(prompt, **gen_kwargs)
        sync()
        dt = time.perf_counter() - t0
        n_new = out.shape[1] - args.prompt_len
        if n_new != args.new_tokens:
            print(f"warning: generated {n_new} new tokens, expected {args.new_tokens}", file=sys.stderr)
        return dt, n_new

    run_once()  # warm-up
    rates = []
    for i in range(args.repeats):
        dt, n_new = run_once()
        tps = args.batch * n_new / dt
        rates.append(tps)
        print(
            json.dumps(
                {
                    "event": "repeat",
                    "repeat": i,
                    "seconds": round(dt, 6),
                    "batch": args.batch,
                    "prompt_len": args.prompt_len,
                    "new_tokens": n_new,
                    "tokens_per_second": round(tps, 3),
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "tokens_per_second_min": round(min(rates), 3),
                "median": round(statistics.median(rates), 3),
                "max": round(max(rates), 3),
                "params": params,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
