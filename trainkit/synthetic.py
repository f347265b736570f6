"""Synthetic MNIST and CIFAR-10 in the real file formats, for the tests and the benchmark.

The images are learnable (each label has its own visible pattern), so a
short run on them shows training working; the files are byte-for-byte in
the official layouts (IDX, CIFAR-10 binary records), so every reader and
check runs as on the real data.
"""

import gzip

import numpy as np

from trainkit import fs


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
    folder = fs.join(path, "cifar-10-batches-bin")
    fs.makedirs(folder)
    for i in range(1, 6):
        images, labels = synthetic_cifar(per_file, seed=i)
        fs.write_atomic(fs.join(folder, f"data_batch_{i}.bin"), cifar_records(images, labels))
    images, labels = synthetic_cifar(num_test, seed=0)
    fs.write_atomic(fs.join(folder, "test_batch.bin"), cifar_records(images, labels))
    return folder


# Examples per split at each scale: "small" for the tests, "full" the real datasets' sizes
# (for the benchmark).
SCALES = {"small": {"mnist": (600, 250), "cifar10": (40, 50)},
          "full": {"mnist": (60000, 10000), "cifar10": (10000, 10000)}}


def mnist(path, scale):
    """``make_mnist_dir`` at ``scale``; returns the data dir."""
    num_train, num_test = SCALES[scale]["mnist"]
    return make_mnist_dir(path, num_train=num_train, num_test=num_test)


def cifar10(path, scale):
    """``make_cifar_dir`` at ``scale`` (training records per file, test records)."""
    per_file, num_test = SCALES[scale]["cifar10"]
    return make_cifar_dir(path, per_file=per_file, num_test=num_test)
