#!/usr/bin/env python3
"""rlhf against its Python peers: the same weights, work, settings and machine, in one run.

What it does, in order:
  1. Makes a side venv `.venv-bench` (git-ignored) with pinned torch, transformers, trl
     (1.12.0, the last release with PPO; its trainer lives in trl.experimental.ppo),
     accelerate and datasets. When the project's `.venv` already holds the pinned torch and
     transformers, the side venv reads those through a .pth file instead of downloading
     them again (so both sides also run the very same libtorch build); --fresh-venv
     installs everything into the side venv instead.
  2. Builds one random GPT-2 policy and one random GPT-2 reward model (scalar `score`
     head, GPT2ForSequenceClassification) and saves both in Hugging Face layout
     (config.json + model.safetensors), so every peer and `rlhf bench --model` load the
     same weights.
  3. Runs the same work on both sides, fp32 on the CPU with the same thread count:
     - generation: transformers `generate()` against `rlhf bench generate`, at each
       generation batch, random prompts, sampling with temperature 1, top_k 0, top_p 1,
       exactly --new-tokens tokens (no EOS, no early stop);
     - training: a plain PyTorch loop (forward, backward, clip-grad-norm 1.0, AdamW with
       rlhf's defaults: betas 0.9/0.95, eps 1e-8, no weight decay, lr 1e-5; dropout 0)
       against `rlhf bench train --mode sft`; tokens are loss targets,
       batch x (seq_len - 1), on both sides;
     - PPO: TRL's PPOTrainer (separate reference, value and reward models; the value and
       reward models start from the reward folder) against `rlhf bench ppo` (its value
       model also starts from the reward model), same rollout batch, prompt and response
       lengths, PPO epochs and minibatches; episodes/s, rlhf both synchronous
       (max_staleness 0) and asynchronous (1);
     - with EOS (--eos-run DIR, default runs/default when it exists, which scripts/main.sh
       makes): the same generation and PPO comparisons on a policy that does emit EOS, the
       run's SFT model (sft/checkpoints/best), its reward model (rm/checkpoints/best, also
       the value model's start) and its PPO prompts (data/ppo_prompts.jsonl), rendered with
       the model's chat template into the same token ids on both sides and left-padded.
       Both sides stop at the model's EOS ids, after at most 128 new tokens (--quick: 32):
       transformers `generate()` with the model's eos_token_id and pad_token_id against
       `rlhf bench generate --prompts` on the file's first 32 prompts (--quick: 4;
       tokens/s counts generated tokens up to and including each row's EOS; episodes/s;
       each side's mean response length), and TRL's PPOTrainer with stop_token="eos"
       against `rlhf bench ppo --prompts` at the PPO row's batch, epochs and minibatches
       (episodes/s; TRL's mean response length; rlhf bench ppo reports none).
       Without a complete run folder these rows are skipped with a log line.
     Every process waits for an idle machine before each timed repeat (other processes
     below --idle-threshold of the CPU for 2 s, at most --idle-cap seconds, then a
     warning) and reports min/median/max over --repeats repeats after one warm-up.
  4. Prints one table of ratios (rlhf / peer, from the medians, with the range from the
     extremes) and every setting, and writes everything to OUT/results.json.

The script runs under any python3; the peers run under .venv-bench. Run it on an idle
machine: other processes distort these figures by 10x or more.

  python3 scripts/bench_compare.py            # the reference shape (a few minutes)
  python3 scripts/bench_compare.py --quick    # a tiny shape (EOS rows: 4 prompts, 32 tokens)
  python3 scripts/bench_compare.py --only generate-eos,ppo-eos --eos-run DIR   # EOS rows only
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bench"
PROJECT_VENV = ROOT / ".venv"
PINS = {
    "torch": "2.13.0",
    "transformers": "5.24.0",
    "trl": "1.12.0",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
}
# Shared through .pth from the project's .venv when it has exactly these.
SHAREABLE = ("torch", "transformers")

# The issue's reference shape and work, and a tiny one for --quick. The EOS rows use the
# run's own model; eos_batch and eos_new_tokens (the response cap) are their generation
# batch and cap, PPO's batch, epochs, minibatches and steps are the PPO row's.
BENCHES = ("generate", "train", "ppo", "generate-eos", "ppo-eos")
FULL = dict(
    layers=6, d_model=256, heads=8, vocab=8192,
    prompt_len=64, new_tokens=128, gen_batches=[1, 32],
    train_batch=16, seq_len=192,
    ppo_batch=32, ppo_epochs=1, minibatches=1, ppo_steps=5,
    eos_batch=32, eos_new_tokens=128,
    repeats=3, idle_cap=120.0,
)
QUICK = dict(
    layers=2, d_model=64, heads=4, vocab=512,
    prompt_len=8, new_tokens=8, gen_batches=[1, 4],
    train_batch=4, seq_len=32,
    ppo_batch=4, ppo_epochs=1, minibatches=1, ppo_steps=1,
    eos_batch=4, eos_new_tokens=32,
    repeats=3, idle_cap=2.0,
)


# ----------------------------------------------------------------------------------------
# Machine state: idle wait, peak memory, matmul peak (used by the peers; rlhf has its own).


def _cpu_times():
    with open("/proc/stat") as f:
        fields = f.readline().split()
    ticks = [int(x) for x in fields[1:9]]
    total = sum(ticks)
    idle = ticks[3] + ticks[4]
    with open("/proc/self/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    own = int(rest[11]) + int(rest[12])
    return total, idle, own


def others_busy(a, b):
    """Share of the machine's CPU that other processes used between two samples."""
    total = b[0] - a[0]
    if total <= 0:
        return 0.0
    busy = total - (b[1] - a[1])
    return max(0, busy - (b[2] - a[2])) / total


def wait_idle(cap, threshold, settle=2.0, interval=0.25):
    """Block until other processes use < threshold of the CPU for `settle` s (at most `cap` s)."""
    if cap <= 0:
        return {"idle_wait_seconds": 0.0, "others_busy": 0.0, "idle_timed_out": False}
    start = time.monotonic()
    last = _cpu_times()
    quiet_since = time.monotonic()
    while True:
        time.sleep(interval)
        now = _cpu_times()
        busy = others_busy(last, now)
        last = now
        if busy >= threshold:
            quiet_since = time.monotonic()
        waited = time.monotonic() - start
        if time.monotonic() - quiet_since >= settle:
            return {"idle_wait_seconds": waited, "others_busy": busy, "idle_timed_out": False}
        if waited >= cap:
            print(
                f"warning: the machine is still busy after {waited:.0f} s (other processes use "
                f"{busy * 100:.0f}% of the CPU); timing anyway",
                file=sys.stderr,
                flush=True,
            )
            return {"idle_wait_seconds": waited, "others_busy": busy, "idle_timed_out": True}


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                value, unit = line.split()[1:3]
                return int(value) * {"kB": 1024, "B": 1}[unit]
    return None


def matmul_peak(torch, threads, n=2048):
    """Best fp32 n x n matmul rate over about a quarter of a second (rlhf measures the same)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, start = 0.0, time.perf_counter()
    for i in range(50):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
        if i >= 2 and time.perf_counter() - start >= 0.25:
            break
    return best


# ----------------------------------------------------------------------------------------
# Peers (run under .venv-bench).


def _torch_setup(a):
    import torch

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return torch


def _emit(obj):
    print(json.dumps(obj), flush=True)


def _timed(a, torch, unit, flops_per_repeat, work, settings, episodes=None):
    """One warm-up and a.repeats timed repeats of work() (returns units), each after an idle wait.

    With `episodes` (per repeat), also episodes/s and the mean units per episode (response
    tokens, when work() stops at EOS)."""
    wait_idle(a.idle_cap, a.idle_threshold)
    peak = matmul_peak(torch, a.threads)
    _emit({"matmul_peak": {"matmul_peak_flops_per_second": peak, "threads": a.threads, "dtype": "float32"}})
    work()
    seconds, rates, counts = [], [], []
    for repeat in range(1, a.repeats + 1):
        idle = wait_idle(a.idle_cap, a.idle_threshold)
        t = time.perf_counter()
        units = work()
        dt = time.perf_counter() - t
        seconds.append(dt)
        rates.append(units / dt)
        counts.append(units)
        _emit({"repeat": repeat, "seconds": dt, unit: units, "per_second": units / dt, **idle})
    median_seconds = statistics.median(seconds)
    if episodes:
        per_episode = [episodes / dt for dt in seconds]
        settings = {**settings, "episodes_per_second_min": min(per_episode),
                    "episodes_per_second_median": statistics.median(per_episode),
                    "episodes_per_second_max": max(per_episode),
                    "mean_response_tokens": statistics.mean(counts) / episodes}
    _emit(
        {
            **settings,
            "unit": unit,
            "per_second_min": min(rates),
            "per_second_median": statistics.median(rates),
            "per_second_max": max(rates),
            "seconds_median": median_seconds,
            "flops_per_second": flops_per_repeat / median_seconds,
            "matmul_peak_flops_per_second": peak,
            "peak_fraction": flops_per_repeat / median_seconds / peak,
            "peak_rss_bytes": peak_rss_bytes(),
        }
    )


def _params(model):
    return sum(p.numel() for p in model.parameters())


def _versions():
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import trl

        out["trl"] = trl.__version__
    except ImportError:
        pass
    return out


def peer_make_model(a):
    torch = _torch_setup(a)
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

    eos = a.vocab - 1
    config = dict(
        vocab_size=a.vocab,
        n_positions=a.positions,
        n_embd=a.d_model,
        n_layer=a.layers,
        n_head=a.heads,
        n_inner=None,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    out = Path(a.out)
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(GPT2Config(**config)).float()
    policy.save_pretrained(out / "policy")
    torch.manual_seed(1)
    reward = GPT2ForSequenceClassification(GPT2Config(num_labels=1, **config)).float()
    reward.save_pretrained(out / "reward")
    # A word-level tokenizer over the ids (t0 .. tV-1): TRL wants one for padding.
    vocab = {f"t{i}": i for i in range(a.vocab)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t1"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="t0", eos_token=f"t{eos}", unk_token="t1")
    for folder in ("policy", "reward"):
        tok.save_pretrained(out / folder)
        if not (out / folder / "model.safetensors").is_file():
            raise SystemExit(f"no model.safetensors in {out / folder}")
    _emit({"made": str(out), "params": _params(policy), "reward_params": _params(reward), **_versions()})


def _random_prompts(torch, rows, cols, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab - 1, (rows, cols), generator=g)  # no pad (0), no eos (vocab-1)


def _chat_prompts(tok, file, count):
    """The first `count` prompts of a PPO prompt file (cycled when fewer), as token ids.

    As rlhf reads them: `{"prompt": text}` is one user message, `{"prompt": [messages]}` or
    `{"messages": [...]}` a conversation; rendered with the tokenizer's chat template and
    the assistant's header (add_generation_prompt), encoded without added special tokens."""
    records = []
    with open(file) as f:
        for line in f:
            if line.strip() and len(records) < count:
                records.append(json.loads(line))
    if not records:
        raise SystemExit(f"no prompts in {file}")

    def messages(r):
        prompt = r.get("messages", r.get("prompt"))
        return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]

    ids = [tok.apply_chat_template(messages(r), add_generation_prompt=True, tokenize=True, return_dict=False)
           for r in records]
    return [ids[i % len(ids)] for i in range(count)]


def _left_pad(torch, rows, pad):
    """Left-padded ids and their attention mask (as rlhf's left_pad)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


def _response_lengths(torch, responses, stop_ids):
    """Tokens of each response row up to and including its first stop id (all when none)."""
    stops = torch.isin(responses, torch.tensor(stop_ids, device=responses.device))
    first = stops.int().argmax(dim=1)
    return torch.where(stops.any(dim=1), first + 1, responses.shape[1])


def _stop_ids(generation_config):
    eos = generation_config.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])


def peer_generate(a):
    """transformers generate(): random prompts and exactly --new-tokens tokens, or (with
    --prompts) real prompts in the model's chat template that stop at the model's EOS."""
    torch = _torch_setup(a)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    if a.prompts:
        tok = AutoTokenizer.from_pretrained(a.model)
        stop = _stop_ids(model.generation_config)
        pad = model.generation_config.pad_token_id
        pad = tok.pad_token_id if pad is None else pad
        if not stop:
            raise SystemExit(f"{a.model}: no eos_token_id in its generation config")
        prompt, mask = _left_pad(torch, _chat_prompts(tok, a.prompts, a.batch), pad)
    else:
        stop, pad = [], 0
        model.generation_config.eos_token_id = None  # no early stop, as TRL does
        prompt = _random_prompts(torch, a.batch, a.prompt_len, model.config.vocab_size, 1)
        mask = torch.ones_like(prompt)
    prompt_len = prompt.shape[1]
    kwargs = dict(
        attention_mask=mask,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        max_new_tokens=a.new_tokens,
        eos_token_id=stop or None,
        pad_token_id=pad,
        use_cache=True,
    )

    def work():
        if stop:
            torch.manual_seed(0)  # the same responses every run, as rlhf samples them
        with torch.inference_mode():
            new = model.generate(prompt, **kwargs)[:, prompt_len:]
        if stop:
            return int(_response_lengths(torch, new, stop).sum())
        if new.shape[1] != a.new_tokens:
            print(f"warning: generated {new.shape[1]} tokens, expected {a.new_tokens}", file=sys.stderr)
        return a.batch * new.shape[1]

    params = _params(model)
    # Every prompt position and every generated token but each row's last (as rlhf counts).
    generated = work() if stop else a.batch * a.new_tokens
    flops = 2 * params * (a.batch * (prompt_len - 1) + generated)
    settings = {"bench": "generate", "peer": "transformers generate()", "params": params, "batch": a.batch,
                "prompt_len": prompt_len, "new_tokens": a.new_tokens, "threads": a.threads,
                "prompts": a.prompts, "stops_at_eos": bool(stop), "eos_token_ids": stop, **_versions()}
    _timed(a, torch, "tokens", flops, work, settings, episodes=a.batch if stop else None)


def peer_train(a):
    torch = _torch_setup(a)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    vocab = model.config.vocab_size
    batches = [_random_prompts(torch, a.batch, a.seq_len, vocab, seed) for seed in (2, 3)]
    which = [0]

    def work():
        which[0] = 1 - which[0]
        ids = batches[which[0]]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return a.batch * (a.seq_len - 1)

    params = _params(model)
    flops = 6 * params * a.batch * a.seq_len
    settings = {"bench": "train-sft", "peer": "PyTorch loop", "params": params, "batch": a.batch,
                "seq_len": a.seq_len, "threads": a.threads, **_versions()}
    _timed(a, torch, "tokens", flops, work, settings)


def peer_ppo(a):
    """TRL's PPOTrainer: random prompts and no stop token, or (with --prompts) the file's
    prompts in the model's chat template and stop_token="eos"."""
    torch = _torch_setup(a)
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        PreTrainedTokenizerFast,
        TrainerCallback,
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    import trl.experimental.ppo.ppo_trainer as ppo_module
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tok = PreTrainedTokenizerFast.from_pretrained(a.model, padding_side="left")  # TRL generates from left-padded queries

    def lm():
        return AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)

    def scalar():
        return AutoModelForSequenceClassification.from_pretrained(a.reward_model, num_labels=1, dtype=torch.float32)

    policy, ref, reward, value = lm(), lm(), scalar(), scalar()
    iterations = 1 + a.repeats * a.steps  # one warm-up iteration
    if a.prompts:
        # rlhf bench ppo samples from the file's first (timed steps + 1) x batch prompts.
        pool = _chat_prompts(tok, a.prompts, (a.steps + 1) * a.batch)
        prompts = [pool[i % len(pool)] for i in range(iterations * a.batch)]
    else:
        prompts = _random_prompts(torch, iterations * a.batch, a.prompt_len, policy.config.vocab_size, 4).tolist()
    dataset = Dataset.from_dict({"input_ids": prompts})

    # Phase clocks: generation, the no-grad scoring passes (reference, value, reward).
    phases = {"generate": 0.0, "scoring": 0.0}

    def clocked(fn, key):
        def inner(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            if key == "generate" or not torch.is_grad_enabled():
                phases[key] += time.perf_counter() - t
            return out

        return inner

    ppo_module.batch_generation = clocked(ppo_module.batch_generation, "generate")
    ppo_module.forward = clocked(ppo_module.forward, "scoring")
    ppo_module.get_reward = clocked(ppo_module.get_reward, "scoring")

    # With a stop token: each response's tokens up to and including it, and the width TRL
    # generated (its generate() stops once every row of the batch has stopped).
    lengths, widths = [], []
    truncate = ppo_module.truncate_response

    def counted(stop_token_id, pad_token_id, responses):
        lengths.extend(_response_lengths(torch, responses, [stop_token_id]).tolist())
        widths.append(responses.shape[1])
        return truncate(stop_token_id, pad_token_id, responses)

    ppo_module.truncate_response = counted

    rows, per_repeat = [], []

    class Clock(TrainerCallback):
        """Times each PPO iteration; waits for an idle machine between repeats."""

        def __init__(self):
            self.start = None
            self.done = 0

        def _begin(self):
            if self.done < iterations and (self.done == 0 or (self.done - 1) % a.steps == 0):
                idle = wait_idle(a.idle_cap, a.idle_threshold)
                if self.done > 0:
                    per_repeat.append(idle)
            for k in phases:
                phases[k] = 0.0
            self.start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self._begin()

        def on_step_end(self, args, state, control, **kwargs):
            seconds = time.perf_counter() - self.start
            rows.append({"seconds": seconds, **phases})
            self.done += 1
            self._begin()

    with tempfile.TemporaryDirectory() as out_dir:
        config = PPOConfig(
            output_dir=out_dir,
            per_device_train_batch_size=a.batch,
            gradient_accumulation_steps=1,
            num_mini_batches=a.minibatches,
            num_ppo_epochs=a.ppo_epochs,
            local_rollout_forward_batch_size=a.batch,
            response_length=a.new_tokens,
            temperature=1.0,
            total_episodes=iterations * a.batch,
            num_sample_generations=0,
            stop_token="eos" if a.prompts else None,
            stop_token_id=None,
            missing_eos_penalty=None,
            bf16=False,
            fp16=False,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            seed=0,
            dataloader_num_workers=0,
        )
        trainer = PPOTrainer(
            args=config,
            processing_class=tok,
            model=policy,
            ref_model=ref,
            reward_model=reward,
            value_model=value,
            train_dataset=dataset,
        )
        for cb in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(cb)
        trainer.add_callback(Clock())
        wait_idle(a.idle_cap, a.idle_threshold)
        peak = matmul_peak(torch, a.threads)
        _emit({"matmul_peak": {"matmul_peak_flops_per_second": peak, "threads": a.threads, "dtype": "float32"}})
        trainer.train()

    timed = rows[1:]
    if len(timed) < a.repeats * a.steps:
        raise SystemExit(f"TRL ran {len(rows)} iterations, expected {iterations}")
    rates = []
    for r in range(a.repeats):
        chunk = timed[r * a.steps : (r + 1) * a.steps]
        seconds = sum(c["seconds"] for c in chunk)
        rates.append(a.batch * a.steps / seconds)
        idle = per_repeat[r] if r < len(per_repeat) else {}
        _emit({"repeat": r + 1, "iterations": a.steps, "seconds": seconds, "per_second": rates[-1], **idle})
    mean = lambda k: statistics.mean(c[k] for c in timed)  # noqa: E731
    t_iter, t_gen, t_score = mean("seconds"), mean("generate"), mean("scoring")
    p, v = _params(policy), _params(value)
    # The algorithm's work at full-length responses; with EOS it depends on the sampled
    # lengths (rlhf bench ppo reports none), so no peak fraction.
    step_flops = None
    if not a.prompts:
        positions = a.batch * (a.prompt_len + a.new_tokens)
        step_flops = (
            2 * p * a.batch * (a.prompt_len + a.new_tokens - 1)
            + 2 * p * positions
            + 2 * 2 * v * positions
            + a.ppo_epochs * 6 * (p + v) * positions
        )
    median = statistics.median(rates)
    _emit(
        {
            "bench": "ppo",
            "peer": f"TRL PPOTrainer {_versions().get('trl')}",
            "params": p,
            "value_params": v,
            "batch": a.batch,
            "prompt_len": max(len(q) for q in prompts),
            "new_tokens": a.new_tokens,
            "prompts": a.prompts,
            "stop_token": "eos" if a.prompts else None,
            "mean_response_tokens": statistics.mean(lengths) if lengths else None,
            "mean_generated_width": statistics.mean(widths) if widths else None,
            "ppo_epochs": a.ppo_epochs,
            "minibatches": a.minibatches,
            "iterations_per_repeat": a.steps,
            "threads": a.threads,
            "unit": "episodes",
            "per_second_min": min(rates),
            "per_second_median": median,
            "per_second_max": max(rates),
            "seconds_per_iteration": t_iter,
            "phase_share": {
                "generate": t_gen / t_iter,
                "scoring": t_score / t_iter,
                "training_and_other": (t_iter - t_gen - t_score) / t_iter,
            },
            "flops_per_step": step_flops,
            "matmul_peak_flops_per_second": peak,
            "peak_fraction": step_flops * median / a.batch / peak if step_flops else None,
            "peak_rss_bytes": peak_rss_bytes(),
            **_versions(),
        }
    )


# ----------------------------------------------------------------------------------------
# Orchestration (any python3).


def log(msg):
    print(f"bench_compare: {msg}", file=sys.stderr, flush=True)


def venv_python():
    return VENV / "bin" / "python"


def installed_versions(python):
    code = (
        "import importlib.metadata as m, json\n"
        f"names = {list(PINS)!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n).split('+')[0]\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        res = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {}
    return json.loads(res.stdout)


def ensure_venv(fresh):
    if installed_versions(venv_python()) == PINS:
        return
    if not venv_python().exists():
        log(f"creating {VENV.name}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    purelib = subprocess.run(
        [str(venv_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    pth = Path(purelib) / "_rlhf_project_venv.pth"
    project = installed_versions(PROJECT_VENV / "bin" / "python")
    if not fresh and all(project.get(n) == PINS[n] for n in SHAREABLE):
        base = subprocess.run(
            [str(PROJECT_VENV / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        pth.write_text(base + "\n")
        log(f"{VENV.name} reads torch and transformers from {PROJECT_VENV.name} (the pinned versions)")
    elif pth.exists():
        pth.unlink()
    pins = [f"{n}=={v}" for n, v in PINS.items()]
    log(f"installing {' '.join(pins)} into {VENV.name}")
    subprocess.run([str(venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins], check=True)
    got = installed_versions(venv_python())
    if got != PINS:
        raise SystemExit(f"{VENV.name} has {got}, expected {PINS}")


def ensure_rlhf(path):
    if path.exists():
        return
    log(f"building {path} (cargo build --release -p rlhf-actors --bin rlhf)")
    subprocess.run(["cargo", "build", "--release", "-p", "rlhf-actors", "--bin", "rlhf"], cwd=ROOT, check=True)


def run_json(cmd, label, env):
    """Run cmd, echo its lines prefixed with label; return its JSON lines."""
    log(f"[{label}] " + " ".join(str(c) for c in cmd))
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    records = []
    for line in proc.stdout:
        line = line.rstrip("\n")
        print(f"  [{label}] {line}", flush=True)
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if proc.wait() != 0:
        raise SystemExit(f"[{label}] failed with exit code {proc.returncode}")
    return records


def summary(records, key="per_second_median"):
    found = [r for r in records if key in r]
    if not found:
        raise SystemExit(f"no summary line with {key!r}")
    return found[-1]


def as_rates(unit, median, low, high, rss=None):
    """Rates in the summary keys that row() reads."""
    return dict(unit=unit, per_second_median=median, per_second_min=low, per_second_max=high, peak_rss_bytes=rss)


def eos_folders(args):
    """The EOS rows' SFT policy, reward model and PPO prompts from the run --eos-run (default
    runs/default), or None (with a log line) when that default is missing."""
    run = Path(args.eos_run) if args.eos_run else ROOT / "runs" / "default"
    folders = {"policy": run / "sft" / "checkpoints" / "best", "reward": run / "rm" / "checkpoints" / "best",
               "prompts": run / "data" / "ppo_prompts.jsonl"}
    missing = [str(p) for p in folders.values() if not p.exists()]
    if not missing:
        return folders
    if args.eos_run:
        raise SystemExit(f"--eos-run {run}: missing {', '.join(missing)}")
    log(f"skipping the EOS rows (generate-eos, ppo-eos): no complete run at {run} (no {missing[0]}); "
        "make one with scripts/main.sh or pass --eos-run DIR")
    return None


def fmt_rate(median, lo, hi):
    return f"{median:,.1f} [{lo:,.1f}-{hi:,.1f}]"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def orchestrate(args):
    s = dict(QUICK if args.quick else FULL)
    for key in ("repeats", "threads", "idle_cap"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    s.setdefault("threads", 2)
    s["actor_threads"] = args.actor_threads or s["threads"]
    only = set(args.only.split(",")) if args.only else set(BENCHES)
    if only - set(BENCHES):
        raise SystemExit(f"--only: unknown {', '.join(sorted(only - set(BENCHES)))} (choose from {','.join(BENCHES)})")
    eos = eos_folders(args) if only & {"generate-eos", "ppo-eos"} else None
    if eos is None:
        only -= {"generate-eos", "ppo-eos"}
    if not only:
        raise SystemExit("nothing to run")
    out = Path(args.out or (ROOT / "runs" / "bench" / ("compare-quick" if args.quick else "compare")))
    out.mkdir(parents=True, exist_ok=True)
    rlhf = Path(args.rlhf) if args.rlhf else ROOT / "target" / "release" / "rlhf"

    ensure_venv(args.fresh_venv)
    ensure_rlhf(rlhf)

    env = dict(os.environ)
    env.update(
        CUDA_VISIBLE_DEVICES="",  # the comparison is on the CPU
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
        ACCELERATE_USE_CPU="true",
        PYTHONWARNINGS="ignore",
        RUST_LOG=env.get("RUST_LOG", "warn"),
    )
    py = [venv_python(), Path(__file__).resolve(), "peer"]
    common_peer = ["--threads", s["threads"], "--repeats", s["repeats"], "--idle-cap", s["idle_cap"],
                   "--idle-threshold", args.idle_threshold]
    common_rlhf = ["--threads", s["threads"], "--repeats", s["repeats"], "--wait-idle", s["idle_cap"],
                   "--idle-threshold", args.idle_threshold, "--dtype", "f32", "--device", "cpu"]

    made = {}
    if only & {"generate", "train", "ppo"}:
        model_dir = out / "model"
        positions = max(s["prompt_len"] + s["new_tokens"], s["seq_len"])
        made = run_json(py + ["make-model", "--out", model_dir, "--layers", s["layers"], "--d-model", s["d_model"],
                              "--heads", s["heads"], "--vocab", s["vocab"], "--positions", positions,
                              "--threads", s["threads"]], "make-model", env)[-1]
        policy, reward = model_dir / "policy", model_dir / "reward"

    rows, results = [], {"settings": s, "model": made}
    if eos:
        results["eos_run"] = {k: str(v) for k, v in eos.items()}

    def row(name, setting, mine, peer, mine_peak, peer_peak, lengths=(None, None)):
        ratio = mine["per_second_median"] / peer["per_second_median"]
        low = mine["per_second_min"] / peer["per_second_max"]
        high = mine["per_second_max"] / peer["per_second_min"]
        rows.append(dict(name=name, setting=setting, unit=peer["unit"],
                         rlhf=fmt_rate(mine["per_second_median"], mine["per_second_min"], mine["per_second_max"]),
                         peer=fmt_rate(peer["per_second_median"], peer["per_second_min"], peer["per_second_max"]),
                         ratio=ratio, range=(low, high), rlhf_peak=mine_peak, peer_peak=peer_peak,
                         rlhf_rss=mine.get("peak_rss_bytes"), peer_rss=peer.get("peak_rss_bytes"),
                         rlhf_len=lengths[0], peer_len=lengths[1]))

    def compare_generate(key, name, model, gen):
        """transformers generate() and rlhf bench generate on the same flags; both summaries."""
        peer = summary(run_json(py + ["generate", "--model", model, *gen, *common_peer], f"transformers {name}", env))
        mine = summary(run_json([rlhf, "bench", "generate", "--model", model, *gen, "--temperature", 1, "--top-k", 0,
                                 *common_rlhf], f"rlhf {name}", env))
        results[key] = {"rlhf": mine, "peer": peer}
        return mine, peer

    def compare_ppo(key, name, model, reward_model, work, with_eos):
        """TRL's PPOTrainer and rlhf bench ppo (sync and async) on the same flags: three rows."""
        ppo = ["--batch", s["ppo_batch"], *work, "--ppo-epochs", s["ppo_epochs"], "--minibatches", s["minibatches"]]
        peer = summary(run_json(py + ["ppo", "--model", model, "--reward-model", reward_model, *ppo,
                                      "--steps", s["ppo_steps"], *common_peer], f"trl {name}", env))
        mine_all = run_json([rlhf, "bench", "ppo", "--model", model, "--reward-model", reward_model, *ppo,
                             "--steps", s["ppo_steps"] + 1, "--actor-threads", s["actor_threads"], *common_rlhf],
                            f"rlhf {name}", env)
        mine = summary(mine_all, "samples_per_second_sync")
        results[key] = {"rlhf": mine, "peer": peer}
        cap = s["eos_new_tokens"] if with_eos else s["new_tokens"]
        setting = (f"rollout {s['ppo_batch']}, {s['ppo_epochs']} epoch, {s['minibatches']} minibatch"
                   + (f", <= {cap} tokens, stop at EOS" if with_eos else ""))
        for mode in ("sync", "async"):
            k = f"samples_per_second_{mode}"
            # With EOS the step's FLOPs depend on the sampled lengths: no peak fraction.
            peaks = (None, None) if with_eos else (mine[f"peak_fraction_{mode}"], peer["peak_fraction"])
            row(f"{name} {mode}", f"{setting}, max_staleness {0 if mode == 'sync' else 1}",
                as_rates("episodes", mine[k], mine[f"{k}_min"], mine[f"{k}_max"], mine.get("peak_rss_bytes")), peer,
                *peaks, lengths=(mine.get("mean_response_tokens"), peer.get("mean_response_tokens")))

    if "generate" in only:
        for b in s["gen_batches"]:
            gen = ["--batch", b, "--prompt-len", s["prompt_len"], "--new-tokens", s["new_tokens"]]
            mine, peer = compare_generate(f"generate_b{b}", f"generate b={b}", policy, gen)
            row(f"generate b={b}", f"{s['prompt_len']}-token prompts, {s['new_tokens']} new tokens",
                mine, peer, mine["peak_fraction"], peer["peak_fraction"])
    if "generate-eos" in only:
        b, cap = s["eos_batch"], s["eos_new_tokens"]
        name = f"generate-eos b={b}"
        mine, peer = compare_generate("generate_eos", name, eos["policy"],
                                      ["--batch", b, "--new-tokens", cap, "--prompts", eos["prompts"]])
        if mine["prompt_len"] != peer["prompt_len"]:
            log(f"warning: rlhf's prompts are {mine['prompt_len']} tokens wide, transformers' {peer['prompt_len']}: "
                "the two sides' token ids differ")
        lengths = (mine["mean_response_tokens"], peer["mean_response_tokens"])
        setting = f"{b} PPO prompts, <= {cap} new tokens, stop at EOS"
        peaks = (mine["peak_fraction"], peer["peak_fraction"])
        row(name, setting, mine, peer, *peaks, lengths=lengths)
        # Every rlhf run samples the same responses, so its episodes/s is tokens/s over their mean length.
        mine_episodes = as_rates("episodes", *(mine[f"per_second_{k}"] / mine["mean_response_tokens"] for k in
                                               ("median", "min", "max")), mine.get("peak_rss_bytes"))
        peer_episodes = as_rates("episodes", *(peer[f"episodes_per_second_{k}"] for k in ("median", "min", "max")),
                                 peer.get("peak_rss_bytes"))
        row(name, setting, mine_episodes, peer_episodes, *peaks, lengths=lengths)
    if "train" in only:
        tr = ["--batch", s["train_batch"], "--seq-len", s["seq_len"]]
        peer = summary(run_json(py + ["train", "--model", policy, *tr, *common_peer], "pytorch train", env))
        mine = summary(run_json([rlhf, "bench", "train", "--mode", "sft", "--model", policy, *tr, *common_rlhf],
                                "rlhf train", env))
        results["train"] = {"rlhf": mine, "peer": peer}
        row("train", f"batch {s['train_batch']} x {s['seq_len']}, AdamW step", mine, peer,
            mine["peak_fraction"], peer["peak_fraction"])
    if "ppo" in only:
        compare_ppo("ppo", "ppo", policy, reward, ["--prompt-len", s["prompt_len"], "--new-tokens", s["new_tokens"]],
                    with_eos=False)
    if "ppo-eos" in only:
        compare_ppo("ppo_eos", "ppo-eos", eos["policy"], eos["reward"],
                    ["--new-tokens", s["eos_new_tokens"], "--prompts", eos["prompts"]], with_eos=True)

    report = render(rows, s, made, results, args)
    print(report)
    (out / "results.json").write_text(json.dumps({**results, "table": rows}, indent=2, default=str))
    (out / "report.txt").write_text(report)
    log(f"wrote {out / 'results.json'} and {out / 'report.txt'}")


def render(rows, s, made, results, args):
    mib = lambda b: f"{b / 2**20:,.0f}" if b else "-"  # noqa: E731
    pct = lambda f: f"{100 * f:.1f}" if f is not None else "-"  # noqa: E731
    tokens = lambda n: f"{n:.1f}" if n is not None else "-"  # noqa: E731
    head = ["bench", "work", "unit", "rlhf median [min-max]", "peer median [min-max]", "rlhf/peer", "range",
            "resp. tokens rlhf/peer", "peak% rlhf", "peak% peer", "RSS MiB rlhf", "RSS MiB peer"]
    body = [[r["name"], r["setting"], r["unit"] + "/s", r["rlhf"], r["peer"], f"{r['ratio']:.2f}x",
             f"{r['range'][0]:.2f}-{r['range'][1]:.2f}",
             f"{tokens(r['rlhf_len'])}/{tokens(r['peer_len'])}" if r["rlhf_len"] or r["peer_len"] else "-",
             pct(r["rlhf_peak"]), pct(r["peer_peak"]), mib(r["rlhf_rss"]), mib(r["peer_rss"])] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    peers = {
        "generate": "transformers generate(do_sample, top_k 0, top_p 1, temperature 1, no EOS), use_cache",
        "train": "PyTorch loop: forward + backward + clip_grad_norm 1.0 + torch.optim.AdamW(lr 1e-5, betas 0.9/0.95, eps 1e-8, wd 0)",
        "ppo": "TRL experimental PPOTrainer: separate ref/value/reward models, no stop token, kl k1 0.05, no sample generations",
        "generate-eos": "transformers generate(do_sample, top_k 0, top_p 1, temperature 1, the model's eos_token_id and "
                        "pad_token_id), use_cache, left-padded prompts and their attention mask",
        "ppo-eos": "TRL experimental PPOTrainer: separate ref/value/reward models, stop_token 'eos', left-padded queries, "
                   "kl k1 0.05, no sample generations",
    }
    any_result = next(iter(v for k, v in results.items() if isinstance(v, dict) and "peer" in v), None)
    versions = {k: any_result["peer"].get(k) for k in ("torch", "transformers", "trl")} if any_result else {}
    ran = {r["name"].split()[0] for r in rows}  # generate, train, ppo, generate-eos, ppo-eos
    lines = {
        "model": f"  model: GPT-2, {s['layers']} layers, d_model {s['d_model']}, {s['heads']} heads, vocab {s['vocab']}, "
                 f"{made.get('params', 0):,} parameters (reward/value: {made.get('reward_params', 0):,}), random weights "
                 "saved in Hugging Face layout (safetensors) and loaded by both sides",
        "generate": f"  generation: batches {s['gen_batches']}, {s['prompt_len']}-token random prompts, exactly "
                    f"{s['new_tokens']} new tokens (no early stop), temperature 1, top_k 0, top_p 1",
        "train": f"  training: batch {s['train_batch']} x {s['seq_len']} tokens, tokens/s counts loss targets "
                 "batch x (seq_len - 1); rlhf AdamW with the same hyper-parameters and clipping",
        "ppo": f"  PPO: rollout batch {s['ppo_batch']}, {s['ppo_epochs']} PPO epoch(s), {s['minibatches']} minibatch(es), "
               f"{s['ppo_steps']} timed iterations per repeat after one warm-up; rlhf actor threads {s['actor_threads']}, "
               "sync = max_staleness 0, async = 1"
               + (f"; ppo: {s['prompt_len']}-token random prompts, {s['new_tokens']} response tokens" if "ppo" in ran else ""),
    }
    shown = (["model"] if made else []) + [k for k in ("generate", "train") if k in ran]
    shown += ["ppo"] if ran & {"ppo", "ppo-eos"} else []
    peer_lines = [peers[k] for k in ("generate", "train", "ppo", "generate-eos", "ppo-eos") if k in ran]
    settings = [
        "",
        "settings (both sides):",
        *(lines[k] for k in shown),
        f"  precision fp32, device cpu, {s['threads']} threads (libtorch intra-op), dropout 0",
        f"  timing: one warm-up, {s['repeats']} timed repeats per side, each after waiting for other processes to use "
        f"< {100 * args.idle_threshold:.0f}% of the CPU for 2 s (at most {s['idle_cap']:.0f} s)",
        f"  peak%: achieved FLOP/s (6 x params x positions for training, 2 x for generation and scoring, "
        "the PPO step's algorithmic work) over each process's measured 2048^3 fp32 matmul rate",
        *(f"  {'peers:' if i == 0 else '      '} {line}" for i, line in enumerate(peer_lines)),
        f"  versions: {versions}, rlhf {git_rev()}",
        f"  machine: {cpu_model()}, {os.cpu_count()} CPUs",
    ]
    if "eos_run" in results:
        e = results["eos_run"]
        settings.append(
            f"  EOS rows: policy {e['policy']}, reward model (and value start) {e['reward']}, prompts {e['prompts']} "
            "rendered with the policy's chat template (one user message, add_generation_prompt) into the same token "
            f"ids on both sides, left-padded; both sides stop at the EOS ids of its generation_config.json, after at "
            f"most {s['eos_new_tokens']} new tokens; resp. tokens: mean tokens per response up to and including EOS")
        if "generate_eos" in results:
            g = results["generate_eos"]["peer"]
            settings.append(
                f"    generate-eos: the file's first {s['eos_batch']} prompts ({g['prompt_len']} tokens wide when padded), "
                "each run reseeded so every repeat samples the same responses; tokens/s counts generated tokens, "
                "episodes/s responses")
        if "ppo_eos" in results:
            p = results["ppo_eos"]["peer"]
            settings.append(
                f"    ppo-eos: as PPO above on the file's first {(s['ppo_steps'] + 1) * s['ppo_batch']} prompts "
                f"(shuffled); TRL's generate() ran {p['mean_generated_width']:.1f} of {s['eos_new_tokens']} steps per "
                "batch on average; no peak% (TRL works over the padded width, rlhf over the sampled lengths: their FLOPs are not counted alike)")
    for key in ("ppo", "ppo_eos"):
        if key in results:
            r, p = results[key]["rlhf"], results[key]["peer"]
            settings.append(f"  {key} phases: TRL {json.dumps({k: round(v, 3) for k, v in p['phase_share'].items()})} "
                            f"of {p['seconds_per_iteration']:.3f} s/iteration; rlhf sync seconds "
                            f"{json.dumps(r['phases_seconds_sync'])}")
    return "\n".join(out + settings)


# ----------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    ap.add_argument("--quick", action="store_true", help="a tiny shape and few tokens: exercises every path in seconds")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument("--eos-run", metavar="DIR",
                    help="run folder of the EOS rows (sft/checkpoints/best, rm/checkpoints/best, "
                         "data/ppo_prompts.jsonl); default runs/default, rows skipped when it is missing")
    ap.add_argument("--repeats", type=int, help="timed repeats per side (default 3)")
    ap.add_argument("--threads", type=int, help="libtorch threads on both sides (default 2)")
    ap.add_argument("--actor-threads", type=int, help="threads of each rlhf PPO actor (default: --threads)")
    ap.add_argument("--idle-cap", type=float, help="longest idle wait before a repeat, s (default 120; --quick 2)")
    ap.add_argument("--idle-threshold", type=float, default=0.10, help="others' CPU share that counts as idle")
    ap.add_argument("--rlhf", help="the rlhf binary (default target/release/rlhf, built when missing)")
    ap.add_argument("--out", help="output folder (default runs/bench/compare, or compare-quick)")
    ap.add_argument("--fresh-venv", action="store_true",
                    help="install torch and transformers into .venv-bench too instead of reading .venv's")

    peer = sub.add_parser("peer", help="internal: one peer benchmark (runs under .venv-bench)")
    peer.add_argument("what", choices=["make-model", "generate", "train", "ppo"])
    for flag, kind in [("--model", str), ("--reward-model", str), ("--out", str), ("--layers", int), ("--d-model", int),
                       ("--heads", int), ("--vocab", int), ("--positions", int), ("--batch", int), ("--prompt-len", int),
                       ("--new-tokens", int), ("--seq-len", int), ("--ppo-epochs", int), ("--minibatches", int),
                       ("--steps", int), ("--prompts", str)]:
        peer.add_argument(flag, type=kind)
    peer.add_argument("--threads", type=int, default=2)
    peer.add_argument("--repeats", type=int, default=3)
    peer.add_argument("--idle-cap", type=float, default=0.0)
    peer.add_argument("--idle-threshold", type=float, default=0.10)

    args = ap.parse_args()
    if args.cmd == "peer":
        {"make-model": peer_make_model, "generate": peer_generate, "train": peer_train, "ppo": peer_ppo}[args.what](args)
    else:
        if args.repeats is not None and args.repeats < 1:
            ap.error("--repeats must be at least 1")
        orchestrate(args)


if __name__ == "__main__":
    main()
