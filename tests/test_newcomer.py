"""What a newcomer meets: the README's commands as printed, quiet and prompt programs that
say where they are, pictures worth looking at."""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers
from trainkit import reports

README = os.path.join(helpers.REPO, "README.md")
needs_venv = pytest.mark.skipif(
    not os.path.exists(os.path.join(helpers.REPO, ".venv", ".installed")),
    reason="the make targets run the project's .venv (made by `make test`)")


def readme_commands():
    """Every command line in the README's shell code blocks, without its comment."""
    text = open(README).read()
    commands = []
    for block in re.findall(r"```\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(("python -m ", "make ")):
                commands.append(line)
    return commands


PARSE = """
import importlib, sys
from absl import flags
module, argv = sys.argv[1], sys.argv[2:]
importlib.import_module(module)  # defines the command's flags, as `python -m` would
flags.FLAGS([module, *argv])     # parses them: an unknown flag or a bad value raises
"""


def test_the_readme_has_commands_to_check():
    commands = readme_commands()
    assert len([c for c in commands if c.startswith("python -m ")]) >= 10
    assert len([c for c in commands if c.startswith("make ")]) >= 4


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses_as_printed(command):
    words = shlex.split(command)
    if words[0] == "make":
        if not os.path.exists(os.path.join(helpers.REPO, ".venv", ".installed")):
            pytest.skip("the make targets run the project's .venv (made by `make test`)")
        result = helpers.run_make("-n", *words[1:])
    else:
        result = subprocess.run([sys.executable, "-c", PARSE, words[2], *words[3:]],
                                cwd=helpers.REPO, capture_output=True, text=True, timeout=120,
                                env=helpers.cli_env())
    assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"


@needs_venv
def test_the_quick_start_runs_as_printed_on_small_data(tmp_path, mnist_data):
    """The README's quick start, with the paths and step counts of small data added."""
    train_dir = str(tmp_path / "runs" / "mnist")
    small = " --max_steps=40 --save_checkpoint_steps=20 --validate_every_steps=20 " \
            "--validation_size=100 --batch_size=20 --data_mirrors=http://127.0.0.1:9/"
    make = [f"TRAIN_DIR={train_dir}", f"DATA_DIR={mnist_data}"]
    train = helpers.run_make(*make, "train", "DATASET=mnist", "ARGS=--preset=fast" + small)
    assert train.returncode == 0, train.stderr
    evaluate = helpers.run_make(*make, "eval", "DATASET=mnist",
                                "ARGS=--eval_interval_secs=0 --eval_policy=all")
    assert evaluate.returncode == 0, evaluate.stderr
    digit = str(tmp_path / "digit.png")
    import tensorflow as tf
    tf.io.write_file(digit, tf.io.encode_png(np.zeros([28, 28, 1], np.uint8)))
    predict = helpers.run_cli("mnist.predict", f"--train_dir={train_dir}", digit)
    assert predict.returncode == 0 and predict.stdout.startswith(f"{digit}: "), predict.stderr
    # Quiet, and saying where it stands: no TensorFlow start-up lines, an ETA early, a
    # summary at the end, the same percent everywhere.
    for out in (train.stderr, evaluate.stderr, predict.stderr):
        assert not re.search(r"^[IWE]0000 |absl::InitializeLog|cuInit|fingerprint",
                             out, flags=re.M), out
    lines = train.stderr.splitlines()
    assert any("examples/s so far, ETA" in line for line in lines[:6]), lines[:6]
    assert re.search(r"Training finished at step 40 after .* of training, final loss [\d.]+; "
                     r"best validation precision @ 1 [\d.]+% at step \d+", train.stderr)
    assert re.search(r"scored 2 of 2 checkpoints, \d of them while the trainer ran; best on "
                     r"validation: step \d+, validation [\d.]+%, test [\d.]+% "
                     r"\(.*eval/best/ckpt-\d+, exported to .*saved_model\)", evaluate.stderr)
    # The pictures of the best, written while polling, not only with --run_once.
    assert {"confusion_matrix.png", "misclassified.png", "conv1_filters.png"} <= set(
        os.listdir(os.path.join(train_dir, "eval")))


def test_verbosity_brings_tensorflows_own_lines_back(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    args = [f"--train_dir={train_dir}", f"--data_dir={mnist_data}", "--max_steps=4",
            "--validation_size=100", "--validate_every_steps=0"]
    quiet = helpers.run_cli("mnist.train", *args)
    assert quiet.returncode == 0 and "oneDNN custom operations" not in quiet.stderr
    loud = helpers.run_cli("mnist.export", f"--train_dir={train_dir}", "--verbosity=1")
    assert loud.returncode == 0, loud.stderr
    assert "fingerprint" in loud.stderr  # TensorFlow's SavedModel INFO lines


def test_a_complete_run_says_so_and_how_to_extend_it(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    first = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                            f"--data_dir={mnist_data}", "--max_steps=10", "--batch_size=20",
                            "--validation_size=100", "--validate_every_steps=0")
    assert first.returncode == 0, first.stderr
    again = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume")
    helpers.assert_one_clear_line(again, f"the run in {train_dir} is complete: it reached step "
                                         "10 of --max_steps=10", "--resume --max_steps=20")


def test_validation_and_test_precision_share_one_tensorboard_tag_in_their_own_runs(
        tmp_path, mnist_data):
    import tensorflow as tf
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", "--max_steps=20", "--batch_size=20",
                             "--validation_size=100", "--validate_every_steps=10",
                             "--save_summaries_steps=10")
    assert result.returncode == 0, result.stderr
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--run_once")
    assert result.returncode == 0, result.stderr

    def tags(folder):
        found = set()
        for name in os.listdir(os.path.join(train_dir, folder)):
            if name.startswith("events."):
                for event in tf.compat.v1.train.summary_iterator(
                        os.path.join(train_dir, folder, name)):
                    found.update(v.tag for v in event.summary.value)
        return found

    # The trainer's validation in its own run, the evaluator's splits in theirs, one tag:
    # TensorBoard draws them in one chart, and none passes for training accuracy.
    for run in ("validation", "eval/validation", "eval/test"):
        assert {"precision_at_1", "loss"} <= tags(run), run
    assert "precision_at_1" not in tags("train") and "loss" in tags("train")


def test_the_confusion_matrix_shows_errors_on_a_scale_of_their_own():
    confusion = np.array([[90, 5, 5], [10, 80, 10], [2, 30, 68]])
    rgb = reports.confusion_rgb(confusion)
    # The diagonal in blue by recall (90% the darkest), the errors in red by their count.
    assert all(rgb[i, i, 2] > rgb[i, i, 0] for i in range(3))
    assert rgb[0, 0, 0] < rgb[1, 1, 0] < rgb[2, 2, 0]
    assert all(rgb[i, j, 0] > rgb[i, j, 1] for i in range(3) for j in range(3) if i != j)
    assert rgb[2, 1, 1] == pytest.approx(0.15)  # the largest error (30): the strongest red
    assert rgb[2, 1, 1] < rgb[1, 0, 1] < rgb[0, 1, 1]
    # With matplotlib: a labeled picture for TensorBoard as well as the PNG.
    image = reports.confusion_image(confusion, ["cat", "dog", "ship"], step=7)
    assert image.dtype == np.uint8 and image.shape[0] == 1 and image.shape[-1] == 3
    assert image.shape[1] > 200  # the figure, not 12 pixels a cell
    assert reports.confusion_image(confusion).shape == (1, 36, 36, 3)


def test_constraints_pin_what_the_tests_ran_with():
    """The Makefile installs with constraints.txt, which pins TensorFlow and its company."""
    pins = dict(line.strip().split("==") for line in open(
        os.path.join(helpers.REPO, "constraints.txt")) if "==" in line)
    import absl
    import numpy
    import tensorflow as tf
    assert pins["tensorflow"] == tf.__version__ and pins["numpy"] == numpy.__version__
    assert "absl-py" in pins and "pytest" in pins
    assert "-c constraints.txt" in open(os.path.join(helpers.REPO, "Makefile")).read()
    del absl


def test_a_trainer_without_its_data_leaves_no_run_behind(tmp_path):
    """No config.json before the data is verified: an evaluator waiting on the dir keeps
    waiting for a real run instead of taking this one for it."""
    train_dir = tmp_path / "run"
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={tmp_path / 'nodata'}",
                             "--data_mirrors=http://127.0.0.1:9/")
    helpers.assert_one_clear_line(result, "MNIST not found in")
    assert not (train_dir / "config.json").exists()
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--timeout_secs=1",
                             "--eval_interval_secs=0.2")
    helpers.assert_one_clear_line(result, "no trainer wrote", "config.json")


def test_the_pipelines_run_without_autotune(mnist_data):
    """tf.data's autotuning thread made deleting an iterator wait up to a minute at the end
    of a long run (the trainer and evaluator sat that long after their last line)."""
    from trainkit import pipeline
    from trainkit import registry
    mnist = registry.load("mnist")
    config = helpers.train_config("mnist", mnist_data)
    images, labels = mnist.arrays(config, "train")
    train = pipeline.train_dataset(mnist, config, images, labels)
    evaluation, _ = pipeline.eval_dataset(mnist, config, "test", 50)
    for dataset in (train, evaluation):
        assert dataset.options().autotune.enabled is False


@pytest.mark.bench
def test_the_exit_delay_script_never_deletes_an_existing_dir(tmp_path):
    existing = tmp_path / "a run [1]"
    existing.mkdir()
    (existing / "ckpt-5.index").write_text("a run's")
    result = subprocess.run([sys.executable, os.path.join(helpers.REPO, "benchmarks",
                                                          "exit_delay.py"),
                             f"--train_dir={existing}", "--data_dir=unused"],
                            capture_output=True, text=True, timeout=120, cwd=helpers.REPO)
    helpers.assert_one_clear_line(result, f"{existing} exists", "deletes nothing")
    assert (existing / "ckpt-5.index").read_text() == "a run's"
