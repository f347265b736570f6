"""Classifying image files: ``python -m DATASET.predict --train_dir=DIR IMAGE...``.

Each file is decoded, its central square resized to the dataset's raw shape
(inverted for ``Dataset.light_on_dark`` data when its background is light),
and classified from a checkpoint's averaged weights or a SavedModel; a file
that fails gets its own error line and the exit code is 1.
"""

import json
import struct
import sys

import numpy as np
import tensorflow as tf

from trainkit import errors
from trainkit import export
from trainkit import rundir

BATCH_SIZE = 64
# Decoding costs about 20 bytes per pixel (uint8 channels, then the float crop): 50
# megapixels, a large phone photo, take about 1 GB; a 20000x20000 image would take 8.
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 200 * 1024 * 1024


def image_size(data):
    """(height, width) from an image file's header, or None for a format not known here
    (decoding then says what is wrong). Reads a few bytes; decodes nothing."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return height, width
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(height), abs(width)
    if data.startswith(b"\xff\xd8"):
        try:
            height, width, _ = tf.image.extract_jpeg_shape(data).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            return None
        return int(height), int(width)
    return None


def load_image(path, raw_shape, light_on_dark=False):
    """File ``path`` -> uint8 array of ``raw_shape`` (H, W, C); ValueError says why not.
    ``light_on_dark``: a picture with a light border is inverted (see the module)."""
    height, width, channels = raw_shape
    try:
        with rundir.open_regular(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except errors.UserError:
        raise ValueError("not a regular file (a FIFO, device or folder)") from None
    except OSError as e:
        raise ValueError(f"cannot read the file ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the file is over {MAX_FILE_BYTES // 2**20} MB, more than an image "
                         "this model can use; scale it down first")
    size = image_size(data)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"the image is {size[1]}x{size[0]} pixels, over the limit of "
                         f"{MAX_PIXELS // 10**6} megapixels; scale it down first")
    try:
        if data.startswith(b"\xff\xd8"):
            # libjpeg's accurate DCT, as Pillow and most tools decode; decode_image's fast
            # one is up to several levels off in places.
            image = tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE")
        else:
            image = tf.io.decode_image(data, channels=0, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        raise ValueError("not a PNG, JPEG, GIF or BMP image, or a corrupt one") from None
    rows, cols = int(image.shape[0]), int(image.shape[1])
    if not rows or not cols:
        raise ValueError("the image is empty")
    if (rows, cols, int(image.shape[2])) == (height, width, channels):
        pixels = image.numpy()  # already what the model takes: nothing to resample
    else:
        side = min(rows, cols)
        top, left = (rows - side) // 2, (cols - side) // 2
        square = _to_channels(tf.cast(image[top:top + side, left:left + side], tf.float32),
                              channels)
        resized = tf.image.resize(square, [height, width], method="area")
        pixels = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
    if light_on_dark and _border_mean(pixels) > 127:
        pixels = 255 - pixels  # dark on light -> light on dark
    return pixels


def _to_channels(image, channels):
    """A float image of any channel count (grey, grey+alpha, RGB, RGBA) as ``channels``
    (1 or 3), transparent parts laid over white."""
    if image.shape[-1] in (2, 4):
        alpha = image[..., -1:] / 255.0
        image = image[..., :-1] * alpha + 255.0 * (1.0 - alpha)
    if image.shape[-1] == channels:
        return image
    if channels == 1:
        return tf.image.rgb_to_grayscale(image)
    return tf.image.grayscale_to_rgb(image)


def _border_mean(pixels):
    return float(np.concatenate([pixels[0].ravel(), pixels[-1].ravel(),
                                 pixels[:, 0].ravel(), pixels[:, -1].ravel()]).mean())


def predict_files(classifier, raw_shape, paths, top_k, light_on_dark=False):
    """Yields one result dict per path, in order: file, classes, probabilities (top_k,
    best first), or file and error."""
    names = classifier.class_name_list
    loaded = []
    for path in paths:
        try:
            loaded.append((path, load_image(path, raw_shape, light_on_dark)))
        except ValueError as e:
            loaded.append((path, str(e)))
    images = [image for _, image in loaded if isinstance(image, np.ndarray)]
    probabilities = []
    for start in range(0, len(images), BATCH_SIZE):
        batch = tf.constant(np.stack(images[start:start + BATCH_SIZE]))
        probabilities.extend(classifier.classify(images=batch)["probabilities"].numpy())
    scores = iter(probabilities)
    for path, image in loaded:
        if not isinstance(image, np.ndarray):
            yield {"file": path, "error": image}
            continue
        p = next(scores)
        best = np.argsort(-p, kind="stable")[:top_k]
        yield {"file": path, "classes": [names[i] for i in best],
               "probabilities": [round(float(p[i]), 6) for i in best]}


def format_line(result):
    if "error" in result:
        return f"{result['file']}: error: {result['error']}"
    return f"{result['file']}: " + ", ".join(
        f"{name} {p:.3f}" for name, p in zip(result["classes"], result["probabilities"]))


def run(paths, dataset, train_dir=None, saved_model=None, checkpoint=None, top_k=3,
        as_json=False, out=sys.stdout):
    """The whole predict command; returns the exit code (1 if any file failed)."""
    if saved_model:
        classifier = export.SavedClassifier(saved_model, dataset.name)
    else:
        classifier, _, _ = export.load_classifier(train_dir, dataset, checkpoint)
    failed = False
    for result in predict_files(classifier, classifier.raw_shape, paths, top_k,
                                dataset.light_on_dark):
        failed |= "error" in result
        out.write((json.dumps(result) if as_json else format_line(result)) + "\n")
        out.flush()
    return 1 if failed else 0
