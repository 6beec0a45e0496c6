import json

import pytest
import torch

import samebits
from samebits.errors import RecordError, TamperError
from samebits.record.compare import compare, ulp_distance
from samebits.record.store import parse_tolerance


def outs():
    g = torch.Generator().manual_seed(0)
    return {
        "emb": torch.randn(4, 8, generator=g),
        "logits": torch.randn(3, generator=g).bfloat16(),
        "ids": torch.arange(5),
    }


def test_round_trip(tmp_path):
    samebits.record(outs(), tmp_path / "r", model="demo")
    v = samebits.verify(tmp_path / "r", outs())
    assert v.ok and v.mode == "bitwise" and v.mismatched == 0 and v.total == 3
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["meta"] == {"model": "demo"} and manifest["tolerance"] == {"mode": "bitwise"}
    assert {e["name"] for e in manifest["outputs"]} == {"emb", "logits", "ids"}


def test_single_tensor_and_list_forms(tmp_path):
    t = torch.ones(3)
    samebits.record(t, tmp_path / "a")
    assert samebits.verify(tmp_path / "a", t).ok
    samebits.record([t, t * 2], tmp_path / "b")
    assert samebits.verify(tmp_path / "b", [t, t * 2]).ok
    assert not samebits.verify(tmp_path / "b", [t, t * 3]).ok


def test_mismatch_reports_count_first_abs_ulp(tmp_path):
    samebits.record(outs(), tmp_path / "r")
    changed = outs()
    changed["emb"][1, 2] = torch.nextafter(changed["emb"][1, 2], torch.tensor(10.0))
    v = samebits.verify(tmp_path / "r", changed)
    assert not v.ok and v.mismatched == 1 and v.first == "emb" and v.max_ulp == 1 and v.max_abs > 0


def flip(path, offset):
    b = bytearray(path.read_bytes())
    b[offset] ^= 0x01
    path.write_bytes(bytes(b))


def test_flipped_output_byte_is_tampering(tmp_path):
    samebits.record(outs(), tmp_path / "r")
    flip(tmp_path / "r" / "outputs.safetensors", -3)
    with pytest.raises(TamperError, match="outputs were modified"):
        samebits.verify(tmp_path / "r", outs())


def test_edited_manifest_hash_is_tampering(tmp_path):
    samebits.record(outs(), tmp_path / "r")
    mf = tmp_path / "r" / "manifest.json"
    m = json.loads(mf.read_text())
    h = m["outputs"][0]["sha256"]
    m["outputs"][0]["sha256"] = ("0" if h[0] != "0" else "1") + h[1:]
    mf.write_text(json.dumps(m))
    with pytest.raises(TamperError, match="manifest was modified"):
        samebits.verify(tmp_path / "r", outs())


def test_flipped_manifest_byte_is_a_clear_error(tmp_path):
    samebits.record(outs(), tmp_path / "r")
    mf = tmp_path / "r" / "manifest.json"
    mf.write_text(mf.read_text().replace('"sha256"', "\"sha256'", 1))
    with pytest.raises(RecordError, match="not valid JSON"):
        samebits.verify(tmp_path / "r", outs())


@pytest.mark.parametrize("size", [0, 7, 100])
def test_truncated_outputs_file_fails_its_hash_before_it_is_parsed(tmp_path, size):
    samebits.record(outs(), tmp_path / "r")
    f = tmp_path / "r" / "outputs.safetensors"
    f.write_bytes(f.read_bytes()[:size])
    with pytest.raises(TamperError, match="does not match the SHA-256"):
        samebits.verify(tmp_path / "r", outs())


def test_corrupt_outputs_with_a_matching_hash_are_reported_corrupt(tmp_path):
    import hashlib

    samebits.record(outs(), tmp_path / "r")
    f, mf = tmp_path / "r" / "outputs.safetensors", tmp_path / "r" / "manifest.json"
    f.write_bytes(f.read_bytes()[:7])
    m = json.loads(mf.read_text())
    m["outputs_file"]["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    mf.write_text(json.dumps(m))
    with pytest.raises(RecordError, match="truncated or corrupt"):
        samebits.verify(tmp_path / "r", outs())


def test_missing_record(tmp_path):
    with pytest.raises(RecordError, match="is not a directory"):
        samebits.verify(tmp_path / "nope", outs())
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match="has no manifest.json"):
        samebits.verify(tmp_path / "empty", outs())


def edit_fingerprint(path):
    mf = path / "manifest.json"
    m = json.loads(mf.read_text())
    m["fingerprint"]["versions"]["torch"] = "2.0.0"
    m["fingerprint"]["cpu"]["isa"] = ["avx512f"]
    mf.write_text(json.dumps(m))


def test_tolerance_mode_when_the_fingerprint_differs(tmp_path):
    samebits.record(outs(), tmp_path / "r", tolerance="ulp=2")
    edit_fingerprint(tmp_path / "r")
    near = outs()
    near["emb"][0, 0] = torch.nextafter(near["emb"][0, 0], torch.tensor(10.0))
    v = samebits.verify(tmp_path / "r", near)
    assert v.mode == "tolerance" and v.ok and v.mismatched == 1 and v.out_of_tolerance == 0
    assert {d["field"] for d in v.fingerprint_diff} == {"versions.torch", "cpu.isa"}
    far = outs()
    far["emb"][0, 0] += 1.0
    assert not samebits.verify(tmp_path / "r", far).ok
    # the same near-miss fails where the fingerprint matches: bitwise is demanded
    samebits.record(outs(), tmp_path / "s", tolerance="ulp=2")
    assert samebits.verify(tmp_path / "s", near).mode == "bitwise"
    assert not samebits.verify(tmp_path / "s", near).ok


def test_rtol_atol_policy(tmp_path):
    samebits.record(outs(), tmp_path / "r", tolerance="rtol=1e-3,atol=1e-6")
    edit_fingerprint(tmp_path / "r")
    near = outs()
    near["emb"] = near["emb"] * (1 + 1e-5)
    assert samebits.verify(tmp_path / "r", near).ok


def test_bad_tolerance_and_outputs(tmp_path):
    with pytest.raises(ValueError, match="expected 'bitwise'"):
        parse_tolerance("ulp=-1")
    with pytest.raises(TypeError, match="expected a torch.Tensor"):
        samebits.record({"a": [1, 2]}, tmp_path / "x")


def test_ulp_distance():
    a = torch.tensor([1.0, -0.0, 0.0, -1.0])
    b = torch.tensor(
        [torch.nextafter(torch.tensor(1.0), torch.tensor(2.0)).item(), 0.0, -0.0, -1.0]
    )
    assert ulp_distance(a, b).tolist() == [1, 0, 0, 0]
    neg_small = torch.tensor([-1e-45])  # the largest negative subnormal is 1 ulp below -0
    assert ulp_distance(neg_small, torch.tensor([1e-45])).item() == 2
    d = compare(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
    assert d.mismatched == 1 and d.first_index == (1,) and d.max_abs == 0.5
