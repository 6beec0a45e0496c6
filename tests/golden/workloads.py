"""The golden workloads: a fixed set of computations under the mode whose output bits
are written down, as SHA-256 hashes, in tests/golden/hashes.json. Every machine and
every torch version in the supported range must reproduce them (tests/test_golden.py),
which turns each new CPU a developer or CI runs on into a cross-CPU test.

Nothing here draws from torch's random generators: weights and inputs come from an
integer hash of (name, index) turned into floats by exact operations (``fill``), so the
bits do not depend on torch's RNG, its dispatch level or the order in which a library
initializes its modules.

Regenerate, only after a deliberate change of order or formula (say which in the
commit), with::

    .venv/bin/python -m tests.golden.workloads --write

and without ``--write`` to print each workload's hash next to the committed one.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import samebits

HASHES = Path(__file__).with_name("hashes.json")


def fill(shape, key: str, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """Values in [-scale, scale) from an integer hash of (key, index): a 64-bit
    multiply-xorshift on int64 (exact), the top 24 bits scaled by 2^-23 (exact), then
    times scale (one rounding). The same values on every machine and torch version."""
    n = 1
    for s in shape:
        n *= int(s)
    i = torch.arange(n, dtype=torch.int64) + (zlib.crc32(key.encode()) << 20)
    h = i * 0x5851F42D4C957F2D + 0x14057B7EF767814F
    h = h ^ (h >> 29)
    h = h * 0x2545F4914F6CDD1D
    h = h ^ (h >> 32)
    u = ((h >> 8) & 0xFFFFFF).to(torch.float32) * 2.0**-23 - 1.0  # [-1, 1), exact
    return (u * scale).reshape(*shape).to(dtype)


def fill_module(module: torch.nn.Module, prefix: str, std: float = 0.05) -> torch.nn.Module:
    """Every parameter and buffer of ``module`` from ``fill``: norm weights near 1, biases
    and running means near 0, running variances near 1."""
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.dtype.is_floating_point:
                continue
            key = f"{prefix}.{name}"
            v = fill(t.shape, key, std)
            if name.endswith(("norm.weight", "ln.weight", "layernorm.weight", "running_var")) or (
                t.dim() == 1 and "norm" in name and name.endswith("weight")
            ):
                v = 1.0 + v
            t.copy_(v.to(t.dtype))
    return module


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(
            t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()
        )
    return h.hexdigest()


# ---------------------------------------------------------------- workloads
def op_grid() -> dict[str, str]:
    out = {}
    for dt in (torch.float32, torch.bfloat16):
        name = str(dt)[6:]
        x, w, b = (
            fill((7, 96), "x", 2.0, dt),
            fill((40, 96), "w", 0.2, dt),
            fill((40,), "b", 0.5, dt),
        )
        s = fill((6, 131), "s", 8.0, dt)
        q, k, v = (fill((2, 4, 9, 16), key, 1.0, dt) for key in "qkv")
        img, cw = fill((2, 3, 12, 12), "img", 1.0, dt), fill((8, 3, 3, 3), "cw", 0.3, dt)
        dw = fill((8, 1, 3, 3), "dw", 0.3, dt)
        pos = fill((7, 96), "pos", 3.0, dt).abs() + 0.01
        labels = (fill((6,), "labels", 1.0).abs() * 131).to(torch.int64)
        bag_ids = (fill((20,), "bag_ids", 1.0).abs() * 40).to(torch.int64)
        bag_offsets = torch.tensor([0, 3, 3, 11])
        grid = fill((2, 5, 7, 2), "grid", 1.1, dt)
        with samebits.batch_invariant():
            h = F.conv2d(img, cw, padding=1)
            res = {
                "linear": F.linear(x, w, b),
                "matmul": x @ w.t(),
                "bmm": torch.bmm(q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2)),
                "softmax": torch.softmax(s, -1),
                "log_softmax": torch.log_softmax(s, -1),
                "layer_norm": F.layer_norm(x, (96,), fill((96,), "lnw", 1.0, dt), None),
                "rms_norm": F.rms_norm(x, (96,), None, 1e-6),
                "sum": torch.stack([x.sum(), x.sum(0).sum(), x.mean(-1).sum()]),
                "var": x.var(-1),
                "sdpa": F.scaled_dot_product_attention(q, k, v, is_causal=True),
                "conv2d": h,
                "depthwise": F.conv2d(h, dw, groups=8, padding=1),
                "logsumexp": torch.logsumexp(s, -1),
                "cross_entropy": torch.stack(
                    [
                        F.cross_entropy(s.float(), labels),
                        F.cross_entropy(s.float(), labels, label_smoothing=0.1),
                    ]
                ),
                "cdist": torch.cdist(x[:4].float(), x[4:].float()),
                "norms": torch.stack(
                    [torch.linalg.vector_norm(x, ord, -1) for ord in (1, 2, 3.5, float("inf"))]
                ),
                "embedding_bag": F.embedding_bag(bag_ids, w, bag_offsets, mode="mean"),
                "grid_sample": F.grid_sample(img, grid, align_corners=False),
                "elementwise": torch.stack(
                    [
                        F.gelu(x),
                        F.gelu(x, approximate="tanh"),
                        F.silu(x),
                        torch.sigmoid(x),
                        torch.tanh(x),
                        torch.exp(x),
                        torch.erf(x),
                        torch.sin(x),
                        torch.cos(x),
                        torch.log(pos),
                        torch.pow(pos, 2.5),
                        torch.rsqrt(pos),
                        torch.expm1(x),
                        torch.log1p(pos),
                        torch.add(x, pos, alpha=0.3),
                        torch.atan2(x, pos),
                    ]
                ),  # fmt: skip
            }
        for op, t in res.items():
            out[f"ops/{op}/{name}"] = digest(t)
    return out


def minilm() -> dict[str, str]:
    from samebits.models import load_sentence_model

    st = load_sentence_model()
    texts = [line.strip() for line in (Path(samebits.__file__).parent / "data" / "demo_texts.txt")
             .read_text().splitlines() if line.strip()][:8]  # fmt: skip
    with samebits.batch_invariant(), torch.inference_mode():
        emb = st.encode(texts, batch_size=8, convert_to_tensor=True)
    return {"minilm/embeddings": digest(emb)}


def tiny_llama(dtype) -> dict[str, str]:
    import transformers

    cfg = transformers.LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    with samebits.batch_invariant():
        lm = fill_module(transformers.LlamaForCausalLM(cfg), "llama").to(dtype).eval()
    lens = (6, 3, 9)
    ids = torch.zeros(3, 9, dtype=torch.long)
    am = torch.zeros_like(ids)
    for i, n in enumerate(lens):  # left padding
        ids[i, 9 - n :] = (torch.arange(n) * 37 + 11 * i + 5) % 255 + 1
        am[i, 9 - n :] = 1
    name = str(dtype)[6:]
    with samebits.batch_invariant(), torch.no_grad():
        logits = lm(input_ids=ids, attention_mask=am).logits
        gen = lm.generate(
            input_ids=ids, attention_mask=am, max_new_tokens=6, do_sample=False, pad_token_id=0
        )
    return {f"llama/{name}/logits": digest(logits), f"llama/{name}/generate": digest(gen)}


def cnn() -> dict[str, str]:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.GELU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5),
    )  # fmt: skip
    fill_module(net, "cnn", 0.3).eval()
    x = fill((3, 3, 16, 16), "cnn.x")
    with samebits.batch_invariant(), torch.no_grad():
        return {"cnn/logits": digest(net(x))}


def lstm() -> dict[str, str]:
    rnn = fill_module(torch.nn.LSTM(12, 16, num_layers=2, batch_first=True), "lstm", 0.2)
    x = fill((3, 7, 12), "lstm.x")
    with samebits.batch_invariant(), torch.no_grad():
        out, (h, c) = rnn(x)
    return {"lstm/outputs": digest(out, h, c)}


def whisper_encoder() -> dict[str, str]:
    import transformers

    cfg = transformers.WhisperConfig(
        d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, num_mel_bins=16,
        max_source_positions=20, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1,
    )  # fmt: skip
    with samebits.batch_invariant():
        enc = fill_module(transformers.WhisperModel(cfg).encoder, "whisper").eval()
    feats = fill((2, 16, 40), "whisper.x")
    with samebits.batch_invariant(), torch.no_grad():
        return {"whisper/encoder": digest(enc(feats).last_hidden_state)}


def moe(dtype) -> dict[str, str]:
    """A tiny Mixtral: transformers routes its experts through aten::_grouped_mm (and
    counts tokens per expert with histc)."""
    import transformers

    cfg = transformers.MixtralConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        num_local_experts=4, num_experts_per_tok=2,
    )  # fmt: skip
    with samebits.batch_invariant():
        lm = fill_module(transformers.MixtralForCausalLM(cfg), "mixtral").to(dtype).eval()
    ids = torch.zeros(2, 7, dtype=torch.long)
    am = torch.zeros_like(ids)
    for i, n in enumerate((7, 4)):  # left padding
        ids[i, 7 - n :] = (torch.arange(n) * 29 + 13 * i + 3) % 127 + 1
        am[i, 7 - n :] = 1
    with samebits.batch_invariant(), torch.no_grad():
        logits = lm(input_ids=ids, attention_mask=am).logits
    return {f"mixtral/{str(dtype)[6:]}/logits": digest(logits)}


WORKLOADS: dict[str, Callable[[], dict[str, str]]] = {
    "ops": op_grid,
    "minilm": minilm,
    "llama-float32": lambda: tiny_llama(torch.float32),
    "llama-bfloat16": lambda: tiny_llama(torch.bfloat16),
    "cnn": cnn,
    "lstm": lstm,
    "whisper": whisper_encoder,
    "mixtral-float32": lambda: moe(torch.float32),
    "mixtral-bfloat16": lambda: moe(torch.bfloat16),
}


def compute() -> dict[str, str]:
    out: dict[str, str] = {}
    for run in WORKLOADS.values():
        out.update(run())
    return dict(sorted(out.items()))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    feats = samebits.native_info()["cpu_features"]
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in feats)
    return f"{model} ({platform.machine()}; {flags or 'no avx2'}), torch {torch.__version__}"


def main(argv: list[str]) -> int:
    got = compute()
    if "--write" in argv:
        HASHES.write_text(
            json.dumps({"made_on": machine(), "hashes": got}, indent=1, sort_keys=True) + "\n"
        )
        print(f"wrote {len(got)} hashes to {HASHES}")
        return 0
    want = json.loads(HASHES.read_text())["hashes"] if HASHES.exists() else {}
    bad = 0
    for k, v in got.items():
        same = want.get(k) == v
        bad += not same
        print(f"{'ok ' if same else 'DIFF'} {k} {v[:16]} {'' if same else want.get(k, '-')[:16]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
