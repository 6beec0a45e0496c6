"""RL on one set of bits: the sampler's logprobs are the trainer's, bit for bit.

1. Start ``samebits serve`` with a causal LM that has a chat template.
2. Sample a group of n = 4 answers to one prompt, with logprobs, through the official
   ``openai`` client (the server returns the prompt's token ids and each choice's
   tokens in its ``samebits`` object).
3. In another process, the trainer runs one forward pass over the group, right-padded
   into one batch, with autograd on, under ``samebits.batch_invariant()``, and takes
   ``log_softmax`` of the float32 logits at each completion token's position.
4. Compare with ``torch.equal``: at step 0 the importance ratio exp(trainer - sampler)
   is exactly 1 for every token, so on-policy training really is on-policy.
5. The trainer takes a policy-gradient step on the group, still under the mode:
   loss = -sum_i A_i sum_t ratio_it (group-normalized advantages A_i from a toy reward,
   the sum of the completion's token ids), ``loss.backward()`` and one SGD step.

Run: python docs/examples/rl_parity.py --model DIR [--dtype float32|bfloat16] [--n 4]
Exit 0 when every group member is bitwise equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time

MESSAGES = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "Name three animals that live in forests."},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, dtype: str, port: int, log) -> subprocess.Popen:
    """``samebits serve`` in a child process; returns once /health answers."""
    import httpx

    cmd = [sys.executable, "-m", "samebits.cli", "serve", "--model", model]
    cmd += ["--dtype", dtype, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start in 120 s")


def sample_group(port: int, n: int, max_tokens: int) -> dict:
    """One group of n samples with logprobs: prompt ids, tokens and logprobs per choice."""
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
    r = client.chat.completions.create(
        model=client.models.list().data[0].id,
        messages=MESSAGES,
        n=n,
        max_tokens=max_tokens,
        temperature=1.0,
        logprobs=True,
    )
    info = r.model_extra["samebits"]
    return {
        "prompt": info["prompt_token_ids"][0],
        "completions": info["tokens"],
        "logprobs": [[e.logprob for e in ch.logprobs.content] for ch in r.choices],
        "seed": info["seed"],
    }


def trainer_step(
    model_dir: str, dtype: str, prompt: list[int], completions, sampler_logprobs
) -> tuple[list, dict]:
    """The trainer's side (run in its own process): one forward over the group,
    right-padded into one batch, autograd on, under the mode; each completion token's
    logprob from log_softmax of the float32 logits. Then one policy-gradient step on
    the group, under the mode. Returns the logprobs (before the step) and the step's
    summary."""
    import torch
    from transformers import AutoModelForCausalLM

    import samebits

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if dtype != "auto":
        model = model.to(getattr(torch, dtype))
    seqs = [prompt + c for c in completions]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):  # right padding, as a trainer's collator does
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    with samebits.batch_invariant():
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, vocab)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for i, c in enumerate(completions):
            pos = torch.arange(len(prompt) - 1, len(prompt) + len(c) - 1)
            out.append(logprobs[i, pos, torch.tensor(c, dtype=torch.long)])
        # the policy-gradient step (a GRPO-like toy: reward = the sum of the token ids)
        reward = torch.tensor([float(sum(c)) for c in completions])
        adv = (reward - reward.mean()) / (reward.std() + 1e-6)  # (n,)
        loss = torch.zeros(())
        for i, lp in enumerate(out):
            ratio = torch.exp(lp - torch.tensor(sampler_logprobs[i], dtype=torch.float32))
            loss = loss - adv[i] * ratio.sum()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, foreach=False)
        before = [p.detach().clone() for p in model.parameters()]
        loss.backward()
        grad_norm = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters()
                                   if p.grad is not None))  # fmt: skip
        opt.step()
        moved = sum(
            not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(), strict=True)
        )
    assert all(t.requires_grad for t in out)  # a training forward, not inference
    step = {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "moved": moved}
    return [t.detach().tolist() for t in out], step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a local HF causal LM with a chat template")
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--n", type=int, default=4, help="samples in the group (default 4)")
    ap.add_argument("--max-tokens", type=int, default=24)
    args = ap.parse_args(argv)
    import torch

    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        server = start_server(args.model, args.dtype, port, log)
        try:
            group = sample_group(port, args.n, args.max_tokens)
        finally:
            server.terminate()
            server.wait(60)
    ctx = multiprocessing.get_context("spawn")  # a fresh process: nothing shared with the server
    with ctx.Pool(1) as pool:
        trainer, step = pool.apply(
            trainer_step,
            (args.model, args.dtype, group["prompt"], group["completions"], group["logprobs"]),
        )
    equal = 0
    for k, (s, t) in enumerate(zip(group["logprobs"], trainer, strict=True)):
        sampler = torch.tensor(s, dtype=torch.float32)
        mine = torch.tensor(t, dtype=torch.float32)
        same = torch.equal(sampler, mine)
        equal += same
        ratio = torch.exp(mine.double() - sampler.double())
        print(
            f"choice {k}: {len(s)} tokens, bitwise equal: {same}, "
            f"max |ratio - 1| = {float((ratio - 1).abs().max()) if len(s) else 0.0:.3g}"
        )
    print(f"{equal}/{len(trainer)} choices bitwise equal (group seed {group['seed']})")
    ok = math.isfinite(step["grad_norm"]) and step["grad_norm"] > 0 and step["moved"] > 0
    print(
        f"policy-gradient step under the mode: loss {step['loss']:.4g}, "
        f"grad norm {step['grad_norm']:.4g}, {step['moved']} parameter tensors updated"
    )
    return 0 if equal == len(trainer) and ok else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
