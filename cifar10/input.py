"""CIFAR-10 input: the official binary files (the tutorial's cifar10_input), and the dataset.

Each record of ``data_batch_1..5.bin`` (training) and ``test_batch.bin``
(evaluation) is 1 label byte and 3,072 pixel bytes, depth-major (1,024 red,
1,024 green, 1,024 blue). ``--data_dir`` may be the folder holding those
files, or a folder holding ``cifar-10-batches-bin/`` or
``cifar-10-binary.tar.gz``; when none is there, the archive is downloaded
from the official host, checked against its published MD5 and extracted
(no member may land outside the folder). ``--validation_size`` (default 0)
holds out the last training records as a validation split.

The images are read whole into memory as uint8 (150 MB); the engine makes
the batches (``trainkit.pipeline``) and each network's preprocessing (the
tutorial's ``distorted_inputs`` and ``inputs``: ``cifar10.augment``).
``DATASET`` is this dataset for the engine (``trainkit.dataset``).
"""


import numpy as np
from absl import logging

import cifar10
from cifar10 import model as cifar10_model
from cifar10 import synthetic as cifar10_synthetic
from trainkit import data as data_lib
from trainkit import dataset as dataset_lib
from trainkit import errors
from trainkit import fs
from trainkit import rundir

ORIGINAL_SIZE = 32
RAW_SHAPE = (ORIGINAL_SIZE, ORIGINAL_SIZE, 3)  # a raw image: what export and predict take
NUM_CLASSES = 10
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]
LABEL_BYTES = 1
IMAGE_BYTES = ORIGINAL_SIZE * ORIGINAL_SIZE * 3
RECORD_BYTES = LABEL_BYTES + IMAGE_BYTES
RECORDS_PER_FILE = 10000  # in the official files
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
BATCHES_DIR = "cifar-10-batches-bin"
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published for the official archive
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)


def _has_batches(folder):
    return any(data_lib.present(fs.join(folder, name)) for name in TRAIN_FILES + TEST_FILES)


def _verify_archive(path):
    digest = data_lib.file_digest(path, "md5")
    if digest != ARCHIVE_MD5:
        return f"checksum mismatch (MD5 {digest}, expected {ARCHIVE_MD5})"
    return None


def maybe_download(data_dir, mirrors=MIRRORS):
    """The folder holding the ``.bin`` files, extracting or downloading as needed."""
    for folder in (data_dir, fs.join(data_dir, BATCHES_DIR)):
        if _has_batches(folder):
            return folder
    archive = fs.join(data_dir, ARCHIVE)
    if not data_lib.present(archive):
        try:
            data_lib.download_verified(ARCHIVE, data_dir, mirrors, _verify_archive)
        except errors.UserError as e:
            raise errors.UserError(
                f"CIFAR-10 not found in {data_dir} and {e}; put {ARCHIVE} or "
                f"its {BATCHES_DIR}/ folder there") from None
    data_lib.safe_extract(archive, data_dir)
    folder = fs.join(data_dir, BATCHES_DIR)
    if not _has_batches(folder):
        raise errors.UserError(f"{archive} holds no {BATCHES_DIR}/*.bin files; "
                               "it is not the CIFAR-10 binary archive")
    return folder


def check_files(folder, names):
    """Full paths of ``names`` in ``folder`` and their record count, or UserError.

    A file must be a regular file holding a whole number of 3,073-byte
    records whose labels are 0-9; the official files hold 10,000 each (a
    smaller file only gets a warning, so that tests and slices can use small
    files).
    """
    paths, total = [], 0
    expected = RECORDS_PER_FILE * RECORD_BYTES
    for name in names:
        path = fs.join(folder, name)
        if not data_lib.present(path):
            raise errors.UserError(
                f"{path} is missing (expected {expected:,} bytes); put the complete "
                f"{BATCHES_DIR}/ folder in --data_dir")
        rundir.check_regular(path)
        size = fs.getsize(path)
        if size == 0 or size % RECORD_BYTES:
            raise errors.UserError(
                f"{path} is {size:,} bytes, expected {expected:,} ({RECORDS_PER_FILE:,} records "
                f"of {RECORD_BYTES:,} bytes): truncated or not a CIFAR-10 binary file; "
                "replace it with a complete copy")
        if size != expected:
            logging.warning("%s holds %d records, not the official %d", path,
                            size // RECORD_BYTES, RECORDS_PER_FILE)
        _check_labels(path)
        paths.append(path)
        total += size // RECORD_BYTES
    return paths, total


def _check_labels(path):
    """UserError naming the first record of ``path`` whose label byte is not a class."""
    if fs.of(path).local:
        labels = np.memmap(path, dtype=np.uint8, mode="r")[::RECORD_BYTES]
    else:
        labels = np.frombuffer(fs.read_bytes(path), np.uint8)[::RECORD_BYTES]
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise errors.UserError(
            f"{path} record {bad[0]} has label {labels[bad[0]]}, expected 0 to "
            f"{NUM_CLASSES - 1}: not a CIFAR-10 binary file; replace it with a complete copy")


def files_for(config, split):
    """Paths and record count of the files behind ``split``.

    ``train`` and ``validation`` both read the training files (see ``arrays``).
    """
    if split not in ("train", "validation", "test"):
        raise errors.UserError(
            f"unknown split {split!r} for CIFAR-10; choose train, validation or test")
    folder = maybe_download(config.data_dir, tuple(config.data_mirrors) or MIRRORS)
    return check_files(folder, TEST_FILES if split == "test" else TRAIN_FILES)


def decode(raw):
    """Records as bytes -> uint8 images [N, 32, 32, 3] and int32 labels [N]."""
    records = np.frombuffer(raw, np.uint8).reshape(-1, RECORD_BYTES)
    planes = records[:, LABEL_BYTES:].reshape(-1, 3, ORIGINAL_SIZE, ORIGINAL_SIZE)
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), records[:, 0].astype(np.int32)


def arrays(config, split):
    """``(images uint8 [N, 32, 32, 3], labels int32 [N])`` of ``split``.

    ``validation`` is the last ``validation_size`` training records (the
    official set has no validation split); ``train`` is the rest.
    """
    paths, count = files_for(config, split)
    raw = b"".join(fs.read_bytes(path) for path in paths)
    images, labels = decode(raw)
    if split == "test":
        return images, labels
    held_out = config.validation_size
    if held_out >= count or (split == "validation" and held_out == 0):
        raise errors.UserError(
            f"--validation_size={held_out} must be between 1 and {count - 1} for a validation "
            f"split of the {count:,} training images")
    if split == "validation":
        return images[count - held_out:], labels[count - held_out:]
    return images[:count - held_out], labels[:count - held_out]


def prepare(data_dir, mirrors=MIRRORS):
    """Downloads/extracts what is missing and checks every file; returns a summary line."""
    folder = maybe_download(data_dir, mirrors)
    _, train_count = check_files(folder, TRAIN_FILES)
    _, test_count = check_files(folder, TEST_FILES)
    return (f"CIFAR-10 in {folder}: {train_count:,} training and {test_count:,} test images, "
            "all files of a valid size")


DATASET = dataset_lib.Dataset(
    spec=cifar10.SPEC, models=cifar10_model.MODELS, arrays=arrays, class_names=CLASS_NAMES,
    raw_shape=RAW_SHAPE, prepare=prepare, synthetic=cifar10_synthetic.make, mirrors=MIRRORS)
