"""The embedding engine in process: packed passes give each text its alone bits."""

import pytest
import torch

import samebits
from samebits._demo import demo_texts
from samebits.models import load_sentence_model
from samebits.serve._engines import EmbeddingEngine, pack_groups, segments
from tests.conftest import same_bits


@pytest.fixture(scope="module")
def engine():
    return EmbeddingEngine(load_sentence_model(), "minilm")


def test_minilm_is_packed(engine):
    assert engine.encoder is not None


@pytest.mark.parametrize("nthreads", [1, 2])
def test_packed_texts_have_the_bits_of_each_text_encoded_alone(engine, nthreads, threads):
    """Reference: sentence-transformers' encode() of each text alone under the mode,
    which knows nothing of packing. Packs of different makeup (all texts, shuffled,
    subsets, duplicates) must all reproduce it."""
    texts = demo_texts()
    threads(nthreads)
    with samebits.batch_invariant():
        alone = {
            t: engine.st.encode([t], convert_to_tensor=True, show_progress_bar=False)[0]
            for t in set(texts)
        }
        g = torch.Generator().manual_seed(nthreads)
        batches = [texts, texts[::-1], texts[:5], [texts[3]] * 4 + texts[10:14]]
        batches += [[texts[i] for i in torch.randperm(len(texts), generator=g)[:11]]]
        for batch in batches:
            for t, e in zip(batch, engine.run(batch), strict=True):
                assert same_bits(e, alone[t].float()), t


def test_a_pack_spans_many_texts(engine):
    """The demo texts fill few packs, so the test above really mixes texts in one pass."""
    with engine.tok_lock:
        lens = [len(ids) for ids in engine.tokenizer(demo_texts())["input_ids"]]
    groups = pack_groups(lens, 256)
    assert len(groups) < len(lens) / 4
    assert max(sum(lens[i] for i in g) for g in groups) <= 256


def test_pack_groups_keep_every_item_once_within_the_budget():
    lens = [5, 300, 17, 1, 256, 40, 40, 3]
    groups = pack_groups(lens, 64)
    assert sorted(i for g in groups for i in g) == list(range(len(lens)))
    for g in groups:
        assert len(g) == 1 or sum(lens[i] for i in g) <= 64


TRICKY = [
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n",
    "Café naïve façade Ünïcödé",
    "中文字符 and emoji 🙂🚀",
    "punctuation!!! (brackets) [x] {y} 'quotes' \"double\"",
    "UPPER lower MiXeD",
    "a",
    "word " * 200,
]


def test_prepared_ids_are_the_model_tokenizers_ids(engine):
    """The server tokenizes on the event loop with a private copy of the tokenizer;
    its ids (and token types) must be exactly what the model's own preprocessing
    makes, or a served text would be a different input than the text encoded alone."""
    from samebits.models import tokenize_for

    assert engine.fast is not None
    for t in TRICKY + demo_texts():
        item = engine.prepare(t)
        with engine.tok_lock:
            feats = tokenize_for(engine.st, [t])
        assert list(item.ids) == feats["input_ids"][0].tolist(), t
        assert list(item.type_ids) == feats["token_type_ids"][0].tolist(), t


def test_prepare_refuses_a_text_longer_than_the_model_takes(engine):
    from samebits.serve._engines import RequestError

    with pytest.raises(RequestError, match=r"input has \d+ tokens; this model takes at most 256"):
        engine.prepare("word " * 300)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_pooling_a_pack_at_once_gives_each_text_its_alone_bits(engine, nthreads, threads):
    """_pool runs pooling and normalization on all texts of a pack in one call, with
    the texts right-padded by -0.0. Reference: the modules on each text's rows alone.
    Rows hold -0.0 columns, zeros, huge values, inf and NaN, and texts of 1..9
    tokens."""
    threads(nthreads)
    g = torch.Generator().manual_seed(nthreads)
    lens = [3, 1, 9, 4, 4, 2]
    hidden = torch.randn(sum(lens), 384, generator=g) * 3
    hidden[0:3, :40] = -0.0  # text 0: columns that sum to -0.0
    hidden[3, 40:50] = -0.0  # text 1 (one token): -0.0 entries
    hidden[4:13:2, 60:70] = 0.0
    hidden[5, 100] = 3e38  # text 2: sums past float32 range
    hidden[6, 100] = 3e38
    hidden[13, 7] = float("inf")  # text 3
    hidden[17, 9] = float("nan")  # text 4
    with samebits.batch_invariant(), torch.inference_mode():
        packed = engine._pool(hidden, *segments(lens))
        start = 0
        for row, k in enumerate(lens):
            f = {
                "token_embeddings": hidden[None, start : start + k],
                "attention_mask": torch.ones(1, k, dtype=torch.long),
            }
            for module in engine.after:
                f = module(f)
            assert same_bits(packed[row], f["sentence_embedding"][0]), row
            start += k
