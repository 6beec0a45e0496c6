"""`samebits audit` and `samebits demo` as real processes, and MiniLM with padding."""

import json
import os
import subprocess
import sys

import pytest

import samebits
from samebits.audit._trace import computes
from samebits.models import SentenceEmbedder, load_sentence_model, tokenize_for

EXE = [sys.executable, "-m", "samebits.cli"]


def run(*args, env=None):
    return subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )


def test_minilm_padding_is_found_localized_and_cured():
    st = load_sentence_model()
    texts = [
        "a short one",
        "a much longer sentence that forces the others to be padded a lot",
        "mid length text",
    ]
    model, inputs = SentenceEmbedder(st), tokenize_for(st, texts)
    r = samebits.audit(model, inputs, checks=["padding", "batch_size"])
    pad = {f.check: f for f in r.findings}["padding"]
    assert (
        not pad.passed
        and pad.module.startswith("st.0.model.")
        and pad.cured_by_batch_invariant is True
    )
    assert pad.divergence and pad.divergence[0]["module"].startswith("st.0.model.embeddings")
    # the op named computes (not a view after it), and the size is in the output's scale
    assert pad.op and computes(pad.op) and pad.module.startswith("st.0.model.encoder.layer.0.")
    assert f"first op to compute a different value: {pad.module} ({pad.op})" in pad.detail
    assert "of the largest element" in pad.detail and 0 < pad.ulp_at_max <= pad.max_ulp
    with samebits.batch_invariant():
        assert samebits.audit(model, inputs, checks=["padding", "batch_size", "batch_position"]).ok


FACTORY = """
import torch

def clean():
    return torch.nn.Tanh(), torch.randn(4, 8)

def variant():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(384, 1536)).eval()
    return m, torch.randn(6, 384)

def not_a_pair():
    return torch.nn.Tanh()
"""


@pytest.fixture
def factory(tmp_path):
    (tmp_path / "auditmods.py").write_text(FACTORY)
    return {"PYTHONPATH": str(tmp_path)}


def test_factory_clean_exit_0(factory):
    p = run("audit", "--model", "auditmods:clean", env=factory)
    assert p.returncode == 0, p.stderr
    assert "all checks pass" in p.stdout


def test_factory_findings_exit_1_json_and_html(factory, tmp_path):
    html = tmp_path / "r.html"
    p = run("audit", "--model", "auditmods:variant", "--json", "--html", str(html), env=factory)
    assert p.returncode == 1, p.stderr
    d = json.loads(p.stdout)
    bs = next(f for f in d["findings"] if f["check"] == "batch_size")
    assert bs["passed"] is False and bs["module"] == "0" and bs["cured_by_batch_invariant"] is True
    assert "batch_size" in html.read_text()


def test_quiet_prints_nothing(factory):
    p = run("audit", "--model", "auditmods:clean", "--quiet", env=factory)
    assert p.returncode == 0 and p.stdout == ""


@pytest.mark.parametrize(
    "args,msg",
    [
        (["audit", "--model", "nosuchmodel"], "expected minilm, a local model directory"),
        (["audit", "--model", "nosuch.module:make"], "cannot import"),
        (["audit", "--model", "auditmods:not_a_pair"], "must return (model, inputs)"),
        (["audit", "--model", "minilm", "--input", "/no/such/file.txt"], "cannot read --input"),
        (["audit"], "give --model, --loader, or both"),
    ],
)
def test_usage_errors_exit_2(factory, args, msg):
    p = run(*args, env=factory)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr


def test_minilm_cli_with_input_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("one\nthe second text is longer than the first\nthree words here\n")
    p = run("audit", "--model", "minilm", "--input", str(f), "--json", "--quiet")
    assert p.returncode == 1, p.stderr
    d = json.loads(p.stdout)
    assert (
        d["items"] == 3 and not next(x for x in d["findings"] if x["check"] == "padding")["passed"]
    )


def test_demo_prints_before_and_after_and_writes_html(tmp_path):
    p = run("demo", "--html", str(tmp_path / "demo.html"))
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "audit without the mode:" in out and "audit under samebits.batch_invariant():" in out
    assert "padding         FAIL" in out
    pad = next(line for line in out.splitlines() if line.startswith("- padding: "))
    op = pad.split("first op to compute a different value: ", 1)[1].split(")")[0].split("(")[1]
    assert computes(op) and "ulp at that scale" in pad and "of the largest element" in pad
    assert "texts whose bits change when batched" in out and " 0/24" in out
    page = (tmp_path / "demo.html").read_text()
    assert "Without the mode" in page and "Under samebits.batch_invariant()" in page
