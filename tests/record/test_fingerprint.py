import json
import os
import subprocess
import sys

import pytest
import torch

import samebits
from samebits.record import fingerprint as fp


def test_fields_on_this_machine():
    f = samebits.fingerprint()
    json.dumps(f)  # JSON-serializable
    assert f["versions"]["torch"] == torch.__version__
    assert f["versions"]["samebits"] == samebits.__version__
    assert f["versions"]["python"].count(".") == 2
    assert f["cpu"]["cores"] == os.cpu_count() and isinstance(f["cpu"]["isa"], list)
    assert f["threads"]["torch"] == torch.get_num_threads()
    assert (
        f["determinism"]["deterministic_algorithms"] is torch.are_deterministic_algorithms_enabled()
    )
    assert f["samebits"]["batch_invariant"] is False
    with samebits.batch_invariant():
        assert samebits.fingerprint()["samebits"]["batch_invariant"] is True
    assert f["gpu"] is None  # no GPU here
    assert f["os"]["system"] == "Linux"


def test_canary_this_hosts_torch_build_is_read():
    """A canary for the parsing of torch.__config__ and /proc/cpuinfo on the hosts we
    test on (MKL torch wheels on x86-64 with AVX2); elsewhere it skips, saying why."""
    f = samebits.fingerprint()
    if f["build"]["blas"] != "mkl" or f["cpu"]["machine"] != "x86_64":
        pytest.skip(f"canary for MKL x86-64 hosts; here blas={f['build']['blas']}")
    assert f["build"]["mkl"] and f["build"]["onednn"]
    if "avx2" not in samebits.native_info()["cpu_features"]:
        pytest.skip("canary for AVX2 hosts")
    assert "avx2" in f["cpu"]["isa"]


def test_kernels_section():
    f = samebits.fingerprint()
    info = samebits.native_info()
    k = f["kernels"]
    assert k["build"] == info["build"] and k["path"] == info["isa"]
    assert k["libm"] is None or k["libm"].startswith(("glibc", "musl", "libc"))
    assert k["compiler"] is None or isinstance(k["compiler"], str)
    assert fp.affects_bits("kernels.build") and fp.affects_bits("kernels.compiler")
    assert fp.affects_bits("kernels.libm") and not fp.affects_bits("kernels.path")
    b = json.loads(json.dumps(f))
    b["kernels"]["build"] = "000000000000-00000000"
    assert fp.fingerprint_id(f) != fp.fingerprint_id(b)
    c = json.loads(json.dumps(f))
    c["kernels"]["path"] = "portable" if k["path"] != "portable" else "avx2"
    assert fp.fingerprint_id(f) == fp.fingerprint_id(c)


def test_threads_and_isa_do_not_affect_bits_under_the_mode(threads):
    threads(1)
    with samebits.batch_invariant():
        a = samebits.fingerprint()
        threads(2)
        b = samebits.fingerprint()
    b["cpu"]["isa"] = ["sse4_2"]  # another CPU: every kernel path gives the same bits
    b["cpu"]["torch_capability"] = "DEFAULT"
    rows = samebits.fingerprint_diff(a, b)
    assert {r["field"] for r in rows} >= {"threads.torch", "cpu.isa"}
    assert not any(r["affects_bits"] for r in rows)
    assert fp.fingerprint_id(a) == fp.fingerprint_id(b)
    outside_a, outside_b = (dict(x, samebits={"batch_invariant": False}) for x in (a, b))
    assert fp.fingerprint_id(outside_a) != fp.fingerprint_id(outside_b)
    assert all(r["affects_bits"] for r in samebits.fingerprint_diff(outside_a, outside_b))


def test_verify_stays_bitwise_when_only_threads_changed(tmp_path, threads):
    import torch

    out = {"x": torch.arange(6.0)}
    threads(1)
    with samebits.batch_invariant():
        samebits.record(out, tmp_path / "r")
        threads(3)
        report = samebits.verify(tmp_path / "r", out)
    assert report.ok and report.mode == "bitwise" and report.fingerprint_diff == []


def test_env_vars_and_threads_are_captured(threads):
    threads(1)
    env = {**os.environ, "OMP_NUM_THREADS": "3", "MKL_DYNAMIC": "FALSE"}
    out = subprocess.run(
        [sys.executable, "-c", "import json, samebits; print(json.dumps(samebits.fingerprint()))"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    f = json.loads(out.stdout)
    got = f["threads"]["env"]
    assert {k: got.get(k) for k in ("MKL_DYNAMIC", "OMP_NUM_THREADS")} == {
        "MKL_DYNAMIC": "FALSE",
        "OMP_NUM_THREADS": "3",
    }


def test_diff_marks_bit_fields():
    a = samebits.fingerprint()
    b = json.loads(json.dumps(a))
    b["versions"]["torch"] = "9.9.9"
    b["versions"]["python"] = "3.99.0"
    b["os"]["release"] = "other"
    b["cpu"]["isa"] = ["avx2", "avx512f"]
    rows = {r["field"]: r for r in samebits.fingerprint_diff(a, b)}
    assert set(rows) == {"versions.torch", "versions.python", "os.release", "cpu.isa"}
    assert rows["versions.torch"]["affects_bits"] and rows["cpu.isa"]["affects_bits"]
    assert not rows["versions.python"]["affects_bits"] and not rows["os.release"]["affects_bits"]
    assert (
        rows["versions.torch"]["a"] == torch.__version__ and rows["versions.torch"]["b"] == "9.9.9"
    )
    assert samebits.fingerprint_diff(a, a) == []


def test_id_tracks_bit_fields_only():
    a = samebits.fingerprint()
    b = json.loads(json.dumps(a))
    b["os"]["release"] = "other"
    assert fp.fingerprint_id(a) == fp.fingerprint_id(b)
    b["threads"]["torch"] = 99
    assert fp.fingerprint_id(a) != fp.fingerprint_id(b)


def test_env_cli_and_diff(tmp_path):
    exe = [sys.executable, "-m", "samebits.cli"]
    a = subprocess.run([*exe, "env", "--json"], capture_output=True, text=True, check=True).stdout
    (tmp_path / "a.json").write_text(a)
    data = json.loads(a)
    data["versions"]["torch"] = "0.0.1"
    (tmp_path / "b.json").write_text(json.dumps(data))
    same = subprocess.run(
        [*exe, "env", "--diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")],
        capture_output=True,
        text=True,
    )
    assert same.returncode == 0 and "identical" in same.stdout
    d = subprocess.run(
        [*exe, "env", "--diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
    )
    assert d.returncode == 1 and "BITS versions.torch" in d.stdout
    (tmp_path / "bad.json").write_text("{not json")
    bad = subprocess.run(
        [*exe, "env", "--diff", str(tmp_path / "bad.json"), str(tmp_path / "a.json")],
        capture_output=True,
        text=True,
    )
    assert (
        bad.returncode == 2
        and "not a JSON fingerprint" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    human = subprocess.run([*exe, "env"], capture_output=True, text=True, check=True).stdout
    assert "fingerprint id" in human and "* versions.torch" in human
