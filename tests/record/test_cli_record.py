"""`samebits record` / `samebits verify` with the bundled MiniLM, run as real processes."""

import json
import subprocess
import sys

import pytest

EXE = [sys.executable, "-m", "samebits.cli"]


def run(*args):
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    (d / "in.txt").write_text(
        "hello world\n\nA second, longer line of text.\nthird\n", encoding="utf-8"
    )
    p = run("record", "--input", str(d / "in.txt"), "--out", str(d / "r"))
    assert p.returncode == 0, p.stderr
    assert "recorded 3 outputs" in p.stdout
    return d / "r"


def copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_manifest_contents(recorded):
    m = json.loads((recorded / "manifest.json").read_text())
    assert m["meta"]["run"] == {"task": "embed", "model": "minilm", "seed": 0}
    assert len(m["meta"]["model_identity"]) == 64
    assert [i["text"] for i in m["meta"]["inputs"]] == [
        "hello world",
        "A second, longer line of text.",
        "third",
    ]
    assert len(m["outputs"]) == 3 and all(len(o["sha256"]) == 64 for o in m["outputs"])
    assert m["fingerprint"]["samebits"]["batch_invariant"] is True
    assert m["tolerance"] == {"mode": "bitwise"}


def test_verify_matches(recorded):
    p = run("verify", str(recorded))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "MATCH: 3/3 outputs bit-identical, compared bitwise" in p.stdout


def test_verify_json(recorded):
    p = run("verify", str(recorded), "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["ok"] is True


def test_flipped_output_byte_exit_2(recorded, tmp_path):
    r = copy(recorded, tmp_path / "r")
    f = r / "outputs.safetensors"
    b = bytearray(f.read_bytes())
    b[-10] ^= 0x40
    f.write_bytes(bytes(b))
    p = run("verify", str(r))
    assert p.returncode == 2 and "outputs were modified" in p.stderr and "Traceback" not in p.stderr


def test_edited_input_text_exit_2(recorded, tmp_path):
    r = copy(recorded, tmp_path / "r")
    m = json.loads((r / "manifest.json").read_text())
    m["meta"]["inputs"][1]["text"] = "something else"
    (r / "manifest.json").write_text(json.dumps(m))
    p = run("verify", str(r))
    assert p.returncode == 2 and "input 1" in p.stderr and "Traceback" not in p.stderr


def test_truncated_manifest_exit_2(recorded, tmp_path):
    r = copy(recorded, tmp_path / "r")
    mf = r / "manifest.json"
    mf.write_bytes(mf.read_bytes()[:200])
    p = run("verify", str(r))
    assert p.returncode == 2 and "not valid JSON" in p.stderr and "Traceback" not in p.stderr


def test_changed_output_is_a_mismatch_exit_1(recorded, tmp_path):
    """Re-record a different output under consistent hashes: verify re-runs the model
    and reports the mismatch (exit 1), not tampering."""
    import torch

    import samebits
    from samebits.record.store import load_manifest, load_outputs

    r = tmp_path / "r"
    m = load_manifest(recorded)
    outs = load_outputs(recorded, m)
    outs["item.000001"] = outs["item.000001"].clone()
    outs["item.000001"][5] += 1e-3
    samebits.record(outs, r, environment=m["fingerprint"], **m["meta"])
    p = run("verify", str(r))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "MISMATCH: 2/3" in p.stdout and "first: item.000001" in p.stdout
    assert isinstance(torch.tensor(0), torch.Tensor)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["record", "--input", "/nonexistent.txt", "--out", "x"], "cannot read --input"),
        (["record", "--input", "{empty}", "--out", "x"], "no non-empty lines"),
        (
            ["record", "--input", "{ok}", "--out", "x", "--model", "/no/such/dir"],
            "expected 'minilm' or a local model directory",
        ),
        (["record", "--input", "{ok}", "--out", "x", "--tolerance", "ulp=x"], "expected 'bitwise'"),
        (["verify", "/no/such/record"], "is not a directory"),
    ],
)
def test_bad_usage_exit_2(tmp_path, args, msg):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "ok.txt").write_text("hi\n")
    args = [a.format(empty=tmp_path / "empty.txt", ok=tmp_path / "ok.txt") for a in args]
    p = run(*args)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr


def test_internal_error_exits_3_with_a_traceback(monkeypatch, capsys):
    """A bug (any non-samebits exception) is exit 3 with its traceback, never exit 1,
    which means "mismatch"."""
    from samebits import cli
    from samebits.record import store

    def boom(*_a, **_k):
        raise ZeroDivisionError("a bug in samebits")

    monkeypatch.setattr(store, "load_manifest", boom)
    assert cli.main(["verify", "/anything"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug in samebits" in err
    assert "internal error (exit 3)" in err


def test_non_integer_seed_in_the_manifest_is_an_unusable_record(recorded, tmp_path):
    r = copy(recorded, tmp_path / "r")
    m = json.loads((r / "manifest.json").read_text())
    m["meta"]["run"]["seed"] = "zero"
    (r / "manifest.json").write_text(json.dumps(m))
    p = run("verify", str(r))
    assert p.returncode == 2 and "is not an integer" in p.stderr and "Traceback" not in p.stderr


@pytest.fixture(scope="module")
def llama_record(tmp_path_factory):
    from tests.serve.conftest import make_tiny_llama

    d = tmp_path_factory.mktemp("lmrec")
    make_tiny_llama(d / "model")
    (d / "in.txt").write_text("hello\nworld wide\n", encoding="utf-8")
    from samebits.cli import main  # in this process: one model load less

    args = ["record", "--input", str(d / "in.txt"), "--out", str(d / "r"), "--quiet"]
    assert main([*args, "--model", str(d / "model")]) == 0
    return d


def test_a_record_naming_a_model_directory_needs_trust_or_model(llama_record):
    r = str(llama_record / "r")
    p = run("verify", r, "--quiet")
    assert p.returncode == 2 and "--trust-record-model" in p.stderr and "Traceback" not in p.stderr
    p = run("verify", r, "--quiet", "--trust-record-model")
    assert p.returncode == 0 and "MATCH: 2/2" in p.stdout, p.stdout + p.stderr


def test_verify_model_override_of_another_kind_or_weights(llama_record, tmp_path):
    r = str(llama_record / "r")
    p = run("verify", r, "--model", "minilm")
    assert p.returncode == 2 and "is a 'embed' model; the record is 'lm-logits'" in p.stderr
    import torch
    from transformers import LlamaForCausalLM

    other = tmp_path / "other"
    import shutil

    shutil.copytree(llama_record / "model", other)
    m = LlamaForCausalLM.from_pretrained(other)
    with torch.no_grad():
        m.lm_head.weight[0, 0] += 1.0
    m.save_pretrained(other)
    p = run("verify", r, "--quiet", "--model", str(other))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "differ from the recorded model identity" in p.stdout
