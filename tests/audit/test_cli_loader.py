"""`samebits audit --loader` as a real process, with real DataLoader workers."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import samebits

PIPELINES = Path(__file__).with_name("pipelines.py")
ROOT = str(Path(samebits.__file__).parents[1])


def run(cwd, *args):
    env = {**os.environ, "PYTHONPATH": ROOT}  # samebits from this checkout, not the module
    return subprocess.run(
        [sys.executable, "-m", "samebits.cli", "audit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def here(tmp_path):
    # the factory module sits in the current directory, as a user's script would
    shutil.copy(PIPELINES, tmp_path / "mypipe.py")
    return tmp_path


def test_clean_loader_exit_0(here):
    p = run(here, "--loader", "mypipe:clean", "--workers", "0,2,3")
    assert p.returncode == 0, p.stderr
    assert "compared: 3 batches, 12 items per pass; num_workers 0, 2, 3" in p.stdout
    assert "all checks pass" in p.stdout
    p = run(here, "--loader", "mypipe:clean", "--repeats", "3", "--seed", "5", "--json", "--quiet")
    assert p.returncode == 0, p.stderr
    c = json.loads(p.stdout)["compared"]
    assert (c["repeats"], c["seed"], c["workers"]) == (3, 5, [0, 2])


def test_findings_exit_1_with_json_and_html(here):
    html = here / "r.html"
    p = run(
        here, "--loader", "mypipe:unsharded", "--json", "--html", str(html), "--max-batches", "3"
    )
    assert p.returncode == 1, p.stderr
    d = json.loads(p.stdout)
    w = next(f for f in d["findings"] if f["check"] == "loader_workers")
    assert (
        not w["passed"]
        and w["cause"].startswith("duplicate items")
        and "get_worker_info" in w["fix"]
    )
    assert d["compared"]["max_batches"] == 3 and d["compared"]["workers"] == [0, 2]
    page = html.read_text()
    assert "loader_workers" in page and "duplicate items" in page and "get_worker_info" in page


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--loader", "mypipe:nothing"], "cannot import 'nothing' from 'mypipe'"),
        (["--loader", "nosuchmod:make"], "cannot import 'make' from 'nosuchmod'"),
        (["--loader", "mypipe"], "expected package.module:factory"),
        (["--loader", "mypipe:N"], "'N' is not callable (int)"),
        (["--loader", "mypipe:clean", "--workers", "0,x"], "--workers '0,x'"),
        (["--loader", "mypipe:wrong_workers"], "returned a DataLoader with num_workers=0"),
        ([], "give --model, --loader, or both"),
    ],
)
def test_usage_errors_exit_2(here, args, msg):
    p = run(here, *args)
    assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr, p.stderr
