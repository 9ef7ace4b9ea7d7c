"""The command line: chapter 1's example end to end, options, clear errors."""
import os
import subprocess
import sys

import pytest

from minibidir import data as _data
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


# ----------------------------------------------------------------------------- pos and seq2seq (experiments 2 and 3)

_HAVE_EWT = all(_data.available("ud_english_ewt", s) for s in ("train", "dev", "test"))
_needs_ewt = pytest.mark.skipif(not _HAVE_EWT, reason="UD English EWT is neither mirrored nor cached")


@_needs_ewt
def test_pos_command_runs_the_quick_setting(tmp_path):
    out = _run_cli("pos", "--quick", "--variants", "uni-word,bi-word", "--epochs", "1", "--seed", "3",
                   "--no-progress", "--json", str(tmp_path / "pos.json"))
    assert out.returncode == 0, out.stderr
    assert "| uni-word |" in out.stdout and "| bi-word |" in out.stdout and "Plank" in out.stdout
    assert "words: left-to-right" in out.stdout
    import json
    res = json.loads((tmp_path / "pos.json").read_text())
    assert [r["variant"] for r in res] == ["uni-word", "bi-word"]
    assert all(r["config"]["seed"] == 3 and r["epochs_run"] == 1 and r["config"]["train_limit"] == 1500 for r in res)


@_needs_ewt
def test_seq2seq_command_on_the_standin_device(tmp_path):
    env = dict(os.environ, MINIBIDIR_BACKEND="standin")
    out = _run_cli("seq2seq", "--quick", "--models", "uni-lstm,bi-lstm", "--epochs", "1", "--max-train", "300",
                   "--device", "cuda", "--no-progress", "--out", str(tmp_path), "--json", str(tmp_path / "s.json"),
                   env=env)
    assert out.returncode == 0, out.stderr
    assert "| uni-lstm | greedy |" in out.stdout and "encoder: left-to-right" in out.stdout
    import json
    res = json.loads((tmp_path / "s.json").read_text())
    assert [r["model"] for r in res["rows"]] == ["uni-lstm", "bi-lstm"]
    assert res["device"] == "cuda" and res["data"]["sizes"]["train_types"] == 300
    assert res["config"]["epochs"] == 1 and len(res["rows"][0]["history"]) == 1
    assert (tmp_path / "seq2seq.png").stat().st_size > 10_000


def test_help_lists_pos_and_seq2seq(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for word in ("pos", "seq2seq", "--variants", "--beam-size", "--max-train", "--json"):
        assert word in text, word
    with pytest.raises(SystemExit):
        main(["seq2seq", "--help"])
    text = capsys.readouterr().out
    assert "bi-aligned" in text and "--demo" in text and "ud_english_ewt" in text


def test_bad_pos_and_seq2seq_options_get_a_message_not_a_traceback():
    cases = [(["pos", "--variants", "uni-word,tri-word"], "tri-word"), (["pos", "--epochs", "0"], "--epochs"),
             (["pos", "--data", "wikitext2"], "--data"), (["pos", "--device", "cuda"], "--device"),
             (["seq2seq", "--models", "uni-lstm,tri-lstm"], "tri-lstm"), (["seq2seq", "--epochs", "-1"], "--epochs"),
             (["seq2seq", "--beam-size", "0"], "--beam-size"), (["seq2seq", "--device", "tpu"], "--device"),
             (["seq2seq", "--quick", "--demo"], "--demo"), (["seq2seq", "--seed", "x"], "--seed")]
    for argv, word in cases:
        out = _run_cli(*argv)
        assert out.returncode == 2, (argv, out.stderr)
        assert "Traceback" not in out.stderr and "error" in out.stderr and word in out.stderr, (argv, out.stderr)


def test_seq2seq_cuda_without_a_device_is_a_clear_error():
    from minibidir import backend as B
    if B.cupy_available():
        pytest.skip("a GPU is present")
    env = {k: v for k, v in os.environ.items() if k != "MINIBIDIR_BACKEND"}
    out = _run_cli("seq2seq", "--quick", "--device", "cuda", "--no-progress", env=env)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "CuPy is not installed or no GPU" in out.stderr
