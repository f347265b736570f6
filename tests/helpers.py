"""Test helpers: synthetic data in the real file formats, and running the real CLIs."""

import gzip
import os
import subprocess
import sys

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
