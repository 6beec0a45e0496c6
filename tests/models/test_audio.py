"""Audio models from transformers configs (random weights, fixed seed): Wav2Vec2 with
attention masks over right-padded audio, and Whisper (encoder, and greedy generation).
Every clip gets the same bits alone as at any position of a batch, at 1..3 threads."""

import pytest
import torch
import transformers as T

import samebits
from tests.conftest import same_bits

LENGTHS = [1600, 900, 1250, 400, 1600]  # samples


def wav2vec2(norm):
    torch.manual_seed(0)
    cfg = T.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm=norm, do_stable_layer_norm=norm == "layer",
    )  # fmt: skip
    return T.Wav2Vec2Model(cfg).eval()


def clip(i):
    return torch.randn(LENGTHS[i], generator=torch.Generator().manual_seed(10 + i))


def frames(model, n):
    return int(model._get_feat_extract_output_lengths(torch.tensor(n)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_wav2vec2_padded_audio_with_attention_mask(dtype, threads):
    """Layer-norm feature extractor (wav2vec2-large style): padding is masked."""
    model = wav2vec2("layer").to(dtype)
    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        alone = [model(clip(i).to(dtype)[None]).last_hidden_state[0] for i in range(len(LENGTHS))]
        for nthreads, order in ((2, [4, 1, 3, 0, 2]), (3, [3, 2])):
            threads(nthreads)
            n = max(LENGTHS[i] for i in order)
            x = torch.zeros(len(order), n, dtype=dtype)
            mask = torch.zeros(len(order), n, dtype=torch.long)
            for row, i in enumerate(order):
                x[row, : LENGTHS[i]] = clip(i).to(dtype)
                mask[row, : LENGTHS[i]] = 1
            out = model(x, attention_mask=mask).last_hidden_state
            for row, i in enumerate(order):
                f = frames(model, LENGTHS[i])
                assert same_bits(out[row, :f], alone[i]), (i, nthreads)


def test_wav2vec2_group_norm_equal_lengths(threads):
    """Group-norm feature extractor (wav2vec2-base style) normalizes over the whole
    clip, so padding changes it by definition: equal-length batches only."""
    model = wav2vec2("group")
    x = torch.randn(4, 1200, generator=torch.Generator().manual_seed(3))
    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        alone = [model(x[i : i + 1]).last_hidden_state for i in range(4)]
        threads(2)
        out = model(x[[2, 0, 3, 1]]).last_hidden_state
    for row, i in enumerate([2, 0, 3, 1]):
        assert same_bits(out[row : row + 1], alone[i])


def whisper():
    torch.manual_seed(0)
    cfg = T.WhisperConfig(
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
        max_source_positions=20, max_target_positions=32, vocab_size=100, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        begin_suppress_tokens=None, suppress_tokens=None,
    )  # fmt: skip
    return T.WhisperForConditionalGeneration(cfg).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_whisper_encoder_and_greedy_generate(dtype, threads):
    model = whisper().to(dtype)
    feats = torch.randn(4, 16, 40, generator=torch.Generator().manual_seed(4)).to(dtype)

    def gen(x):
        return model.generate(x, max_new_tokens=5, do_sample=False, output_scores=True,
                              return_dict_in_generate=True)  # fmt: skip

    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        enc_alone = [model.model.encoder(feats[i : i + 1]).last_hidden_state for i in range(4)]
        gen_alone = [gen(feats[i : i + 1]) for i in range(4)]
        threads(2)
        order = [3, 1, 0, 2]
        enc = model.model.encoder(feats[order]).last_hidden_state
        g = gen(feats[order])
    for row, i in enumerate(order):
        assert same_bits(enc[row : row + 1], enc_alone[i])
        assert torch.equal(g.sequences[row : row + 1], gen_alone[i].sequences)
        for step, s in enumerate(g.scores):
            assert same_bits(s[row : row + 1], gen_alone[i].scores[step]), (i, step)


def test_audio_under_mode_stays_close_to_native():
    model = wav2vec2("layer")
    x = torch.randn(2, 1000, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        native = model(x).last_hidden_state
        with samebits.batch_invariant():
            ours = model(x).last_hidden_state
    torch.testing.assert_close(ours, native, rtol=1e-4, atol=1e-5)
