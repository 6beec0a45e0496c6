"""Vision models from transformers configs (random weights, fixed seed) and a plain
torch CNN with BatchNorm: every image's outputs have the same bits alone and at any
position of batches of other sizes, at 1..3 threads, in float32 and bfloat16."""

import pytest
import torch
import torch.nn as nn
import transformers as T

import samebits
from tests.conftest import same_bits

SIZE = 32


def plain_cnn():
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip
    with torch.no_grad():
        for mod in m:
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.normal_()
                mod.bias.normal_()
    return m


MODELS = {
    "vit": lambda: T.ViTForImageClassification(T.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        image_size=SIZE, patch_size=8, num_labels=5)),
    "convnext": lambda: T.ConvNextForImageClassification(T.ConvNextConfig(
        hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=SIZE, num_labels=5)),
    "resnet": lambda: T.ResNetForImageClassification(T.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="bottleneck",
        num_labels=5)),
    "mobilenetv2": lambda: T.MobileNetV2ForImageClassification(T.MobileNetV2Config(
        image_size=SIZE, depth_multiplier=0.25, num_labels=5)),
    "plain_cnn": plain_cnn,
}  # fmt: skip


def build(name, dtype):
    torch.manual_seed(0)
    return MODELS[name]().eval().to(dtype)


def logits(model, x):
    out = model(x) if isinstance(model, nn.Sequential) else model(pixel_values=x).logits
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_vision_model_invariant_to_batch_position_threads(name, dtype, threads):
    model = build(name, dtype)
    images = torch.randn(6, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).to(dtype)
    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        alone = [logits(model, images[i : i + 1]) for i in range(6)]
        for nthreads, order in ((2, [5, 0, 3, 1, 4, 2]), (3, [4, 2, 0])):
            threads(nthreads)
            out = logits(model, images[order])
            for row, i in enumerate(order):
                assert same_bits(out[row : row + 1], alone[i]), (name, i, nthreads)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_vision_model_under_mode_stays_close_to_native(name):
    model = build(name, torch.float32)
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        native = logits(model, x)
        with samebits.batch_invariant():
            ours = logits(model, x)
    torch.testing.assert_close(ours, native, rtol=1e-4, atol=1e-5)


def test_native_cnn_is_batch_variant():
    """Why: natively a batched image can get other bits than alone (oneDNN convolution)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)).eval()
    x = torch.randn(9, 32, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(x)
        assert any(not same_bits(model(x[i : i + 1]), full[i : i + 1]) for i in range(9))
