"""The evaluator under stress, with real processes: deletions, corruption, restarts, stops."""

import json
import os
import re
import shutil
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
from trainkit.evaluator import read_records

MNIST = registry.load("mnist")
FAST = ["--batch_size=20", "--validation_size=100", "--log_frequency=50",
        "--save_summaries_steps=0", "--data_mirrors=http://127.0.0.1:9/",
        "--validate_every_steps=0"]


def train(train_dir, data_dir, *extra):
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", f"--data_dir={data_dir}",
                             *FAST, *extra)
    assert result.returncode == 0, result.stderr
    return result


def steps_in(eval_dir):
    """The scored steps of an eval dir's record (not the skipped ones)."""
    return [r["step"] for r in read_records(os.path.join(eval_dir, "metrics.jsonl"))
            if "skipped" not in r]


def eval_all(train_dir, *extra):
    """The evaluator over every checkpoint of ``train_dir`` (a finished run), exit 0."""
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--eval_policy=all",
                             "--eval_interval_secs=0", *extra)
    assert result.returncode == 0, result.stderr
    return result


def evaluator_scoring(train_dir, eval_dir, batch_size, scored):
    """An evaluator of every checkpoint of ``train_dir``, started and left running once it
    has scored ``scored`` of them; returns it and its arguments."""
    args = [f"--train_dir={train_dir}", f"--eval_dir={eval_dir}", "--eval_policy=all",
            "--eval_interval_secs=0", f"--eval_batch_size={batch_size}"]
    process = helpers.start_cli("mnist.eval", *args)
    deadline = time.monotonic() + 120
    while len(steps_in(eval_dir)) < scored:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    return process, args


def skipped_in(eval_dir):
    return {r["step"]: r["skipped"]
            for r in read_records(os.path.join(eval_dir, "metrics.jsonl"))
            if "skipped" in r}


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
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert best["precision_at_1"] == max(r["validation"]["precision_at_1"] for r in records
                                         if "skipped" not in r)
    kept = os.path.join(train_dir, best["checkpoint"])  # relative to the train dir
    assert checkpoints.latest(os.path.join(train_dir, "eval", "best")) == kept
    assert os.path.exists(kept + ".index")


def test_best_is_chosen_on_validation_and_its_test_figure_reported(tmp_path, five_checkpoints):
    """Validation selects, test reports: best/, its export and the summary follow the highest
    validation precision; every record carries both splits."""
    eval_dir = str(tmp_path / "eval")
    result = eval_all(five_checkpoints, f"--eval_dir={eval_dir}")
    records = read_records(os.path.join(eval_dir, "metrics.jsonl"))
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50]
    for record in records:
        assert record["validation"]["num_examples"] == 100 and record["num_examples"] == 250
        assert record["selected_on"] == "validation"
    chosen = max(records, key=lambda r: r["validation"]["precision_at_1"])  # the first best
    best = json.load(open(os.path.join(eval_dir, "best", "best.json")))
    assert (best["step"], best["selected_on"]) == (chosen["step"], "validation")
    assert best["precision_at_1"] == chosen["validation"]["precision_at_1"]
    assert best["test_precision_at_1"] == chosen["precision_at_1"]
    assert [r["best"] for r in records].count(True) >= 1
    info = json.load(open(os.path.join(eval_dir, "best", "saved_model", "classifier.json")))
    assert info["step"] == chosen["step"]
    assert (f"best on validation: step {chosen['step']}, validation "
            f"{100 * chosen['validation']['precision_at_1']:.2f}%, test "
            f"{100 * chosen['precision_at_1']:.2f}%") in result.stderr
    # A best chosen on the test set (an earlier version's) is not taken for one: moved aside.
    best["selected_on"] = None
    json.dump(best, open(os.path.join(eval_dir, "best", "best.json"), "w"))
    result = helpers.run_cli("mnist.eval", f"--train_dir={five_checkpoints}",
                             f"--eval_dir={eval_dir}", "--run_once")
    assert result.returncode == 0, result.stderr
    assert "chose its best on the test set" in result.stderr
    assert any(name.startswith("previous-run-") for name in os.listdir(eval_dir))


def test_a_run_without_validation_has_no_best(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    train(train_dir, mnist_data, "--max_steps=30", "--save_checkpoint_steps=10",
          "--validation_size=0")
    result = eval_all(train_dir)
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert [r["step"] for r in records] == [10, 20, 30]
    assert all("validation" not in r and r["selected_on"] is None for r in records)
    assert not os.path.exists(os.path.join(train_dir, "eval", "best"))
    assert "no validation split, so no best: the newest, step 30, scored test" in result.stderr
    # Early stopping needs a validation split to judge on: refused in one line.
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--run_once",
                             "--early_stopping_evals=2")
    helpers.assert_one_clear_line(result, "--early_stopping_evals needs a validation split")
    # The default export is the newest checkpoint.
    result = helpers.run_cli("mnist.export", f"--train_dir={train_dir}")
    assert result.returncode == 0, result.stderr
    assert json.load(open(os.path.join(train_dir, "export", "classifier.json")))["step"] == 30


def test_every_checkpoint_is_scored_or_named_as_skipped(tmp_path, five_checkpoints):
    """Under --eval_policy=latest an evaluator behind the trainer passes over the older
    checkpoints: each is named, recorded, and counted in the summary."""
    eval_dir = str(tmp_path / "eval")
    result = helpers.run_cli("mnist.eval", f"--train_dir={five_checkpoints}",
                             f"--eval_dir={eval_dir}", "--eval_interval_secs=0")
    assert result.returncode == 0, result.stderr
    assert "Not scoring steps 10, 20, 30 and 40: --eval_policy=latest scores only the newest " \
           "(step 50)" in result.stderr
    assert steps_in(eval_dir) == [50]
    assert skipped_in(eval_dir) == {10: "behind", 20: "behind", 30: "behind", 40: "behind"}
    assert ("scored 1 of 5 checkpoints (4 skipped: 4 passed over for a newer one under "
            "--eval_policy=latest), 0 of them while the trainer ran") in result.stderr
    # Started again, it knows them: nothing scored twice, nothing skipped twice.
    again = helpers.run_cli("mnist.eval", f"--train_dir={five_checkpoints}",
                            f"--eval_dir={eval_dir}", "--eval_interval_secs=0")
    assert again.returncode == 0, again.stderr
    assert "Not scoring" not in again.stderr and "scored 1 of 5 checkpoints" in again.stderr


def test_one_ctrl_c_while_scoring_ends_the_evaluator_cleanly(tmp_path, five_checkpoints):
    eval_dir = str(tmp_path / "eval")
    process, args = evaluator_scoring(five_checkpoints, eval_dir, batch_size=1, scored=1)
    process.send_signal(signal.SIGINT)  # during the second checkpoint's 350 batches
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert "Traceback" not in out and "Exception ignored" not in out
    assert f"continue with python -m mnist.eval --train_dir={five_checkpoints}" in out
    done = steps_in(eval_dir)
    assert 1 <= len(done) < 5
    # Every line of the record is whole; the next start goes on after it.
    again = helpers.run_cli("mnist.eval", *args)
    assert again.returncode == 0, again.stderr
    assert steps_in(eval_dir) == [10, 20, 30, 40, 50]


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
    lines = [l for l in result.stderr.splitlines() if "Not scoring" in l]
    assert len(lines) == 1 and "step 30: the checkpoint is gone, incomplete or corrupt" in lines[0]
    assert steps_in(eval_dir) == [10, 20, 40, 50]
    assert skipped_in(eval_dir) == {30: "unreadable"}
    assert "scored 4 of 5 checkpoints (1 skipped: 1 unreadable)" in result.stderr


def test_eval_policy_all_scores_every_retained_checkpoint(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    train(train_dir, mnist_data, "--max_steps=50", "--save_checkpoint_steps=10",
          "--max_to_keep=3")
    eval_all(train_dir)
    assert steps_in(os.path.join(train_dir, "eval")) == [30, 40, 50]
    # latest (the default) takes only the newest
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}",
                             f"--eval_dir={tmp_path / 'latest'}", "--eval_interval_secs=0")
    assert steps_in(str(tmp_path / "latest")) == [50]


def test_killed_evaluator_restarts_without_repeating(tmp_path, five_checkpoints):
    eval_dir = str(tmp_path / "eval")
    first, args = evaluator_scoring(five_checkpoints, eval_dir, batch_size=10, scored=2)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    done_before = steps_in(eval_dir)
    assert 2 <= len(done_before) < 5
    second = helpers.run_cli("mnist.eval", *args)
    assert second.returncode == 0, second.stderr
    assert steps_in(eval_dir) == [10, 20, 30, 40, 50]
    for step in done_before:
        assert f"step {step}: validation" not in second.stderr


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
    lines = [l for l in result.stderr.splitlines() if re.search(r"step \d+: validation", l)]
    logged = [float(l.split("validation ")[1].split("%")[0]) / 100 for l in lines]
    starred = [float(l.split("validation ")[1].split("%")[0]) / 100 for l in lines
               if "(new best)" in l]
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
    record = read_records(os.path.join(eval_dir, "metrics.jsonl"))[0]
    confusion = np.array(record["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == record["num_examples"] == 250
    assert np.trace(confusion) / 250 == pytest.approx(record["precision_at_1"])
    assert set(record["per_class_precision"]) == set("0123456789")


def test_the_evaluator_checks_a_config_built_in_code_against_its_declarations(tmp_path):
    from trainkit import errors
    from trainkit import evaluator
    dataset = registry.load("mnist")
    for bad, flag in ((dict(eval_policy="newest"), "--eval_policy"),
                      (dict(eval_batch_size=0), "--eval_batch_size")):
        with pytest.raises(errors.UserError, match=flag):
            evaluator.Evaluator(config_lib.EvalConfig(train_dir=str(tmp_path), **bad), dataset)


def test_per_class_precision_and_recall():
    confusion = [[3, 1], [0, 4]]  # rows: true class
    precision, recall = metrics.per_class(confusion)
    np.testing.assert_allclose(precision, [1.0, 0.8])
    np.testing.assert_allclose(recall, [0.75, 1.0])


def test_evaluator_says_why_it_is_behind_and_names_deleted_checkpoints(tmp_path,
                                                                      five_checkpoints):
    """In one process, no timing: how far behind and why (no CPU for it, or too slow), and a
    checkpoint deleted before it was scored named as such."""
    from trainkit import evaluator
    train_dir = tmp_path / "run"
    shutil.copytree(five_checkpoints, train_dir, ignore=shutil.ignore_patterns("eval"))
    # No export: a SavedModel save resets absl's level in a process whose flags are unparsed.
    ev = evaluator.Evaluator(config_lib.EvalConfig(
        train_dir=str(train_dir), eval_policy="all", eval_interval_secs=0, export_best=False,
        priority="idle"), MNIST)
    try:
        with _captured_log() as lines:
            assert [checkpoints.step_of(p) for p in ev.candidates()] == [10, 20, 30, 40, 50]
            assert "5 checkpoints are waiting to be scored (steps 10, 20, 30, 40 and 50)" in lines[-1]
            ev.evaluate_and_record(ev.candidates()[0])
            for name in os.listdir(train_dir):
                if name.startswith("ckpt-20."):
                    os.remove(train_dir / name)
            ev._last_cores = (4.0, 0.02)  # a core's 2% while scoring: starved
            ev._behind_said = 0
            assert [checkpoints.step_of(p) for p in ev.candidates()] == [30, 40, 50]
        assert skipped_in(str(train_dir / "eval")) == {20: "deleted"}
        said = "\n".join(lines)
        assert "Not scoring step 20: deleted by the trainer (its --max_to_keep)" in said
        assert ("The evaluator is 2 checkpoints behind the trainer (steps 30, 40 and 50 "
                "waiting; the last took 4.0 s using 0.02 of a core): other processes hold the "
                "cores") in said
        assert "--priority=idle runs the evaluator only on cores nothing else wants" in said
        ev._last_cores, ev._behind_said = (4.0, 0.9), 0  # a whole core, still too slow
        with _captured_log() as lines:
            ev.candidates()
        assert "scoring one takes longer than the trainer takes to write the next" in lines[-1]
    finally:
        ev.close()


class _captured_log:
    """The absl log lines written inside the block."""

    def __enter__(self):
        import logging as std_logging
        self.lines = []
        self.handler = std_logging.Handler()
        self.handler.emit = lambda record: self.lines.append(record.getMessage())
        self.logger = std_logging.getLogger("absl")
        self.level = self.logger.level  # a SavedModel save in this process may have raised it
        self.logger.setLevel(std_logging.INFO)
        self.logger.addHandler(self.handler)
        return self.lines

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        return False
