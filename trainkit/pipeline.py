"""Training batches as a pure function of (seed, global step): exact resume for free.

Each epoch is a permutation keyed on ``(seed, epoch)``, each batch's
augmentation on ``(seed, step)``: a checkpoint needs only the step.
"""

import os

import tensorflow as tf

_FOREVER = 2**62
# Fixed parallelism of the batch-making map and batches made ahead (see without_autotune).
PARALLEL_CALLS = max(2, os.cpu_count() or 2)
PREFETCH = 2


def epoch_permutation(num_examples, seed, epoch):
    """The order of epoch ``epoch``: a permutation of range(num_examples)."""
    keys = tf.random.stateless_uniform([num_examples], tf.stack([tf.cast(seed, tf.int64), epoch]))
    return tf.argsort(keys)


def example_indices(num_examples, seed, start):
    """Endless dataset of example indices, epoch after epoch, from position ``start``."""
    def epoch_dataset(epoch):
        return tf.data.Dataset.from_tensor_slices(epoch_permutation(num_examples, seed, epoch))

    return (tf.data.Dataset.range(start // num_examples, _FOREVER)
            .flat_map(epoch_dataset)
            .skip(start % num_examples))


class Part:
    """Which part of every global batch one input pipeline makes, and for how many replicas.

    Under a ``tf.distribute`` strategy each worker runs one input pipeline
    (``index`` of ``count``); it makes examples ``[index * n, (index + 1) * n)``
    of each global batch (``n = global_batch / count``) and hands them to its
    ``replicas`` local devices in equal consecutive slices. The whole batch is
    therefore the same whatever the number of devices and workers.
    """

    def __init__(self, index=0, count=1, replicas=1):
        self.index, self.count, self.replicas = index, count, replicas

    @classmethod
    def of(cls, input_context):
        """The part a ``tf.distribute.InputContext`` asks for."""
        return cls(input_context.input_pipeline_id, input_context.num_input_pipelines,
                   input_context.num_replicas_in_sync // input_context.num_input_pipelines)


class BatchRandom:
    """Random numbers for one global batch, drawn statelessly from ``seed``.

    Every draw is made for all ``global_size`` examples of the batch and cut
    to this pipeline's ``[start, start + size)``, so an example gets the same
    crop, flip or brightness whichever worker or device processes it. The
    draws are tiny (a few numbers per example); the images are never
    processed twice.
    """

    def __init__(self, seed, global_size, start=0, size=None, alternate=None):
        self._seed = seed
        self._global_size = global_size
        self._start = start
        self._end = global_size if size is None else start + size
        self._draws = 0
        self._alternate = alternate

    def uniform(self, shape=(), minval=0.0, maxval=None, dtype=tf.float32):
        """Per-example uniform values of ``shape``: a tensor [size, *shape]."""
        self._draws += 1
        seed = tf.random.experimental.stateless_fold_in(self._seed, self._draws)
        values = tf.random.stateless_uniform([self._global_size, *shape], seed,
                                             minval=minval, maxval=maxval, dtype=dtype)
        return values[self._start:self._end]

    def alternating(self):
        """Per example, a boolean [size] that is random in the example's first epoch
        and inverted in every later epoch, so an image seen mirrored in one epoch
        is seen unmirrored in the next (airbench's alternating flip: every image
        in both orientations equally often, with less noise than a coin per
        epoch). ``train_batches`` supplies it; a batch made elsewhere, which
        has no epochs, gets a fresh coin per example."""
        if self._alternate is None:
            return self.uniform() < 0.5
        return self._alternate


def train_batches(images, labels, batch_size, seed, start_step, preprocess, part=None):
    """Batches ``preprocess(images[idx], labels[idx], random)`` from global step ``start_step``.

    ``images``/``labels`` hold the whole split; ``preprocess`` turns a uint8
    batch into model input, drawing any randomness from ``random``, a
    ``BatchRandom`` of that step. ``batch_size`` is the global batch; with a
    ``part`` (see ``Part``) this pipeline yields, per step, its share of the
    global batch as ``part.replicas`` consecutive per-replica batches.
    """
    part = part or Part()
    if batch_size % (part.count * part.replicas):
        raise ValueError(f"batch size {batch_size} is not divisible by the "
                         f"{part.count * part.replicas} replicas")
    images = tf.convert_to_tensor(images)
    labels = tf.convert_to_tensor(labels)
    num_examples = int(labels.shape[0])
    base_seed = tf.constant([seed, 0], tf.int64)
    # Each example's coin for BatchRandom.alternating, drawn once per run; key
    # (seed, -1), which no epoch's permutation (seed, epoch >= 0) uses.
    first_coin = tf.random.stateless_uniform(
        [num_examples], tf.constant([seed, -1], tf.int64)) < 0.5
    indices = example_indices(num_examples, seed, start_step * batch_size).batch(
        batch_size, drop_remainder=True)
    share = batch_size // part.count
    start = part.index * share

    def make_batch(step, batch_indices):
        batch_indices = batch_indices[start:start + share]
        positions = step * batch_size + start + tf.range(share, dtype=tf.int64)
        odd_epoch = (positions // num_examples) % 2 == 1
        alternate = tf.not_equal(tf.gather(first_coin, batch_indices), odd_epoch)
        random = BatchRandom(tf.random.experimental.stateless_fold_in(base_seed, step),
                             batch_size, start, share, alternate)
        return preprocess(tf.gather(images, batch_indices), tf.gather(labels, batch_indices),
                          random)

    dataset = (tf.data.Dataset.zip(tf.data.Dataset.range(start_step, _FOREVER), indices)
               .map(make_batch, num_parallel_calls=PARALLEL_CALLS))
    if part.replicas > 1:
        dataset = dataset.rebatch(share // part.replicas)
    return without_autotune(dataset.prefetch(PREFETCH))


def train_dataset(dataset, config, images, labels, start_step=0, part=None):
    """``dataset``'s training batches for ``config``'s model, from global step ``start_step``:
    ``train_batches`` over the training arrays, through the model's ``train_preprocess``."""
    model = dataset.model(config)

    def preprocess(batch_images, batch_labels, random):
        return model.train_preprocess(batch_images, random, config), batch_labels

    return train_batches(images, labels, config.batch_size, config.seed, start_step,
                         preprocess, part)


def eval_dataset(dataset, config, split, batch_size):
    """Every example of ``split`` exactly once, in order (the last batch smaller), through
    the model's ``eval_preprocess``; and how many there are."""
    images, labels = dataset.arrays(config, split)
    model = dataset.model(config)
    batches = (tf.data.Dataset.from_tensor_slices((images, labels))
               .batch(batch_size)
               .map(lambda x, y: (model.eval_preprocess(x, config), y),
                    num_parallel_calls=PARALLEL_CALLS)
               .prefetch(PREFETCH))
    return without_autotune(batches), len(labels)


def without_autotune(dataset):
    """``dataset`` with tf.data's autotuning off. Its optimization thread makes deleting
    an iterator wait for the thread's next wake-up, which backs off to about a minute in
    a long run: the trainer and the evaluator sat that long after their last line. The
    pipelines run far ahead of the step with fixed parallelism (docs/speed.md)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
