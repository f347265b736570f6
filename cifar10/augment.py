"""Batch augmentations and input normalizations of CIFAR-10's networks (``cifar10.model``).

Each takes a whole batch [N, H, W, C] of uint8 (or float 0..255) images and
draws its randomness from a ``trainkit.pipeline.BatchRandom``, per example,
keyed on (seed, step): a resumed run sees exactly the augmentations an
uninterrupted one would. They run in the input pipeline, ahead of the step.
"""

import tensorflow as tf

# Per-channel mean and standard deviation of CIFAR-10's training images (0..255).
CHANNEL_MEAN = (125.3, 123.0, 113.9)
CHANNEL_STD = (63.0, 62.1, 66.7)
TRANSLATE = 2  # airbench94's largest shift, in pixels


def random_crop(images, random, size, mirror=None):
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


def distort(images, random, size):
    """The tutorial's training distortions on a batch [N, H, W, 3] in 0..255
    (uint8 or float): a random ``size`` x ``size`` crop (24 of CIFAR-10's 32),
    mirrored half the time, random brightness and contrast, then per-image
    standardization.

    ``random`` (a ``trainkit.pipeline.BatchRandom``) makes every random
    choice, per example, from the step's seed.
    """
    mirror = random.uniform() < 0.5
    images = tf.cast(random_crop(images, random, size, mirror=mirror), tf.float32)
    images = images + random.uniform([1, 1, 1], -63.0, 63.0)
    factor = random.uniform([1, 1, 1], 0.2, 1.8)
    # adjust_contrast: (x - mean) * factor + mean, per image and channel.
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    images = (images - mean) * factor + mean
    return tf.image.per_image_standardization(images)


def normalize(images):
    """The airbench networks' input: uint8 or float 0..255 [N, H, W, 3] -> standardized per
    channel with CIFAR-10's training statistics (those of most natural photographs)."""
    return (tf.cast(images, tf.float32) - CHANNEL_MEAN) / CHANNEL_STD


def flip_translate(images, random, translate=TRANSLATE):
    """The airbench augmentation on a batch (uint8 or float): a mirror that alternates
    from epoch to epoch (``BatchRandom.alternating``), a random shift by up to
    ``translate`` pixels (reflection-padded), as airbench94 does (2; airbench96, 4)."""
    # Mirroring commutes with the symmetric padding: the crop's gather does it.
    padded = tf.pad(images, [[0, 0], [translate, translate], [translate, translate], [0, 0]],
                    mode="REFLECT")
    return random_crop(padded, random, images.shape[1], mirror=random.alternating())


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


def central_crop(images, size):
    """The tutorial's eval preprocessing on uint8 [N, H, W, 3]: the central ``size`` x
    ``size`` square, standardized per image."""
    top, left = (images.shape[1] - size) // 2, (images.shape[2] - size) // 2
    images = images[:, top:top + size, left:left + size, :]
    return tf.image.per_image_standardization(tf.cast(images, tf.float32))
