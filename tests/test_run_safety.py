"""A run is never lost or mixed up: exports that replace only exports, one writer per dir,
checkpoints found by their files, any path taken literally, an evaluator that fails loudly
when it cannot write, and runs told apart by their identity. Real CLIs throughout."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests import helpers
from trainkit import checkpoints
from trainkit.evaluator import read_records

FAST = ["--batch_size=20", "--validation_size=100", "--log_frequency=5",
        "--save_summaries_steps=0", "--data_mirrors=http://127.0.0.1:9/",
        "--validate_every_steps=0"]


def train(train_dir, data_dir, *extra, timeout=240):
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", f"--data_dir={data_dir}",
                             *FAST, *extra, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


def steps_in(eval_dir):
    return [r["step"] for r in read_records(os.path.join(eval_dir, "metrics.jsonl"))]


def wait_for(predicate, process, timeout=180):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist_data):
    """A finished MNIST run keeping ckpt-10 and ckpt-20."""
    train_dir = str(tmp_path_factory.mktemp("safety") / "run")
    train(train_dir, mnist_data, "--max_steps=20", "--save_checkpoint_steps=10")
    return train_dir


def copy_run(run, target):
    shutil.copytree(run, target, ignore=shutil.ignore_patterns(".lock"))
    return str(target)


# -- 1. export replaces only an export ----------------------------------------------------


def test_export_never_replaces_a_train_dir_a_data_dir_or_foreign_files(
        tmp_path, finished_run, mnist_data):
    run = copy_run(finished_run, tmp_path / "run")
    before, data_before = helpers.tree_state(run), helpers.tree_state(mnist_data)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep me")
    cases = [(run, "is the run's train dir"), (mnist_data, "is the run's data dir"),
             (str(tmp_path), "holds the run's train dir"),
             (finished_run, "is a train dir (config.json, checkpoints)"),
             (str(notes), "not an export of this toolkit (it holds mine.txt)")]
    for export_dir, fragment in cases:
        result = helpers.run_cli("mnist.export", f"--train_dir={run}",
                                 f"--export_dir={export_dir}")
        helpers.assert_one_clear_line(result, f"--export_dir={export_dir}", fragment,
                                      "choose")
        assert result.returncode == 2
    assert helpers.tree_state(run) == before
    assert helpers.tree_state(mnist_data) == data_before
    assert (notes / "mine.txt").read_text() == "keep me"

    # A new folder, then the same folder again: a previous export is replaced...
    export_dir = str(tmp_path / "export [v1]")
    for _ in range(2):
        result = helpers.run_cli("mnist.export", f"--train_dir={run}",
                                 f"--export_dir={export_dir}")
        assert result.returncode == 0, result.stderr
        info = json.load(open(os.path.join(export_dir, "classifier.json")))
        assert info["step"] == 20 and info["format"] == "trainkit-classifier/1"
    # ... but not once someone put a file of their own into it, at any depth.
    for mine in ("README.txt", os.path.join("variables", "notes.txt")):
        (tmp_path / "export [v1]" / mine).write_text("my notes")
        result = helpers.run_cli("mnist.export", f"--train_dir={run}",
                                 f"--export_dir={export_dir}")
        helpers.assert_one_clear_line(result, "an earlier export holding files an export does "
                                      "not write", mine, "move them out first")
        assert (tmp_path / "export [v1]" / mine).read_text() == "my notes"
        os.remove(tmp_path / "export [v1]" / mine)
    assert [p for p in os.listdir(tmp_path) if ".tmp-" in p or ".old-" in p] == []


# -- 2. one writer per dir ------------------------------------------------------------------


def test_a_second_trainer_is_refused_naming_the_first_and_kill_9_frees_the_dir(
        tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    first = helpers.start_cli("mnist.train", f"--train_dir={train_dir}",
                              f"--data_dir={mnist_data}", *FAST, "--max_steps=1000000",
                              "--save_checkpoint_steps=20", "--seed=1")
    try:
        wait_for(lambda: checkpoints.latest(train_dir), first)
        # Another seed and model, with and without --resume: neither may touch the run.
        for extra in ([], ["--resume"]):
            second = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                                     f"--data_dir={mnist_data}", *FAST, "--model=fc",
                                     "--seed=9", *extra)
            line = helpers.assert_one_clear_line(
                second, f"train dir {train_dir} is in use by another trainer (pid {first.pid} on "
                f"{socket.gethostname()}, since ", "choose another --train_dir")
            assert second.returncode == 2, line
            assert "TensorFlow" not in second.stderr  # refused before it loaded
        config = json.load(open(os.path.join(train_dir, "config.json")))
        assert (config["model"], config["seed"]) == ("cnn", 1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # The kernel released the lock with the process: the run resumes at once.
    step = checkpoints.step_of(checkpoints.latest(train_dir))
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                             f"--max_steps={step + 5}")
    assert result.returncode == 0, result.stderr
    assert checkpoints.latest(train_dir).endswith(f"ckpt-{step + 5}")


def test_a_second_evaluator_on_one_eval_dir_is_refused(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    os.remove(os.path.join(run, "DONE"))  # a live run: the first evaluator keeps polling
    args = [f"--train_dir={run}", "--eval_interval_secs=0.2", "--eval_policy=all",
            "--timeout_secs=600"]
    first = helpers.start_cli("mnist.eval", *args)
    try:
        eval_dir = os.path.join(run, "eval")
        wait_for(lambda: steps_in(eval_dir) == [10, 20], first)
        second = helpers.run_cli("mnist.eval", *args)
        helpers.assert_one_clear_line(
            second, f"eval dir {eval_dir} is in use by another evaluator (pid {first.pid} on ",
            "--eval_dir")
        assert second.returncode == 2
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert steps_in(eval_dir) == [10, 20]  # each step once


# -- 3. checkpoints found by their files ---------------------------------------------------


@pytest.mark.parametrize("index", ["deleted", "garbled"])
def test_a_run_is_known_by_its_checkpoint_files_whatever_the_index_says(
        tmp_path, finished_run, mnist_data, index):
    run = copy_run(finished_run, tmp_path / "run")
    if index == "deleted":
        os.remove(os.path.join(run, "checkpoint"))
    else:
        open(os.path.join(run, "checkpoint"), "w").write("\x00garbage{{\n")
    before = helpers.tree_state(run)
    result = helpers.run_cli("mnist.train", f"--train_dir={run}", f"--data_dir={mnist_data}",
                             *FAST, "--max_steps=40")
    helpers.assert_one_clear_line(result, "already holds checkpoints", "ckpt-20", "--resume")
    assert helpers.tree_state(run) == before
    result = helpers.run_cli("mnist.train", f"--train_dir={run}", "--resume", "--max_steps=25")
    assert result.returncode == 0, result.stderr
    assert f"Resuming {run} from {run}/ckpt-20 at step 20" in result.stderr
    assert checkpoints.latest(run).endswith("ckpt-25")


def test_resume_continues_from_the_newest_checkpoint_left(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    for name in os.listdir(run):
        if name.startswith("ckpt-20."):
            os.remove(os.path.join(run, name))
    result = helpers.run_cli("mnist.train", f"--train_dir={run}", "--resume", "--max_steps=15")
    assert result.returncode == 0, result.stderr
    assert f"Resuming {run} from {run}/ckpt-10 at step 10" in result.stderr
    # The index names what is there now.
    assert open(os.path.join(run, "checkpoint")).readline().strip().endswith('"ckpt-15"')


# -- 4. any path, literally ------------------------------------------------------------------


def test_paths_with_brackets_stars_question_marks_and_spaces(tmp_path, mnist_data):
    data_dir = shutil.copytree(mnist_data, tmp_path / "data [mnist]*")
    train_dir = str(tmp_path / "my run [1]*?x")
    # A folder the name matches as a glob pattern, with checkpoints of the same names: a
    # pattern-based deletion would take them.
    decoy = tmp_path / "my run 1ZZx"
    decoy.mkdir()
    for name in ("ckpt-5.index", "ckpt-5.data-00000-of-00001"):
        (decoy / name).write_text("another run's")
    train(train_dir, data_dir, "--max_steps=15", "--save_checkpoint_steps=5", "--max_to_keep=1")
    assert sorted(os.listdir(decoy)) == ["ckpt-5.data-00000-of-00001", "ckpt-5.index"]
    assert checkpoints.latest(train_dir).endswith("ckpt-15")
    assert not os.path.exists(os.path.join(train_dir, "ckpt-5.index"))  # its own were dropped
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                             "--max_steps=20")
    assert result.returncode == 0, result.stderr
    assert "at step 15" in result.stderr
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--eval_policy=all",
                             "--eval_interval_secs=0")
    assert result.returncode == 0, result.stderr
    assert steps_in(os.path.join(train_dir, "eval")) == [20]
    export_dir = os.path.join(train_dir, "export [x]")
    result = helpers.run_cli("mnist.export", f"--train_dir={train_dir}",
                             f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr
    image = str(tmp_path / "digit [7]?.png")
    import numpy as np
    import tensorflow as tf
    tf.io.write_file(image, tf.io.encode_png(np.full([28, 28, 1], 9, np.uint8)))
    for source in ([f"--train_dir={train_dir}"], [f"--saved_model={export_dir}"]):
        result = helpers.run_cli("mnist.predict", *source, image)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{image}: ")


needs_venv = pytest.mark.skipif(
    not os.path.exists(os.path.join(helpers.REPO, ".venv", ".installed")),
    reason="the make targets run the project's .venv (made by `make test`)")


@needs_venv
def test_make_targets_take_paths_with_spaces_and_the_dataset_from_the_run(tmp_path, mnist_data):
    train_dir = str(tmp_path / "a run [2]")
    make = [f"TRAIN_DIR={train_dir}"]
    fast = "ARGS=" + " ".join(FAST + ["--max_steps=10", "--save_checkpoint_steps=5"])
    result = helpers.run_make(*make, "train", "DATASET=mnist", f"DATA_DIR={mnist_data}", fast)
    assert result.returncode == 0, result.stderr
    # No DATASET: the run's config.json says it is MNIST, not the default CIFAR-10.
    result = helpers.run_make(*make, "resume", "ARGS=--max_steps=15")
    assert result.returncode == 0, result.stderr
    assert f"Resuming {train_dir} from {train_dir}/ckpt-10 at step 10" in result.stderr
    result = helpers.run_make(*make, "eval", "ARGS=--run_once")
    assert result.returncode == 0, result.stderr
    assert steps_in(os.path.join(train_dir, "eval")) == [15]
    assert not os.path.exists(os.path.join(helpers.REPO, "data", "cifar10"))


# -- 5. an evaluator that cannot write fails loudly -------------------------------------------


def test_evaluator_that_cannot_write_its_record_fails_with_one_line(tmp_path, finished_run):
    import resource
    run = copy_run(finished_run, tmp_path / "run")
    eval_dir = tmp_path / "eval"
    # Files of at most 500 bytes: the first evaluation's record (900 bytes) cannot be written,
    # as on a full disk. The test needs no privileges (a full disk: the tmpfs test below).
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (500, 500))  # noqa: E731
    result = subprocess.run(
        helpers.cli("mnist.eval", f"--train_dir={run}", f"--eval_dir={eval_dir}",
                    "--eval_policy=all", "--eval_interval_secs=0"),
        capture_output=True, text=True, timeout=240, env=helpers.cli_env(), cwd=helpers.REPO,
        preexec_fn=limit)
    helpers.assert_one_clear_line(result, f"cannot write to eval dir {eval_dir}",
                                  "File too large", "free space")
    assert result.returncode == 2
    assert "Skipping checkpoint" not in result.stderr
    assert not (eval_dir / "best").exists()


def test_an_evaluator_waiting_for_its_run_refuses_an_eval_dir_in_the_data_dir(
        tmp_path, finished_run, mnist_data):
    data = shutil.copytree(mnist_data, tmp_path / "data")
    run, eval_dir = tmp_path / "run", data / "eval"
    evaluator = subprocess.Popen(
        helpers.cli("mnist.eval", f"--train_dir={run}", f"--data_dir={data}",
                    f"--eval_dir={eval_dir}", "--eval_interval_secs=0.2", "--timeout_secs=200"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=helpers.cli_env(),
        cwd=helpers.REPO)
    time.sleep(1)  # waiting for a trainer: the run appears now
    copy_run(finished_run, run)
    out, err = evaluator.communicate(timeout=240)
    result = subprocess.CompletedProcess(evaluator.args, evaluator.returncode, out, err)
    helpers.assert_one_clear_line(result, f"--eval_dir={eval_dir} is inside the data dir")
    assert result.returncode == 2
    assert not eval_dir.exists()  # no lock (nor anything else) written into the data


def test_export_that_cannot_write_fails_with_one_line(tmp_path, finished_run):
    import resource
    run = copy_run(finished_run, tmp_path / "run")
    export_dir = tmp_path / "export"
    command = helpers.cli("mnist.export", f"--train_dir={run}", f"--export_dir={export_dir}")
    first = subprocess.run(command, capture_output=True, text=True, timeout=240,
                           env=helpers.cli_env(), cwd=helpers.REPO)
    assert first.returncode == 0, first.stderr
    exported = (export_dir / "saved_model.pb").read_bytes()
    # Files of at most 4 KB, as on a full disk: a new SavedModel cannot be written.
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # noqa: E731
    result = subprocess.run(command, capture_output=True, text=True, timeout=240,
                            env=helpers.cli_env(), cwd=helpers.REPO, preexec_fn=limit)
    helpers.assert_one_clear_line(result, f"cannot write to export dir {export_dir}: File too "
                                  "large; free space there, or choose a writable --export_dir")
    assert result.returncode == 2
    assert (export_dir / "saved_model.pb").read_bytes() == exported  # the previous one stays


def _in_mount_namespace(script):
    """Runs ``script`` (sh) in a mount namespace of its own; None if this machine allows none."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          timeout=240, env=helpers.cli_env(), cwd=helpers.REPO)


def test_evaluator_on_a_read_only_train_dir_says_to_pass_eval_dir(tmp_path, finished_run):
    import shlex
    run = copy_run(finished_run, tmp_path / "run")
    command = " ".join(shlex.quote(a) for a in helpers.cli("mnist.eval", f"--train_dir={run}",
                                                            "--run_once"))
    result = _in_mount_namespace(
        f"mount --bind {shlex.quote(run)} {shlex.quote(run)} && "
        f"mount -o remount,bind,ro {shlex.quote(run)} && {command}")
    if result is None:
        pytest.skip("this machine does not allow a mount namespace to make a read-only dir")
    helpers.assert_one_clear_line(result, "cannot write to eval dir", "Read-only file system",
                                  "--eval_dir")
    assert result.returncode == 2
    result = _in_mount_namespace(
        f"mount --bind {shlex.quote(run)} {shlex.quote(run)} && "
        f"mount -o remount,bind,ro {shlex.quote(run)} && {command} "
        f"--eval_dir={shlex.quote(str(tmp_path / 'elsewhere'))}")
    assert result.returncode == 0, result.stderr
    assert steps_in(str(tmp_path / "elsewhere")) == [20]


def test_evaluator_whose_eval_dir_fills_up_fails_with_one_line(tmp_path, finished_run):
    import shlex
    eval_dir = tmp_path / "small"
    eval_dir.mkdir()
    command = " ".join(shlex.quote(a) for a in helpers.cli(
        "mnist.eval", f"--train_dir={finished_run}", f"--eval_dir={eval_dir}",
        "--eval_policy=all", "--eval_interval_secs=0"))
    # 1 MB: the record fits, a checkpoint's copy (3.9 MB) does not.
    result = _in_mount_namespace(
        f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(eval_dir))} && {command}")
    if result is None:
        pytest.skip("this machine does not allow a mount namespace to make a small disk")
    helpers.assert_one_clear_line(result, f"cannot write to eval dir {eval_dir}",
                                  "No space left on device", "free space")
    assert result.returncode == 2
    assert "Skipping checkpoint" not in result.stderr


# -- 6. runs told apart -------------------------------------------------------------------------


def test_a_reused_train_dir_never_mixes_the_old_runs_evaluation_with_the_new(
        tmp_path, finished_run, mnist_data):
    run = copy_run(finished_run, tmp_path / "run")
    result = helpers.run_cli("mnist.eval", f"--train_dir={run}", "--eval_policy=all",
                             "--eval_interval_secs=0")
    assert result.returncode == 0, result.stderr
    old_id = json.load(open(os.path.join(run, "config.json")))["run_id"]
    assert old_id and steps_in(os.path.join(run, "eval")) == [10, 20]
    # The user clears the checkpoints and config.json but keeps eval/, then trains anew.
    for name in os.listdir(run):
        if name.startswith("ckpt-") or name in ("checkpoint", "config.json", "DONE"):
            os.remove(os.path.join(run, name))
    train(run, mnist_data, "--max_steps=30", "--save_checkpoint_steps=15", "--seed=4")
    new_id = json.load(open(os.path.join(run, "config.json")))["run_id"]
    assert new_id != old_id
    # Export and predict see that eval/best is the old run's and use the new run's own.
    result = helpers.run_cli("mnist.export", f"--train_dir={run}")
    assert result.returncode == 0, result.stderr
    assert "holds the best checkpoint of another run" in result.stderr
    info = json.load(open(os.path.join(run, "export", "classifier.json")))
    assert info["step"] == 30 and info["checkpoint"] == os.path.join(run, "ckpt-30")
    # The evaluator moves the old record aside and scores every new checkpoint.
    result = helpers.run_cli("mnist.eval", f"--train_dir={run}", "--eval_policy=all",
                             "--eval_interval_secs=0")
    assert result.returncode == 0, result.stderr
    assert "held the evaluation of another run" in result.stderr
    records = read_records(os.path.join(run, "eval", "metrics.jsonl"))
    assert [(r["step"], r["run_id"]) for r in records] == [(15, new_id), (30, new_id)]
    previous = os.path.join(run, "eval", f"previous-run-{old_id}")
    assert steps_in(previous) == [10, 20]
    assert json.load(open(os.path.join(previous, "best", "best.json")))["run_id"] == old_id
    assert json.load(open(os.path.join(run, "eval", "best", "best.json")))["run_id"] == new_id


def test_a_run_and_eval_record_without_ids_are_still_one_run(tmp_path, finished_run):
    """Train dirs written before runs had ids: their eval records are theirs."""
    run = copy_run(finished_run, tmp_path / "run")
    result = helpers.run_cli("mnist.eval", f"--train_dir={run}", "--run_once")
    assert result.returncode == 0, result.stderr
    config = json.load(open(os.path.join(run, "config.json")))
    del config["run_id"]
    json.dump(config, open(os.path.join(run, "config.json"), "w"))
    metrics = os.path.join(run, "eval", "metrics.jsonl")
    records = read_records(metrics)
    for record in records:
        del record["run_id"]
    open(metrics, "w").write("".join(json.dumps(r) + "\n" for r in records))
    best = json.load(open(os.path.join(run, "eval", "best", "best.json")))
    del best["run_id"]
    json.dump(best, open(os.path.join(run, "eval", "best", "best.json"), "w"))
    result = helpers.run_cli("mnist.eval", f"--train_dir={run}", "--eval_policy=all",
                             "--eval_interval_secs=0")
    assert result.returncode == 0, result.stderr
    assert "another run" not in result.stderr
    assert steps_in(os.path.join(run, "eval")) == [20, 10]  # 20 kept, 10 added
    result = helpers.run_cli("mnist.export", f"--train_dir={run}")
    assert result.returncode == 0 and "another run" not in result.stderr, result.stderr
