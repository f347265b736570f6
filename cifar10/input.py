"""CIFAR-10 input: the official binary files through tf.data (the tutorial's cifar10_input).

Each record of ``data_batch_1..5.bin`` (training) and ``test_batch.bin``
(evaluation) is 1 label byte and 3,072 pixel bytes, depth-major (1,024 red,
1,024 green, 1,024 blue). ``--data_dir`` may be the folder holding those
files, or a folder holding ``cifar-10-batches-bin/`` or
``cifar-10-binary.tar.gz``; when none is there, the archive is downloaded
from the official host, checked against its published MD5 and extracted
(no member may land outside the folder).

Training batches are the tutorial's ``distorted_inputs``: a random 24x24
crop, a random left-right flip, random brightness (max delta 63), random
contrast (0.2 to 1.8), per-image standardization. Each epoch is a fresh
permutation of the whole training set (the tutorial's queue mixed 40% of it)
and the distortions run on whole batches, in parallel, ahead of the step;
both are keyed on (seed, step), see ``trainkit.pipeline``.
Evaluation batches are the tutorial's ``inputs``: the central 24x24 crop and
per-image standardization, every test image exactly once. ``--validation_size``
(default 0) holds out the last training records as a validation split.
"""

import os

import numpy as np
import tensorflow as tf
from absl import logging

from trainkit import data as data_lib
from trainkit import errors
from trainkit import pipeline
from trainkit import rundir

IMAGE_SIZE = 24
ORIGINAL_SIZE = 32
RAW_SHAPE = (ORIGINAL_SIZE, ORIGINAL_SIZE, 3)  # a raw image: what export and predict take
# resnet input: per-channel mean and standard deviation of the training images (0..255),
# and the largest random shift of the flip-and-translate augmentation.
CHANNEL_MEAN = (125.3, 123.0, 113.9)
CHANNEL_STD = (63.0, 62.1, 66.7)
TRANSLATE = 2
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
    return any(os.path.exists(os.path.join(folder, name)) for name in TRAIN_FILES + TEST_FILES)


def _verify_archive(path):
    digest = data_lib.file_digest(path, "md5")
    if digest != ARCHIVE_MD5:
        return f"checksum mismatch (MD5 {digest}, expected {ARCHIVE_MD5})"
    return None


def maybe_download(data_dir, mirrors=MIRRORS):
    """The folder holding the ``.bin`` files, extracting or downloading as needed."""
    for folder in (data_dir, os.path.join(data_dir, BATCHES_DIR)):
        if _has_batches(folder):
            return folder
    archive = os.path.join(data_dir, ARCHIVE)
    if not os.path.exists(archive):
        try:
            data_lib.download_verified(ARCHIVE, data_dir, mirrors, _verify_archive)
        except errors.UserError as e:
            raise errors.UserError(
                f"CIFAR-10 not found in {data_dir} and {e}; put {ARCHIVE} or "
                f"its {BATCHES_DIR}/ folder there") from None
    data_lib.safe_extract(archive, data_dir)
    folder = os.path.join(data_dir, BATCHES_DIR)
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
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            raise errors.UserError(
                f"{path} is missing (expected {expected:,} bytes); put the complete "
                f"{BATCHES_DIR}/ folder in --data_dir")
        rundir.check_regular(path)
        size = os.path.getsize(path)
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
    labels = np.memmap(path, dtype=np.uint8, mode="r")[::RECORD_BYTES]
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise errors.UserError(
            f"{path} record {bad[0]} has label {labels[bad[0]]}, expected 0 to "
            f"{NUM_CLASSES - 1}: not a CIFAR-10 binary file; replace it with a complete copy")


def files_for(config, split):
    """Paths and record count of the files behind ``split``.

    ``train`` and ``validation`` both read the training files (see ``records``).
    """
    if split not in ("train", "validation", "test"):
        raise errors.UserError(
            f"unknown split {split!r} for CIFAR-10; choose train, validation or test")
    folder = maybe_download(config.data_dir, tuple(config.data_mirrors) or MIRRORS)
    return check_files(folder, TEST_FILES if split == "test" else TRAIN_FILES)


def records(config, split):
    """The raw records of ``split`` and their count.

    ``validation`` is the last ``validation_size`` training records (the
    official set has no validation split); ``train`` is the rest.
    """
    paths, count = files_for(config, split)
    dataset = tf.data.FixedLengthRecordDataset(paths, RECORD_BYTES)
    if split == "test":
        return dataset, count
    held_out = config.validation_size
    if held_out >= count or (split == "validation" and held_out == 0):
        raise errors.UserError(
            f"--validation_size={held_out} must be between 1 and {count - 1} for a validation "
            f"split of the {count:,} training images")
    if split == "validation":
        return dataset.skip(count - held_out), held_out
    return dataset.take(count - held_out), count - held_out


def decode(raw_records):
    """Raw records [N] -> uint8 images [N, 32, 32, 3] and int32 labels [N]."""
    raw = tf.io.decode_raw(raw_records, tf.uint8)
    labels = tf.cast(raw[:, 0], tf.int32)
    planes = tf.reshape(raw[:, LABEL_BYTES:], [-1, 3, ORIGINAL_SIZE, ORIGINAL_SIZE])
    # Channel planes -> [N, 32, 32, 3]. A stack rather than tf.transpose, whose
    # oneDNN kernel logs an error line for uint8 on CPUs without AVX-512.
    return tf.stack(tf.unstack(planes, axis=1), axis=-1), labels


def _random_crop(images, random, size=IMAGE_SIZE, mirror=None):
    """An independent random ``size`` x ``size`` crop of each image, as one gather per axis.

    ``mirror`` (a boolean [N], optional): those crops come out mirrored left to
    right, by reading their columns in reverse in the same gather; no separate
    reverse and select over the batch. Any dtype: crop uint8 before casting,
    and the cast touches a fraction of the pixels.
    """
    span = images.shape[1] - size + 1
    offsets = random.uniform([2], minval=0, maxval=span, dtype=tf.int32)
    window = tf.range(size)
    rows = offsets[:, :1] + window
    cols = offsets[:, 1:] + window
    if mirror is not None:
        cols = tf.where(mirror[:, None], tf.reverse(cols, axis=[1]), cols)
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, cols, axis=2, batch_dims=1)


def distort(images, random):
    """The tutorial's training distortions on a batch [N, 32, 32, 3] in 0..255
    (uint8 or float): a random 24x24 crop, mirrored half the time, random
    brightness and contrast, then per-image standardization.

    ``random`` (a ``trainkit.pipeline.BatchRandom``) makes every random
    choice, per example, from the step's seed.
    """
    mirror = random.uniform() < 0.5
    images = tf.cast(_random_crop(images, random, mirror=mirror), tf.float32)
    images = images + random.uniform([1, 1, 1], -63.0, 63.0)
    factor = random.uniform([1, 1, 1], 0.2, 1.8)
    # adjust_contrast: (x - mean) * factor + mean, per image and channel.
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    images = (images - mean) * factor + mean
    return tf.image.per_image_standardization(images)


def normalize(images):
    """``resnet`` input: uint8 or float 0..255 [N, 32, 32, 3] -> per-channel standardized."""
    return (tf.cast(images, tf.float32) - CHANNEL_MEAN) / CHANNEL_STD


def flip_translate(images, random, translate=TRANSLATE):
    """``resnet`` augmentation on a batch (uint8 or float): a mirror that alternates
    from epoch to epoch (``BatchRandom.alternating``), a random shift by up to
    ``translate`` pixels (reflection-padded), as airbench94 does (2; airbench96, 4)."""
    # Mirroring commutes with the symmetric padding: the crop's gather does it.
    padded = tf.pad(images, [[0, 0], [translate, translate], [translate, translate], [0, 0]],
                    mode="REFLECT")
    return _random_crop(padded, random, size=ORIGINAL_SIZE, mirror=random.alternating())


def cutout(images, random, size):
    """airbench96's Cutout on a normalized batch of square images [N, S, S, C]: a
    ``size`` x ``size`` square of each, at a random place wholly inside it, set to 0
    (the mean). ``size`` 0 leaves the batch as it is."""
    if not size:
        return images
    side = images.shape[1]
    corners = random.uniform([2], minval=0, maxval=side - size + 1, dtype=tf.int32)
    offsets = tf.range(side)[None, :, None] - corners[:, None, :]  # [N, S, 2]: row, col
    inside = (offsets >= 0) & (offsets < size)
    square = inside[:, :, None, 0] & inside[:, None, :, 1]  # [N, S, S]
    return tf.where(square[..., None], tf.zeros([], images.dtype), images)


def central_crop(images):
    """The tutorial's eval preprocessing on uint8 [N, 32, 32, 3]: central 24x24, standardized."""
    offset = (ORIGINAL_SIZE - IMAGE_SIZE) // 2
    images = images[:, offset:offset + IMAGE_SIZE, offset:offset + IMAGE_SIZE, :]
    return tf.image.per_image_standardization(tf.cast(images, tf.float32))


def train_dataset(config, start_step=0, part=None):
    """Endless distorted batches of the training images from ``start_step``, and their count.

    ``part`` (a ``trainkit.pipeline.Part``): this input pipeline's share of
    each global batch under a distribution strategy; None = all of it.
    """
    dataset, count = records(config, "train")
    # 150 MB of uint8 in memory: the whole split, so batches are a function of the step.
    images, labels = decode(dataset.batch(count).get_single_element())

    def preprocess(images, labels, random):
        if config.model == "tutorial":
            return distort(images, random), labels
        images = normalize(flip_translate(images, random, config.translate))
        return cutout(images, random, config.cutout), labels

    dataset = pipeline.train_batches(images, labels, config.batch_size, config.seed,
                                     start_step, preprocess, part)
    return dataset, count


def first_train_images(config, count):
    """The first ``count`` training images, normalized as ``resnet`` sees them."""
    dataset, _ = records(config, "train")
    images, _ = decode(dataset.take(count).batch(count).get_single_element())
    return normalize(images)


def eval_preprocess(images, config):
    """uint8 [N, 32, 32, 3] -> what the model scores: the central crop, standardized
    (``tutorial``), or the whole image normalized per channel (the resnets). Also inside
    every exported SavedModel, so it takes raw images."""
    return central_crop(images) if config.model == "tutorial" else normalize(images)


def eval_dataset(config, split, batch_size):
    """Every image of ``split`` exactly once, centrally cropped; and the count."""
    dataset, count = records(config, split)

    def preprocess(raw):
        images, labels = decode(raw)
        return eval_preprocess(images, config), labels

    dataset = (dataset
               .batch(batch_size)
               .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    return dataset, count


def prepare(data_dir, mirrors=MIRRORS):
    """Downloads/extracts what is missing and checks every file; returns a summary line."""
    folder = maybe_download(data_dir, mirrors)
    _, train_count = check_files(folder, TRAIN_FILES)
    _, test_count = check_files(folder, TEST_FILES)
    return (f"CIFAR-10 in {folder}: {train_count:,} training and {test_count:,} test images, "
            "all files of a valid size")
