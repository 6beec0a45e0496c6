import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import pytest
import torch


class ThreadClients:
    """One httpx.Client per thread, all closed on exit. Dozens of threads sharing one
    client's connection pool hit a race in it: a thread read a socket another had
    closed (httpcore.ReadError: [Errno 9] Bad file descriptor), failing a test that
    is about the server."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.local = threading.local()
        self.lock = threading.Lock()
        self.clients: list[httpx.Client] = []

    def get(self) -> httpx.Client:
        c = getattr(self.local, "client", None)
        if c is None:
            c = self.local.client = httpx.Client(**self.kwargs)
            with self.lock:
                self.clients.append(c)
        return c

    def __enter__(self) -> "ThreadClients":
        return self

    def __exit__(self, *exc) -> None:
        for c in self.clients:
            c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the log goes to a file: a pipe nobody reads fills up and blocks the server
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "samebits.cli", "serve", "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.read_log()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not start in 120 s")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode, self.read_log()

    def read_log(self) -> str:
        self.log.seek(0)
        return self.log.read()


@pytest.fixture(scope="session")
def minilm_server():
    s = Server("--max-batch-size", "16", "--max-wait-ms", "10")
    yield s
    s.stop()


# a chat template over the character-level vocabulary (<|role|> is plain text to it)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tiny_llama(path, chat_template: str | None = None, **config) -> None:
    """A random-weight LlamaForCausalLM with a character-level tokenizer, saved as an
    HF directory; with ``chat_template``, its tokenizer has that chat template;
    ``config`` overrides LlamaConfig fields (the benchmark's larger model)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + [chr(c) for c in range(32, 127)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    fast.save_pretrained(path)
    cfg = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    for key, value in config.items():
        setattr(cfg, key, value)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_llama(path)
    return path


@pytest.fixture(scope="session")
def llama_server(llama_dir):
    s = Server(
        "--model",
        str(llama_dir),
        "--max-batch-size",
        "16",
        "--max-wait-ms",
        "10",
        env={"SAMEBITS_API_KEY": "sekret"},  # the key from the environment, not argv (ps)
    )
    yield s
    s.stop()


@pytest.fixture(scope="session")
def chat_llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-chat-llama")
    make_tiny_llama(path, CHAT_TEMPLATE)
    return path


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=str)
def llm(request, chat_llama_dir):
    """The tiny chat Llama's completion engine, in process, in float32 and bfloat16."""
    from samebits.models import load_causal_lm
    from samebits.serve._generate import CompletionEngine

    model, tok = load_causal_lm(chat_llama_dir)
    return CompletionEngine(model.to(request.param), tok, "tiny-chat-llama")


def alone(engine, item):
    """``item`` run by itself (static batching, a batch of one) under the mode: the
    reference every batched answer must equal."""
    import copy

    import samebits

    c = copy.deepcopy(item)
    c.on_token = None
    with samebits.batch_invariant():
        return engine.run([c])[0]


def same_choice(a, b) -> bool:
    """Same tokens, text and finish reason, and bitwise the same logprobs (float32
    tensors compared with torch.equal) and top alternatives."""
    lp = [torch.tensor([e.logprob for e in c.token_logprobs], dtype=torch.float32) for c in (a, b)]
    tops = [[e.top for e in c.token_logprobs] for c in (a, b)]
    return (
        a.tokens == b.tokens
        and a.text == b.text
        and a.finish_reason == b.finish_reason
        and torch.equal(lp[0], lp[1])
        and tops[0] == tops[1]
        and [e.token for e in a.token_logprobs] == [e.token for e in b.token_logprobs]
    )


def run_continuous(engine, plan, prefix=None, max_batch: int = 8):
    """Submit each (delay_s, [items]) of ``plan`` to a ContinuousBatcher ``delay_s``
    after the previous one, as one request; every request's results, in plan order."""
    import asyncio

    from samebits.serve._continuous import ContinuousBatcher

    async def go():
        b = ContinuousBatcher(engine, max_batch, 2.0, 1.0, prefix=prefix)
        b.start()
        tasks = []
        try:
            for delay, items in plan:
                await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(b.submit_all(items)))
            return await asyncio.gather(*tasks), b
        finally:
            await asyncio.to_thread(b.stop)

    return asyncio.run(go())


@pytest.fixture(scope="session")
def chat_server(chat_llama_dir):
    """The tiny chat Llama served with continuous batching and a prefix cache of
    4-token blocks (so the tests' short prompts share blocks)."""
    s = Server(
        "--model",
        str(chat_llama_dir),
        "--max-batch-size",
        "16",
        "--prefix-block-tokens",
        "4",
        env={"SAMEBITS_API_KEY": "sekret"},
    )
    yield s
    s.stop()
