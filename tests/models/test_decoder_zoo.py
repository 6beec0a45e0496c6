"""Decoder families beyond Llama, tiny configs, random weights: the MoE families that
transformers routes through ``aten::_grouped_mm`` by default (Mixtral, Qwen2-MoE,
DeepSeek-V3, whose router also counts tokens with ``histc``) and BLOOM (ALiBi slopes by
``pow``). Each runs under the mode, and a prompt's logits in a left-padded batch (with
position ids) have the bits of the prompt alone, at 1 and 2 threads, float32 and
bfloat16; its greedy continuation is the same alone and batched."""

import pytest
import torch
import transformers as T

import samebits
from tests.conftest import same_bits

VOCAB = 128
COMMON = dict(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
)  # fmt: skip

FAMILIES = {
    "mixtral": lambda: T.MixtralForCausalLM(
        T.MixtralConfig(**COMMON, num_local_experts=4, num_experts_per_tok=2)
    ),
    "qwen2_moe": lambda: T.Qwen2MoeForCausalLM(
        T.Qwen2MoeConfig(
            **COMMON,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=48,
        )  # fmt: skip
    ),
    "deepseek_v3": lambda: T.DeepseekV3ForCausalLM(
        T.DeepseekV3Config(
            **{**COMMON, "num_key_value_heads": 4},
            n_routed_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            n_shared_experts=1,
            first_k_dense_replace=1,
            n_group=2,
            topk_group=1,
            kv_lora_rank=16,
            q_lora_rank=24,
            qk_rope_head_dim=8,
            qk_nope_head_dim=8,
            v_head_dim=8,
        )  # fmt: skip
    ),
    "bloom": lambda: T.BloomForCausalLM(
        T.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4)
    ),
}
LENS = [5, 9, 3]


def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(1, VOCAB, (n,), generator=g) for n in LENS]


def left_padded(ps):
    L = max(len(p) for p in ps)
    ids, am = torch.zeros(len(ps), L, dtype=torch.long), torch.zeros(len(ps), L, dtype=torch.long)
    for i, p in enumerate(ps):
        ids[i, L - len(p) :], am[i, L - len(p) :] = p, 1
    return ids, am


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_padded_batch_rows_have_the_bits_of_each_prompt_alone(name, dtype, threads):
    torch.manual_seed(0)
    model = FAMILIES[name]().to(dtype).eval()
    if name != "bloom":  # the MoE families take transformers' default experts path
        assert model.config._experts_implementation == "grouped_mm"
    ps = prompts()
    ids, am = left_padded(ps)
    L = ids.size(1)
    with torch.no_grad(), samebits.batch_invariant():
        threads(2)
        full = model(
            input_ids=ids, attention_mask=am, position_ids=(am.cumsum(-1) - 1).clamp(min=0)
        ).logits
        threads(1)
        for i, p in enumerate(ps):
            alone = model(
                input_ids=p[None], attention_mask=torch.ones(1, len(p), dtype=torch.long)
            ).logits
            assert same_bits(full[i, L - len(p) :], alone[0]), (name, i)


@pytest.mark.parametrize("name", ["mixtral", "bloom"])
def test_greedy_generation_is_the_same_alone_and_batched(name):
    torch.manual_seed(0)
    model = FAMILIES[name]().eval()
    ps = prompts()
    ids, am = left_padded(ps)
    kw = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
    with torch.no_grad(), samebits.batch_invariant():
        batched = model.generate(ids, attention_mask=am, **kw)[:, ids.size(1) :]
        for i, p in enumerate(ps):
            alone = model.generate(
                p[None], attention_mask=torch.ones(1, len(p), dtype=torch.long), **kw
            )
            alone = alone[0, len(p) :]  # may stop early at EOS: the batch pads on with 0
            assert torch.equal(batched[i, : alone.numel()], alone), (name, i)
            assert (batched[i, alone.numel() :] == 0).all(), (name, i)


def test_lm_loss_is_unchanged_by_more_padding(threads):
    """The training/eval loss (cross_entropy over shifted labels, -100 on padding) of a
    right-padded batch has the same bits with any amount of extra padding."""
    torch.manual_seed(0)
    model = FAMILIES["mixtral"]().eval()
    ps = prompts()

    def loss(extra):
        L = max(len(p) for p in ps) + extra
        ids, am = torch.zeros(3, L, dtype=torch.long), torch.zeros(3, L, dtype=torch.long)
        for i, p in enumerate(ps):
            ids[i, : len(p)], am[i, : len(p)] = p, 1
        labels = ids.masked_fill(am == 0, -100)
        return model(input_ids=ids, attention_mask=am, labels=labels).loss

    with torch.no_grad(), samebits.batch_invariant():
        threads(1)
        ref = loss(0)
        threads(2)
        for extra in (1, 4):
            assert same_bits(loss(extra), ref), extra
