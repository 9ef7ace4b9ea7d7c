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


# ----------------------------------------------------------------------------- demo and cloze (experiment 1)

def _run_cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "minibidir", *argv], capture_output=True, text=True,
                          env=env)


def test_demo_runs_end_to_end_and_writes_the_plot(tmp_path):
    out = _run_cli("demo", "--quick", "--no-progress", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "| lstm-left | left |" in out.stdout and "| bilstm | both |" in out.stdout
    assert "LSTM: left context only" in out.stdout
    assert (tmp_path / "demo_cloze.png").stat().st_size > 10_000


def test_cloze_on_the_standin_device(tmp_path):
    env = dict(os.environ, MINIBIDIR_BACKEND="standin")
    out = _run_cli("cloze", "--quick", "--models", "lstm-right,tf-full", "--max-train", "300", "--epochs", "1",
                   "--device", "cuda", "--no-progress", "--out", str(tmp_path), "--json", str(tmp_path / "r.json"),
                   env=env)
    assert out.returncode == 0, out.stderr
    import json
    res = json.loads((tmp_path / "r.json").read_text())
    assert [r["model"] for r in res["models"]] == ["lstm-right", "tf-full"]
    assert res["device"] == "cuda" and res["corpus"]["train_items"] == 300
    assert (tmp_path / "cloze.png").exists()


def test_help_lists_the_experiments_and_their_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("demo", "cloze", "autograd", "--data", "--device", "--epochs", "--seed", "--out", "--models"):
        assert word in text, word
    with pytest.raises(SystemExit):
        main(["cloze", "--help"])
    text = capsys.readouterr().out
    assert "wikitext2" in text and "tf-two-tower" in text


def test_bad_experiment_options_get_a_message_not_a_traceback():
    cases = [(["demo", "--epochs", "0"], "--epochs"), (["demo", "--epochs", "two"], "--epochs"),
             (["demo", "--data", "gutenberg"], "--data"), (["demo", "--device", "tpu"], "--device"),
             (["cloze", "--models", "lstm-up,bilstm"], "lstm-up"), (["cloze", "--context", "-1"], "--context"),
             (["demo", "--bogus"], "--bogus")]
    for argv, word in cases:
        out = _run_cli(*argv)
        assert out.returncode == 2, (argv, out.stderr)
        assert "Traceback" not in out.stderr and "error" in out.stderr and word in out.stderr, (argv, out.stderr)


def test_cuda_without_a_device_is_a_clear_error():
    from minibidir import backend as B
    if B.cupy_available():
        pytest.skip("a GPU is present")
    env = {k: v for k, v in os.environ.items() if k != "MINIBIDIR_BACKEND"}
    out = _run_cli("demo", "--quick", "--device", "cuda", "--no-progress", env=env)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "CuPy is not installed or no GPU" in out.stderr
