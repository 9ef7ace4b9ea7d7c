"""The command line: chapter 1's example end to end, options, clear errors."""
import os
import subprocess
import sys

import pytest

from minibidir.__main__ import main, run_autograd_example


def test_autograd_example_learns_the_spirals(tmp_path):
    res = run_autograd_example(steps=1500, out_dir=tmp_path, progress=False)
    assert res["gradcheck"] is True
    assert res["accuracy"] >= 0.9, res
    assert res["loss"] < 0.3
    assert (tmp_path / "autograd_spirals.png").stat().st_size > 10_000


def test_same_example_on_the_standin_device(tmp_path):
    env = dict(os.environ, MINIBIDIR_BACKEND="standin")
    out = subprocess.run([sys.executable, "-m", "minibidir", "autograd", "--steps", "200", "--device", "cuda",
                          "--no-progress", "--out", str(tmp_path)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "gradient check of the model (float64, finite differences): passed" in out.stdout


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "autograd" in capsys.readouterr().out


def test_bad_options_get_a_message_not_a_traceback():
    for argv in (["autograd", "--steps", "0"], ["autograd", "--device", "tpu"], ["nonsense"]):
        out = subprocess.run([sys.executable, "-m", "minibidir", *argv], capture_output=True, text=True)
        assert out.returncode == 2
        assert "Traceback" not in out.stderr and "error" in out.stderr
