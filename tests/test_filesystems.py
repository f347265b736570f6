"""Train, eval, data and export dirs on filesystems other than a local path.

``ram://`` (TensorFlow's in-memory filesystem) stands for an object store:
trainer, polling evaluator (on a thread: the filesystem lives in one
process), export and predict run end to end on it, and any plain ``os``
access to those dirs fails the test. The lease that locks a dir where there
is no ``flock`` is tested on its own. A ``file://`` URI is the local folder
it names: the same lock as its plain path, across real processes.
"""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid

import numpy as np
import pytest

from tests import helpers
from tests.test_mnist_input import make_config
from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import errors
from trainkit import evaluator
from trainkit import export
from trainkit import fs
from trainkit import locks
from trainkit import loop
from trainkit import registry
from trainkit import rundir

MNIST = registry.load("mnist")

# Operations Python audits that touch a path; a "ram://" path reaching one of them is
# plain-os access to a dir that only TensorFlow's filesystems can reach.
_AUDITED = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rename",
            "os.rmdir", "os.link", "os.symlink", "os.truncate", "os.chmod", "os.utime",
            "shutil.rmtree", "shutil.copyfile", "shutil.move", "os.walk"}
_plain_access = []
_watching = threading.Event()


def _audit(event, args):
    if not (_watching.is_set() and event in _AUDITED):
        return
    if not any(isinstance(arg, (str, bytes, os.PathLike)) and "ram:" in os.fsdecode(arg)
               for arg in args):
        return
    # The first caller outside the standard library: the project's code counts (a
    # library's own probing, such as TensorFlow sizing a checkpoint with glob, does not).
    for frame in reversed(traceback.extract_stack()[:-1]):
        if not frame.filename.startswith(_STDLIB):
            if frame.filename.startswith(_PROJECT):
                _plain_access.append(f"{event}{args!r} from {frame.filename}:{frame.lineno}")
            return


_STDLIB = os.path.dirname(os.__file__)
_PROJECT = tuple(os.path.join(helpers.REPO, name) + os.sep
                 for name in ("trainkit", "cifar10", "mnist"))
sys.addaudithook(_audit)


@pytest.fixture
def watch_plain_access(tmp_path, monkeypatch):
    """Records plain-os access to ram:// paths; the cwd is a fresh folder, so that a
    path like ram://x taken as local would show as a folder named ram:."""
    monkeypatch.chdir(tmp_path)
    _plain_access.clear()
    _watching.set()
    yield
    _watching.clear()
    assert not _plain_access, _plain_access[:5]
    assert not os.path.exists(tmp_path / "ram:")


def test_train_evaluate_export_predict_on_ram_filesystem(watch_plain_access):
    root = f"ram://t{uuid.uuid4().hex[:8]}"
    data_dir, train_dir = f"{root}/data", f"{root}/runs/r1"
    helpers.make_mnist_dir(data_dir, num_train=300, num_test=100)
    config = make_config(data_dir, train_dir=train_dir, batch_size=20, max_steps=12,
                         save_checkpoint_steps=4, validate_every_steps=4, optimizer="momentum",
                         learning_rate=0.05, moving_average_decay=0.9)
    eval_config = config_lib.EvalConfig(
        train_dir=train_dir, eval_batch_size=50, eval_interval_secs=0.05, eval_policy="all",
        timeout_secs=120)
    failures = []

    def evaluate():
        try:
            evaluator.run(eval_config, MNIST)
        except BaseException as e:  # noqa: BLE001 -- reported by the main thread
            failures.append(e)

    thread = threading.Thread(target=evaluate)
    thread.start()  # before the trainer: it polls for config.json
    assert loop.train(config, MNIST) == 12
    thread.join(timeout=300)
    assert not thread.is_alive() and not failures, failures

    names = fs.listdir(train_dir)
    assert {"config.json", "DONE", "checkpoint", "ckpt-12.index"} <= set(names)
    assert not any(name.startswith(".lock") for name in names)  # the lease was given back
    records = evaluator.read_records(fs.join(train_dir, "eval", "metrics.jsonl"))
    assert [r["step"] for r in records] == [4, 8, 12]
    assert all(r["num_examples"] == 100 for r in records)
    best = rundir.read_best(fs.join(train_dir, "eval", "best", rundir.BEST_FILE))
    assert best["step"] in (4, 8, 12)
    assert rundir.is_export(fs.join(train_dir, "eval", "best", rundir.SAVED_MODEL_DIR))
    assert fs.exists(fs.join(train_dir, "best_validation", rundir.BEST_FILE))

    # export and predict, from the train dir and from the SavedModel
    export_dir = export.export(train_dir, MNIST)
    assert export_dir == fs.join(train_dir, "export") and rundir.is_export(export_dir)
    export.export(train_dir, MNIST)  # replacing an export works there too
    assert rundir.is_export(export_dir) and not [
        n for n in fs.listdir(train_dir) if n.startswith(".export")]
    saved = export.SavedClassifier(export_dir, "mnist")
    image = helpers.synthetic_mnist(1, seed=5)[0][0][..., None]
    probabilities = saved.classify(images=image[None])["probabilities"].numpy()
    classifier, path, _ = export.load_classifier(train_dir, MNIST)
    np.testing.assert_allclose(
        classifier.classify(images=image[None])["probabilities"].numpy(), probabilities,
        atol=1e-5)
    assert path == fs.join(train_dir, "eval", "best", f"ckpt-{best['step']}")
    fs.rmtree(root)


def test_images_dataset_reads_and_caches_on_ram_filesystem(watch_plain_access):
    images_input = registry.load("images")
    data_dir = f"ram://i{uuid.uuid4().hex[:8]}/pictures"
    images_input.synthetic(data_dir, "small")
    config = images_input.spec.complete(helpers.train_config("images", data_dir))
    images, labels = images_input.arrays(config, "train")
    # 20 a class, 2 of them held out for validation (the default 10%).
    assert images.shape == (54, 32, 32, 3) and list(np.bincount(labels)) == [18, 18, 18]
    cache = fs.join(data_dir, ".trainkit-cache")
    (cached,) = [n for n in fs.listdir(cache) if n.startswith("train-")]
    # The second read comes from the cache written there.
    zeros = io.BytesIO()
    np.savez(zeros, images=images * 0, labels=labels)
    fs.write_atomic(fs.join(cache, cached), zeros.getvalue())
    assert images_input.arrays(config, "train")[0].max() == 0
    assert len(images_input.arrays(config, "test")[1]) == 15
    fs.rmtree(data_dir)


def test_remote_paths_that_tensorflow_would_read_as_patterns_are_refused():
    with pytest.raises(errors.UserError, match=r"cannot hold \* \? \[ \]"):
        locks.hold("ram://runs/a[1]", "trainer")


def test_append_and_atomic_write_on_ram_filesystem():
    path = f"ram://a{uuid.uuid4().hex[:8]}/log.jsonl"
    fs.makedirs(os.path.dirname(path))
    fs.append(path, "1\n")
    fs.append(path, "2\n")
    with fs.open(path) as f:
        assert f.read() == "1\n2\n"
    fs.write_atomic(path, "new\n")
    assert fs.read_bytes(path) == b"new\n"
    assert fs.listdir(os.path.dirname(path)) == ["log.jsonl"]  # no temporary file left
    with pytest.raises(FileNotFoundError):
        fs.remove(path + ".gone")
    with pytest.raises(FileNotFoundError):
        fs.listdir(path + "-no-such-folder")


def test_each_filesystem_declares_what_it_can_do():
    assert fs.of("/tmp/x") is fs.LOCAL and fs.of("relative/x") is fs.LOCAL
    assert all((fs.LOCAL.flock, fs.LOCAL.atomic_rename, fs.LOCAL.hard_links, fs.LOCAL.append,
                fs.LOCAL.symlinks, fs.LOCAL.local))
    for path in ("ram://b/x", "hdfs://nn/x", "gs://bucket/x", "s3://bucket/x"):
        caps = fs.of(path)
        assert not any((caps.flock, caps.hard_links, caps.append, caps.symlinks, caps.local))
    assert fs.of("ram://b/x").atomic_rename and fs.of("hdfs://nn/x").atomic_rename
    assert not fs.of("gs://bucket/x").atomic_rename and not fs.of("s3://bucket/x").atomic_rename
    # Two paths: the filesystem that is not local.
    assert fs.of("/tmp/a", "ram://b/x") is fs.of("ram://b/x") is fs.of("ram://b/x", "/tmp/a")
    with pytest.raises(OSError):
        fs.link("ram://b/x", "ram://b/y")  # no hard links: the caller copies
    assert not fs.islink("ram://b/x")


def test_a_dir_is_locked_once_per_process_by_the_lock_its_filesystem_has(tmp_path):
    """The entry point takes each lock and hands it on; a second take, by any spelling of
    the dir, is a bug and says so."""
    run = tmp_path / "run"
    lock = locks.hold(str(run), "trainer")
    assert isinstance(lock, locks.FlockLock)
    os.symlink(run, tmp_path / "alias")
    for spelling in (str(run), f"{run}/", f"file://{run}", str(tmp_path / "alias"),
                     os.path.relpath(run)):
        with pytest.raises(RuntimeError, match="already locked by this process"):
            locks.hold(spelling, "trainer")
    lock.check()
    lock.release()
    lock.release()  # once is enough
    again = locks.hold(str(tmp_path / "alias"), "trainer")
    again.release()
    remote = f"ram://locks{uuid.uuid4().hex[:8]}/run"
    lease = locks.hold(remote, "evaluator", "eval dir", "--eval_dir")
    assert isinstance(lease, locks.LeaseLock)
    with pytest.raises(RuntimeError, match="already locked by this process"):
        locks.hold(remote + "/", "evaluator", "eval dir", "--eval_dir")
    lease.release()
    assert not fs.exists(fs.join(remote, rundir.LOCK_FILE))


# -- the lease -------------------------------------------------------------------------


def _lease(path, **kwargs):
    return locks.Lease(path, {"role": "trainer", "pid": os.getpid(),
                               "host": socket.gethostname(), "since": "now"}, **kwargs)


def test_lease_is_refused_while_held_and_taken_over_once_it_expires(tmp_path):
    path = f"file://{tmp_path}/.lock"
    lost = []
    first = _lease(path, lease_secs=0.6, on_lost=lambda lease, now: lost.append(now))
    first.acquire()
    time.sleep(0.5)  # renewed meanwhile: still held
    second = _lease(path, lease_secs=0.6)
    with pytest.raises(locks.LeaseTaken):
        second.acquire()
    # A holder on another host that stopped renewing: expired after lease_secs.
    stale = dict(first.read(), host="elsewhere", pid=1, token="x", renewed=time.time() - 1)
    first._stop.set()
    first._thread.join()
    fs.write_atomic(path, json.dumps(stale))
    assert second.expired(stale)
    assert not second.expired(dict(stale, renewed=time.time()))
    second.acquire()
    assert second.read()["token"] == second.holder["token"]
    second.release()
    assert not fs.exists(path)
    assert not lost


def test_a_holder_that_loses_its_lease_is_told(tmp_path):
    path = f"file://{tmp_path}/.lock"
    lost = threading.Event()
    holder = _lease(path, lease_secs=0.6, on_lost=lambda lease, now: lost.set())
    holder.acquire()
    fs.write_atomic(path, json.dumps(dict(holder.read(), token="someone-else")))
    assert lost.wait(5)
    holder.release()
    assert fs.exists(path)  # not ours any more: left to its holder


# -- file:// across processes -------------------------------------------------------------


def test_a_file_uri_is_the_local_dir_it_names_and_meets_its_lock(tmp_path, mnist_data):
    """file:// names the local disk: the same dir as a plain path and as a URI meets one
    flock, in either order, and a run trains, evaluates, exports and predicts through
    URIs as through plain paths."""
    run = tmp_path / "runs dir" / "r1"
    data_dir = f"file://{tmp_path}/data"
    helpers.make_mnist_dir(data_dir[len("file://"):], num_train=300, num_test=100)
    common = [f"--data_dir={data_dir}", "--batch_size=20", "--validation_size=100",
              "--log_frequency=5", "--data_mirrors=http://127.0.0.1:9/"]
    for first_name, second_name in ((str(run), f"file://{run}"), (f"file://{run}", str(run))):
        first = helpers.start_cli("mnist.train", f"--train_dir={first_name}", *common,
                                  "--max_steps=1000000", "--save_checkpoint_steps=10",
                                  *(["--resume"] if run.exists() else []))
        try:
            deadline = time.monotonic() + 240
            while not checkpoints.latest(str(run)) or not _locked_by(run, first.pid):
                assert first.poll() is None and time.monotonic() < deadline, first.communicate()
                time.sleep(0.1)
            second = helpers.run_cli("mnist.train", f"--train_dir={second_name}", "--resume")
            helpers.assert_one_clear_line(second, "is in use by another trainer",
                                          f"pid {first.pid}")
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=120)
    train_dir = f"file://{run}"
    done = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                           f"--max_steps={checkpoints.step_of(checkpoints.latest(str(run))) + 5}")
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--run_once")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    exported = helpers.run_cli("mnist.export", f"--train_dir={train_dir}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert rundir.is_export(str(run / "export"))
    image = tmp_path / "digit.png"
    _write_png(image)
    predicted = helpers.run_cli("mnist.predict", f"--saved_model={train_dir}/export",
                                "--json", str(image))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert json.loads(predicted.stdout.splitlines()[-1])["file"] == str(image)


def _locked_by(run, pid):
    try:
        return json.loads((run / ".lock").read_text())["pid"] == pid
    except (OSError, ValueError, KeyError):
        return False


def test_a_lease_taker_never_takes_over_a_live_flock_holder(tmp_path):
    """A flock holder's record in the lock file (pid, host, no renewal): the lease taker
    refuses while that process lives, and takes the dir once it is gone."""
    path = f"file://{tmp_path}/.lock"
    holder = {"role": "trainer", "pid": os.getpid(), "host": socket.gethostname(),
              "since": "2026-12-06T10:00:00+00:00"}
    fs.write_atomic(path, json.dumps(holder))
    taker = _lease(path, lease_secs=0.6)
    with pytest.raises(locks.LeaseTaken):
        taker.acquire()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    fs.write_atomic(path, json.dumps(dict(holder, pid=int(gone))))
    taker.acquire()
    taker.release()


def test_a_lease_renewed_by_a_clock_ahead_says_how_to_release_it(tmp_path):
    """A lease whose last renewal is ahead of this host's clock never runs out here: the
    refusal says so and names the command that releases it; releasing works."""
    directory = f"ram://skew{uuid.uuid4().hex[:6]}/run"
    fs.makedirs(directory)
    ahead = {"role": "trainer", "pid": 1, "host": "elsewhere", "since": "x", "token": "t",
             "renewed": time.time() + 3600, "lease_secs": 60}
    fs.write_atomic(fs.join(directory, ".lock"), json.dumps(ahead))
    with pytest.raises(errors.UserError, match=r"ahead of this host's clock .* 'python -m "
                                               r"trainkit.rundir release "):
        locks.hold(directory, "trainer")
    assert "pid 1 on elsewhere" in locks.release(directory)
    locks.hold(directory, "trainer").release()
    # The command, on a local dir: refused while a live process holds its flock.
    run = tmp_path / "run"
    held = locks.hold(str(run), "trainer")
    command = [sys.executable, "-m", "trainkit.rundir", "release", str(run)]
    refused = subprocess.run(command, capture_output=True, text=True, cwd=helpers.REPO,
                             env=helpers.cli_env())
    assert refused.returncode == 2 and "stop it instead" in refused.stderr
    held.release()
    released = subprocess.run(command, capture_output=True, text=True, cwd=helpers.REPO,
                              env=helpers.cli_env())
    assert released.returncode == 0 and not (run / ".lock").exists(), released.stderr


def _write_png(path):
    import tensorflow as tf
    image = helpers.synthetic_mnist(1, seed=3)[0][0][..., None]
    path.write_bytes(tf.io.encode_png(image).numpy())



@pytest.mark.parametrize("path, expected", [
    ("file:///tmp/a//b/", "file:///tmp/a/b"),  # file:// + an absolute path keeps its root
    ("gs://bucket/x/./y", "gs://bucket/x/y"),
    ("gs://bucket", "gs://bucket"),
    ("runs//a/", "runs/a"),
])
def test_normpath_keeps_a_uri_a_uri(path, expected):
    assert fs.normpath(path) == expected


@pytest.mark.parametrize("module", ["mnist.train", "mnist.eval", "mnist.export"])
def test_a_filesystem_tensorflow_lacks_is_one_line(module, tmp_path):
    # s3:// needs tensorflow-io, which is not installed here.
    result = helpers.run_cli(module, "--train_dir=s3://bucket/run", "--max_steps=5"
                             if module == "mnist.train" else "--run_once" if module ==
                             "mnist.eval" else "--checkpoint=s3://bucket/run/ckpt-1")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = helpers.error_lines(result.stderr)
    assert len(lines) == 1 and "cannot use s3://bucket/run" in lines[0] and (
        "tensorflow-io" in lines[0]), result.stderr[-2000:]
    assert not os.path.exists(os.path.join(helpers.REPO, "s3:"))
