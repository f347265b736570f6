"""Synthetic MNIST in the real file format (IDX), for the tests and the benchmark.

The digits are learnable (each label lights its own block), so a short run
on them shows training working; the files are byte-for-byte in the official
layout, so every reader and check runs as on the real data.
"""

import gzip

import numpy as np

from trainkit import fs

# Training and test examples at each scale: "small" for the tests, "full" the real sizes.
SCALES = {"small": (600, 250), "full": (60000, 10000)}


def write_idx(path, array, compress=True):
    """Writes ``array`` (uint8) as an IDX file, as the official MNIST files are."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    fs.write_atomic(path, gzip.compress(data, mtime=0) if compress else data)


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
    fs.makedirs(path)
    for prefix, num, seed in (("train", num_train, 1), ("t10k", num_test, 2)):
        images, labels = synthetic_mnist(num, seed)
        write_idx(fs.join(path, f"{prefix}-images-idx3-ubyte.gz"), images)
        write_idx(fs.join(path, f"{prefix}-labels-idx1-ubyte.gz"), labels)
    return path


def make(path, scale):
    """``make_mnist_dir`` at ``scale``; returns the data dir (``Dataset.synthetic``)."""
    num_train, num_test = SCALES[scale]
    return make_mnist_dir(path, num_train=num_train, num_test=num_test)
