"""Nothing lost: exact resume after SIGKILL, SIGTERM/SIGINT, a broken newest checkpoint, NaN."""

import os
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from trainkit import checkpoints

BASE = ["--batch_size=20", "--validation_size=100", "--log_frequency=1",
        "--save_summaries_steps=0", "--data_mirrors=http://127.0.0.1:9/",
        "--validate_every_steps=0"]


def all_tensors(path):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and not name.startswith("save_counter")}


def wait_for(predicate, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigkill_and_resume_is_bitwise_identical(tmp_path, mnist_data):
    # Lookahead every 4 steps after step 10, copied back every 9, against saves every
    # 7: the slow copy differs from the weights at most saves, so it must come back
    # from the checkpoint.
    common = [f"--data_dir={mnist_data}", *BASE, "--model=deep_cnn", "--deterministic",
              "--max_steps=60", "--save_checkpoint_steps=7", "--max_to_keep=3", "--seed=3",
              "--lookahead_every_steps=4", "--lookahead_start_steps=10",
              "--lookahead_sync_steps=9"]
    reference = str(tmp_path / "reference")
    result = helpers.run_cli("mnist.train", f"--train_dir={reference}", *common)
    assert result.returncode == 0, result.stderr

    chaos = str(tmp_path / "chaos")
    trainer = helpers.start_cli("mnist.train", f"--train_dir={chaos}", *common)
    wait_for(lambda: (checkpoints.latest(chaos) or "").endswith("ckpt-21"), trainer)
    trainer.send_signal(signal.SIGKILL)
    trainer.communicate()
    assert not os.path.exists(os.path.join(chaos, "DONE"))
    killed_at = checkpoints.step_of(checkpoints.latest(chaos))
    assert 21 <= killed_at < 60
    result = helpers.run_cli("mnist.train", f"--train_dir={chaos}", "--resume")
    assert result.returncode == 0, result.stderr
    assert f"at step {killed_at}" in result.stderr

    expected = all_tensors(os.path.join(reference, "ckpt-60"))
    got = all_tensors(os.path.join(chaos, "ckpt-60"))
    assert set(got) == set(expected)
    assert any(name.startswith("ema/") for name in got)
    assert any(name.startswith("optimizer/") for name in got)
    assert any(name.startswith("lookahead/") for name in got)
    assert any("seed_generator" in name for name in got)  # dropout's random state
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_saves_at_the_current_step(tmp_path, mnist_data, signum, exit_code):
    train_dir = str(tmp_path / "run")
    trainer = helpers.start_cli("mnist.train", f"--train_dir={train_dir}",
                                f"--data_dir={mnist_data}", *BASE, "--max_steps=1000000",
                                "--save_checkpoint_steps=0")
    lines = []

    def reached_step_30():
        line = trainer.stdout.readline()
        lines.append(line)
        return "step 30/" in line

    wait_for(reached_step_30, trainer)
    trainer.send_signal(signum)
    out, _ = trainer.communicate(timeout=60)
    out = "".join(lines) + out
    assert trainer.returncode == exit_code, out
    name = signal.Signals(signum).name
    stopped = [l for l in out.splitlines() if f"Stopped by {name} at step" in l]
    assert len(stopped) == 1, out
    step = int(stopped[0].split("at step ")[1].split(";")[0])
    assert step >= 30
    assert checkpoints.latest(train_dir).endswith(f"ckpt-{step}")
    assert not os.path.exists(os.path.join(train_dir, "DONE"))
    # ... and the run resumes from exactly there.
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                             f"--max_steps={step + 5}")
    assert result.returncode == 0, result.stderr
    assert f"at step {step}" in result.stderr


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", *BASE, "--max_steps=20",
                             "--save_checkpoint_steps=10")
    assert result.returncode == 0, result.stderr
    data = os.path.join(train_dir, "ckpt-20.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                             "--max_steps=30")
    assert result.returncode == 0, result.stderr
    warning = [l for l in result.stderr.splitlines() if "is unreadable" in l]
    assert len(warning) == 1 and "ckpt-20" in warning[0] and "ckpt-10" in warning[0]
    assert f"from {train_dir}/ckpt-10 at step 10" in result.stderr
    assert checkpoints.latest(train_dir).endswith("ckpt-30")


def test_nan_loss_stops_with_the_step_and_saves_nothing_non_finite(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", *BASE, "--max_steps=200",
                             "--save_checkpoint_steps=1", "--optimizer=sgd",
                             "--learning_rate=1e30", "--log_frequency=1000")
    assert result.returncode == 2, result.stderr
    lines = helpers.error_lines(result.stderr)
    assert len(lines) == 1 and "the loss became NaN or infinite at step" in lines[0], lines
    bad_step = int(lines[0].split("at step ")[1].split(";")[0])
    for path in tf.train.get_checkpoint_state(train_dir).all_model_checkpoint_paths:
        assert checkpoints.step_of(path) < bad_step
        for name, value in all_tensors(path).items():
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.all(np.isfinite(value)), (path, name)


def test_failed_save_is_one_line_and_keeps_earlier_checkpoints(tmp_path, mnist_data):
    train_dir = tmp_path / "run"
    train_dir.mkdir()
    # A plain file where TensorFlow writes ckpt-20's temporary shards: that save must fail
    # (as on a full disk or a directory gone read-only), after ckpt-10 was written.
    (train_dir / "ckpt-20_temp").write_text("in the way")
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", *BASE, "--max_steps=30",
                             "--save_checkpoint_steps=10")
    assert result.returncode == 2, result.stderr
    lines = helpers.error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "saving the checkpoint at step 20" in lines[0] and "earlier checkpoints" in lines[0]
    assert checkpoints.latest(str(train_dir)).endswith("ckpt-10")
    assert all_tensors(str(train_dir / "ckpt-10"))  # intact and readable
    # The obstacle gone (space freed), --resume continues and clears the litter.
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume")
    assert result.returncode == 0, result.stderr
    assert "left by a save that was interrupted" in result.stderr
    assert not (train_dir / "ckpt-20_temp").exists()
    assert checkpoints.latest(str(train_dir)).endswith("ckpt-30")


needs_venv = pytest.mark.skipif(
    not os.path.exists(os.path.join(helpers.REPO, ".venv", ".installed")),
    reason="the make targets run the project's .venv (made by `make test`)")


@needs_venv
def test_make_resume_without_checkpoint_says_so(tmp_path):
    result = helpers.run_make("resume", "DATASET=mnist", f"TRAIN_DIR={tmp_path / 'none'}")
    line = helpers.assert_one_clear_line(result, f"{tmp_path / 'none'} holds no checkpoint "
                                                 "to resume", "'make train TRAIN_DIR=")
    assert "--resume" not in line  # in the words of the command the user ran


@needs_venv
def test_make_train_refuses_and_make_resume_continues(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    make = ["DATASET=mnist", f"TRAIN_DIR={train_dir}",
            f"DATA_DIR={mnist_data}"]
    fast = "ARGS=" + " ".join(BASE + ["--max_steps=10", "--save_checkpoint_steps=5"])
    first = helpers.run_make(*make, "train", fast)
    assert first.returncode == 0, first.stderr
    assert f"Starting a new run in {train_dir} at step 0" in first.stderr
    again = helpers.run_make(*make, "train", fast)
    # Refused in make's words, before TensorFlow loads.
    helpers.assert_one_clear_line(again, "already holds checkpoints",
                                  f"'make resume TRAIN_DIR={train_dir}'")
    assert "Starting" not in again.stderr and "Precision:" not in again.stderr
    resumed = helpers.run_make(*make, "resume", "ARGS=--max_steps=15")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming {train_dir} from {train_dir}/ckpt-10 at step 10" in resumed.stderr
    assert checkpoints.latest(train_dir).endswith("ckpt-15")
    # The run is complete: make resume says so, and how to extend it.
    done = helpers.run_make(*make, "resume")
    helpers.assert_one_clear_line(done, f"the run in {train_dir} is complete: it reached step "
                                        "15 of --max_steps=15", "ARGS=--max_steps=30'")
