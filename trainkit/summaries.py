"""One place that writes what a run reports: TensorBoard events and JSON lines.

TensorBoard reads the event files under ``TRAIN_DIR/train`` and
``TRAIN_DIR/eval``; ``metrics.jsonl`` is the same information for scripts
(one JSON object per line, appended, so a crash loses at most the last line).
Writing events needs only TensorFlow: ``tf.summary.scalar`` and friends live
in the ``tensorboard`` package, which TensorFlow no longer installs, so the
three kinds used here are written with the core ``tf.summary.write`` and the
metadata TensorBoard's plugins read. Viewing them needs ``tensorboard``
(``make tensorboard``).
"""

import json

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from trainkit import fs

HISTOGRAM_BUCKETS = 30


def _metadata(plugin_name):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name))


_SCALAR = _metadata("scalars")
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
    tf.summary.write(name, tf.cast(value, tf.float32), step=step, metadata=_SCALAR)


def histogram(name, values, step):
    tf.summary.write(name, histogram_buckets(values), step=step, metadata=_HISTOGRAM)


def image(name, images, step):
    """``images``: uint8 [N, height, width, channels]."""
    images = tf.convert_to_tensor(images)
    height, width = images.shape[1], images.shape[2]
    encoded = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)
    tensor = tf.concat([tf.constant([str(width), str(height)]), encoded], axis=0)
    tf.summary.write(name, tensor, step=step, metadata=_IMAGE)


class Writer:
    """TensorBoard scalars/histograms in ``logdir``, plus an optional JSONL file."""

    def __init__(self, logdir, jsonl_name=None):
        fs.makedirs(logdir)
        self.logdir = logdir
        self._tb = tf.summary.create_file_writer(logdir)
        self.jsonl_path = fs.join(logdir, jsonl_name) if jsonl_name else None

    def scalars(self, step, values):
        with self._tb.as_default(step=step):
            for name, value in values.items():
                scalar(name, value, step)

    def histograms(self, step, values):
        with self._tb.as_default(step=step):
            for name, value in values.items():
                histogram(name, value, step)

    def images(self, step, values):
        with self._tb.as_default(step=step):
            for name, value in values.items():
                image(name, value, step)

    def record(self, values):
        """Appends one JSON line and makes it durable before returning."""
        fs.append(self.jsonl_path, json.dumps(values, sort_keys=True) + "\n")

    def flush(self):
        self._tb.flush()

    def close(self):
        self._tb.close()


def read_jsonl(path):
    """The records of a JSONL file; a torn last line (crash mid-write) is ignored."""
    records = []
    try:
        with fs.open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return records
