"""TensorBoard events: scalars, histograms and images of a run.

Events are written with the core ``tf.summary.write`` and the metadata
TensorBoard's plugins read, since TensorFlow no longer installs
``tensorboard``; viewing them needs it (``make tensorboard``).
"""

import struct

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from trainkit import fs

HISTOGRAM_BUCKETS = 30


# What each scalar means, shown under its chart in TensorBoard. A tag means the same in
# every run that has it (train, validation, test), so one chart overlays them.
DESCRIPTIONS = {
    "loss": "Mean softmax cross-entropy per example: of the last training batch (with label "
            "smoothing, if any) in the train run; of every example of the split, with the "
            "averaged weights, in the validation and test runs.",
    "precision_at_1": "Share of the split's examples whose top class is right, with the "
                      "averaged weights (and test-time augmentation where the model has it).",
    "total_loss": "The training loss plus the L2 penalty, of the last training batch.",
    "loss_average": "The training loss smoothed over recent steps (decay 0.9).",
    "total_loss_average": "total_loss smoothed over recent steps (decay 0.9).",
    "learning_rate": "The optimizer's learning rate at this step.",
    "sparsity/": "Share of zeros in this layer's output on the last training batch.",
}


def describe(name):
    """The description of scalar ``name`` (by its name, or the prefix before its '/')."""
    return DESCRIPTIONS.get(name) or DESCRIPTIONS.get(name.split("/")[0] + "/", "")


def _metadata(plugin_name, description=""):
    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name))


_HISTOGRAM = _metadata("histograms")
_IMAGE = _metadata("images")


def histogram_buckets(values, bucket_count=HISTOGRAM_BUCKETS):
    """``[bucket_count, 3]`` rows of (left edge, right edge, count), TensorBoard's layout."""
    values = tf.reshape(tf.cast(values, tf.float64), [-1])
    low, high = tf.reduce_min(values), tf.reduce_max(values)
    # A constant tensor still needs a non-empty range.
    high = tf.where(high > low, high, low + 1.0)
    counts = tf.histogram_fixed_width(values, [low, high], nbins=bucket_count)
    edges = tf.linspace(low, high, bucket_count + 1)
    return tf.stack([edges[:-1], edges[1:], tf.cast(counts, tf.float64)], axis=1)


def to_uint8(images):
    """Float images (any range) -> uint8, each stretched to 0..255 for viewing."""
    images = tf.convert_to_tensor(images, tf.float32)
    low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    scaled = (images - low) / tf.maximum(high - low, 1e-6) * 255.0
    return tf.cast(tf.round(scaled), tf.uint8)


def scalar(name, value, step):
    tf.summary.write(name, tf.cast(value, tf.float32), step=step,
                     metadata=_metadata("scalars", describe(name)))


def histogram(name, values, step):
    tf.summary.write(name, histogram_buckets(values), step=step, metadata=_HISTOGRAM)


def image(name, images, step):
    """``images``: uint8 [N, height, width, channels]."""
    images = tf.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    encoded = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)
    tensor = tf.concat([tf.constant([str(width), str(height)]), encoded], axis=0)
    tf.summary.write(name, tensor, step=step, metadata=_IMAGE)


def png_image(name, png, step):
    """``png``: the bytes of one PNG file, shown as it is."""
    width, height = struct.unpack(">II", png[16:24])
    tf.summary.write(name, tf.constant([str(width), str(height), png]), step=step,
                     metadata=_IMAGE)


class Writer:
    """TensorBoard scalars, histograms and images in ``logdir``."""

    def __init__(self, logdir):
        fs.makedirs(logdir)
        self.logdir = logdir
        self._tb = tf.summary.create_file_writer(logdir)

    def scalars(self, step, values):
        with self._tb.as_default(step=step):
            for name, value in values.items():
                scalar(name, value, step)

    def histograms(self, step, values):
        with self._tb.as_default(step=step):
            for name, value in values.items():
                histogram(name, value, step)

    def images(self, step, values):
        """``values``: name -> uint8 images [N, H, W, C], or the bytes of one PNG file."""
        with self._tb.as_default(step=step):
            for name, value in values.items():
                (png_image if isinstance(value, bytes) else image)(name, value, step)

    def flush(self):
        self._tb.flush()

    def close(self):
        self._tb.close()

