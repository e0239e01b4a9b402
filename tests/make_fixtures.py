#!/usr/bin/env python3
"""Makes the Hugging Face reference fixtures under tests/fixtures/.

Each fixture is a tiny random BitNetForCausalLM checkpoint (dim 128, FFN 256, 2
layers, 4 heads / 2 KV heads, vocab 384) in one of the layouts the official BitNet
b1.58 2B4T releases use, plus what Hugging Face transformers computes for it:

  bf16_online_tied             bf16 master weights, quantization_config
                               {bitnet, autobitlinear, online} (like *-2B-4T-bf16), tied
  packed_bitlinear_tied        the same model, weights ternarized and packed 4 per byte,
                               bf16 weight_scale, linear_class bitlinear (like *-2B-4T)
  f32_online_untied_sharded    f32 master weights, untied lm_head, two safetensors shards
                               with model.safetensors.index.json, transformers-5 config style
  packed_autobitlinear_untied  the same model packed, f32 weight_scale, linear_class
                               autobitlinear, quantization_mode offline

Every fixture folder holds config.json, the safetensors file(s), tokenizer.json,
tokenizer_config.json (a byte-level BPE vocabulary this script trains on its own
text), logits.bin and greedy_logits.bin (float32 little-endian [n][n_vocab]: every
prompt position, and the logits each greedy token was chosen from) and
reference.txt (prompt ids, the greedy continuation, the ternary scales; read by
tests/test_reference.c and tests/test_convert.c).  transformers runs on the CPU with
float64 parameters: it still makes every quantization decision in float32 (its
ActQuant, WeightQuant and norms cast to float32), but its matmuls add no float32
summation noise; the logits are stored as float32.

The models are built so that the layers, not the embedding, decide the output:
random norm weights (per-token absmax quantization is scale-invariant, so only
non-uniform norm weights make a dropped norm visible), an embedding that is small
next to what the layers add to the residual stream, sharp attention (so RoPE
matters) and logits with a healthy spread.  The bf16 master has projections whose
absmean is a power of two, so its packed sibling with a bf16 weight_scale computes
exactly the same function (and its ternarization meets exact rounding ties).

Seeds are skipped where an int8 rounding decision is ill-conditioned: an activation
within a few float32 errors of a rounding boundary, a weight within 1e-6 of one, or
a greedy step whose top two logits nearly tie.  Two correct float32
implementations would round such a value differently, and the difference grows
through every later layer and token (see is_well_conditioned).

An independent float32/float64 re-implementation of the forward pass in plain torch
cross-checks transformers on every fixture, checks that the packed checkpoints
reproduce the online ones, and measures how far the logits move under the bugs
tests/test_reference.c must catch (dropped norm, swapped RoPE halves, skipped
activation quantization) next to float-rounding noise, so the tolerances in the C
test can be justified.  Those numbers go to the log and to calibration.json.

Needs python3 with torch and (for the reference logits) transformers; numpy only
through torch.  Run on the GPU machine (it runs on the CPU there):
    PYTHONUNBUFFERED=1 python3 tests/make_fixtures.py --out OUT_DIR
Without transformers (--no-transformers) it still writes the checkpoints and uses
the independent implementation's float64 logits, marked as such in reference.txt.
"""
import argparse
import collections
import json
import math
import os
import re
import shutil
import struct
import sys
import time
import traceback

# transformers decorates its BitNet helpers with torch.compile; eager mode computes
# the same values without needing a compiler toolchain.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

VOCAB = 384
PROMPT_TEXT = "The lazy dog sleeps."
N_GREEDY = 24
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
            "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
            "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|reserved_special_token_4|>", "<|eot_id|>"]
# The Llama 3 pre-tokenizer pattern, as Llama 3's tokenizer.json gives it.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# An ASCII approximation of it for training and encoding our own text here.
ASCII_SPLIT = re.compile(r"'(?:[sStTmMdD]|re|ve|ll)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{1,3}| ?[^\sA-Za-z0-9]+[\r\n]*"
                         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CHAT_TEMPLATE = ("{% for message in messages %}{% set text = message['role'] | capitalize + ': ' + "
                 "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
                 "{{ text }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}")
# Training text for the tiny BPE vocabulary (written for this script).
CORPUS = """
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun while the fox runs
through the forest. Foxes and dogs are not the best of friends, but they share the same
fields in the summer. In the winter the fox hunts mice under the snow and the dog stays
inside near the fire. The farmer counts 12 sheep, 24 hens and 2024 grains of corn.
A ternary weight is minus one, zero or plus one; the activations are eight bit integers.
int main(void) { return 0; } for (int i = 0; i < n; i++) sum += x[i] * w[i];
She said: "they're here, we'll see what they've done and what it's worth."
Numbers like 3.14159, 2.71828 and 1.41421 appear in the text from time to time.
The model reads the tokens, the layers transform them, and the head predicts the next one.
"""


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------
# Tokenizer: a tiny byte-level BPE in the Llama 3 layout
# ---------------------------------------------------------------------------
def byte_symbols():
    """The byte -> printable character map of byte-level BPE, in vocabulary order:
    printable Latin-1 bytes stand for themselves, the others are moved to U+0100.."""
    keep = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    moved = [b for b in range(256) if b not in keep]
    table = {b: chr(b) for b in keep}
    for i, b in enumerate(moved):
        table[b] = chr(256 + i)
    return table, keep + moved


def train_bpe(n_tokens):
    sym, order = byte_symbols()
    vocab = [sym[b] for b in order]
    known = set(vocab)
    words = collections.Counter(tuple(sym[b] for b in piece.encode("utf-8"))
                                for piece in ASCII_SPLIT.findall(CORPUS))
    merges = []
    while len(vocab) < n_tokens:
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            raise RuntimeError("training text too short for %d tokens" % n_tokens)
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append((a, b))
        if a + b not in known:
            known.add(a + b)
            vocab.append(a + b)
        new_words = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += c
        words = new_words
    return vocab, merges


def bpe_encode(text, vocab, merges):
    """Our own encoder (ASCII pre-split, ignore_merges as in Llama 3); checked against
    the tokenizers library where it is installed."""
    sym, _ = byte_symbols()
    ids = {t: i for i, t in enumerate(vocab)}
    rank = {m: i for i, m in enumerate(merges)}
    out = []
    for piece in ASCII_SPLIT.findall(text):
        w = [sym[b] for b in piece.encode("utf-8")]
        if "".join(w) in ids:
            out.append(ids["".join(w)])
            continue
        while len(w) > 1:
            best = min(range(len(w) - 1), key=lambda i: rank.get((w[i], w[i + 1]), 1 << 30))
            if (w[best], w[best + 1]) not in rank:
                break
            w[best:best + 2] = [w[best] + w[best + 1]]
        out.extend(ids[t] for t in w)
    return out


def tokenizer_files(merge_form):
    n_regular = VOCAB - len(SPECIALS)
    vocab, merges = train_bpe(n_regular)
    specials = {s: n_regular + i for i, s in enumerate(SPECIALS)}
    bos = specials["<|begin_of_text|>"]
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s, i in specials.items()]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos],
                                                      "tokens": ["<|begin_of_text|>"]}}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": True,
                  "vocab": {t: i for i, t in enumerate(vocab)},
                  "merges": [a + " " + b for a, b in merges] if merge_form == "string"
                  else [[a, b] for a, b in merges]},
    }
    tok_cfg = {
        "added_tokens_decoder": {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for s, i in specials.items()},
        "bos_token": "<|begin_of_text|>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 4096,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return tok, tok_cfg, vocab, merges, specials


# ---------------------------------------------------------------------------
# safetensors (written by hand: the format is a u64 header length, a JSON header
# and the raw little-endian tensor bytes)
# ---------------------------------------------------------------------------
ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.uint8: "U8"}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write_safetensors(path, tensors):
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------
# Random models
# ---------------------------------------------------------------------------
PROJ = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def shapes(cfg):
    d, f = cfg["hidden_size"], cfg["intermediate_size"]
    hd = d // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    return {"q": (d, d), "k": (kv, d), "v": (kv, d), "o": (d, d), "gate": (f, d), "up": (f, d), "down": (d, f)}


def make_master(cfg, seed, dtype, tied, grid=False):
    """Random master weights (the layout of the *-bf16 release: plain nn.Linear weights).

    grid: give every projection an absmean that is exactly a power of two, so that
    WeightQuant's scale 1/absmean is exact in bf16 and a packed checkpoint with a bf16
    weight_scale computes exactly the function of its master.  Each matrix is scaled
    so its absmean is near 2^m, put on a grid q*k (|k| <= 255, exact in bf16; float32
    sums of such values are exact in any order, and the element counts are powers of
    two, so torch's mean is exact), then a few k move by one until sum |k| * q / n
    is exactly 2^m."""
    g = torch.Generator().manual_seed(seed)
    d, f, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]

    def randn(*s, std=1.0):
        return torch.randn(*s, generator=g) * std

    def uniform(n, lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    def on_grid(w):
        n = w.numel()
        assert n & (n - 1) == 0
        m = round(math.log2(w.abs().mean().item()))
        w = w * (2.0 ** m / w.abs().mean().item())
        q = 2.0 ** math.ceil(math.log2(w.abs().max().item() / 255))
        k = (w / q).round().clamp(-255, 255).to(torch.int64).flatten()
        need = int(round(2.0 ** m * n / q)) - int(k.abs().sum())
        order = torch.randperm(n, generator=g)
        i = 0
        while need:
            j = order[i % n]
            i += 1
            if need > 0 and abs(k[j]) < 255:
                k[j] += 1 if k[j] >= 0 else -1
                need -= 1
            elif need < 0 and k[j] != 0:
                k[j] -= 1 if k[j] > 0 else -1
                need += 1
        out = (k.to(torch.float32) * q).reshape(w.shape)
        assert out.abs().mean().item() == 2.0 ** m
        return out

    # Weight std per projection: large for q and k (sharp attention, so positions and
    # RoPE matter), moderate elsewhere; the embedding is small next to what the layers
    # add, so the layers decide the output.
    std = {"q": 0.35, "k": 0.35, "v": 0.08, "o": 0.08, "gate": 0.08, "up": 0.08, "down": 0.08}
    w = {"model.embed_tokens.weight": randn(V, d, std=0.1)}
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        w[p + "input_layernorm.weight"] = uniform(d, 0.5, 1.5)
        w[p + "post_attention_layernorm.weight"] = uniform(d, 0.5, 1.5)
        w[p + "self_attn.attn_sub_norm.weight"] = uniform(d, 0.5, 1.5)
        w[p + "mlp.ffn_sub_norm.weight"] = uniform(f, 0.5, 1.5)
        for k, (o, i) in shapes(cfg).items():
            x = randn(o, i, std=std[k])
            w[p + PROJ[k] + ".weight"] = on_grid(x) if grid else x
    w["model.norm.weight"] = uniform(d, 2.0, 4.0)
    if not tied:
        w["lm_head.weight"] = randn(V, d, std=0.1)
    return {k: v.to(dtype) for k, v in w.items()}


def weight_quant(w):
    """transformers' WeightQuant (online): per-tensor absmean in float32."""
    w = w.float()
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    return (w * s).round().clamp(-1, 1), s


def pack(t):
    """transformers' packed layout: value (row i*R + r, col c) is bits 2i..2i+1 of
    byte (r, c), stored as value + 1; R = rows / 4."""
    rows = t.shape[0]
    assert rows % 4 == 0
    R = rows // 4
    u = (t + 1).to(torch.uint8)
    out = torch.zeros((R, t.shape[1]), dtype=torch.uint8)
    for i in range(4):
        out |= u[i * R:(i + 1) * R] << (2 * i)
    return out


def unpack(p):
    return torch.cat([((p >> (2 * i)) & 3).to(torch.float32) - 1 for i in range(4)], 0)


def make_packed(master, linear_class, scale_dtype):
    """The packed checkpoint of a master: ternary values from WeightQuant, and the
    weight_scale that makes the layer compute the same function (bitlinear divides
    by it, autobitlinear multiplies by it)."""
    out = {}
    for name, w in master.items():
        if any(name.endswith(PROJ[k] + ".weight") for k in PROJ):
            t, s = weight_quant(w)
            out[name] = pack(t)
            ws = s if linear_class == "bitlinear" else 1.0 / s
            out[name[:-len("weight")] + "weight_scale"] = ws.reshape(1).to(scale_dtype)
        else:
            out[name] = w
    return out


# ---------------------------------------------------------------------------
# Independent forward pass (plain torch, follows the transformers BitNet model)
# ---------------------------------------------------------------------------
class Bugs:
    """Deliberate deviations, to measure how far each moves the logits."""
    def __init__(self, **kw):
        self.no_act_quant = kw.get("no_act_quant", False)
        self.drop_norm = kw.get("drop_norm", None)      # "attn_sub", "ffn_sub", "attn", "ffn", "final"
        self.rope_interleaved = kw.get("rope_interleaved", False)
        # float-rounding-sized relative noise on every projection output: stands in for
        # another implementation's different summation order
        self.noise_seed = kw.get("noise_seed", None)
        self.noise = kw.get("noise", 1e-7)


def linear_weights(ckpt, cfg):
    """Per projection: (ternary matrix, how the float output is scaled)."""
    q = cfg.get("quantization_config") or {}
    cls, mode = q.get("linear_class", "bitlinear"), q.get("quantization_mode", "offline")
    out = {}
    for name, w in ckpt.items():
        if not any(name.endswith(PROJ[k] + ".weight") for k in PROJ):
            continue
        base = name[:-len(".weight")]
        if mode == "online":
            t, s = weight_quant(w)
            out[base] = (t, ("div", s))
        else:
            t = unpack(w)
            ws = ckpt[base + ".weight_scale"].float().reshape(())
            out[base] = (t, ("div", ws) if cls == "bitlinear" else ("mul", ws))
    return out


def ref_forward(ckpt, cfg, ids, dtype=torch.float32, bugs=None, lin=None, quant_inputs=None):
    bugs = bugs or Bugs()
    lin = lin or linear_weights(ckpt, cfg)
    noise = torch.Generator().manual_seed(bugs.noise_seed) if bugs.noise_seed is not None else None
    d, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // H
    eps = cfg["rms_norm_eps"]
    theta = cfg["rope_theta"] if "rope_theta" in cfg else cfg["rope_parameters"]["rope_theta"]
    T = len(ids)
    W = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt.items()}

    def norm(x, wname, kind):
        if bugs.drop_norm == kind:
            return x
        var = x.pow(2).mean(-1, keepdim=True)
        return W[wname] * (x * torch.rsqrt(var + eps))

    def bitlinear(x, base):
        t, (op, s) = lin[base]
        t = t.to(dtype)
        if bugs.no_act_quant:
            y = x @ t.T
        else:
            xs = 127.0 / x.abs().amax(-1, keepdim=True).clamp(min=1e-5)
            v = x * xs
            if quant_inputs is not None:
                quant_inputs.append(v.detach().clone())
            xq = v.round().clamp(-128, 127)
            y = (xq @ t.T) / xs
        y = y / s.to(dtype) if op == "div" else y * s.to(dtype)
        if noise is not None:
            y = y * (1 + bugs.noise * torch.randn(y.shape, generator=noise, dtype=dtype))
        return y

    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    ang = torch.arange(T).float()[:, None] * inv_freq[None, :]
    cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)

    def rope(x):  # x: [T, heads, hd]
        c, s = cos[:, None, :], sin[:, None, :]
        if bugs.rope_interleaved:
            x1, x2 = x[..., 0::2], x[..., 1::2]
            return torch.stack((x1 * c - x2 * s, x2 * c + x1 * s), -1).flatten(-2)
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), -1)

    mask = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    layer_sum = torch.zeros_like(x)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = norm(x, p + "input_layernorm.weight", "attn")
        q = rope(bitlinear(h, p + "self_attn.q_proj").view(T, H, hd))
        k = rope(bitlinear(h, p + "self_attn.k_proj").view(T, KV, hd))
        v = bitlinear(h, p + "self_attn.v_proj").view(T, KV, hd)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        att = torch.einsum("thd,shd->hts", q, k) * hd ** -0.5 + mask
        att = torch.softmax(att, -1)
        a = torch.einsum("hts,shd->thd", att, v).reshape(T, d)
        a = norm(a, p + "self_attn.attn_sub_norm.weight", "attn_sub")
        o = bitlinear(a, p + "self_attn.o_proj")
        x = x + o
        layer_sum = layer_sum + o
        h = norm(x, p + "post_attention_layernorm.weight", "ffn")
        gte = bitlinear(h, p + "mlp.gate_proj")
        up = bitlinear(h, p + "mlp.up_proj")
        act = torch.relu(gte) ** 2 if cfg["hidden_act"] == "relu2" else torch.nn.functional.silu(gte)
        m = norm(act * up, p + "mlp.ffn_sub_norm.weight", "ffn_sub")
        dn = bitlinear(m, p + "mlp.down_proj")
        x = x + dn
        layer_sum = layer_sum + dn
    x = norm(x, "model.norm.weight", "final")
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    emb = W["model.embed_tokens.weight"][torch.tensor(ids)]
    dominance = (layer_sum.norm(dim=-1) / emb.norm(dim=-1)).min().item()
    return (x @ head.T).float(), dominance


def greedy(step_logits_fn, ids, n):
    """Greedy continuation, one full forward per step; returns the new tokens and the
    logits each was chosen from."""
    seq, steps = list(ids), []
    for _ in range(n):
        lg = step_logits_fn(seq)
        steps.append(lg)
        seq.append(int(lg.argmax()))
    return seq[len(ids):], torch.stack(steps)


def margins(logits):
    top = torch.topk(logits, 2, dim=-1).values
    return top[:, 0] - top[:, 1]


# ---------------------------------------------------------------------------
# transformers
# ---------------------------------------------------------------------------
class HF:
    def __init__(self):
        import transformers
        self.transformers = transformers
        self.version = transformers.__version__
        self.device = "cpu"

    def load(self, path, dtype):
        from transformers import AutoModelForCausalLM
        last = None
        for kw in ({"dtype": dtype, "output_loading_info": True}, {"torch_dtype": dtype, "output_loading_info": True},
                   {"dtype": dtype}):
            try:
                got = AutoModelForCausalLM.from_pretrained(path, **kw)
                break
            except TypeError as e:
                last = e
        else:
            raise last
        model, info = got if isinstance(got, tuple) else (got, {})
        bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if bad:
            raise RuntimeError("transformers did not load every weight: %s" % bad)
        model.eval()
        self.check(model, json.load(open(os.path.join(path, "config.json"))), dtype)
        return model

    def check(self, model, cfg, dtype):
        n_bit = sum(1 for m in model.modules() if type(m).__name__ in ("BitLinear", "AutoBitLinear"))
        want = 7 * cfg["num_hidden_layers"]
        if n_bit != want:
            raise RuntimeError("transformers made %d BitLinear/AutoBitLinear modules, expected %d" % (n_bit, want))
        dt = {p.dtype for p in model.parameters() if p.is_floating_point()}
        if dt != {dtype}:
            raise RuntimeError("model parameters are %s, not %s" % (dt, dtype))
        theta = cfg["rope_theta"] if "rope_theta" in cfg else cfg["rope_parameters"]["rope_theta"]
        hd = cfg["hidden_size"] // cfg["num_attention_heads"]
        want_f = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        rot = getattr(getattr(model, "model", None), "rotary_emb", None)
        if rot is None or not hasattr(rot, "inv_freq"):
            log("  (cannot find transformers' RoPE frequencies to check rope_theta)")
        elif not torch.allclose(rot.inv_freq.float().cpu(), want_f, rtol=1e-6, atol=0):
            raise RuntimeError("transformers' RoPE frequencies do not follow rope_theta=%g" % theta)
        tie = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        if tie != bool(cfg.get("tie_word_embeddings")):
            raise RuntimeError("lm_head tied=%s but config says %s" % (tie, cfg.get("tie_word_embeddings")))

    def logits(self, model, ids):
        with torch.no_grad():
            out = model(torch.tensor([ids], device=self.device)).logits[0]
        return out.float().cpu()


# ---------------------------------------------------------------------------
# Fixture assembly
# ---------------------------------------------------------------------------
def base_config(n_layer, theta, tied, style, eps, bos, eos):
    cfg = {
        "architectures": ["BitNetForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "hidden_act": "relu2",
        "hidden_size": 128,
        "initializer_range": 0.02,
        "intermediate_size": 256,
        "max_position_embeddings": 256,
        "model_type": "bitnet",
        "num_attention_heads": 4,
        "num_hidden_layers": n_layer,
        "num_key_value_heads": 2,
        "rms_norm_eps": eps,
        "tie_word_embeddings": tied,
        "use_cache": True,
        "vocab_size": VOCAB,
    }
    if style == "v4":       # the official release's config.json
        cfg["rope_theta"] = theta
        cfg["torch_dtype"] = "bfloat16"
    else:                   # what transformers 5 writes
        cfg["rope_parameters"] = {"rope_theta": theta, "rope_type": "default"}
        cfg["head_dim"] = 32
        cfg["dtype"] = "float32"
    return cfg


def with_quant(cfg, linear_class, mode):
    c = json.loads(json.dumps(cfg))
    c["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class, "quantization_mode": mode}
    return c


GROUPS = [
    # master model -> its fixtures
    dict(master="bf16_online_tied", dtype=torch.bfloat16, grid=True, n_layer=2, theta=500000.0, tied=True,
         style="v4", eps=1e-5, merges="string", shards=1, seed=1000,
         derived=[dict(name="packed_bitlinear_tied", linear_class="bitlinear", scale_dtype=torch.bfloat16)],
         checks=[dict(name="(check) packed autobitlinear, bf16 scale", linear_class="autobitlinear",
                      scale_dtype=torch.bfloat16)]),
    dict(master="f32_online_untied_sharded", dtype=torch.float32, grid=False, n_layer=2, theta=10000.0, tied=False,
         style="v5", eps=1e-6, merges="pairs", shards=2, seed=2000,
         derived=[dict(name="packed_autobitlinear_untied", linear_class="autobitlinear",
                       scale_dtype=torch.float32)],
         checks=[dict(name="(check) packed bitlinear, f32 scale", linear_class="bitlinear",
                      scale_dtype=torch.float32)]),
]


def save_checkpoint(folder, cfg, tensors, tok, tok_cfg, shards):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tok_cfg, f, ensure_ascii=False, indent=2)
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
        return
    names = sorted(tensors, key=lambda n: (0 if "embed" in n else 1 if ".layers.0." in n else 2, n))
    parts = [names[:len(names) // 2], names[len(names) // 2:]]
    weight_map, total = {}, 0
    for i, part in enumerate(parts):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(parts))
        write_safetensors(os.path.join(folder, fname), {n: tensors[n] for n in part})
        for n in part:
            weight_map[n] = fname
            total += tensors[n].numel() * tensors[n].element_size()
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def gguf_scale_name(hf_base):
    m = re.match(r"model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)_proj$", hf_base)
    gg = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate", "up": "ffn_up",
          "down": "ffn_down"}[m.group(3)]
    return "blk.%s.%s" % (m.group(1), gg)


def multiplicative_scale(op_s):
    """The per-tensor multiplier of the ternary values, as a float32 (what the model
    file stores)."""
    op, s = op_s
    s = s.float()
    return (1.0 / s).item() if op == "div" else s.item()


def write_reference(folder, source, versions, prompt, gen, logits, gen_logits, lin, notes):
    logits.contiguous().float().numpy().astype("<f4").tofile(os.path.join(folder, "logits.bin"))
    gen_logits.contiguous().float().numpy().astype("<f4").tofile(os.path.join(folder, "greedy_logits.bin"))
    with open(os.path.join(folder, "reference.txt"), "w") as f:
        f.write("# Written by tests/make_fixtures.py (%s).\n" % versions)
        f.write("# logits.bin: float32 little-endian [n_prompt][n_vocab], the logits of every prompt position.\n")
        f.write("# greedy_logits.bin: [n_greedy][n_vocab], the logits each greedy token was chosen from.\n")
        f.write("# scale: the float32 multiplier of each ternary tensor (ternary value * scale = weight).\n")
        for n in notes:
            f.write("# %s\n" % n)
        f.write("source %s\n" % source)
        f.write("n_vocab %d\n" % logits.shape[1])
        f.write("prompt %s\n" % " ".join(map(str, prompt)))
        f.write("greedy %s\n" % " ".join(map(str, gen)))
        f.write("greedy_min_margin %.6f\n" % margins(gen_logits).min().item())
        for base in sorted(lin, key=gguf_scale_name):
            f.write("scale %s %s\n" % (gguf_scale_name(base), float.hex(multiplicative_scale(lin[base][1]))))


def compare(a, b):
    """Per-position relative L2 error of a against b: median, max, and the share of
    positions within 1e-3 ("clean": no int8 rounding decision differed on the way);
    max abs error; argmax agreement."""
    rel = ((a - b).norm(dim=-1) / b.norm(dim=-1))
    return dict(median_rel=rel.median().item(), max_rel=rel.max().item(), max_abs=(a - b).abs().max().item(),
                clean=(rel <= 1e-3).float().mean().item(),
                argmax_agree=(a.argmax(-1) == b.argmax(-1)).float().mean().item())


def fmt(c):
    return "median rel %.2e, max rel %.2e, max abs %.2e, clean %3.0f%%, argmax agree %3.0f%%" % (
        c["median_rel"], c["max_rel"], c["max_abs"], 100 * c["clean"], 100 * c["argmax_agree"])


def calibrate(name, ckpt, cfg, prompt, ref32):
    """How far the logits move under float rounding alone, and under each bug."""
    out = {}
    lin = linear_weights(ckpt, cfg)
    ref64, _ = ref_forward(ckpt, cfg, prompt, dtype=torch.float64, lin=lin)
    out["float64_vs_float32"] = compare(ref64, ref32)
    for k in range(3):
        for eps in (1e-7, 5e-7):
            lg, _ = ref_forward(ckpt, cfg, prompt, bugs=Bugs(noise_seed=100 + k, noise=eps), lin=lin)
            out["noise_%g_%d" % (eps, k)] = compare(lg, ref32)
    for label, bugs in [("no_act_quant", Bugs(no_act_quant=True)),
                        ("drop_attn_sub_norm", Bugs(drop_norm="attn_sub")),
                        ("drop_ffn_sub_norm", Bugs(drop_norm="ffn_sub")),
                        ("drop_attn_norm", Bugs(drop_norm="attn")),
                        ("drop_final_norm", Bugs(drop_norm="final")),
                        ("rope_interleaved", Bugs(rope_interleaved=True))]:
        lg, _ = ref_forward(ckpt, cfg, prompt, bugs=bugs, lin=lin)
        out[label] = compare(lg, ref32)
    for k, v in out.items():
        log("    %-22s %s" % (k, fmt(v)))
    return out


def quantization_inputs(ckpt, cfg, lin, seq, dtype):
    vals = []
    ref_forward(ckpt, cfg, seq, dtype=dtype, lin=lin, quant_inputs=vals)
    return vals


def is_well_conditioned(ckpt, cfg, lin, seq):
    """Whether no int8 rounding decision of the forward over seq is near a tie.

    Two float32 implementations of the same model differ by a little everywhere
    (about 1e-6 of a quantization step on average here; the float32 and float64
    forwards stand in for them).  Where an activation lies that close to a rounding
    boundary k + 1/2, the two round it differently; the difference then grows through
    every later quantization of that token and of the tokens that attend to it, and
    the logits differ by as much as skipping quantization altogether would move them.
    So a fixture is kept only if the float32 and float64 forwards round every value
    alike and every value lies several times (--min-tie-distance) that stage's mean
    float32 error away from a boundary: another float32 implementation (ours) then
    makes the same decisions unless its errors are far larger than torch's.  Returns
    the smallest distance in those units."""
    a = quantization_inputs(ckpt, cfg, lin, seq, torch.float64)
    b = quantization_inputs(ckpt, cfg, lin, seq, torch.float32)
    worst = float("inf")
    for x, y in zip(a, b):
        if not torch.equal(x.round(), y.double().round()):
            return 0.0
        mean_err = (x - y.double()).abs().mean().item()
        ax = x.abs()
        dist = (ax - ax.floor() - 0.5).abs().min().item()
        worst = min(worst, dist / max(mean_err, 1e-12))
    return worst


def weight_tie_margin(ckpt):
    """The smallest relative distance of w * (1/absmean) from a rounding boundary over
    the master's projections: how far the converter's absmean (a float32 sum in
    another order) may stray before a ternary value changes."""
    worst = float("inf")
    for name, w in ckpt.items():
        if any(name.endswith(PROJ[k] + ".weight") for k in PROJ):
            _, sc = weight_quant(w)
            v = (w.float() * sc).abs().double()
            r = ((v - v.floor() - 0.5).abs() / v.clamp(min=1e-30)).min().item()
            if r > 0:  # exact ties (grid masters) are decided the same way by everyone
                worst = min(worst, r)
    return worst


def build_group(G, tok, tok_cfg, prompt, bos, eos, args, hf, report):
    cfg0 = base_config(G["n_layer"], G["theta"], G["tied"], G["style"], G["eps"], bos, eos)
    online_cfg = with_quant(cfg0, "autobitlinear", "online")
    for seed in range(G["seed"], G["seed"] + args.max_tries):
        # cheap checks first; the greedy continuation takes N_GREEDY forwards
        master = make_master(cfg0, seed, G["dtype"], G["tied"], grid=G["grid"])
        lin = linear_weights(master, online_cfg)
        lg, dom = ref_forward(master, online_cfg, prompt, lin=lin)
        why = None
        wmargin = weight_tie_margin(master)
        if wmargin < 1e-6:
            why = "a weight lies %.1e (relative) from a ternary rounding tie" % wmargin
        elif dom < 3.0:
            why = "the embedding is not small next to the layers (%.1f)" % dom
        elif is_well_conditioned(master, online_cfg, lin, prompt) < args.min_tie_distance:
            why = "an activation of the prompt is near a rounding tie"
        else:
            gen, gl = greedy(lambda s: ref_forward(master, online_cfg, s, lin=lin)[0][-1], prompt, N_GREEDY)
            m = margins(gl).min().item()
            cond = is_well_conditioned(master, online_cfg, lin, prompt + gen[:-1])
            if m < args.min_margin:
                why = "a greedy step is a near-tie (top-2 gap %.4f)" % m
            elif cond < args.min_tie_distance:
                why = "an activation of the continuation is near a rounding tie"
        log("  seed %d: %s" % (seed, "rejected: " + why if why else
                                 "layers/embedding %.1f, logit std %.2f, greedy min margin %.3f, nearest rounding "
                                 "tie %.1f mean float32 errors away, weights %.1e from a tie" % (
                                     dom, lg.std(dim=-1).mean().item(), m, cond, wmargin)))
        if not why:
            break
    else:
        raise RuntimeError("no seed gave a well-conditioned model for %s" % G["master"])

    results = [(G["master"], online_cfg, master, lin, lg, gen, gl)]
    for D in G["derived"] + G["checks"]:
        cfg = with_quant(cfg0, D["linear_class"], "offline")
        ckpt = make_packed(master, D["linear_class"], D["scale_dtype"])
        dlin = linear_weights(ckpt, cfg)
        dlg, _ = ref_forward(ckpt, cfg, prompt, lin=dlin)
        dgen, dgl = greedy(lambda s: ref_forward(ckpt, cfg, s, lin=dlin)[0][-1], prompt, N_GREEDY)
        if dgen != gen:
            raise RuntimeError("%s does not continue like %s" % (D["name"], G["master"]))
        results.append((D["name"], cfg, ckpt, dlin, dlg, dgen, dgl))

    base_logits, hf_master, master_agrees = results[0][4], None, True
    for name, cfg, ckpt, lin, lg, gen, gl in results:
        entry = {"seed": seed, "config": cfg}
        # every packed checkpoint computes the function of its online master: its ternary
        # values come from WeightQuant of the master, and its weight_scale is exact (f32,
        # or bf16 where the master's absmeans are powers of two)
        same_as_master = name != results[0][0]
        if name != results[0][0]:
            c = compare(lg, base_logits)
            log("  %s vs %s (independent implementation): %s" % (name, results[0][0], fmt(c)))
            entry["vs_online_master"] = c
        check_only = name.startswith("(check)")
        folder = os.path.join(args.out, "_check" if check_only else name)
        save_checkpoint(folder, cfg, ckpt, tok, tok_cfg, G["shards"] if name == G["master"] else 1)
        source, notes = "independent float64", []
        full64, _ = ref_forward(ckpt, cfg, prompt + gen[:-1], dtype=torch.float64, lin=lin)
        ref = (full64[:len(prompt)], gen, full64[len(prompt) - 1:])
        if hf is not None:
            try:
                hl, hgen, hgl, agree = transformers_reference(hf, name, folder, cfg, prompt, ref, entry)
                if name == results[0][0]:
                    # transformers defines the reference: if it disagrees with the independent
                    # implementation on the master, the independent one is wrong
                    master_agrees = agree
                    if not agree:
                        notes.append("the independent implementation disagrees with transformers here")
                elif not agree and master_agrees:
                    # ...but where they agreed on the master, a disagreement on a packed
                    # layout means transformers did not load that layout as documented
                    raise RuntimeError("transformers' result for this layout disagrees with the "
                                       "independent implementation, which agreed on the master")
                source, ref = "transformers float64", (hl, hgen, hgl)
                if name == results[0][0]:
                    hf_master = ref
                elif same_as_master and hf_master is not None:
                    c = compare(hl, hf_master[0])
                    log("  %s reproduces %s under transformers: %s" % (name, results[0][0], fmt(c)))
                    entry["transformers_vs_master"] = c
                    if c["clean"] < 0.75 or hgen != hf_master[1]:
                        raise RuntimeError("%s does not reproduce %s" % (name, results[0][0]))
            except Exception as e:  # recorded: the fixture says where its numbers come from
                traceback.print_exc()
                entry["transformers_error"] = str(e)[:500]
                if same_as_master and hf_master is not None:
                    source, ref = "transformers float64 on the online master checkpoint", hf_master
                    notes.append("transformers failed on this layout (%s); the logits are transformers' on %s, "
                                 "which computes the same function" % (str(e).replace("\n", " ")[:160], results[0][0]))
                else:
                    notes.append("transformers failed (%s); logits from the independent implementation" %
                                 str(e).replace("\n", " ")[:200])
        if check_only:
            shutil.rmtree(folder)
            report[name] = entry
            continue
        versions = "torch %s%s" % (torch.__version__, ", transformers " + hf.version if hf else "")
        write_reference(folder, source, versions, prompt, ref[1], ref[0], ref[2], lin, notes)
        entry["source"] = source
        entry["greedy"] = ref[1]
        entry["greedy_margins"] = [round(x, 4) for x in margins(ref[2]).tolist()]
        log("  calibration for %s (the same model under each change, vs its float32 logits):" % name)
        entry["calibration"] = calibrate(name, ckpt, cfg, prompt, lg)
        report[name] = entry


def transformers_reference(hf, name, folder, cfg, prompt, ref64, entry):
    """transformers' logits for the prompt and its greedy continuation.

    The reference runs with float64 parameters: transformers still makes every
    quantization decision in float32 (ActQuant, WeightQuant and the norms cast to
    float32), but its matmuls no longer add float32 summation noise.  That noise
    (AutoBitLinear multiplies dequantized floats) is large enough to flip int8
    roundings in most sequences; the log shows how far the float32 run lands."""
    t0 = time.time()
    model = hf.load(folder, torch.float64)
    hl = hf.logits(model, prompt)
    hgen, hgl = greedy(lambda s: hf.logits(model, s)[-1], prompt, N_GREEDY)
    c = compare(hl, ref64[0])
    log("  %s: transformers %s (float64) in %.1fs vs the independent float64 forward: %s" % (
        name, hf.version, time.time() - t0, fmt(c)))
    entry["transformers64_vs_independent64"] = c
    if hgen != ref64[1]:
        log("  WARNING %s: greedy continuations differ: transformers %s, independent %s" % (name, hgen, ref64[1]))
        entry["greedy_mismatch"] = True
    agree = c["clean"] >= 0.75 and c["max_rel"] <= 0.25 and hgen == ref64[1]
    if not agree:
        log("  WARNING %s: transformers and the independent implementation disagree" % name)
    try:
        model32 = hf.load(folder, torch.float32)
        c32 = compare(hf.logits(model32, prompt), hl)
        log("  %s: transformers float32 vs float64: %s" % (name, fmt(c32)))
        entry["transformers32_vs_transformers64"] = c32
    except Exception as e:
        log("  %s: transformers float32 run failed: %s" % (name, e))
    return hl, hgen, hgl, agree


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder to write the fixture folders into")
    ap.add_argument("--no-transformers", action="store_true", help="skip transformers (local testing)")
    ap.add_argument("--min-margin", type=float, default=0.005, help="smallest top-2 logit gap allowed on the greedy path")
    ap.add_argument("--min-tie-distance", type=float, default=5.0,
                    help="smallest distance of an activation from a rounding tie, in mean float32 errors")
    ap.add_argument("--max-tries", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    os.makedirs(args.out, exist_ok=True)
    log("python %s, torch %s" % (sys.version.split()[0], torch.__version__))

    hf = None
    if not args.no_transformers:
        hf = HF()
        log("transformers %s" % hf.version)

    report, failed = {}, []
    for G in GROUPS:
        log("== %s" % G["master"])
        tok, tok_cfg, vocab, merges, specials = tokenizer_files(G["merges"])
        bos, eos = specials["<|begin_of_text|>"], specials["<|eot_id|>"]
        prompt = [bos] + bpe_encode(PROMPT_TEXT, vocab, merges)
        try:
            from tokenizers import Tokenizer
            hf_ids = Tokenizer.from_str(json.dumps(tok)).encode(PROMPT_TEXT).ids
            log("  tokenizers: %s" % ("same ids as ours" if hf_ids == prompt else "DIFFERENT ids %s vs ours %s" % (hf_ids, prompt)))
            prompt = hf_ids
        except ImportError:
            log("  (tokenizers not installed; prompt ids from our own encoder)")
        except Exception as e:
            log("  tokenizers could not read our tokenizer.json (%s); prompt ids from our own encoder" % e)
        log("  prompt (%d tokens): %s" % (len(prompt), prompt))
        try:
            build_group(G, tok, tok_cfg, prompt, bos, eos, args, hf, report)
        except Exception:
            traceback.print_exc()
            failed.append(G["master"])
    report["_prompt_text"] = PROMPT_TEXT
    with open(os.path.join(args.out, "calibration.json"), "w") as f:
        json.dump(report, f, indent=1)
    if failed:
        log("FAILED: %s" % failed)
        return 1
    log("done: %s" % sorted(k for k in report if not k.startswith("(") and not k.startswith("_")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
