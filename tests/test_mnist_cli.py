"""The real command lines: trainer and evaluator as subprocesses, and bad input."""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests import helpers
from trainkit.evaluator import read_records

FAST = ["--batch_size=20", "--validation_size=100", "--log_frequency=5",
        "--save_summaries_steps=0", "--data_mirrors=http://127.0.0.1:9/"]


def train_args(train_dir, data_dir, *extra):
    return [f"--train_dir={train_dir}", f"--data_dir={data_dir}", *FAST, *extra]


assert_one_clear_line = helpers.assert_one_clear_line


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist_data):
    """A finished 20-step MNIST run on the synthetic data, made by the real CLI."""
    train_dir = str(tmp_path_factory.mktemp("cli") / "run")
    result = helpers.run_cli("mnist.train", *train_args(
        train_dir, mnist_data, "--max_steps=20", "--save_checkpoint_steps=10"))
    assert result.returncode == 0, result.stderr
    return train_dir


def test_trainer_and_evaluator_run_together(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    # The evaluator starts first, as a user may, and waits for the trainer; it exits by
    # itself once DONE is there and the last checkpoint is scored.
    train_out, eval_out = helpers.run_pair(
        # Every retained checkpoint: a slow evaluator start cannot leave it only the last.
        "mnist", train_dir, ["--eval_interval_secs=0.2", "--eval_batch_size=64",
                             "--eval_policy=all"],
        train_args(train_dir, mnist_data, "--max_steps=1200", "--save_checkpoint_steps=100",
                   "--max_to_keep=20", "--log_frequency=100", "--save_summaries_steps=300",
                   "--validate_every_steps=600")[1:])
    assert "The trainer is done" in eval_out
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    steps = [r["step"] for r in records]
    assert len(steps) > 1, eval_out
    assert steps == sorted(set(steps)) and steps[-1] == 1200
    assert all(r["num_examples"] == 250 and r["validation"]["num_examples"] == 100
               for r in records)
    assert set(records[0]) >= {"step", "checkpoint", "precision_at_1", "loss",
                               "num_examples", "wall_time", "validation"}
    # The synthetic digits are easy: the averaged weights must have learned them.
    assert records[-1]["precision_at_1"] > 0.9, records[-1]
    # The classic preset's precision is auto: the start-up line says what it chose and why.
    assert re.search(r"^\d\d:\d\d:\d\d Precision: (float32|bfloat16 compute, float32 weights) "
                     r"\(auto: this CPU", train_out, re.M), train_out
    # Progress: the step, loss, epoch, speed and time left, in lines of 100 columns at
    # most (absl's prefix only with --verbosity); the checkpoint's figures in the
    # evaluator's.
    progress = [line for line in train_out.splitlines() if re.search(r" step [\d,]+/", line)]
    assert progress and all(len(line) <= 100 for line in progress), progress
    assert re.search(r"^\d\d:\d\d:\d\d step 100/1,200: loss [\d.]+, epoch [\d.]+, "
                     r"[\d,]+ examples/s, ETA \d+ (s|min \d\d s)$", train_out, re.M)
    assert re.search(r"step 1,200/1,200: loss .*, ETA 0 s$", train_out, re.M)
    assert re.search(r"step 1,200: validation [\d.]+%.*, test [\d.]+% \(loss [\d.]+\); "
                     r"100\+250 examples in", eval_out)
    _check_tensorboard_runs(train_dir)


def _check_tensorboard_runs(train_dir):
    """TensorBoard's own reader sees the runs train, validation (the trainer's in-run
    validation), eval/validation and eval/test, the same tags across them, a description
    on every scalar, and the evaluator's pictures as images."""
    from tensorboard.backend.event_processing import event_multiplexer
    multiplexer = event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(train_dir)
    multiplexer.Reload()
    runs = multiplexer.Runs()
    assert {"train", "validation", "eval/validation", "eval/test"} <= set(runs), runs
    for run in ("validation", "eval/validation", "eval/test"):
        assert {"precision_at_1", "loss"} <= set(runs[run]["tensors"]), (run, runs[run])
    assert "loss" in runs["train"]["tensors"]
    for run, tags in runs.items():
        for tag in tags["tensors"]:
            metadata = multiplexer.SummaryMetadata(run, tag)
            if metadata.plugin_data.plugin_name == "scalars":
                assert metadata.summary_description, (run, tag)
    images = {tag for tag in runs["eval/test"]["tensors"]
              if multiplexer.SummaryMetadata("eval/test", tag).plugin_data.plugin_name
              == "images"}
    assert {"confusion_matrix", "misclassified", "conv1_filters"} <= images, images
    event = multiplexer.Tensors("eval/test", "misclassified")[-1]
    png = event.tensor_proto.string_val[2]
    assert png.startswith(b"\x89PNG")


def test_make_eval_on_a_stopped_run_says_it_waits_and_how_to_score_once(finished_run,
                                                                        tmp_path):
    # A run whose trainer stopped (no DONE) and is gone: the evaluator scores what is there,
    # then says why nothing comes and what to do, in make's words.
    train_dir = tmp_path / "run"
    shutil.copytree(finished_run, train_dir, ignore=shutil.ignore_patterns("DONE", "eval"))
    result = helpers.run_make("eval", f"TRAIN_DIR={train_dir}",
                              "ARGS=--timeout_secs=3 --eval_interval_secs=0.5")
    assert result.returncode == 0, result.stderr
    assert (f"The trainer of {train_dir} is not running and has not finished (no DONE; newest "
            "checkpoint: step 20 of 20)") in result.stderr
    assert f"(make resume TRAIN_DIR={train_dir})" in result.stderr
    assert f"make eval TRAIN_DIR={train_dir} ARGS=--run_once" in result.stderr


def test_refuses_existing_run_without_resume(finished_run, mnist_data):
    before = helpers.tree_state(finished_run)
    result = helpers.run_cli("mnist.train", *train_args(finished_run, mnist_data, "--max_steps=40"))
    assert_one_clear_line(result, "already holds checkpoints", "ckpt-20", "--resume",
                          "--train_dir")
    assert result.returncode == 2
    assert helpers.tree_state(finished_run) == before


def test_resume_continues_with_saved_settings(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    first = helpers.run_cli("mnist.train", *train_args(
        train_dir, mnist_data, "--max_steps=20", "--save_checkpoint_steps=10",
        "--optimizer=adam", "--learning_rate=0.002"))
    assert first.returncode == 0, first.stderr
    # Only --resume and the new end: the rest comes from config.json.
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                             "--max_steps=30", "--log_frequency=5")
    assert result.returncode == 0, result.stderr
    assert f"Resuming {train_dir} from {train_dir}/ckpt-20 at step 20" in result.stderr
    assert "step 25/30: loss" in result.stderr and "step 5/" not in result.stderr
    from trainkit import config as config_lib
    saved = config_lib.read_train_config(train_dir)
    assert (saved.optimizer, saved.learning_rate, saved.max_steps) == ("adam", 0.002, 30)
    assert os.path.exists(os.path.join(train_dir, "ckpt-30.index"))
    assert os.path.exists(os.path.join(train_dir, "ckpt-20.index"))


def test_eval_run_once_writes_metrics(finished_run, tmp_path):
    eval_dir = str(tmp_path / "once")
    result = helpers.run_cli("mnist.eval", f"--train_dir={finished_run}", "--run_once",
                             "--eval_batch_size=100", f"--eval_dir={eval_dir}")
    assert result.returncode == 0, result.stderr
    records = read_records(os.path.join(eval_dir, "metrics.jsonl"))
    assert [(r["step"], r["num_examples"], r["validation"]["num_examples"])
            for r in records] == [(20, 250, 100)]


@pytest.mark.parametrize("args, fragments", [
    (["--batch_size=-5"], ["--batch_size=-5"]),
    (["--model=resnet9000"], ["--model", "cnn"]),
    (["--learning_rate=fast"], ["--learning_rate"]),
    (["--max_step=10"], ["max_step", "Did you mean: max_steps"]),
    (["--lerning_rate=0.1"], ["lerning_rate", "Did you mean: learning_rate"]),
])
def test_nonsense_flags_are_refused(tmp_path, mnist_data, args, fragments):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("mnist.train", *train_args(train_dir, mnist_data, *args))
    assert_one_clear_line(result, *fragments)
    assert result.returncode == 2
    assert not os.path.exists(train_dir)


def test_a_wrong_evaluator_flag_is_one_line_and_exit_2(tmp_path):
    result = helpers.run_cli("mnist.eval", f"--train_dir={tmp_path}", "--nice=7")
    assert_one_clear_line(result, "Unknown command line flag 'nice'", "--help")
    assert result.returncode == 2


@pytest.mark.parametrize("command", ["mnist.train", "cifar10.train", "mnist.eval",
                                     "cifar10.export", "cifar10.predict"])
def test_help_lists_every_flag_by_group_with_its_default(command):
    result = helpers.run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    from trainkit import config as config_lib
    from trainkit import registry
    kind = command.split(".")[1]
    spec = registry.spec(command.split(".")[0])
    groups = {"train": {}, "eval": {}, "export": {}, "predict": {}}
    for kind_, cls in (("train", config_lib.TrainConfig), ("eval", config_lib.EvalConfig),
                       ("export", config_lib.ExportConfig), ("predict", config_lib.PredictConfig)):
        for field in config_lib.settings(cls):  # each setting's flag, in its declared group
            groups[kind_].setdefault(field.metadata["group"], []).append(field.name)
    if kind == "train":
        groups["train"][config_lib.DATA] += list(spec.options)
        assert (("--translate: " in out) == ("translate" in spec.options)
                and "--image_size: " not in out)  # only a dataset's own options
    for heading, names in groups[kind].items():
        assert f"\n{command}: {heading}:\n" in out
        for name in names:
            assert f"  --{name}: " in out or f"  --[no]{name}: " in out, name
    assert "(default: " in out and "other:" not in out  # every flag is in a group



COMMANDS = [f"{dataset}.{kind}" for dataset in ("mnist", "cifar10")
            for kind in ("train", "eval", "export", "predict")]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_and_a_mistyped_flag_answer_without_loading_tensorflow(command, tmp_path):
    """TensorFlow takes seconds to load on a small CPU; --help and flag errors need none
    of it. A ``tensorflow`` package that refuses to load, put first on the path, proves it."""
    blocked = tmp_path / "tensorflow"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('TensorFlow was loaded')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), helpers.REPO])}
    result = helpers.run_cli(command, "--help", env=env)
    assert result.returncode == 0 and "  --train_dir: " in result.stdout, result.stderr
    result = helpers.run_cli(command, "--tarin_dir=x", env=env)
    assert_one_clear_line(result, "tarin_dir", "Did you mean: train_dir")
    # The blocked package is what a real run would hit: the check above can fail. (A run
    # to evaluate, export or predict from is checked first, also without TensorFlow.)
    run = tmp_path / "run"
    run.mkdir()
    dataset, kind = command.split(".")
    (run / "config.json").write_text(helpers.train_config(dataset, "unused").to_json())
    args = {"eval": ["--run_once"], "predict": ["x.png"]}.get(kind, [])
    result = helpers.run_cli(command, f"--train_dir={run if kind != 'train' else run / 'new'}",
                             *args, env=env)
    assert result.returncode != 0 and "TensorFlow was loaded" in result.stderr

def test_missing_data_without_network_says_where_to_put_files(tmp_path):
    empty = str(tmp_path / "nodata")
    result = helpers.run_cli("mnist.train", *train_args(str(tmp_path / "run"), empty,
                                                        "--max_steps=5"))
    assert_one_clear_line(result, "MNIST not found in", empty, "train-images-idx3-ubyte.gz")


def test_truncated_idx_file_is_named(tmp_path):
    data_dir = helpers.make_mnist_dir(str(tmp_path / "data"), num_train=300, num_test=20)
    path = os.path.join(data_dir, "train-images-idx3-ubyte.gz")
    import gzip
    raw = gzip.open(path).read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])
    result = helpers.run_cli("mnist.train", *train_args(str(tmp_path / "run"), data_dir,
                                                        "--max_steps=5"))
    assert_one_clear_line(result, path, "expected", "truncated")


def test_unwritable_train_dir(tmp_path, mnist_data):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = helpers.run_cli("mnist.train", *train_args(str(blocker / "run"), mnist_data,
                                                        "--max_steps=5"))
    assert_one_clear_line(result, "cannot write to train dir", "--train_dir")
    assert "free space" not in result.stderr  # offered only when the disk is full


def test_resume_without_checkpoint(tmp_path, mnist_data):
    result = helpers.run_cli("mnist.train", *train_args(str(tmp_path / "run"), mnist_data,
                                                        "--resume"))
    assert_one_clear_line(result, "holds no checkpoint to resume")


def test_eval_run_once_without_checkpoint(tmp_path, finished_run):
    train_dir = tmp_path / "run"
    train_dir.mkdir()
    with open(os.path.join(finished_run, "config.json")) as f:
        (train_dir / "config.json").write_text(f.read())
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--run_once")
    assert_one_clear_line(result, f"no checkpoint in {train_dir}", "start the trainer")


def test_eval_with_broken_config(tmp_path):
    train_dir = tmp_path / "run"
    train_dir.mkdir()
    (train_dir / "config.json").write_text("{}")
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--run_once")
    assert_one_clear_line(result, str(train_dir / "config.json"), "incomplete")


def test_eval_nonexistent_train_dir(tmp_path):
    missing = str(tmp_path / "nope")
    result = helpers.run_cli("mnist.eval", f"--train_dir={missing}", "--run_once")
    assert_one_clear_line(result, missing, "does not exist")


def test_eval_bad_device_is_one_line(finished_run):
    result = helpers.run_cli("mnist.eval", f"--train_dir={finished_run}", "--run_once",
                             "--device=tpu")
    assert_one_clear_line(result, "--device=tpu", "cpu, auto or gpu:N")
    result = helpers.run_cli("mnist.eval", f"--train_dir={finished_run}", "--run_once",
                             "--device=gpu:3")
    assert_one_clear_line(result, "--device=gpu:3", "visible GPU")


def test_eval_waiting_for_a_trainer_that_never_comes_times_out(tmp_path):
    missing = str(tmp_path / "never")
    result = helpers.run_cli("mnist.eval", f"--train_dir={missing}", "--timeout_secs=1",
                             "--eval_interval_secs=0.1")
    assert_one_clear_line(result, "no trainer wrote", "--timeout_secs=1")


def _thread_field(pid, field):
    """Field ``field`` (1-based, as in proc(5)) of each thread's stat, from /proc."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        found.append(int(fields[field - 3]))  # after "pid (comm)" comes field 3
    return found


def _thread_nice_values(pid):
    return _thread_field(pid, 19)


def _thread_policies(pid):
    return _thread_field(pid, 41)  # the scheduling class


def _autogroup_nice(pid):
    with open(f"/proc/{pid}/autogroup") as f:  # "/autogroup-12 nice 7"
        return int(f.read().split()[-1])


def _autogroups_adjustable():
    """Whether the kernel groups processes by Unix session and lets one lower itself
    (tried in a throwaway Unix session of its own)."""
    try:
        if open("/proc/sys/kernel/sched_autogroup_enabled").read().strip() != "1":
            return False
    except OSError:
        return False
    probe = subprocess.run(
        [sys.executable, "-c", "open('/proc/self/autogroup', 'w').write('1')"],
        start_new_session=True, capture_output=True)
    return probe.returncode == 0


AUTOGROUPS = _autogroups_adjustable()


def _wait_for(condition, timeout=90):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.3)
    return condition()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                    reason="thread priorities are read from Linux's /proc")
@pytest.mark.parametrize("priority, policy", [("idle", os.SCHED_IDLE), ("low", os.SCHED_OTHER)])
def test_eval_priority_lowers_every_thread_and_its_own_terminal(finished_run, tmp_path,
                                                               priority, policy):
    # A run whose trainer has not finished: the evaluator scores it, then keeps polling.
    train_dir = tmp_path / "run"
    shutil.copytree(finished_run, train_dir, ignore=shutil.ignore_patterns("DONE", "eval"))
    # A Unix session of its own, as in a terminal of its own.
    process = subprocess.Popen(
        helpers.cli("mnist.eval", f"--train_dir={train_dir}", "--timeout_secs=60",
                    "--eval_interval_secs=0.2", f"--priority={priority}"),
        env=helpers.cli_env(), cwd=helpers.REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        metrics = str(train_dir / "eval" / "metrics.jsonl")
        assert _wait_for(lambda: read_records(metrics)), "the evaluator scored nothing"
        # TensorFlow's thread pools, started after the priority was set, inherit it; one
        # thread, the CPU watch that says when the evaluator gets no CPU, keeps its own.
        nice_values = _thread_nice_values(process.pid)
        assert len(nice_values) > 3 and nice_values.count(0) == 1, nice_values
        assert nice_values.count(19) == len(nice_values) - 1, nice_values
        policies = _thread_policies(process.pid)
        assert policies.count(os.SCHED_OTHER) >= 1 and set(policies) == {policy,
                                                                           os.SCHED_OTHER}
        if priority == "idle":
            assert policies.count(os.SCHED_OTHER) == 1
        if AUTOGROUPS:  # alone in its terminal, it lowered the terminal's share too
            assert _autogroup_nice(process.pid) == 19
    finally:
        process.kill()
        process.wait()


@pytest.mark.skipif(not AUTOGROUPS, reason="the kernel does not group processes by terminal")
def test_eval_leaves_a_shared_terminal_alone(tmp_path):
    # Another process (here a sleep; in life, a trainer) in the evaluator's terminal: the
    # terminal's share must stay, or the trainer would be lowered with it.
    command = " ".join(helpers.cli("mnist.eval", f"--train_dir={tmp_path / 'none'}",
                                   "--timeout_secs=300", "--priority=low"))
    process = subprocess.Popen(["sh", "-c", f"sleep 600 & {command}"],
                               env=helpers.cli_env(), cwd=helpers.REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        evaluator = _wait_for(lambda: _child_running(process.pid, "mnist.eval"), timeout=30)
        assert evaluator, "the evaluator did not start"
        # Set once TensorFlow has loaded (its thread pools then inherit it): on a loaded
        # machine that takes a while.
        # Every thread but the CPU watch (which keeps its priority to speak) lowered.
        assert _wait_for(lambda: _thread_nice_values(evaluator).count(0) == 1
                         and _thread_nice_values(evaluator).count(19) >= 1, timeout=240)
        time.sleep(1)
        assert _autogroup_nice(evaluator) == 0
    finally:
        os.killpg(process.pid, 9)
        process.wait()


def _child_running(parent, fragment):
    """The pid of a child of ``parent`` whose command line holds ``fragment``, or None."""
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and fragment in cmdline:
            return int(name)
    return None


def test_the_one_epoch_preset_sees_each_training_image_at_most_once():
    """--preset=one_epoch: its steps times its batch fit in the 55,000 training images (the
    default --validation_size holds 5,000 of the 60,000 out), as docs/results.md says."""
    import mnist
    preset = mnist.SPEC.presets["one_epoch"]
    defaults = mnist.SPEC.defaults
    training_images = 60000 - preset.get("validation_size", defaults["validation_size"])
    steps, batch = preset["max_steps"], preset["batch_size"]
    assert steps * batch <= training_images < (steps + 1) * batch
