"""MNIST input: the four official IDX files, validated and split; and the dataset.

The files (``.gz`` or raw) are read from ``--data_dir``; missing ones are
downloaded from the official mirrors and checked against the published MD5 of
their *uncompressed* bytes, so a re-gzipped copy verifies too. As the classic
``read_data_sets``, the first ``validation_size`` (5,000) training images are
held out for validation, leaving 55,000 to train on; the test set is the
10,000 ``t10k`` images.

Reading all 70,000 images takes well under a second; they stay in memory as
uint8, and the engine makes the batches. ``DATASET`` is this dataset for the
engine (``trainkit.dataset``).
"""

import gzip
import zlib

import numpy as np

import mnist
from mnist import model as mnist_model
from mnist import synthetic as mnist_synthetic
from trainkit import data as data_lib
from trainkit import dataset as dataset_lib
from trainkit import errors
from trainkit import fs
from trainkit import rundir

IMAGE_SIZE = 28
RAW_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # a raw image: what export and predict take
NUM_CLASSES = 10
CLASS_NAMES = [str(digit) for digit in range(NUM_CLASSES)]
MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
# name -> (IDX magic number, examples in the official file, MD5 of the uncompressed bytes)
FILES = {
    "train-images-idx3-ubyte": (2051, 60000, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (2049, 60000, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (2051, 10000, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (2049, 10000, "27ae3e4e09519cfbb04c329615203637"),
}
_SPLIT_FILES = {"train": "train", "validation": "train", "test": "t10k"}
_IDX_DIMS = {2051: 3, 2049: 1}  # magic number -> dimensions: images N x 28 x 28, labels N
# More than any MNIST-like file holds (the official training file: 60,000); a header
# claiming more is not one.
MAX_EXAMPLES = 10_000_000


def read_idx(path):
    """Parses one IDX file (``.gz`` or raw) into a uint8 array.

    Raises UserError naming the file and what was wrong: the magic number,
    the dimensions, or a size that does not match the header. The header is
    judged before the data is read: counts beyond ``MAX_EXAMPLES`` or sizes
    beyond the free memory are refused at once, and no more than the header
    promises is ever decompressed (a gzip bomb stops there).
    """
    try:
        with rundir.open_regular(path, "rb") as raw:
            stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
            header = stream.read(4)
            if len(header) < 4:
                raise errors.UserError(f"{path} is {len(header)} bytes, too short for an IDX "
                                       "header")
            magic = int.from_bytes(header, "big")
            if magic not in _IDX_DIMS:
                raise errors.UserError(
                    f"{path} has magic number {magic}, expected 2051 (images) or 2049 "
                    "(labels): not an MNIST IDX file")
            ndim = _IDX_DIMS[magic]
            dims = [int.from_bytes(stream.read(4), "big") for _ in range(ndim)]
            kind = "images" if magic == 2051 else "labels"
            if magic == 2051 and dims[1:] != [IMAGE_SIZE, IMAGE_SIZE]:
                raise errors.UserError(f"{path} holds {dims[1:]} images, expected 28x28")
            header_size = 4 + 4 * ndim
            size = int(np.prod(dims))
            memory = data_lib.available_memory()
            if dims[0] > MAX_EXAMPLES or (memory and size > memory // 2):
                raise errors.UserError(
                    f"{path} says it holds {dims[0]:,} {kind} ({data_lib.gigabytes(size)}), "
                    "more than an MNIST file holds or this machine can load: not an MNIST "
                    "IDX file; delete it to download it again")
            body = stream.read(size)
            if len(body) != size:
                raise errors.UserError(
                    f"{path} is {header_size + len(body)} bytes (uncompressed), expected "
                    f"{header_size + size} for {dims[0]} {kind}: truncated or corrupt; "
                    "delete it to download it again")
            if stream.read(1):
                raise errors.UserError(
                    f"{path} holds more than the {header_size + size} bytes its header gives "
                    f"for {dims[0]} {kind}: not an MNIST IDX file; delete it to download it "
                    "again")
    except (OSError, EOFError, zlib.error) as e:
        raise errors.UserError(f"cannot read {path}: {e}; delete it to download it again") from None
    array = np.frombuffer(body, dtype=np.uint8).reshape(dims)
    if magic == 2049 and array.size and array.max() >= NUM_CLASSES:
        record = int(np.argmax(array >= NUM_CLASSES))
        raise errors.UserError(
            f"{path} record {record} has label {array[record]}, expected 0 to "
            f"{NUM_CLASSES - 1}: not an MNIST label file; delete it to download it again")
    return array


def _find(data_dir, name):
    """The file ``name`` in ``data_dir``, raw or ``.gz``; None if neither is there. Both
    there: the raw one if they hold the same bytes, else UserError (which to use is the
    user's call, not a silent choice)."""
    raw, packed = fs.join(data_dir, name), fs.join(data_dir, name + ".gz")
    found = [path for path in (raw, packed) if data_lib.present(path)]
    if len(found) == 2 and not _same_contents(raw, packed):
        raise errors.UserError(
            f"{data_dir} holds both {name} and {name}.gz, and they differ: remove the one that "
            "is not the MNIST file (or both, to download it again)")
    return found[0] if found else None


def _same_contents(raw, packed, chunk=1 << 20):
    """Whether raw file ``raw`` holds the decompressed bytes of ``packed`` (read in chunks;
    a gzip bomb stops at the raw file's size)."""
    try:
        with rundir.open_regular(raw, "rb") as a, rundir.open_regular(packed, "rb") as b, \
                gzip.GzipFile(fileobj=b) as unpacked:
            while True:
                left, right = a.read(chunk), unpacked.read(chunk)
                if left != right:
                    return False
                if not left:
                    return True
    except (OSError, EOFError, zlib.error):
        return False


def _verify_download(name):
    def verify(path):
        digest = data_lib.file_digest(path, "md5", opener=gzip.open)
        if digest != FILES[name][2]:
            return f"checksum mismatch (MD5 {digest}, expected {FILES[name][2]})"
        return None
    return verify


def maybe_download(data_dir, mirrors=MIRRORS):
    """Paths of the four files in ``data_dir``, downloading what is missing."""
    paths = {}
    for name in FILES:
        path = _find(data_dir, name)
        if path is None:
            try:
                path = data_lib.download_verified(name + ".gz", data_dir, mirrors,
                                                  _verify_download(name))
            except errors.UserError as e:
                raise errors.UserError(
                    f"MNIST not found in {data_dir} and {e}; put "
                    f"{', '.join(n + '.gz' for n in FILES)} there") from None
        paths[name] = path
    return paths


def arrays(config, split):
    """``(images uint8 [N, 28, 28, 1], labels int32 [N])`` of ``split``: ``train`` and
    ``validation`` (its first ``validation_size`` images) from the training files,
    ``test`` from the t10k files."""
    if split not in _SPLIT_FILES:
        raise errors.UserError(f"unknown split {split!r}; choose train, validation or test")
    paths = maybe_download(config.data_dir, tuple(config.data_mirrors) or MIRRORS)
    prefix = _SPLIT_FILES[split]
    images_path = paths[f"{prefix}-images-idx3-ubyte"]
    labels_path = paths[f"{prefix}-labels-idx1-ubyte"]
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise errors.UserError(
            f"{images_path} / {labels_path}: expected an image file and a label file; put "
            "each file under its own name")
    if len(images) != len(labels):
        raise errors.UserError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if prefix == "train":
        held_out = config.validation_size
        if held_out >= len(images):
            raise errors.UserError(
                f"--validation_size={held_out} leaves no training data from {len(images)} images")
        if split == "validation":
            if held_out == 0:
                raise errors.UserError("--validation_size=0 leaves no validation data; "
                                       "evaluate on --eval_data=test")
            images, labels = images[:held_out], labels[:held_out]
        else:
            images, labels = images[held_out:], labels[held_out:]
    return images[..., None], labels.astype(np.int32)


def prepare(data_dir, mirrors=MIRRORS):
    """Downloads what is missing and validates all four files; returns a summary line."""
    paths = maybe_download(data_dir, mirrors)
    counts = {name: len(read_idx(path)) for name, path in paths.items()}
    return (f"MNIST in {data_dir}: {counts['train-images-idx3-ubyte']:,} training and "
            f"{counts['t10k-images-idx3-ubyte']:,} test images, all files valid")


DATASET = dataset_lib.Dataset(
    spec=mnist.SPEC, models=mnist_model.MODELS, arrays=arrays, class_names=CLASS_NAMES,
    raw_shape=RAW_SHAPE, prepare=prepare, synthetic=mnist_synthetic.make, mirrors=MIRRORS,
    light_on_dark=True)
