import json

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.errors import AuditError


class LeftDropout(torch.nn.Module):
    """A classic bug: F.dropout with training=True left in at inference."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)

    def forward(self, x):
        return F.dropout(self.fc(x), p=0.3, training=True)


class BigSum(torch.nn.Module):
    """Scales by a whole-tensor sum over 4M values: thread-count dependent."""

    def __init__(self):
        super().__init__()
        self.register_buffer(
            "table", torch.randn(4_000_000, generator=torch.Generator().manual_seed(2))
        )

    def forward(self, x):
        return x * (self.table * x.mean()).sum()


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384)
    ).eval()


def xs(n=6, d=384, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def by_check(report):
    return {f.check: f for f in report.findings}


def test_dropout_left_active_is_found_and_named():
    r = samebits.audit(LeftDropout().eval(), xs(4, 16))
    f = by_check(r)["stochastic"]
    assert not f.passed and f.op == "aten::dropout" and f.module == "<root>"
    assert (
        "model.eval()" in f.detail
        and "training=True" in f.detail
        and "train=True, p=0.3" in f.detail
    )
    assert f.cured_by_batch_invariant is False
    assert (
        not by_check(r)["repeat"].passed and by_check(r)["repeat"].cured_by_batch_invariant is False
    )


def test_module_in_train_mode_is_found():
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.2))  # never .eval()
    f = by_check(samebits.audit(m, xs(3, 8)))["stochastic"]
    assert not f.passed and f.module == "1" and "dropout" in f.op


def test_batch_variant_first_linear_is_localized_and_cured():
    r = samebits.audit(mlp(), xs(), checks=["batch_size", "batch_position"])
    f = by_check(r)["batch_size"]
    assert not f.passed and f.module == "0" and f.op in ("aten::linear", "aten::addmm")
    assert f.max_ulp > 0 and f.max_abs > 0 and f.cured_by_batch_invariant is True
    assert [d["module"] for d in f.divergence][:3] == ["0", "1", "2"]
    assert f.divergence[0]["max_ulp"] > 0
    with samebits.batch_invariant():
        assert samebits.audit(mlp(), xs(), checks=["batch_size", "batch_position"]).ok


def test_clean_model_passes():
    clean = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh()).eval()
    r = samebits.audit(clean, xs(5, 32))
    assert r.ok and {f.check for f in r.findings} == {
        "repeat",
        "batch_size",
        "batch_position",
        "threads",
        "stochastic",
        "environment",
    }


def test_thread_dependent_whole_reduction_is_found_by_threads():
    r = samebits.audit(BigSum(), xs(2, 1000), checks=["threads"], threads=[1, 2, 3])
    f = by_check(r)["threads"]
    assert not f.passed and f.max_ulp > 0 and "threads" in f.detail
    assert f.cured_by_batch_invariant is True


def test_json_schema():
    r = samebits.audit(mlp(), xs(), checks=["batch_size", "stochastic"])
    d = json.loads(r.to_json())
    assert set(d) == {
        "schema",
        "samebits_version",
        "ok",
        "model",
        "items",
        "batch_invariant",
        "fingerprint_id",
        "compared",
        "findings",
    }
    assert d["schema"] == "samebits-audit/1" and d["items"] == 6 and d["ok"] is False
    for f in d["findings"]:
        assert set(f) == {
            "check",
            "passed",
            "module",
            "op",
            "max_abs",
            "max_ulp",
            "detail",
            "cured_by_batch_invariant",
            "divergence",
            "cause",
            "fix",
            "max_rel",
            "ulp_at_max",
        }
        assert (
            f["check"] in samebits.audit.__globals__["CHECKS"]
            if hasattr(samebits.audit, "__globals__")
            else True
        )
        assert (
            isinstance(f["passed"], bool)
            and isinstance(f["max_ulp"], int)
            and isinstance(f["detail"], str)
        )


def test_html_report_contains_the_findings(tmp_path):
    r = samebits.audit(mlp(), xs(), checks=["batch_size"])
    p = r.to_html(tmp_path / "r.html")
    page = p.read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and "http" not in page
    assert (
        "batch_size" in page
        and "FAIL" in page
        and "<svg" in page
        and "first diverging module" in page
    )
    assert "item 0 alone vs first in a batch of 2" in page


def test_list_inputs_with_collate_and_nested_outputs():
    class Nested(torch.nn.Module):
        def forward(self, x):
            return {"a": (x * 2, [x.sum(-1)]), "b": None}

    items = [torch.randn(3) for _ in range(4)]
    r = samebits.audit(Nested().eval(), items, collate=torch.stack, checks=["batch_size", "repeat"])
    assert r.ok


def test_dict_inputs_enable_padding_check():
    class Emb(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.e = torch.nn.Embedding(50, 64)
            self.lin = torch.nn.Linear(64, 64)

        def forward(self, input_ids, attention_mask):
            h = self.lin(self.e(input_ids))
            m = attention_mask.unsqueeze(-1).float()
            return (h * m).sum(1) / m.sum(1)

    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [1, 2, 3, 4]])
    mask = (ids != 0).long()
    r = samebits.audit(Emb().eval(), {"input_ids": ids, "attention_mask": mask}, checks=["padding"])
    assert [f.check for f in r.findings] == ["padding"]
    with samebits.batch_invariant():
        assert samebits.audit(
            Emb().eval(), {"input_ids": ids, "attention_mask": mask}, checks=["padding"]
        ).ok


class Raises(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("kaboom")


@pytest.mark.parametrize(
    "model,inputs,msg",
    [
        (Raises(), torch.ones(2, 3), "the model raised RuntimeError: kaboom"),
        (lambda x: "no tensors", torch.ones(2, 3), "contains no tensors"),
        (torch.nn.Identity(), torch.tensor(3.0), "cannot infer a batch dimension"),
        (torch.nn.Identity(), {"a": torch.ones(2, 3), "b": torch.ones(3, 3)}, "dim 0 differs"),
        (torch.nn.Identity(), "text", "cannot infer a batch dimension"),
        (torch.nn.Identity(), [{"x": 1}], "needs collate"),
    ],
)
def test_bad_inputs_get_clear_errors(model, inputs, msg):
    with pytest.raises(AuditError, match=msg):
        samebits.audit(model, inputs)


def test_unknown_check():
    with pytest.raises(AuditError, match="unknown checks"):
        samebits.audit(torch.nn.Identity(), torch.ones(2, 2), checks=["speed"])


def test_testing_helpers():
    from samebits.testing import assert_batch_invariant, assert_reproducible

    with pytest.raises(AssertionError, match="batch_size"):
        assert_batch_invariant(mlp(), xs())
    with samebits.batch_invariant():
        assert assert_batch_invariant(mlp(), xs()).ok
        assert assert_reproducible(mlp(), xs(), threads=[1, 2, 3]).ok
    with pytest.raises(AssertionError, match="stochastic"):
        assert_reproducible(LeftDropout(), xs(3, 16))


def test_check_fixture(pytester):
    pytester.makepyfile(
        """
        import torch, samebits

        def test_ok(samebits_check):
            with samebits.batch_invariant():
                samebits_check.batch_invariant(torch.nn.Linear(64, 64).eval(), torch.randn(5, 64))
            samebits_check.reproducible(torch.nn.Tanh(), torch.randn(3, 4))

        def test_fails(samebits_check):
            samebits_check.reproducible(torch.nn.Dropout(0.5), torch.randn(3, 4))
        """
    )
    pytester.runpytest().assert_outcomes(passed=1, failed=1)
