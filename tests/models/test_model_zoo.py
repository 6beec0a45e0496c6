"""More vision and audio families than the acceptance list, tiny configs, random weights:
each runs under the mode (nothing denied) and a batch row has the bits of the item alone.
They caught: torch.matmul's / einsum's batch fold (Speech2Text's eager attention), a
pooling kernel larger than its input (EfficientNet). The plain CNN runs the activations torch computes position-dependently
(ELU, SELU, Mish, Softplus, CELU, Softshrink). The recommender pools bags of user
history (sum, padding_idx, per_sample_weights) and item tags (mean, max) with
nn.EmbeddingBag."""

import pytest
import torch
import transformers as T

import samebits
from tests.conftest import same_bits

AUDIO = dict(
    hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
    conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)  # fmt: skip


class Recommender(torch.nn.Module):
    """A DLRM-style ranker: pooled bags of a user's history and an item's tags, an MLP."""

    def __init__(self):
        super().__init__()
        self.history = torch.nn.EmbeddingBag(50, 16, mode="sum", padding_idx=0)
        self.tags = torch.nn.EmbeddingBag(30, 16, mode="mean")
        self.top_tag = torch.nn.EmbeddingBag(30, 16, mode="max")
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(48, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)
        )

    def forward(self, history, weights, tags):
        h = self.history(history, per_sample_weights=weights)
        return self.mlp(torch.cat([h, self.tags(tags), self.top_tag(tags)], -1))


def baskets(n=3):
    g = torch.Generator().manual_seed(7)
    history = torch.randint(1, 50, (n, 9), generator=g)
    for i in range(n):  # right padding of different lengths
        history[i, 9 - 2 * i :] = 0
    return dict(history=history, weights=torch.rand(n, 9, generator=g),
                tags=torch.randint(0, 30, (n, 4), generator=g))  # fmt: skip


def image(n=3):
    return dict(pixel_values=torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)))


ZOO = {
    "swin": (lambda: T.SwinModel(T.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
        window_size=4)), image),
    "segformer": (lambda: T.SegformerForSemanticSegmentation(T.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        num_attention_heads=[1, 2], decoder_hidden_size=16, num_labels=3, patch_sizes=[7, 3],
        strides=[4, 2])), image),
    "efficientnet": (lambda: T.EfficientNetModel(T.EfficientNetConfig(
        image_size=32, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320)), image),
    "poolformer": (lambda: T.PoolFormerModel(T.PoolFormerConfig(
        hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1])), image),
    "speech2text": (lambda: T.Speech2TextModel(T.Speech2TextConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        input_feat_per_channel=16, conv_channels=32, vocab_size=100, max_source_positions=64)),
        lambda n=3: dict(input_features=torch.randn(n, 40, 16, generator=torch.Generator().manual_seed(2)),
                         decoder_input_ids=torch.ones(n, 2, dtype=torch.long))),
    "wav2vec2_conformer": (lambda: T.Wav2Vec2ConformerModel(T.Wav2Vec2ConformerConfig(
        **AUDIO, conv_depthwise_kernel_size=7, position_embeddings_type="relative")),
        lambda n=3: dict(input_values=torch.randn(n, 1600, generator=torch.Generator().manual_seed(3)))),
    "hifigan": (lambda: T.SpeechT5HifiGan(T.SpeechT5HifiGanConfig(
        model_in_dim=16, upsample_initial_channel=16, upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])),
        lambda n=3: dict(spectrogram=torch.randn(n, 10, 16, generator=torch.Generator().manual_seed(4)))),
    "wavlm": (lambda: T.WavLMModel(T.WavLMConfig(**AUDIO, num_buckets=32)),
              lambda n=3: dict(input_values=torch.randn(n, 1600, generator=torch.Generator().manual_seed(5)))),
    "encodec_encoder": (lambda: T.EncodecModel(T.EncodecConfig(
        hidden_size=16, num_filters=4, upsampling_ratios=[2, 2], codebook_size=32,
        num_lstm_layers=1)).encoder,
        lambda n=3: dict(hidden_states=torch.randn(n, 1, 400, generator=torch.Generator().manual_seed(6)))),
    "regnet": (lambda: T.RegNetModel(T.RegNetConfig(
        hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], groups_width=8, embedding_size=16)), image),
    "mobilevit": (lambda: T.MobileViTModel(T.MobileViTConfig(
        image_size=32, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 64])), image),
    "cnn_activations": (lambda: torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ELU(0.5), torch.nn.Conv2d(8, 8, 3, groups=8),
        torch.nn.SELU(), torch.nn.Conv2d(8, 8, 1), torch.nn.Mish(), torch.nn.Conv2d(8, 8, 3, stride=2),
        torch.nn.Softplus(2.0), torch.nn.CELU(1.5), torch.nn.Softshrink(0.1), torch.nn.Flatten(),
        torch.nn.Linear(8 * 14 * 14, 5)), lambda n=3: dict(input=image(n)["pixel_values"])),
    "embedding_bag_recommender": (Recommender, baskets),
}  # fmt: skip


def first(out):
    if isinstance(out, torch.Tensor):
        return out
    for name in ("last_hidden_state", "logits"):
        if getattr(out, name, None) is not None:
            return getattr(out, name)
    return out[0]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_model_runs_under_the_mode_and_rows_are_invariant(name, threads):
    torch.manual_seed(0)
    build, inputs = ZOO[name]
    model = build().eval()
    kw = inputs()
    with torch.no_grad():
        native = first(model(**kw))
        with samebits.batch_invariant():
            threads(2)
            full = first(model(**kw))
            threads(1)
            rows = [first(model(**{k: v[i : i + 1] for k, v in kw.items()})) for i in range(3)]
    for i in range(3):
        assert same_bits(full[i : i + 1], rows[i]), (name, i)
    torch.testing.assert_close(full, native, rtol=1e-4, atol=1e-5)
