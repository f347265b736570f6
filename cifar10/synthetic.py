"""Synthetic CIFAR-10 in the real file format (binary records), for the tests and the benchmark.

The images are learnable (the colour of a square encodes the label), so a
short run on them shows training working; the files are byte-for-byte in the
official layout, so every reader and check runs as on the real data.
"""

import numpy as np

from trainkit import fs

# Training records per file (five files) and test records at each scale: "small" for the
# tests, "full" the real sizes.
SCALES = {"small": (40, 50), "full": (10000, 10000)}


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


def make(path, scale):
    """``make_cifar_dir`` at ``scale``; returns the data folder (``Dataset.synthetic``)."""
    per_file, num_test = SCALES[scale]
    return make_cifar_dir(path, per_file=per_file, num_test=num_test)
