"""/v1/chat/completions and logprobs against a real server, through the official
``openai`` client: response shapes, usage, n and seeds, unseeded requests, streaming,
and logprobs with the bits of a trainer's forward under the mode."""

import httpx
import openai
import pytest
import torch

from samebits.serve._sampling import choice_seed
from tests.serve.test_generate import trainer_logprobs

SYSTEM = "You are a careful assistant. Answer briefly."
MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Tell me about foxes."},
]
AUTH = {"Authorization": "Bearer sekret"}


@pytest.fixture(scope="module")
def client(chat_server):
    return openai.OpenAI(base_url=chat_server.url + "/v1", api_key="sekret", max_retries=0)


@pytest.fixture(scope="module")
def name(client):
    return client.models.list().data[0].id


@pytest.fixture(scope="module")
def trainer_model(chat_llama_dir):
    from samebits.models import load_causal_lm

    return load_causal_lm(chat_llama_dir)


def sb(resp) -> dict:
    """The response's ``samebits`` object (a field OpenAI's schema does not name)."""
    return resp.model_extra["samebits"]


def values(logprobs) -> torch.Tensor:
    return torch.tensor([e.logprob for e in logprobs.content], dtype=torch.float32)


def test_chat_completion_shape_and_usage(client, name, trainer_model):
    r = client.chat.completions.create(
        model=name, messages=MESSAGES, max_tokens=12, temperature=0.8, seed=3
    )
    assert r.object == "chat.completion" and len(r.choices) == 1
    ch = r.choices[0]
    assert ch.message.role == "assistant" and isinstance(ch.message.content, str)
    assert ch.finish_reason in ("length", "stop") and ch.logprobs is None
    _, tok = trainer_model
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    info = sb(r)
    assert info["prompt_token_ids"] == [ids] and info["seeds"] == [3] and info["seed"] == 3
    assert r.usage.prompt_tokens == len(ids)
    assert r.usage.completion_tokens == len(info["tokens"][0])
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert ch.message.content == tok.decode(info["tokens"][0], skip_special_tokens=True)


def test_n_choices_have_derived_seeds_and_each_replays_alone(client, name):
    r = client.chat.completions.create(
        model=name,
        messages=MESSAGES,
        max_tokens=10,
        temperature=1.0,
        seed=11,
        n=4,
        logprobs=True,
        top_logprobs=2,
    )
    info = sb(r)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert info["seeds"] == [choice_seed(11, j) for j in range(4)]
    assert len({tuple(t) for t in info["tokens"]}) > 1  # the group's samples differ
    assert r.usage.prompt_tokens == len(info["prompt_token_ids"][0])  # counted once
    assert r.usage.completion_tokens == sum(len(t) for t in info["tokens"])
    for j, ch in enumerate(r.choices):
        one = client.chat.completions.create(
            model=name,
            messages=MESSAGES,
            max_tokens=10,
            temperature=1.0,
            seed=info["seeds"][j],
            logprobs=True,
            top_logprobs=2,
        )
        assert sb(one)["tokens"][0] == info["tokens"][j]
        assert one.choices[0].message.content == ch.message.content
        assert torch.equal(values(one.choices[0].logprobs), values(ch.logprobs))


def test_unseeded_requests_differ_and_replay_with_their_returned_seed(client, name):
    """The bug this kills: an unseeded request sampled with seed 0, so every unseeded
    request at T > 0 returned the same completion."""
    kw = dict(model=name, messages=MESSAGES, max_tokens=32, temperature=1.0, logprobs=True)
    a, b = (client.chat.completions.create(**kw) for _ in range(2))
    sa, sb_ = sb(a), sb(b)
    assert sa["seed"] != sb_["seed"]
    assert sa["tokens"] != sb_["tokens"]
    for first, info in ((a, sa), (b, sb_)):
        again = client.chat.completions.create(**kw, seed=info["seed"])
        assert sb(again)["tokens"] == info["tokens"] and sb(again)["seed"] == info["seed"]
        assert torch.equal(values(again.choices[0].logprobs), values(first.choices[0].logprobs))


def test_streaming_chat_equals_non_streaming(client, name):
    kw = dict(
        model=name,
        messages=MESSAGES,
        max_tokens=14,
        temperature=1.0,
        seed=5,
        n=2,
        logprobs=True,
        top_logprobs=2,
    )
    free = client.chat.completions.create(**kw).choices[0].message.content
    kw["stop"] = [free[5:7], "~never~"]  # cuts choice 0 at its 6th character
    ref = client.chat.completions.create(**kw)
    text, lps, reasons, tokens, roles = {0: "", 1: ""}, {0: [], 1: []}, {}, {}, {}
    usage = None
    for chunk in client.chat.completions.create(
        **kw, stream=True, stream_options={"include_usage": True}
    ):
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles[ch.index] = ch.delta.role
            text[ch.index] += ch.delta.content or ""
            if ch.logprobs is not None:
                lps[ch.index] += ch.logprobs.content
            if ch.finish_reason:
                reasons[ch.index] = ch.finish_reason
                tokens[ch.index] = sb(chunk)["tokens"][0]
    assert roles == {0: "assistant", 1: "assistant"}
    for i, ch in enumerate(ref.choices):
        assert text[i] == ch.message.content
        assert reasons[i] == ch.finish_reason
        assert tokens[i] == sb(ref)["tokens"][i]
        assert [e.model_dump() for e in lps[i]] == [e.model_dump() for e in ch.logprobs.content]
    assert usage.model_dump() == ref.usage.model_dump()
    assert "stop" in reasons.values()  # a stop string did cut a choice


def test_chat_logprobs_shape_and_trainer_parity(client, name, trainer_model):
    """OpenAI's shape (token, logprob, bytes, top_logprobs), and the values: the bits
    of a trainer's forward (autograd on, under the mode) on prompt + completion ids."""
    r = client.chat.completions.create(
        model=name,
        messages=MESSAGES,
        max_tokens=16,
        temperature=1.0,
        seed=21,
        n=4,
        logprobs=True,
        top_logprobs=3,
    )
    info = sb(r)
    model, _ = trainer_model
    for j, ch in enumerate(r.choices):
        content = ch.logprobs.content
        assert len(content) == len(info["tokens"][j])
        for e in content:
            assert e.bytes == list(e.token.encode()) and len(e.top_logprobs) == 3
            tops = [t.logprob for t in e.top_logprobs]
            assert tops == sorted(tops, reverse=True) and e.logprob <= tops[0]
        want, _ = trainer_logprobs(model, info["prompt_token_ids"][0], info["tokens"][j])
        assert torch.equal(values(ch.logprobs), want)


def test_completions_logprobs_legacy_shape_and_trainer_parity(client, name, trainer_model):
    r = client.completions.create(
        model=name,
        prompt=["Hello", "The fox"],
        max_tokens=8,
        temperature=0.9,
        seed=4,
        n=2,
        logprobs=2,
    )
    info = sb(r)
    assert len(r.choices) == 4 and info["seeds"] == [choice_seed(4, k) for k in range(4)]
    model, _ = trainer_model
    for k, ch in enumerate(r.choices):
        lp = ch.logprobs
        n = len(info["tokens"][k])
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n
        assert lp.text_offset == [sum(len(t) for t in lp.tokens[:j]) for j in range(n)]
        assert all(len(top) <= 2 for top in lp.top_logprobs)
        prompt = info["prompt_token_ids"][k // 2]
        want, _ = trainer_logprobs(model, prompt, info["tokens"][k])
        assert torch.equal(torch.tensor(lp.token_logprobs, dtype=torch.float32), want)


def test_streamed_completion_logprobs_equal_non_streamed(client, name):
    kw = dict(
        model=name, prompt="Once upon", max_tokens=12, temperature=1.0, seed=8, n=2, logprobs=2
    )
    ref = client.completions.create(**kw)
    got = {0: {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}}
    got[1] = {k: [] for k in got[0]}
    text = {0: "", 1: ""}
    for chunk in client.completions.create(**kw, stream=True):
        for ch in chunk.choices:
            text[ch.index] += ch.text
            if ch.logprobs is not None:
                for k in got[ch.index]:
                    got[ch.index][k] += getattr(ch.logprobs, k)
    for i, ch in enumerate(ref.choices):
        assert text[i] == ch.text
        assert got[i] == {k: getattr(ch.logprobs, k) for k in got[i]}
        assert len(got[i]["tokens"]) == len(sb(ref)["tokens"][i]) > 0


def test_the_prefix_cache_serves_a_shared_system_prompt(chat_server, client, name):
    before = httpx.get(chat_server.url + "/health").json()["prefix_cache"]["hit_tokens"]
    for q in ("What is a fox?", "Why is the sky blue?"):
        client.chat.completions.create(
            model=name,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
            max_tokens=2,
        )
    after = httpx.get(chat_server.url + "/health").json()["prefix_cache"]
    assert after["hit_tokens"] - before >= 2 * 48  # the system prompt's blocks, twice
    assert 0 < after["bytes"] <= after["max_bytes"]


def test_a_model_without_a_chat_template_gets_a_400_naming_it(llama_server):
    c = openai.OpenAI(base_url=llama_server.url + "/v1", api_key="sekret", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=c.models.list().data[0].id, messages=MESSAGES, max_tokens=2)
    err = e.value.body
    assert "has no chat template" in err["message"] and err["param"] == "messages"


def test_chat_on_an_embedding_server_is_refused(minilm_server):
    r = httpx.post(minilm_server.url + "/v1/chat/completions", json={"messages": MESSAGES})
    assert r.status_code == 400 and "embedding model" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "body,status,field,fragment",
    [
        ({"messages": MESSAGES, "top_logprobs": 2}, 400, "top_logprobs", "needs logprobs"),
        ({"messages": []}, 422, "messages", "at least 1"),
        ({}, 422, "messages", "Field required"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 422, "messages.0.role", "role"),
        ({"messages": [{"role": "user", "content": 5}]}, 422, "messages.0.content", "content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            422,
            "messages.0.content",
            "content",
        ),
        ({"messages": MESSAGES, "max_tokens": 5000}, 400, "max_tokens", "max_tokens=5000"),
        ({"messages": MESSAGES, "max_completion_tokens": 0}, 422, "max_completion_tokens", "max"),
        ({"messages": MESSAGES, "n": 0}, 422, "n", "n"),
        ({"messages": MESSAGES, "stop": [""]}, 400, "stop", "stop[0] is an empty string"),
        ({"messages": MESSAGES, "temperature": 3}, 422, "temperature", "temperature"),
        ({"messages": MESSAGES, "top_logprobs": 21, "logprobs": True}, 422, "top_logprobs", "20"),
        ({"messages": MESSAGES, "logprobs": 2}, 422, "logprobs", "logprobs"),
        ({"messages": MESSAGES * 40, "max_tokens": 8}, 400, "messages", "exceeds the context"),
    ],
)
def test_bad_chat_requests_name_the_field(chat_server, body, status, field, fragment):
    r = httpx.post(chat_server.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"].startswith(field) and fragment in err["message"], err
    assert httpx.get(chat_server.url + "/health").status_code == 200


@pytest.fixture(scope="module")
def bf16_server(chat_llama_dir):
    from tests.serve.conftest import Server

    s = Server("--model", str(chat_llama_dir), "--dtype", "bfloat16")
    yield s
    s.stop()


def test_bfloat16_server_logprobs_equal_the_trainers(bf16_server, chat_llama_dir):
    """--dtype bfloat16: a group of 4 samples' logprobs equal a bfloat16 trainer's
    forward (its bfloat16 logits widened to float32, as the server widens them)."""
    c = openai.OpenAI(base_url=bf16_server.url + "/v1", api_key="unused", max_retries=0)
    r = c.chat.completions.create(
        model=c.models.list().data[0].id,
        messages=MESSAGES,
        max_tokens=12,
        temperature=1.0,
        n=4,
        logprobs=True,
    )
    info = sb(r)
    from samebits.models import load_causal_lm

    model = load_causal_lm(chat_llama_dir)[0].to(torch.bfloat16)
    for j, ch in enumerate(r.choices):
        want, _ = trainer_logprobs(model, info["prompt_token_ids"][0], info["tokens"][j])
        assert torch.equal(values(ch.logprobs), want)
