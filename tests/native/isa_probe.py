"""Print the SHA-256 of every output of the op grid, a small Llama and the real MiniLM,
computed under the mode: ``python -m tests.native.isa_probe``. test_isa.py runs it under
every SAMEBITS_ISA path and every ATEN_CPU_CAPABILITY level the CPU supports and
requires one set of hashes. Also prints the kernel path that ran."""

import hashlib
import json
import zlib

import numpy as np
import torch
import torch.nn.functional as F

import samebits
from samebits import _native


def portable_randn(*shape: int, seed: int) -> torch.Tensor:
    """Normal samples from numpy: torch.randn's values change with ATEN_CPU_CAPABILITY
    (its vectorized Box-Muller), which would change the inputs, not the kernels."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()).hexdigest()


def grid_outputs() -> dict[str, torch.Tensor]:
    from tests.ops import test_grid
    from tests.ops.test_grid import ROW_OPS, K

    # the grid's weights (module globals its ops read) from numpy too
    for i, name in enumerate(("W", "Wkn", "B", "LNW", "LNB")):
        setattr(test_grid, name, portable_randn(*getattr(test_grid, name).shape, seed=100 + i))
    out = {}
    for name, op in sorted(ROW_OPS.items()):
        x = portable_randn(7, K, seed=zlib.crc32(name.encode()))
        for dtype in (torch.float32, torch.bfloat16):
            out[f"grid/{name}/{dtype}"] = op(x.to(dtype))
    return out


def llama_outputs() -> dict[str, torch.Tensor]:
    from tests.models.test_llama import make_llama, padded, prompts

    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        lm = make_llama(torch.float32)
        with torch.no_grad():  # weights from numpy, for the reason portable_randn gives
            for i, (_, p) in enumerate(sorted(lm.named_parameters())):
                p.copy_(portable_randn(*p.shape, seed=i) * (0.02 if p.dim() > 1 else 1.0))
        lm = lm.to(dtype)
        ids, am = padded(prompts(), "left")
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        out[f"llama/{dtype}"] = lm(input_ids=ids, attention_mask=am, position_ids=pos).logits
    return out


def minilm_outputs() -> dict[str, torch.Tensor]:
    from samebits.models import load_sentence_model
    from tests.models.test_minilm import TEXTS

    model = load_sentence_model()
    emb = model.encode(TEXTS, batch_size=5, convert_to_tensor=True, show_progress_bar=False)
    return {"minilm": emb}


def conv_outputs() -> dict[str, torch.Tensor]:
    """Every convolution configuration of tests/ops/test_conv.py (GEMM and TAP paths)."""
    from tests.ops.test_conv import CONFIGS, CONV

    out = {}
    for i, (name, (item, wshape, kw)) in enumerate(sorted(CONFIGS.items())):
        kw = dict(kw)
        bias = portable_randn(wshape[0], seed=300 + i) if kw.pop("bias", True) else None
        w = portable_randn(*wshape, seed=200 + i) * 0.3
        x = portable_randn(3, *item, seed=400 + i)
        for dtype in (torch.float32, torch.bfloat16):
            b = None if bias is None else bias.to(dtype)
            out[f"conv/{name}/{dtype}"] = CONV[len(wshape) - 2](x.to(dtype), w.to(dtype), b, **kw)
    return out


def vision_op_outputs() -> dict[str, torch.Tensor]:
    """Pooling, channel norms and resampling cases of tests/ops (torch's own kernels
    for some of them differ between dispatch levels)."""
    from tests.ops import test_channel_norms, test_pooling, test_resample

    out = {}
    for i, (kind, name) in enumerate(test_pooling.CASES):
        item = (test_pooling.AVG if kind == "avg" else test_pooling.ADAPTIVE)[name][1]
        out[f"pool/{kind}/{name}"] = test_pooling.call(
            kind, name, portable_randn(3, *item, seed=500 + i)
        )
    for i, name in enumerate(sorted(test_channel_norms.SHAPES)):
        m = test_channel_norms.make(name, torch.float32)
        with torch.no_grad():  # parameters from numpy too
            for j, p in enumerate(m.parameters()):
                p.copy_(portable_randn(*p.shape, seed=600 + 10 * i + j))
            if getattr(m, "running_var", None) is not None:
                m.running_mean.copy_(portable_randn(6, seed=650 + i))
                m.running_var.copy_(portable_randn(6, seed=660 + i).abs() + 0.5)
            x = portable_randn(3, *test_channel_norms.SHAPES[name], seed=700 + i)
            out[f"norm/{name}"] = m(x)
    for i, (name, (item, kw)) in enumerate(sorted(test_resample.CASES.items())):
        x = portable_randn(2, *item, seed=800 + i)
        for dtype in (torch.float32, torch.bfloat16):
            out[f"resample/{name}/{dtype}"] = F.interpolate(x.to(dtype), **kw)
    return out


def sequence_model_outputs() -> dict[str, torch.Tensor]:
    """An LSTM over packed mixed lengths, a GRU, and the fused encoder fast path with a
    padding mask (weights and inputs from numpy)."""
    from torch.nn.utils.rnn import pack_padded_sequence

    from tests.ops import test_fused_attention, test_recurrent

    out = {}
    for i, name in enumerate(("lstm_stacked_bidir", "gru_stacked_bidir")):
        m = test_recurrent.make(name, torch.float32, True)
        with torch.no_grad():
            for j, p in enumerate(m.parameters()):
                p.copy_(portable_randn(*p.shape, seed=900 + 50 * i + j) * 0.3)
            x = portable_randn(4, 9, test_recurrent.FEAT, seed=990 + i)
            res = m(pack_padded_sequence(x, torch.tensor([9, 7, 4, 2]), batch_first=True))
        out[f"rnn/{name}"] = res[0].data
    enc = test_fused_attention.encoder(torch.float32)
    with torch.no_grad():
        for j, p in enumerate(enc.parameters()):
            p.copy_(portable_randn(*p.shape, seed=1000 + j) * 0.3)
        x = portable_randn(3, 7, test_fused_attention.E, seed=1100)
        pad = torch.tensor([[False] * 7, [False] * 4 + [True] * 3, [False] * 2 + [True] * 5])
        out["encoder_fast_path"] = enc(x, src_key_padding_mask=pad)[~pad]
    return out


def loss_and_retrieval_outputs() -> dict[str, torch.Tensor]:
    """The kernels of issue 26 (MoE grouped GEMM, losses, distances, norms, bags, grid
    sampling, antialiased resampling, scans, the sampler), inputs from numpy; cumsum
    and cumprod are torch's own kernels, held to one set of bits here too."""
    x = portable_randn(6, 24, seed=1200)
    w = portable_randn(4, 16, 24, seed=1201)
    offs = torch.tensor([1, 1, 4, 6], dtype=torch.int32)
    target = torch.tensor([3, -100, 7, 0, 23, 5])
    emb, bags = portable_randn(30, 8, seed=1202), torch.tensor([1, 4, 4, 9, 29, 0, 3])
    img, grid = portable_randn(2, 3, 9, 11, seed=1203), portable_randn(2, 5, 6, 2, seed=1204)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        xd = x.to(dtype)
        out[f"grouped_mm/{dtype}"] = torch._grouped_mm(xd, w.to(dtype).transpose(1, 2), offs)
        out[f"logsumexp/{dtype}"] = torch.logsumexp(xd * 4, -1)
        for p in (1.0, 3.0, float("inf")):
            out[f"norm_{p}/{dtype}"] = torch.linalg.vector_norm(xd, p, -1)
        auto = "use_mm_for_euclid_dist_if_necessary"
        for p, mode in ((2.0, auto), (2.0, "use_mm_for_euclid_dist"), (1.0, auto), (0.5, auto)):
            out[f"cdist_{p}_{mode}/{dtype}"] = torch.cdist(xd, xd[:4], p, mode)
        out[f"cross_entropy/{dtype}"] = F.cross_entropy(xd, target, reduction="none")
        out[f"cross_entropy_smooth/{dtype}"] = F.cross_entropy(xd, target, label_smoothing=0.1)
        e = emb.to(dtype)
        psw = portable_randn(7, seed=1205).abs().to(dtype)
        out[f"bag_sum/{dtype}"] = F.embedding_bag(bags, e, torch.tensor([0, 3]), mode="sum",
                                                  per_sample_weights=psw)  # fmt: skip
        for mode in ("mean", "max"):
            out[f"bag_{mode}/{dtype}"] = F.embedding_bag(bags, e, torch.tensor([0, 3]), mode=mode)
        for mode in ("bilinear", "nearest", "bicubic"):
            out[f"grid_{mode}/{dtype}"] = F.grid_sample(
                img.to(dtype), grid.to(dtype), mode=mode, padding_mode="reflection",
                align_corners=False,
            )  # fmt: skip
        for mode in ("bilinear", "bicubic"):
            out[f"aa_{mode}/{dtype}"] = F.interpolate(img.to(dtype), size=(4, 5), mode=mode,
                                                      antialias=True)  # fmt: skip
        out[f"cumsum/{dtype}"] = xd.cumsum(-1)
        out[f"cumprod/{dtype}"] = (1 + xd * 0.01).cumprod(-1)
        probs = torch.softmax(xd.float(), -1).to(dtype)
        draw = torch.multinomial(probs, 3, generator=torch.Generator().manual_seed(7))
        out[f"multinomial/{dtype}"] = draw
    return out


def main() -> None:
    torch.set_num_threads(2)
    with torch.inference_mode(), samebits.batch_invariant():
        outs = {
            **grid_outputs(),
            **conv_outputs(),
            **vision_op_outputs(),
            **llama_outputs(),
            **minilm_outputs(),
            **loss_and_retrieval_outputs(),
        }
    print(
        json.dumps(
            {
                "isa": _native.native_info()["isa"],
                "aten": torch.backends.cpu.get_cpu_capability(),
                "hashes": {k: digest(v) for k, v in outs.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
