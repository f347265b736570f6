"""Test helpers: synthetic data in the real file formats, and running the real CLIs."""

import functools
import gzip
import http.server
import os
import subprocess
import sys
import threading

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")


def write_idx(path, array, compress=True):
    """Writes ``array`` (uint8) as an IDX file, as the official MNIST files are."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def synthetic_mnist(num, seed):
    """Learnable fake digits: label k lights a 6x6 block at a class-specific place."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=num).astype(np.uint8)
    images = rng.integers(0, 60, size=(num, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 4 + row * 12:10 + row * 12, 2 + col * 5:8 + col * 5] = 255
    return images, labels


def make_mnist_dir(path, num_train=600, num_test=250):
    os.makedirs(path, exist_ok=True)
    for prefix, num, seed in (("train", num_train, 1), ("t10k", num_test, 2)):
        images, labels = synthetic_mnist(num, seed)
        write_idx(os.path.join(path, f"{prefix}-images-idx3-ubyte.gz"), images)
        write_idx(os.path.join(path, f"{prefix}-labels-idx1-ubyte.gz"), labels)
    return path


def cli_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def cli(module, *args):
    """The argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def start_cli(module, *args):
    """Starts ``python -m module args`` in the background, stdout and stderr merged."""
    return subprocess.Popen(cli(module, *args), env=cli_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_pair(dataset, train_dir, eval_args, train_args, timeout=300):
    """The two-terminal workflow: evaluator started first, then the trainer, on ``train_dir``.

    Waits for both, asserts both exited 0, and returns their outputs.
    """
    evaluator = start_cli(f"{dataset}.eval", f"--train_dir={train_dir}", "--num_threads=1",
                          *eval_args)
    trainer = start_cli(f"{dataset}.train", f"--train_dir={train_dir}", *train_args)
    train_out, _ = trainer.communicate(timeout=timeout)
    eval_out, _ = evaluator.communicate(timeout=timeout)
    assert trainer.returncode == 0, train_out
    assert evaluator.returncode == 0, eval_out
    return train_out, eval_out


def run_cli(module, *args, timeout=180):
    """Runs a CLI to completion; returns the CompletedProcess (text output)."""
    return subprocess.run(cli(module, *args), capture_output=True, text=True,
                          timeout=timeout, env=cli_env(), cwd=REPO)


def error_lines(stderr):
    """The lines of stderr that are the tool's own words (not TensorFlow's start-up noise)."""
    return [line for line in stderr.splitlines()
            if line.startswith("error:") or "FATAL Flags parsing error" in line
            or line.startswith("Traceback")]


def tree_state(path):
    """{relative path: (size, mtime_ns)} of every file below ``path``."""
    state = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            st = os.stat(full)
            state[os.path.relpath(full, path)] = (st.st_size, st.st_mtime_ns)
    return state


def synthetic_cifar(num, seed):
    """Learnable fake CIFAR-10: uint8 images [N, 32, 32, 3] whose colour encodes the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=num).astype(np.uint8)
    images = rng.integers(0, 80, size=(num, 32, 32, 3)).astype(np.uint8)
    for i, label in enumerate(labels):
        channel, level = divmod(int(label), 4)
        images[i, 8:24, 8:24, channel] = 100 + 50 * level
    return images, labels


def cifar_records(images, labels):
    """The official binary layout: label byte, then 1,024 red, 1,024 green, 1,024 blue bytes."""
    planes = np.transpose(images, (0, 3, 1, 2)).reshape(len(images), -1)
    return np.concatenate([labels[:, None], planes], axis=1).astype(np.uint8).tobytes()


def make_cifar_dir(path, per_file=40, num_test=50):
    """cifar-10-batches-bin/ with five small training files and a test file."""
    folder = os.path.join(path, "cifar-10-batches-bin")
    os.makedirs(folder, exist_ok=True)
    for i in range(1, 6):
        images, labels = synthetic_cifar(per_file, seed=i)
        with open(os.path.join(folder, f"data_batch_{i}.bin"), "wb") as f:
            f.write(cifar_records(images, labels))
    images, labels = synthetic_cifar(num_test, seed=0)
    with open(os.path.join(folder, "test_batch.bin"), "wb") as f:
        f.write(cifar_records(images, labels))
    return folder


class HttpServer:
    """Serves ``root`` on 127.0.0.1 (a free port) until ``close()``: the tests' download host."""

    def __init__(self, root):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
        handler.log_message = lambda *args: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def train_config(dataset, data_dir, **overrides):
    """A small, valid TrainConfig for in-process tests; downloads go nowhere."""
    from trainkit import config as config_lib
    values = dict(dataset=dataset, train_dir="unused", data_dir=data_dir,
                  model="cnn" if dataset == "mnist" else "tutorial",
                  batch_size=32, max_steps=10, optimizer="sgd", learning_rate=0.1,
                  learning_rate_decay=1.0, num_epochs_per_decay=1.0, staircase=True,
                  momentum=0.9, l2_regularization=0.0, moving_average_decay=0.99,
                  log_frequency=10, save_summaries_steps=0, save_checkpoint_steps=0,
                  save_checkpoint_secs=0, max_to_keep=5, seed=0,
                  validation_size=100 if dataset == "mnist" else 0,
                  data_mirrors=("http://127.0.0.1:9/",))
    values.update(overrides)
    return config_lib.TrainConfig(**values)
