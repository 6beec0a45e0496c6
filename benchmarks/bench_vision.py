"""Vision models and convolutions under the mode vs native: `python benchmarks/bench_vision.py`.

* ResNet-50-, ViT-Small/16- and ConvNeXt-Tiny-shaped models built from transformers
  configs (random weights), batch 8 at 224x224, float32 and bfloat16.
* Depthwise (ConvNeXt's 7x7, MobileNet's 3x3) and pointwise (1x1) convolutions alone.

Ratio = native time / invariant time (speed ratio; the bar is 0.8), median of
interleaved repeats. `--channels-last` runs every input (and so every model) in
channels-last memory, for native and invariant alike.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _harness import header, ratio, table  # noqa: E402


@dataclass(frozen=True)
class Settings:
    batch: int = 8
    size: int = 224
    repeats: int = 5
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    channels_last: bool = False
    models: tuple[str, ...] = ("resnet50", "vit_small", "convnext_tiny")


def build(name: str, size: int) -> torch.nn.Module:
    import transformers as T

    torch.manual_seed(0)
    if name == "resnet50":  # the config's defaults are ResNet-50's shape
        return T.ResNetModel(T.ResNetConfig())
    if name == "vit_small":
        return T.ViTModel(T.ViTConfig(hidden_size=384, num_hidden_layers=12,
                                      num_attention_heads=6, intermediate_size=1536,
                                      image_size=size),
                          add_pooling_layer=False)  # fmt: skip
    if name == "convnext_tiny":  # the config's defaults are ConvNeXt-T's shape
        return T.ConvNextModel(T.ConvNextConfig())
    raise ValueError(f"unknown model {name!r}")


def fmt(x: torch.Tensor, s: Settings) -> torch.Tensor:
    return x.to(memory_format=torch.channels_last) if s.channels_last and x.dim() == 4 else x


def models(rows: list[list[str]], s: Settings) -> None:
    for name in s.models:
        for dt in s.dtypes:
            dtype = getattr(torch, dt)
            model = build(name, s.size).eval().to(dtype)
            if s.channels_last:
                model = model.to(memory_format=torch.channels_last)
            x = fmt(torch.randn(s.batch, 3, s.size, s.size).to(dtype), s)

            def run(model=model, x=x):
                with torch.inference_mode():
                    model(pixel_values=x)

            r = ratio(run, repeats=s.repeats, min_time=0.0)
            rows.append([f"{name}, batch {s.batch} at {s.size}x{s.size}", dt, f"{r:.2f}"])
            print(rows[-1], flush=True)


CONVS = {  # name -> (input (N, C, H, W), weight, kwargs)
    "depthwise 7x7, 96 ch at 56x56 (ConvNeXt-T stage 1)": ((8, 96, 56, 56), (96, 1, 7, 7),
                                                           dict(padding=3, groups=96)),
    "depthwise 3x3, 144 ch at 56x56 (MobileNetV2)": ((8, 144, 56, 56), (144, 1, 3, 3),
                                                     dict(padding=1, groups=144)),
    "pointwise 1x1, 256 -> 64 at 56x56 (ResNet-50)": ((8, 256, 56, 56), (64, 256, 1, 1), {}),
    "3x3, 64 -> 64 at 56x56 (ResNet-50)": ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
}  # fmt: skip


def convs(rows: list[list[str]], s: Settings) -> None:
    g = torch.Generator().manual_seed(0)
    for name, (xs, ws, kw) in CONVS.items():
        for dt in s.dtypes:
            dtype = getattr(torch, dt)
            x = fmt(torch.randn(*xs, generator=g).to(dtype), s)
            w = torch.randn(*ws, generator=g).to(dtype)

            def run(x=x, w=w, kw=kw):
                with torch.inference_mode():
                    F.conv2d(x, w, **kw)

            r = ratio(run, repeats=s.repeats, min_time=0.05)
            rows.append([name, dt, f"{r:.2f}"])
            print(rows[-1], flush=True)


def parse() -> Settings:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Settings()
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--size", type=int, default=d.size)
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--dtypes", nargs="+", default=list(d.dtypes), choices=["float32", "bfloat16"])
    p.add_argument("--models", nargs="*", default=list(d.models),
                   choices=["resnet50", "vit_small", "convnext_tiny"])  # fmt: skip
    p.add_argument("--channels-last", action="store_true")
    a = p.parse_args()
    return Settings(a.batch, a.size, a.repeats, tuple(a.dtypes), a.channels_last, tuple(a.models))


def main() -> None:
    s = parse()
    print(header("bench_vision: vision models and convolutions, invariant / native"))
    print(f"memory format: {'channels_last' if s.channels_last else 'contiguous (NCHW)'}\n")
    rows: list[list[str]] = []
    convs(rows, s)
    models(rows, s)
    print()
    print(table(rows, ["workload", "dtype", "speed ratio (native / invariant)"]))


if __name__ == "__main__":
    main()
