"""Your own pictures as a dataset: a folder of class folders, decoded once into a cache.

The training split is ``DATA_DIR/train`` (or ``DATA_DIR`` itself when it has
no ``train/``) less the last ``--validation_split`` of each class's files by
name, which are the validation split; the test split ``DATA_DIR/test``, or,
without one, the last ``--test_split`` of each class's training files. Classes are the
sub-folders, in name order; the trainer records them in config.json, so the
evaluator, export and predict name them without the data. Each image goes
through ``trainkit.predict.load_image``, as predict will bring a picture to
the model: its central square, resized by area averaging to
``--image_size``, RGB. A split is decoded once, in parallel, into
``DATA_DIR/.trainkit-cache/``, and read from there while its files are
unchanged; a file that cannot be decoded is reported by name.
"""

import concurrent.futures
import hashlib
import io
import os

import numpy as np
from absl import logging

import images
from images import model as images_model
from trainkit import config as config_lib
from trainkit import rundir
from trainkit import dataset as dataset_lib
from trainkit import errors
from trainkit import fs
from trainkit import predict

EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
CACHE_DIR = ".trainkit-cache"
BAD_FILES_SHOWN = 3
# Part of each cache's key: a cache made by an earlier decoder is not reused.
DECODER = "jpeg-accurate-dct"


def _folders(config):
    """(the training folder, the test folder or None)."""
    data_dir = config.data_dir
    if not fs.isdir(data_dir):
        raise errors.UserError(f"--data_dir={data_dir} does not exist; give the folder holding "
                               "one sub-folder of pictures per class")
    train, test = fs.join(data_dir, "train"), fs.join(data_dir, "test")
    if not fs.isdir(train):
        return data_dir, None
    return train, test if fs.isdir(test) else None


def _subfolders(folder):
    return sorted(name for name in fs.listdir(folder) if not name.startswith(".")
                  and name not in ("train", "test") and fs.isdir(fs.join(folder, name)))


def class_names(config):
    """The run's classes (config.json's), else the training folder's sub-folders."""
    if config.class_names:
        return list(config.class_names)
    folder = _folders(config)[0]
    names = _subfolders(folder)
    if len(names) < 2:
        run_files = [name for name in (rundir.CONFIG_FILE, rundir.INDEX_FILE)
                     if fs.exists(fs.join(config.data_dir, name))]
        if run_files:
            raise errors.UserError(
                f"{folder} holds {len(names)} class folder(s), and {config.data_dir} holds a "
                f"run's files ({', '.join(run_files)}): a run was written into the data dir "
                "(--train_dir was the data dir); move the run's files out of it")
        raise errors.UserError(f"{folder} holds {len(names)} class folder(s); "
                               "put the pictures of each class in a folder of its own (two "
                               "or more)")
    return names


def _pictures(folder):
    """The pictures in ``folder`` and, as Keras's image_dataset_from_directory reads them,
    in its sub-folders at any depth (hidden ones left out), by path."""
    found = []
    for name in sorted(fs.listdir(folder)):
        path = fs.join(folder, name)
        if name.startswith("."):
            continue
        if fs.isdir(path):
            found += _pictures(path)
        elif name.lower().endswith(EXTENSIONS):
            found.append(path)
    return found


def _files(folder, classes, training):
    """[(path, label)] of the pictures in ``folder``'s class folders, by class and path.
    UserError for a class folder the run does not know and, in the training folder, for a
    class without a picture."""
    unknown = sorted(set(_subfolders(folder)) - set(classes))
    if unknown:
        raise errors.UserError(f"{folder} has class folder(s) {', '.join(unknown)} that the "
                               f"run does not know ({', '.join(classes)})")
    found = []
    for label, name in enumerate(classes):
        path = fs.join(folder, name)
        pictures = _pictures(path) if fs.isdir(path) else []
        if training and not pictures:
            raise errors.UserError(
                f"{path} holds no pictures (PNG, JPEG, GIF or BMP, at any depth): a class "
                "needs some to learn from; add them or remove the folder")
        found += [(picture, label) for picture in pictures]
    return found


def _held_out(files, fraction):
    """``files`` of one class split into (kept, held out): the last ``fraction`` of them by
    name held out, at least one when ``fraction`` is not 0."""
    count = max(1, int(round(len(files) * fraction))) if fraction and files else 0
    return files[:len(files) - count], files[len(files) - count:]


def _split_files(config, split):
    """[(path, label)] of ``split``. Per class, by file name, the training folder's
    pictures are: train, then validation (``--validation_split`` of what is not test),
    then test (``--test_split``, when there is no test/ folder)."""
    if split not in ("train", "validation", "test"):
        raise errors.UserError(f"unknown split {split!r} for images; choose train, validation "
                               "or test")
    train, test = _folders(config)
    classes = class_names(config)
    if split == "test" and test:
        return _files(test, classes, training=False)
    test_fraction = config.options["test_split"] if test is None else 0.0
    if test is None and not test_fraction:
        raise errors.UserError(f"{config.data_dir} has no test/ folder: pass --test_split=0.1 "
                               "(say) to hold out part of each class as the test split, or "
                               "add test/CLASS/ folders")
    validation_fraction = config.options["validation_split"]
    if split == "validation" and not validation_fraction:
        raise errors.UserError("--validation_split=0 holds out no validation split; pass "
                               "--validation_split=0.1 (say)")
    chosen, files = [], _files(train, classes, training=True)
    for label in range(len(classes)):
        mine, held_for_test = _held_out([item for item in files if item[1] == label],
                                        test_fraction)
        kept, held_for_validation = _held_out(mine, validation_fraction)
        chosen += {"train": kept, "validation": held_for_validation,
                   "test": held_for_test}[split]
    return chosen


def arrays(config, split):
    """``(images uint8 [N, S, S, 3], labels int32 [N])`` of ``split``, from the cache when
    its files are unchanged, else decoded (in parallel) and cached."""
    files = _split_files(config, split)
    if not files:
        raise errors.UserError(f"no PNG, JPEG, GIF or BMP files for the {split} split in "
                               f"{config.data_dir}")
    size = config.options["image_size"]
    digest = hashlib.sha1(f"{size}\0{DECODER}".encode())
    for path, label in files:
        length, mtime = fs.signature(path)
        digest.update(f"{path}\0{label}\0{length}\0{mtime}\n".encode())
    cache_dir = fs.join(config.data_dir, CACHE_DIR)
    cache = fs.join(cache_dir, f"{split}-{size}-{digest.hexdigest()[:16]}.npz")
    if fs.isfile(cache):
        with np.load(io.BytesIO(fs.read_bytes(cache))) as saved:
            logging.info("The %s split's %d pictures: decoded before, read from %s", split,
                         len(files), cache)
            return saved["images"], saved["labels"]
    logging.info("Decoding the %s split's %d pictures into %s", split, len(files), cache_dir)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        decoded = list(pool.map(lambda item: _decode(item[0], size), files))
    bad = [(path, why) for (path, _), why in zip(files, decoded) if isinstance(why, str)]
    if bad:
        raise errors.UserError(
            f"{len(bad)} of the {split} split's {len(files)} pictures cannot be read: "
            + "; ".join(
                f"{path}: {why}" for path, why in bad[:BAD_FILES_SHOWN])
            + ("; ..." if len(bad) > BAD_FILES_SHOWN else "") + "; fix or remove them")
    result = np.stack(decoded), np.array([label for _, label in files], np.int32)
    try:
        fs.makedirs(cache_dir)
        for old in fs.listdir(cache_dir):  # this split's earlier caches, at this size
            if old.startswith(f"{split}-{size}-"):
                fs.remove(fs.join(cache_dir, old))
        saved = io.BytesIO()
        np.savez(saved, images=result[0], labels=result[1])
        fs.write_atomic(cache, saved.getvalue())
    except OSError as e:
        logging.warning("Cannot cache the decoded %s split in %s (%s); it will be decoded "
                        "again next time", split, cache_dir, e.strerror or e)
    return result


def _decode(path, size):
    try:
        return predict.load_image(path, (size, size, 3))
    except ValueError as e:
        return str(e)


def prepare(data_dir, mirrors=()):
    """Decodes (and caches) both splits at the default size; returns a summary line."""
    del mirrors  # your pictures are not downloaded
    config = images.SPEC.complete(config_lib.TrainConfig(dataset="images", data_dir=data_dir))
    counts = [len(arrays(config, split)[1]) for split in ("train", "validation", "test")]
    return (f"images in {data_dir}: {counts[0]:,} training, {counts[1]:,} validation and "
            f"{counts[2]:,} test pictures of {len(class_names(config))} classes, all readable")


def make_synthetic(path, scale):
    """Learnable fake pictures (a square of the class's colour on noise) as PNG files in
    train/ and test/ folders of three classes."""
    import tensorflow as tf
    per_class = {"small": (20, 5), "full": (5000, 1000)}[scale]
    for split, count, seed in (("train", per_class[0], 1), ("test", per_class[1], 2)):
        rng = np.random.default_rng(seed)
        for label in range(3):
            folder = fs.join(path, split, f"class_{label}")
            fs.makedirs(folder)
            for i in range(count):
                picture = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
                picture[8:24, 8:24, label] = 220
                tf.io.write_file(fs.join(folder, f"{i:05d}.png"),
                                 tf.io.encode_png(picture))
    return path


DATASET = dataset_lib.Dataset(
    spec=images.SPEC, models=images_model.MODELS, arrays=arrays, class_names=class_names,
    raw_shape=lambda config: (config.options["image_size"],) * 2 + (3,), prepare=prepare,
    synthetic=make_synthetic)
