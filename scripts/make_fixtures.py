#!/usr/bin/env python3
"""Generate the small, committed HF reference fixtures under tests/fixtures/.

Run by hand from the repository root:

    .venv/bin/python scripts/make_fixtures.py [NAME ...]

(names, e.g. `qwen3 neox`, rebuild only those fixtures; see main()).

Deterministic: every random draw happens on CPU after torch.manual_seed.

For each architecture (gpt2, llama, qwen2, qwen3, llama3, neox, neox-seq, gemma2, mistral) this writes
  tests/fixtures/<name>-tiny/        config.json, model.safetensors (fp32),
                                     expected.safetensors
and, for gpt2, llama and qwen2 only,
  tests/fixtures/<name>-tiny-score/  config.json, model.safetensors of the
                                     matching *ForSequenceClassification
                                     (same backbone weights + score.weight [1, hidden])
The later architectures keep their score head's weight in expected.safetensors instead
(`score_weight`), so the fixtures stay small.

expected.safetensors keys:
  input_ids      int64   [2, 10]  row 1 is left padded (first 3 ids are pad 0)
  attention_mask int64   [2, 10]  zeros at row 1, positions 0..3
  logits         float32 [2, 10, 96]  fp32 eval-mode logits, with attention_mask and
                                  position_ids = cumsum(mask) - 1, masked_fill(mask == 0, 1)
                                  (only positions with mask 1 are meaningful; pad positions are
                                  stored as 0)
  greedy_ids     int64   [2, 12]  NEW tokens of greedy model.generate (max_new_tokens=12),
                                  0 after EOS, right-padded with 0 to 12
  score_logits   float32 [2]      score(hidden_states[-1][:, 9]) of the -score model
  score_weight   float32 [1, d]   the score head's weight (only where there is no -score dir)

and, through scripts/chat_fixtures.py, tests/fixtures/chat/<family>/: tokenizers carrying
the chat templates of real families and apply_chat_template's ids for conversations.
"""

import json
import os
import shutil
import sys

import chat_fixtures

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma2ForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    MistralConfig,
    MistralForCausalLM,
    MistralForSequenceClassification,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3ForSequenceClassification,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

VOCAB = 96
PAD = 0
EOS = 95
BATCH = 2
SEQ = 10
N_LEFT_PAD = 3
NEW_TOKENS = 12
INIT_STD = 0.2  # larger than HF's 0.02 so logits are spread out and greedy decoding is not degenerate

ROPE = {"rope_type": "default", "rope_theta": 10000.0}


def gpt2_config():
    return GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        initializer_range=INIT_STD,
        bos_token_id=EOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )


def llama_family(cls, **overrides):
    """The tiny shape every Llama-family fixture shares, with its own overrides."""
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_parameters=dict(ROPE),
        attention_dropout=0.0,
        initializer_range=INIT_STD,
        bos_token_id=1,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    kwargs.update(overrides)
    return cls(**kwargs)


def llama_config():
    return llama_family(LlamaConfig, tie_word_embeddings=False)


def qwen2_config():
    return llama_family(Qwen2Config, tie_word_embeddings=True, use_sliding_window=False)


def qwen3_config():
    # head_dim 16 differs from hidden / heads = 8: Qwen3 allows it.
    return llama_family(Qwen3Config, head_dim=16, tie_word_embeddings=True, use_sliding_window=False)


# Llama 3.1's scaling, sized so that the tiny head (head_dim 8, theta 10000: wavelengths
# 6.3, 63, 628, 6283) has one frequency kept (< 64/4), one blended (between 16 and 64) and
# two divided by the factor (> 64).
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 10000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def llama3_config(rope=None):
    return llama_family(
        LlamaConfig,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_parameters=dict(rope or LLAMA3_ROPE),
        tie_word_embeddings=True,
    )


def mistral_config(sliding_window=4):
    # Mistral v0.1: every layer attends within a window, here shorter than the inputs.
    return llama_family(MistralConfig, num_hidden_layers=1, sliding_window=sliding_window, tie_word_embeddings=False)


def neox_config(parallel=True, layers=2, hidden=32, heads=4, rotary_pct=0.5):
    return GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=64,
        rotary_pct=rotary_pct,
        rotary_emb_base=10000,
        use_parallel_residual=parallel,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tie_word_embeddings=False,
        initializer_range=INIT_STD,
        bos_token_id=1,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )


def neox_seq_config():
    # Sequential residual, one layer: the other branch of GPT-NeoX's block, small.
    return neox_config(parallel=False, layers=1, hidden=16, heads=2, rotary_pct=0.25)


def gemma2_config(**overrides):
    # Everything Gemma 2 adds is sized to matter at 10-22 tokens: a window of 4 on layer 0
    # (transformers' default pattern: even layers slide), caps near the score and logit
    # ranges, a query scale other than head_dim.
    gemma = dict(
        head_dim=16,
        query_pre_attn_scalar=12,
        sliding_window=4,
        attn_logit_softcapping=4.0,
        final_logit_softcapping=5.0,
        hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True,
    )
    gemma.update(overrides)
    return llama_family(Gemma2Config, **gemma)


# name, config factory, causal LM class, seq-cls class, seed.
# Seeds were picked (from a small scan) so that greedy decoding is not a single repeated token, the
# top-1/top-2 logit margin at every greedy step is >= 5e-3 (so a correct fp32 reimplementation
# cannot flip a token), and llama-tiny's row 0 emits EOS mid-way (exercises the pad-after-EOS rule).
SPECS = [
    ("gpt2", gpt2_config, GPT2LMHeadModel, GPT2ForSequenceClassification, 1239),
    ("llama", llama_config, LlamaForCausalLM, LlamaForSequenceClassification, 2348),
    ("qwen2", qwen2_config, Qwen2ForCausalLM, Qwen2ForSequenceClassification, 3456),
    ("qwen3", qwen3_config, Qwen3ForCausalLM, Qwen3ForSequenceClassification, 4568),
    ("llama3", llama3_config, LlamaForCausalLM, LlamaForSequenceClassification, 5679),
    ("neox", neox_config, GPTNeoXForCausalLM, GPTNeoXForSequenceClassification, 6790),
    ("neox-seq", neox_seq_config, GPTNeoXForCausalLM, GPTNeoXForSequenceClassification, 7891),
    ("gemma2", gemma2_config, Gemma2ForCausalLM, Gemma2ForSequenceClassification, 8901),
    ("mistral", mistral_config, MistralForCausalLM, MistralForSequenceClassification, 9014),
]
# Fixtures made before the score head moved into expected.safetensors keep a -score dir.
SCORE_DIRS = {"gpt2", "llama", "qwen2"}


def position_ids_for(mask):
    pos = mask.long().cumsum(-1) - 1
    pos.masked_fill_(mask == 0, 1)
    return pos


def make_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, EOS, (BATCH, SEQ), generator=g, dtype=torch.int64)  # 1..94
    mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
    ids[1, :N_LEFT_PAD] = PAD
    mask[1, :N_LEFT_PAD] = 0
    return ids, mask


def backbone(model):
    return getattr(model, model.base_model_prefix)


@torch.no_grad()
def manual_greedy(model, ids, mask, n):
    """Greedy decoding by full recomputation (no KV cache), used as a cross-check of HF generate."""
    out = []
    min_margin = float("inf")
    finished = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(n):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_for(mask)).logits
        top2 = logits[:, -1].topk(2, dim=-1).values
        margins = (top2[:, 0] - top2[:, 1])[~finished]
        if margins.numel():
            min_margin = min(min_margin, margins.min().item())
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, PAD), nxt)
        out.append(nxt)
        finished |= nxt == EOS
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(nxt)[:, None]], dim=1)
        if bool(finished.all()):
            break
    res = torch.stack(out, dim=1)
    if res.shape[1] < n:
        res = torch.cat([res, torch.full((res.shape[0], n - res.shape[1]), PAD, dtype=res.dtype)], dim=1)
    return res, min_margin


def tensor_names(path):
    with safe_open(path, framework="pt") as f:
        return {k: (str(f.get_slice(k).get_dtype()), list(f.get_slice(k).get_shape())) for k in f.keys()}


def save_model(model, out_dir):
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    # Keep only config.json + model.safetensors; generation_config.json is not needed by consumers.
    for extra in os.listdir(out_dir):
        if extra not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(out_dir, extra))


@torch.no_grad()
def build(name, cfg_fn, lm_cls, cls_cls, seed):
    torch.manual_seed(seed)
    cfg = cfg_fn()
    model = lm_cls(cfg).to(torch.float32).eval()
    # HF's init already uses initializer_range=INIT_STD; also give the norm weights/biases some
    # spread so that the fixture exercises them (all-ones/zeros would hide mistakes).
    for pname, p in model.named_parameters():
        if ("ln_" in pname or "norm" in pname) and p.ndim == 1:
            if pname.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            else:
                p.copy_(1.0 + torch.randn_like(p) * 0.1)
        elif pname.endswith("bias"):  # GPT-2 linear biases, Qwen2 q/k/v biases (HF inits them to 0)
            p.copy_(torch.randn_like(p) * 0.05)

    ids, mask = make_inputs(seed + 1)
    pos = position_ids_for(mask)

    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float().contiguous()
    assert logits.shape == (BATCH, SEQ, VOCAB), logits.shape
    valid = mask.bool()
    assert torch.isfinite(logits[valid]).all()
    # Logits at pad positions (mask 0) are implementation-defined garbage (sdpa and eager disagree
    # there); store zeros so no consumer can accidentally depend on them.
    logits_file = logits.masked_fill(~valid[..., None], 0.0).contiguous()

    # Cross-check 1: eager attention gives the same logits as the default (sdpa) attention.
    default_impl = model.config._attn_implementation
    model.set_attn_implementation("eager")
    logits_eager = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    model.set_attn_implementation(default_impl)
    eager_diff = (logits_eager - logits)[valid].abs().max().item()

    # Cross-check 2: left padding does not change the logits of the padded row's real tokens.
    row1 = model(input_ids=ids[1:, N_LEFT_PAD:]).logits[0]
    unpad_diff = (row1 - logits[1, N_LEFT_PAD:]).abs().max().item()

    # Cross-check 3: HF's generate-style position ids (pads filled with 0 in transformers 5.x)
    # give identical logits at the real positions.
    pos0 = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    logits0 = model(input_ids=ids, attention_mask=mask, position_ids=pos0).logits
    pos_rule_diff = (logits0 - logits)[valid].abs().max().item()

    gen = model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    greedy = gen[:, SEQ:].clone()
    if greedy.shape[1] < NEW_TOKENS:
        greedy = torch.cat(
            [greedy, torch.full((BATCH, NEW_TOKENS - greedy.shape[1]), PAD, dtype=greedy.dtype)], dim=1
        )
    greedy = greedy.to(torch.int64).contiguous()
    manual, greedy_margin = manual_greedy(model, ids, mask, NEW_TOKENS)
    assert greedy_margin >= 5e-3, f"greedy top-1/top-2 margin too small: {greedy_margin}"
    assert torch.equal(manual, greedy), f"HF generate {greedy.tolist()} != manual greedy {manual.tolist()}"
    assert torch.equal(greedy[:, 0], logits[:, -1].argmax(-1)), "first greedy token != argmax of fixture logits"

    # Sequence classification model sharing the backbone.
    torch.manual_seed(seed + 2)
    cls_cfg = cfg_fn()
    cls_cfg.num_labels = 1
    cls_model = cls_cls(cls_cfg).to(torch.float32).eval()
    missing, unexpected = backbone(cls_model).load_state_dict(backbone(model).state_dict(), strict=True)
    assert not missing and not unexpected
    cls_model.score.weight.copy_(torch.randn_like(cls_model.score.weight) * INIT_STD)
    assert cls_model.score.bias is None

    out = cls_model(
        input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True
    )
    hs_last = out.hidden_states[-1]
    # Verify that hidden_states[-1] is the final-normed state (== backbone last_hidden_state).
    base_out = backbone(cls_model)(input_ids=ids, attention_mask=mask, position_ids=pos)
    norm_diff = (base_out.last_hidden_state - hs_last)[valid].abs().max().item()
    assert norm_diff == 0.0, f"hidden_states[-1] differs from last_hidden_state by {norm_diff}"
    # ... and that the final norm/ln_f has in fact been applied to it.
    final_norm = {"gpt2": "ln_f", "neox": "final_layer_norm", "neox-seq": "final_layer_norm"}.get(name, "norm")
    final_norm = getattr(backbone(cls_model), final_norm)
    n_layers = cls_cfg.num_hidden_layers
    assert len(out.hidden_states) == n_layers + 1, len(out.hidden_states)
    captured = {}
    last_layer = backbone(cls_model).h[-1] if name == "gpt2" else backbone(cls_model).layers[-1]
    handle = last_layer.register_forward_hook(
        lambda m, i, o: captured.__setitem__("x", o[0] if isinstance(o, tuple) else o)
    )
    cls_model(input_ids=ids, attention_mask=mask, position_ids=pos)
    handle.remove()
    raw = captured["x"]
    normed_diff = (final_norm(raw) - hs_last)[valid].abs().max().item()
    assert normed_diff < 1e-6, f"hidden_states[-1] != final_norm(last layer output): {normed_diff}"
    last = SEQ - 1
    score_logits = cls_model.score(hs_last[:, last]).squeeze(-1).float().contiguous()
    hf_pooled_diff = (out.logits.squeeze(-1) - score_logits).abs().max().item()
    assert hf_pooled_diff < 1e-6, hf_pooled_diff
    # Check the causal LM's lm_head applied to the same hidden state gives the fixture logits.
    lm_from_hidden = model.get_output_embeddings()(hs_last)
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        lm_from_hidden = torch.tanh(lm_from_hidden / cap) * cap
    lm_diff = (lm_from_hidden - logits)[valid].abs().max().item()
    assert lm_diff < 1e-5, lm_diff

    out_dir = os.path.join(FIXTURES, f"{name}-tiny")
    save_model(model, out_dir)
    expected = {
        "input_ids": ids.contiguous(),
        "attention_mask": mask.contiguous(),
        "logits": logits_file,
        "greedy_ids": greedy,
        "score_logits": score_logits,
    }
    if name in SCORE_DIRS:
        score_dir = os.path.join(FIXTURES, f"{name}-tiny-score")
        save_model(cls_model, score_dir)
        dirs = (out_dir, score_dir)
    else:
        expected["score_weight"] = cls_model.score.weight.detach().float().contiguous()
        dirs = (out_dir,)
    save_file(expected, os.path.join(out_dir, "expected.safetensors"))
    variant_checks(name, cfg_fn, lm_cls, model, ids, mask, pos, logits, valid, out_dir)

    spread = logits[valid].std(-1).mean().item()
    distinct = [len(set(r)) for r in greedy.tolist()]
    print(f"== {name}-tiny  (seed {seed})")
    print(f"   params={sum(p.numel() for p in model.parameters())}  logits std over vocab={spread:.3f}")
    print(f"   input_ids={ids.tolist()}")
    print(f"   greedy_ids={greedy.tolist()}  distinct/row={distinct}  min top1-top2 margin={greedy_margin:.4f}  eos_in_row={(greedy == EOS).any(-1).tolist()}")
    print(f"   score_logits={[round(x, 6) for x in score_logits.tolist()]}")
    print(
        f"   checks: eager-vs-sdpa={eager_diff:.2e} unpadded-vs-padded={unpad_diff:.2e} "
        f"posfill0-vs-posfill1={pos_rule_diff:.2e} hf-pooled-vs-explicit-score={hf_pooled_diff:.2e} "
        f"lm_head(hidden[-1])-vs-logits={lm_diff:.2e}"
    )
    assert unpad_diff < 1e-5, unpad_diff
    assert eager_diff < 1e-5, eager_diff
    assert pos_rule_diff < 1e-6, pos_rule_diff
    for d in dirs:
        f = os.path.join(d, "model.safetensors")
        print(f"   {os.path.relpath(f, ROOT)}: {os.path.getsize(f)} bytes, {len(tensor_names(f))} tensors")
    summary = {
        "name": name,
        "seed": seed,
        "params": sum(p.numel() for p in model.parameters()),
        "greedy_ids": greedy.tolist(),
        "score_logits": score_logits.tolist(),
        "margin": greedy_margin,
    }
    return dirs, summary


@torch.no_grad()
def logit_gap(lm_cls, cfg, model, ids, mask, pos, logits, valid):
    """Max |logit difference| of the same weights under another config."""
    other = lm_cls(cfg).to(torch.float32).eval()
    other.load_state_dict(model.state_dict())
    return (other(input_ids=ids, attention_mask=mask, position_ids=pos).logits - logits)[valid].abs().max().item()


@torch.no_grad()
def variant_checks(name, cfg_fn, lm_cls, model, ids, mask, pos, logits, valid, out_dir):
    """What makes a fixture able to catch a wrong implementation of its feature: the same
    weights without the feature must give other logits."""
    changes = {
        "llama3": [(dict(rope=ROPE), 1e-2)],
        "mistral": [(dict(sliding_window=None), 1e-2)],
        "gemma2": [
            (dict(layer_types=["full_attention", "full_attention"]), 1e-3),
            (dict(attn_logit_softcapping=None), 1e-3),
            (dict(final_logit_softcapping=None), 1e-3),
            (dict(query_pre_attn_scalar=16), 1e-3),
        ],
    }
    for change, least in changes.get(name, []):
        gap = logit_gap(lm_cls, cfg_fn(**change), model, ids, mask, pos, logits, valid)
        print(f"   {name} with {change}: max |logit diff| {gap:.3e}")
        assert gap > least, (change, gap)
    if name == "neox-seq":
        # Older Pythia files spell the rope `rotary_pct` / `rotary_emb_base` at the top level:
        # write this one that way, and check transformers reads it back to the same logits.
        path = os.path.join(out_dir, "config.json")
        with open(path) as fh:
            cfg = json.load(fh)
        rope = cfg.pop("rope_parameters")
        cfg["rotary_pct"] = rope["partial_rotary_factor"]
        cfg["rotary_emb_base"] = int(rope["rope_theta"])
        with open(path, "w") as fh:
            json.dump(cfg, fh, indent=2, sort_keys=True)
            fh.write("\n")
        back = lm_cls.from_pretrained(out_dir, dtype=torch.float32).eval()
        diff = (back(input_ids=ids, attention_mask=mask, position_ids=pos).logits - logits)[valid].abs().max().item()
        assert diff == 0.0, diff


README = """# Test fixtures (generated, do not edit by hand)

Produced by `scripts/make_fixtures.py`, run from the repository root:

    .venv/bin/python scripts/make_fixtures.py [NAME ...]

with torch {torch_version}, transformers {tf_version}, safetensors {st_version}, python {py_version},
on CPU, fp32. The script is deterministic (fixed `torch.manual_seed` per model, one thread); re-running
it with the same versions on the same machine reproduces byte-identical files. Another CPU may change the
last bits of the expected values, so rebuild only the fixtures you add or change:
`scripts/make_fixtures.py NAME ...` (e.g. `qwen3 neox`) leaves the others, and their rows below, as they are.

## Directories

| dir | HF class | notes |
|---|---|---|
| `gpt2-tiny/` | `GPT2LMHeadModel` | vocab 96, n_positions 64, n_embd 32, 2 layers, 4 heads, gelu_new, dropouts 0, bos=eos=95, pad 0; `lm_head` tied to `wte` (not stored) |
| `llama-tiny/` | `LlamaForCausalLM` | vocab 96, hidden 32, intermediate 64, 2 layers, 4 heads / 2 kv heads (GQA), rope theta 10000, rms eps 1e-6, untied `lm_head`, bos 1, eos 95, pad 0 |
| `qwen2-tiny/` | `Qwen2ForCausalLM` | as llama-tiny plus q/k/v biases, `tie_word_embeddings: true` (no `lm_head.weight` stored) |
| `qwen3-tiny/` | `Qwen3ForCausalLM` | as qwen2-tiny without q/k/v biases, plus per-head `q_norm`/`k_norm`; `head_dim` 16 (not hidden / heads = 8) |
| `llama3-tiny/` | `LlamaForCausalLM` | as llama-tiny with Llama 3.1 rope scaling (`rope_type` llama3, factor 8, low/high freq factors 1/4, original context 64: one frequency kept, one blended, two divided), tied embeddings, max positions 128, rms eps 1e-5 |
| `neox-tiny/` | `GPTNeoXForCausalLM` | vocab 96, hidden 32, intermediate 64, 2 layers, 4 heads, `rotary_pct` 0.5 (4 of 8 head dims rotate), parallel residual, gelu, untied `embed_out` |
| `neox-seq-tiny/` | `GPTNeoXForCausalLM` | hidden 16, 1 layer, 2 heads, `use_parallel_residual: false`, `rotary_pct` 0.25 (2 of 8 head dims rotate); its config.json spells the rope the old way (`rotary_pct`, `rotary_emb_base` at the top level) |
| `gemma2-tiny/` | `Gemma2ForCausalLM` | vocab 96, hidden 32, intermediate 64, 2 layers, 4 heads / 2 kv heads, `head_dim` 16, `query_pre_attn_scalar` 12, `sliding_window` 4 on layer 0 (layer 1 full), attention / final logit soft-caps 4 / 5, gelu_pytorch_tanh, tied embeddings |
| `mistral-tiny/` | `MistralForCausalLM` | as llama-tiny with 1 layer and `sliding_window` 4 (Mistral v0.1's sliding window, shorter than the inputs) |
| `<name>-tiny-score/` | `*ForSequenceClassification`, num_labels 1 | gpt2, llama and qwen2 only: same backbone weights as `<name>-tiny` plus a random `score.weight` [1, 32] |

Each model dir holds only `config.json` and `model.safetensors` (float32; `generation_config.json` is
deleted). Weights are HF's random init with `initializer_range` 0.2 (10x the default, so logits are
spread out), norm weights 1 + N(0, 0.1), norm/linear biases N(0, 0.1)/N(0, 0.05).
Note: in transformers 5.x `config.json` uses `dtype` (not `torch_dtype`) and llama/qwen2 put the RoPE
base under `rope_parameters: {{"rope_type": "default", "rope_theta": 10000.0}}` (no top-level
`rope_theta`).

## `<name>-tiny/expected.safetensors`

| key | dtype, shape | content |
|---|---|---|
| `input_ids` | int64 [2, 10] | random ids in 1..94; row 1 is left padded: positions 0, 1, 2 are pad id 0 |
| `attention_mask` | int64 [2, 10] | 1, except 0 at row 1 positions 0, 1, 2 |
| `logits` | float32 [2, 10, 96] | eval-mode logits with `attention_mask` and `position_ids = cumsum(mask) - 1`, `masked_fill(mask == 0, 1)`. Only mask==1 positions are meaningful; pad positions are stored as 0 |
| `greedy_ids` | int64 [2, 12] | new tokens of `model.generate(input_ids, attention_mask=..., do_sample=False, max_new_tokens=12, eos_token_id=95, pad_token_id=0)` (KV cache on); 0 after EOS; right-padded with 0 to 12 |
| `score_logits` | float32 [2] | `score(hidden_states[-1][:, 9])` of the `-score` model (same inputs/positions); `hidden_states[-1]` already has the final norm applied. Equals HF's own pad-token pooled output |
| `score_weight` | float32 [1, d] | the sequence-classification head's weight, for the fixtures without a `-score` dir (its backbone is `<name>-tiny`'s) |

The script cross-checks: greedy ids equal a cache-free greedy loop; the top-1/top-2 logit margin at each
greedy step is >= 5e-3; eager vs sdpa attention agree (< 1e-5); the left-padded row's logits match the
same row run unpadded; generate's own position rule (pads filled with 0 in transformers 5.x) gives the
same logits at real positions; llama3-tiny's logits differ from the same weights with the default rope
(> 1e-2); gemma2-tiny's logits change (> 1e-3) without its window, either soft-cap, or with another query
scale; mistral-tiny's without its window (> 1e-2); neox-seq-tiny's rewritten config.json loads back to the
same logits.

Values at generation time:

{table}

## `chat/<family>/`: chat templates

Made by `scripts/chat_fixtures.py` (which this script calls): for Llama 3, Llama 3.1, Qwen2.5,
ChatML and Mistral (v0.3, without its tool branches), a small tokenizer trained on a few
sentences with the family's special tokens and BOS rule (a post-processor that puts BOS first
for Llama 3 and Mistral, none for Qwen and ChatML), the family's `chat_template` (in
`tokenizer_config.json`, or `chat_template.jinja` where transformers saves it there), a
`generation_config.json` with the family's EOS ids, and `cases.json`: for each conversation
(with and without a system message, multi-turn, ending with the assistant, odd whitespace and
non-ASCII text, and roles that do not alternate) with `add_generation_prompt` true and false,
`apply_chat_template`'s text and ids (`tokenize=True`) or the template's error; `plain`: the
ids of `tokenizer(text)`; `eos_token_ids`: `GenerationConfig.from_pretrained(dir).eos_token_id`.
Every id is recorded from the saved folder as `AutoTokenizer` loads it.
`tests/chat_templates.rs` asserts that `rlhf` gives the same.

`scripts/hf_check.py MODEL_DIR EXPECTED [--score]` loads a dir with transformers and compares against an
expected file (e.g. `scripts/hf_check.py tests/fixtures/llama-tiny tests/fixtures/llama-tiny/expected.safetensors`,
or `scripts/hf_check.py tests/fixtures/llama-tiny-score tests/fixtures/llama-tiny/expected.safetensors --score`).
"""


def previous_rows():
    """The values table of the README as it is, by fixture name (kept for fixtures not rebuilt)."""
    try:
        with open(os.path.join(FIXTURES, "README.md")) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return {}
    return {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "-tiny |" in line}


def write_readme(summaries):
    import safetensors

    rows = ["| model | seed | params | greedy_ids | score_logits | min greedy margin |", "|---|---|---|---|---|---|"]
    table = previous_rows()
    for s in summaries:
        table[f"{s['name']}-tiny"] = (
            f"| {s['name']}-tiny | {s['seed']} | {s['params']} | {s['greedy_ids']} | "
            f"{[round(x, 6) for x in s['score_logits']]} | {s['margin']:.4f} |"
        )
    rows += [table[f"{spec[0]}-tiny"] for spec in SPECS if f"{spec[0]}-tiny" in table]
    text = README.format(
        torch_version=torch.__version__,
        tf_version=transformers.__version__,
        st_version=safetensors.__version__,
        py_version=sys.version.split()[0],
        table="\n".join(rows),
    )
    with open(os.path.join(FIXTURES, "README.md"), "w") as fh:
        fh.write(text)


def main():
    """`make_fixtures.py [NAME ...]` rebuilds only the named fixtures (e.g. `qwen3 neox`):
    libtorch's float results differ in the last bits between CPUs, so rebuilding every
    fixture on another machine would rewrite the committed ones for nothing."""
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # determinism + the build machine is small
    os.makedirs(FIXTURES, exist_ok=True)
    only = set(sys.argv[1:])
    unknown = only - {spec[0] for spec in SPECS}
    if unknown:
        sys.exit(f"make_fixtures.py: unknown fixture(s) {sorted(unknown)}; known: {[spec[0] for spec in SPECS]}")
    dirs, summaries = [], []
    for spec in SPECS:
        if only and spec[0] not in only:
            continue
        d, summary = build(*spec)
        dirs.extend(d)
        summaries.append(summary)
    chat_fixtures.main()
    write_readme(summaries)
    total = 0
    for dirpath, _, files in os.walk(FIXTURES):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {sys.version.split()[0]}")
    print(f"total fixtures size: {total} bytes")
    assert total < 1_500_000, total
    for d in dirs:
        with open(os.path.join(d, "config.json")) as fh:
            cfg = json.load(fh)
        print(f"{os.path.relpath(d, ROOT)}: architectures={cfg.get('architectures')} dtype={cfg.get('dtype')}")


if __name__ == "__main__":
    main()
