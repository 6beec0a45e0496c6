"""The samebits_golden fixture, run in a real inner pytest session (the plugin
loads through its pytest11 entry point)."""

TEST = """
import torch

def test_emb(samebits_golden):
    samebits_golden.check({"x": torch.arange(6.0) * SCALE})
"""


def test_golden_create_check_fail_update(pytester):
    pytester.makepyfile(test_g=TEST.replace("SCALE", "1.0"))
    first = pytester.runpytest()
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*did not exist: created it*"])
    assert (pytester.path / "golden" / "test_g" / "test_emb" / "manifest.json").exists()
    pytester.runpytest().assert_outcomes(passed=1)

    pytester.makepyfile(test_g=TEST.replace("SCALE", "1.5"))
    changed = pytester.runpytest()
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*outputs differ from golden record*", "*--samebits-update*"])

    pytester.runpytest("--samebits-update").assert_outcomes(passed=1)
    pytester.runpytest().assert_outcomes(passed=1)
