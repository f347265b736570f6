"""A careless user's misuse, each refused in one line or handled as the docs say, with
nothing of a run or its data lost or mixed: a dir's lock deleted under its holder, dirs
that overlap, data that is not what it seems, and hints that must work when followed."""

import gzip
import json
import os
import shutil
import signal
import time

import numpy as np
import pytest

from tests import helpers
from trainkit import checkpoints

FAST = ["--batch_size=20", "--validation_size=100", "--log_frequency=5",
        "--save_summaries_steps=0", "--data_mirrors=http://127.0.0.1:9/",
        "--validate_every_steps=0"]


def wait_for(predicate, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def lock_pid(directory):
    try:
        with open(os.path.join(directory, ".lock")) as f:
            return json.load(f)["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_trainer_whose_lock_is_deleted_stops_before_it_writes(tmp_path, mnist_data):
    """rm TRAIN_DIR/.lock under a live trainer, then a second trainer --resume: the second
    holds the dir; the first notices before its next write and stops without writing."""
    train_dir = str(tmp_path / "run")
    first = helpers.start_cli("mnist.train", f"--train_dir={train_dir}",
                              f"--data_dir={mnist_data}", *FAST, "--max_steps=1000000",
                              "--save_checkpoint_steps=10")
    second = None
    try:
        wait_for(lambda: checkpoints.latest(train_dir) and lock_pid(train_dir) == first.pid,
                 first)
        os.remove(os.path.join(train_dir, ".lock"))
        second = helpers.start_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                                   "--save_checkpoint_steps=10")
        out, _ = first.communicate(timeout=240)
        assert first.returncode == 2, out[-3000:]
        (line,) = [l for l in out.splitlines() if l.startswith("error:")]
        assert f"the lock of train dir {train_dir}" in line and "was deleted or replaced" in line
        assert "stopped without writing" in line and "--resume" in line
        assert lock_pid(train_dir) == second.pid
        for line in second.stdout:  # the second trainer trains (its signal handlers are set)
            if "Resuming" in line:
                break
        for line in second.stdout:
            if " step " in line:
                break
    finally:
        for process in (first, second):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.communicate(timeout=120)
    assert second.returncode == 0  # it saved and stopped on SIGTERM: the run is whole
    resumed = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                              f"--max_steps={checkpoints.step_of(checkpoints.latest(train_dir)) + 5}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_dirs_that_overlap_are_refused_before_anything_is_written(tmp_path, mnist_data,
                                                                  images_data):
    data = str(tmp_path / "mnist")
    shutil.copytree(mnist_data, data)
    pictures = str(tmp_path / "pictures")
    shutil.copytree(images_data, pictures)
    before = helpers.tree_state(data), helpers.tree_state(pictures)
    cases = [
        ("images.train", [f"--train_dir={pictures}", f"--data_dir={pictures}"],
         f"--train_dir={pictures} is the data dir {pictures}"),
        ("images.train", [f"--train_dir={os.path.join(pictures, 'train', 'run')}",
                          f"--data_dir={pictures}"], "is inside the data dir"),
        ("mnist.train", [f"--train_dir={os.path.join(data, 'run')}", f"--data_dir={data}",
                         *FAST], "is inside the data dir"),
        ("mnist.train", [f"--train_dir={tmp_path}", f"--data_dir={data}", *FAST],
         f"--train_dir={tmp_path} holds the data dir"),
    ]
    for module, args, fragment in cases:
        result = helpers.run_cli(module, *args)
        helpers.assert_one_clear_line(result, fragment, "outside the data dir")
        assert result.returncode == 2
    # An evaluator and an export of a real run, pointed inside its data dir.
    run = str(tmp_path / "run")
    trained = helpers.run_cli("mnist.train", f"--train_dir={run}", f"--data_dir={data}",
                              *FAST, "--max_steps=10")
    assert trained.returncode == 0, trained.stderr
    result = helpers.run_cli("mnist.eval", f"--train_dir={run}", "--run_once",
                             f"--eval_dir={os.path.join(data, 'eval')}")
    helpers.assert_one_clear_line(result, "--eval_dir=", "is inside the data dir")
    result = helpers.run_cli("mnist.export", f"--train_dir={run}",
                             f"--export_dir={os.path.join(data, 'export')}")
    helpers.assert_one_clear_line(result, "is inside the run's data dir")
    assert (helpers.tree_state(data), helpers.tree_state(pictures)) == before


def test_images_refuses_an_empty_class_and_reads_pictures_in_sub_folders(tmp_path,
                                                                         images_data):
    from trainkit import errors
    from trainkit import registry
    images = registry.load("images")
    data = tmp_path / "pictures"
    shutil.copytree(images_data, data)
    config = images.spec.complete(helpers.train_config("images", str(data)))
    counts = {split: len(images.arrays(config, split)[1])
              for split in ("train", "validation", "test")}
    # Pictures one folder down (as Keras's image_dataset_from_directory reads them).
    sub = data / "train" / "class_1" / "more"
    sub.mkdir()
    for i in range(5):
        shutil.copy(data / "train" / "class_1" / f"{i:05d}.png", sub / f"extra{i}.png")
    assert len(images.arrays(config, "train")[1]) + len(images.arrays(config, "validation")[1]) \
        == counts["train"] + counts["validation"] + 5
    # An empty class folder: refused in one line, naming it.
    (data / "train" / "zebra").mkdir()
    zebra = images.spec.complete(helpers.train_config("images", str(data)))
    with pytest.raises(errors.UserError, match=r"train/zebra holds no pictures"):
        images.arrays(zebra, "train")
    result = helpers.run_cli("images.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={data}", "--max_steps=2")
    helpers.assert_one_clear_line(result, "zebra holds no pictures", "remove the folder")


def test_mnist_raw_and_gz_that_differ_are_refused_and_a_link_loop_is_named(tmp_path,
                                                                           mnist_data):
    from trainkit import errors
    from trainkit import registry
    mnist = registry.load("mnist")
    data = tmp_path / "mnist"
    shutil.copytree(mnist_data, data)
    name = "t10k-labels-idx1-ubyte"
    with gzip.open(data / f"{name}.gz", "rb") as f:
        raw = f.read()
    (data / name).write_bytes(raw)  # the same bytes: fine, either may be read
    config = helpers.train_config("mnist", str(data))
    labels = mnist.arrays(config, "test")[1]
    (data / name).write_bytes(raw[:-1] + bytes([(raw[-1] + 1) % 10]))
    with pytest.raises(errors.UserError, match=rf"holds both {name} and {name}.gz, and they "
                                               "differ"):
        mnist.arrays(config, "test")
    os.remove(data / name)
    np.testing.assert_array_equal(mnist.arrays(config, "test")[1], labels)
    # A symbolic link that loops: named as such, not taken for a file to download.
    os.remove(data / f"{name}.gz")
    os.symlink(data / "loop", data / "loop2")
    os.symlink(data / "loop2", data / "loop")
    os.symlink(data / "loop", data / f"{name}.gz")
    result = helpers.run_cli("mnist.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={data}", *FAST, "--max_steps=2")
    helpers.assert_one_clear_line(result, f"{name}.gz is a symbolic link that leads nowhere")


def test_an_evaluator_that_can_read_no_checkpoint_fails(tmp_path, mnist_data):
    train_dir = tmp_path / "run"
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", *FAST, "--max_steps=20",
                             "--save_checkpoint_steps=10")
    assert result.returncode == 0, result.stderr
    for name in os.listdir(train_dir):
        if name.startswith("ckpt-") and ".data-" in name:
            (train_dir / name).write_bytes(b"not a checkpoint")
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--eval_policy=all",
                             "--eval_interval_secs=0")
    helpers.assert_one_clear_line(result, "none of the 2 checkpoint(s)", "could be read")
    assert result.returncode == 2


@pytest.mark.parametrize("tf_config, fragment", [
    ({"cluster": {"worker": ["localhost:2223"]}, "task": {"type": "worker", "index": 5}},
     "its cluster has 1 worker task(s) (indices 0 to 0)"),
    ({"cluster": {"worker": ["localhost:2223"]}}, "not a valid cluster description"),
    ({"cluster": {}, "task": {"type": "worker", "index": 0}}, "cluster is empty"),
    ({"cluster": {"chief": ["localhost:2223"]}, "task": {"type": "worker", "index": 0}},
     "which its cluster does not list"),
])
def test_every_tf_config_mistake_is_one_line(tmp_path, mnist_data, tf_config, fragment):
    result = helpers.run_cli("mnist.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={mnist_data}", "--strategy=multi_worker",
                             env={"TF_CONFIG": json.dumps(tf_config)})
    helpers.assert_one_clear_line(result, "TF_CONFIG", fragment)
    assert result.returncode == 2 and not (tmp_path / "run").exists()


def test_a_copied_run_names_its_own_best_and_a_resume_says_what_it_changes(tmp_path,
                                                                           mnist_data):
    run = tmp_path / "run"
    result = helpers.run_cli("mnist.train", f"--train_dir={run}", f"--data_dir={mnist_data}",
                             *FAST[:-1], "--max_steps=20", "--validate_every_steps=10")
    assert result.returncode == 0, result.stderr
    result = helpers.run_cli("mnist.eval", f"--train_dir={run}", "--run_once")
    assert result.returncode == 0, result.stderr
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.rmtree(run)
    for best in (copy / "eval" / "best" / "best.json",
                 copy / "best_validation" / "best.json"):
        record = json.loads(best.read_text())
        assert not os.path.isabs(record["checkpoint"]), record
        assert (copy / f"{record['checkpoint']}.index").exists(), record
    # A resume that changes settings says each change and keeps it in config.json.
    result = helpers.run_cli("mnist.train", f"--train_dir={copy}", "--resume",
                             "--max_steps=30", "--batch_size=10")
    assert result.returncode == 0, result.stderr
    assert "Resuming with --batch_size=10 (the run had 20)" in result.stderr
    assert "Resuming with --max_steps=30 (the run had 20)" in result.stderr
    (entry,) = json.loads((copy / "config.json").read_text())["history"]
    assert entry["resumed_at_step"] == 20
    assert entry["changed"]["batch_size"] == [20, 10]


def test_a_nan_before_any_checkpoint_says_to_start_again(tmp_path, mnist_data):
    result = helpers.run_cli("mnist.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={mnist_data}", *FAST, "--max_steps=50",
                             "--learning_rate=1e30", "--optimizer=sgd")
    line = helpers.assert_one_clear_line(result, "the loss became NaN or infinite")
    assert "no checkpoint was saved before it: start again" in line and "--resume" not in line
