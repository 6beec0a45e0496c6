"""The HTML report reads at a glance: where divergence starts, a labelled log axis,
and the data-pipeline findings in the same page."""

import re

import torch

import samebits
from samebits.audit._report import _svg_bars, render_html
from tests.audit import pipelines as P

GREEN, FIRST, AFTER = "#27ae60", "#e67e22", "#e8a09a"


def bar_colours(svg):
    return re.findall(r'<rect [^>]*fill="(#[0-9a-f]{6})"', svg)


def test_modules_before_at_and_after_the_first_divergence_are_told_apart():
    div = [
        {"module": "emb", "max_ulp": 0, "max_abs": 0.0},
        {"module": "norm", "max_ulp": 0, "max_abs": 0.0},
        {"module": "layer.0.attn", "max_ulp": 12, "max_abs": 1e-6},
        {"module": "layer.0.mlp", "max_ulp": 3000, "max_abs": 1e-4},
        {"module": "head", "max_ulp": 40, "max_abs": 1e-5},
    ]
    svg = _svg_bars(div, "layer.0.attn")
    assert bar_colours(svg) == [GREEN, GREEN, FIRST, AFTER, AFTER]
    assert "first diverging: layer.0.attn" in svg
    assert "max ULP difference (log)" in svg
    # one tick per decade up to 1e4 (3000 ulp), labelled
    assert [t for t in ("0", "1e1", "1e2", "1e3", "1e4") if f">{t}</text>" in svg] == [
        "0",
        "1e1",
        "1e2",
        "1e3",
        "1e4",
    ]
    # without a named module, the first bar with a difference is the start
    assert bar_colours(_svg_bars(div)) == [GREEN, GREEN, FIRST, AFTER, AFTER]


def test_loader_and_model_findings_in_one_page(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(P.D, 4), torch.nn.Tanh()).eval()
    r = samebits.audit_loader(P.unsharded, workers=(0, 2), model=model)
    checks = [f.check for f in r.findings]
    assert checks[:2] == ["loader_repeat", "loader_workers"] and "repeat" in checks
    page = render_html([("pipeline and model", r)])
    assert "data pipeline compared: 3 batches, 12 items per pass" in page
    assert "duplicate items: IterableDataset not sharded across workers" in page
    assert "<pre class=fix>" in page and "get_worker_info()" in page
    assert "batch_size" in page
