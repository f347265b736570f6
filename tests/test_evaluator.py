"""The evaluator under stress, with real processes: deletions, corruption, restarts, stops."""

import json
import os
import signal
import time

import numpy as np
import pytest

from tests import helpers
from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import metrics
from trainkit import pipeline
from trainkit import registry
from trainkit import summaries

FAST = ["--batch_size=20", "--validation_size=100", "--log_frequency=50",
        "--save_summaries_steps=0", "--data_mirrors=http://127.0.0.1:9/",
        "--validate_every_steps=0"]


def train(train_dir, data_dir, *extra):
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", f"--data_dir={data_dir}",
                             *FAST, *extra)
    assert result.returncode == 0, result.stderr
    return result


def steps_in(eval_dir):
    return [r["step"] for r in summaries.read_jsonl(os.path.join(eval_dir, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def five_checkpoints(tmp_path_factory, mnist_data):
    """A finished run keeping ckpt-10 .. ckpt-50."""
    train_dir = str(tmp_path_factory.mktemp("five") / "run")
    train(train_dir, mnist_data, "--max_steps=50", "--save_checkpoint_steps=10",
          "--max_to_keep=5")
    return train_dir


def test_fast_trainer_with_max_to_keep_1_and_eager_evaluator(tmp_path, mnist_data):
    """Checkpoints deleted under the evaluator: no crash, no step scored twice."""
    train_dir = str(tmp_path / "run")
    _, eval_out = helpers.run_pair(
        "mnist", train_dir, ["--eval_interval_secs=0", "--eval_batch_size=50"],
        [f"--data_dir={mnist_data}", *FAST, "--max_steps=600", "--save_checkpoint_steps=3",
         "--max_to_keep=1"])
    assert "Traceback" not in eval_out
    steps = steps_in(os.path.join(train_dir, "eval"))
    assert len(steps) == len(set(steps)) and len(steps) > 1, eval_out
    assert steps[-1] == 600
    # The best survived the trainer's max_to_keep=1.
    best = json.load(open(os.path.join(train_dir, "eval", "best", "best.json")))
    records = summaries.read_jsonl(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert best["precision_at_1"] == max(r["precision_at_1"] for r in records)
    assert checkpoints.latest(os.path.join(train_dir, "eval", "best")) == best["checkpoint"]
    assert os.path.exists(best["checkpoint"] + ".index")


def test_truncated_checkpoint_is_skipped_with_one_warning(tmp_path, five_checkpoints):
    eval_dir = str(tmp_path / "eval")
    data_file = os.path.join(five_checkpoints, "ckpt-30.data-00000-of-00001")
    original = open(data_file, "rb").read()
    try:
        with open(data_file, "wb") as f:
            f.write(original[: len(original) // 3])
        result = helpers.run_cli("mnist.eval", f"--train_dir={five_checkpoints}",
                                 f"--eval_dir={eval_dir}", "--eval_policy=all",
                                 "--eval_interval_secs=0")
    finally:
        with open(data_file, "wb") as f:
            f.write(original)
    assert result.returncode == 0, result.stderr
    warnings = [l for l in result.stderr.splitlines() if "Skipping checkpoint" in l]
    assert len(warnings) == 1 and "ckpt-30" in warnings[0], result.stderr
    assert steps_in(eval_dir) == [10, 20, 40, 50]


def test_eval_policy_all_scores_every_retained_checkpoint(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    train(train_dir, mnist_data, "--max_steps=50", "--save_checkpoint_steps=10",
          "--max_to_keep=3")
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--eval_policy=all",
                             "--eval_interval_secs=0")
    assert result.returncode == 0, result.stderr
    assert steps_in(os.path.join(train_dir, "eval")) == [30, 40, 50]
    # latest (the default) takes only the newest
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}",
                             f"--eval_dir={tmp_path / 'latest'}", "--eval_interval_secs=0")
    assert steps_in(str(tmp_path / "latest")) == [50]


def test_killed_evaluator_restarts_without_repeating(tmp_path, five_checkpoints):
    eval_dir = str(tmp_path / "eval")
    args = [f"--train_dir={five_checkpoints}", f"--eval_dir={eval_dir}", "--eval_policy=all",
            "--eval_interval_secs=0", "--eval_batch_size=10"]
    first = helpers.start_cli("mnist.eval", *args)
    deadline = time.monotonic() + 90
    while len(steps_in(eval_dir)) < 2:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    done_before = steps_in(eval_dir)
    assert 2 <= len(done_before) < 5
    second = helpers.run_cli("mnist.eval", *args)
    assert second.returncode == 0, second.stderr
    assert steps_in(eval_dir) == [10, 20, 30, 40, 50]
    for step in done_before:
        assert f"step {step}: precision" not in second.stderr


def test_timeout_secs_ends_a_wait_for_checkpoints(tmp_path, five_checkpoints):
    # A copy of the run without DONE: the evaluator would wait forever without the timeout.
    train_dir = tmp_path / "run"
    train_dir.mkdir()
    for name in os.listdir(five_checkpoints):
        path = os.path.join(five_checkpoints, name)
        if os.path.isfile(path) and name != "DONE":
            (train_dir / name).write_bytes(open(path, "rb").read())
    start = time.monotonic()
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--timeout_secs=2",
                             "--eval_interval_secs=0.2")
    assert result.returncode == 0, result.stderr
    assert "No new checkpoint for 2 s" in result.stderr
    assert steps_in(str(train_dir / "eval")) == [50]
    assert time.monotonic() - start < 60


def test_evaluator_early_stopping_stops_the_trainer(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    train_out, eval_out = helpers.run_pair(
        "mnist", train_dir, ["--eval_interval_secs=0.1", "--early_stopping_evals=2"],
        [f"--data_dir={mnist_data}", *FAST, "--max_steps=1000000",
         "--save_checkpoint_steps=40", "--max_to_keep=3"])
    assert "Early stopping" in eval_out and "asked the trainer to stop" in eval_out
    assert "Stopping early at step" in train_out and "stop requested" in train_out
    final = int(open(os.path.join(train_dir, "DONE")).read())
    assert final < 1000000
    # The evaluator scored the trainer's final checkpoint before leaving.
    assert steps_in(os.path.join(train_dir, "eval"))[-1] == final
    stop = json.load(open(os.path.join(train_dir, "STOP")))
    assert stop["requested_by"] == "evaluator"


def test_trainer_early_stopping_keeps_best_validation(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", *FAST[:-1], "--max_steps=100000",
                             "--validate_every_steps=10", "--early_stopping_steps=60",
                             "--learning_rate=0.002")
    assert result.returncode == 0, result.stderr
    lines = [l for l in result.stderr.splitlines() if "validation precision @ 1 = " in l]
    logged = [float(l.split("= ")[1].split("%")[0]) / 100 for l in lines]
    starred = [float(l.split("= ")[1].split("%")[0]) / 100 for l in lines
               if l.rstrip().endswith(")") and " * (" in l]
    assert len(lines) >= 6 and "Stopping early" in result.stderr
    assert starred and max(starred) == max(logged)
    best = json.load(open(os.path.join(train_dir, "best_validation", "best.json")))
    assert round(best["precision_at_1"], 4) == round(max(logged), 4)
    final = int(open(os.path.join(train_dir, "DONE")).read())
    assert final - best["step"] >= 60
    # Re-scoring the kept checkpoint's averaged weights gives the logged best.
    config = config_lib.read_train_config(train_dir)
    mnist = registry.load("mnist")
    model = mnist.build(config)
    checkpoints.restore_averaged(checkpoints.latest(os.path.join(train_dir, "best_validation")),
                                 model)
    dataset, _ = pipeline.eval_dataset(mnist, config, "validation", 1000)
    rescored = metrics.Scorer(model, 10).score(dataset)["precision_at_1"]
    assert rescored == best["precision_at_1"]


def test_run_once_writes_reports(tmp_path, five_checkpoints):
    eval_dir = str(tmp_path / "eval")
    result = helpers.run_cli("mnist.eval", f"--train_dir={five_checkpoints}", "--run_once",
                             f"--eval_dir={eval_dir}")
    assert result.returncode == 0, result.stderr
    for name in ("confusion_matrix.png", "misclassified.png", "conv1_filters.png"):
        with open(os.path.join(eval_dir, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    record = summaries.read_jsonl(os.path.join(eval_dir, "metrics.jsonl"))[0]
    confusion = np.array(record["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == record["num_examples"] == 250
    assert np.trace(confusion) / 250 == pytest.approx(record["precision_at_1"])
    assert set(record["per_class_precision"]) == set("0123456789")


def test_per_class_precision_and_recall():
    confusion = [[3, 1], [0, 4]]  # rows: true class
    precision, recall = metrics.per_class(confusion)
    np.testing.assert_allclose(precision, [1.0, 0.8])
    np.testing.assert_allclose(recall, [0.75, 1.0])
