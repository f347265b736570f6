"""CIFAR-10 models (the tutorial's cifar10.py), as Keras models with named layers.

``tutorial`` (default) is the classic network exactly: conv1 5x5x64, max-pool
3x3 stride 2, local response normalization, conv2 5x5x64, LRN, max-pool,
local3 384, local4 192, softmax_linear 10, with the tutorial's truncated-normal
initializers and biases; 1,068,298 parameters. Weight decay 0.004 (the
``--l2_regularization`` default) applies to local3's and local4's weights
only, as in the tutorial. It reached about 86% on the original files after
256 epochs; see the README for what it reaches here.

``resnet`` is a small residual network after ResNet-9, the network of the
fast DAWNBench CIFAR-10 recipes, at half its widths so that it trains on a
CPU: prep conv 32; layer1 conv 64 + pool + a residual block of two convs;
layer2 conv 128 + pool; layer3 conv 256 + pool + a residual block; global
max-pool; a bias-free classifier scaled by 1/8. Every conv is 3x3 without
bias, followed by batch norm and ReLU. It takes whole 32x32 images and is
scored with a test-time flip (``eval_logits``). ``--schedule=resnet`` in
``cifar10/train.py`` holds its training recipe.
"""

import keras
import numpy as np
import tensorflow as tf

MODELS = ("tutorial", "resnet")
NUM_CLASSES = 10
IMAGE_SIZE = 24
# The layers whose kernels carry weight decay, as the tutorial's _variable_with_weight_decay.
DECAYED_LAYERS = ("local3", "local4")
# resnet: channels of prep, layer1, layer2, layer3 (ResNet-9 has 64, 128, 256, 512).
RESNET_WIDTHS = (32, 64, 128, 256)
RESNET_IMAGE_SIZE = 32


class LocalResponseNormalization(keras.layers.Layer):
    """The tutorial's local response normalization, computed as a banded matmul.

    ``y = x / (bias + alpha * sum(x[..., c - r : c + r + 1] ** 2)) ** beta``,
    the formula of ``tf.nn.local_response_normalization``. The windowed sum
    over channels is a matmul with a fixed band matrix, and ``s ** -0.75`` is
    ``rsqrt(s) * sqrt(rsqrt(s))``: forward and backward take a quarter of
    the time of TensorFlow's LRN kernels on CPU (6.7 ms against 22 ms for a
    [128, 12, 12, 64] batch, measured here), and the result equals them to
    within 1e-6 (a test checks).
    """

    def __init__(self, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def build(self, input_shape):
        channels = int(input_shape[-1])
        index = np.arange(channels)
        band = np.abs(index[:, None] - index[None, :]) <= self.depth_radius
        self._band = tf.constant(self.alpha * band, tf.float32)

    def call(self, inputs):
        shape = tf.shape(inputs)
        squares = tf.reshape(tf.square(inputs), [-1, shape[-1]])
        scale = self.bias + tf.reshape(tf.matmul(squares, self._band), shape)
        if self.beta == 0.75:
            inverse_root = tf.math.rsqrt(scale)
            return inputs * inverse_root * tf.sqrt(inverse_root)
        return inputs * tf.pow(scale, -self.beta)

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


def _normal(stddev):
    return keras.initializers.TruncatedNormal(stddev=stddev)


class ConvBN(keras.layers.Layer):
    """3x3 convolution (no bias), optional 2x2 max-pool, batch norm, ReLU."""

    def __init__(self, filters, pool=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.pool = filters, pool
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name="conv",
                                        kernel_initializer="he_normal")
        self.pooling = keras.layers.MaxPooling2D(2, name="pool") if pool else None
        # momentum 0.9: the statistics follow the last ~10 batches (PyTorch's 0.1).
        self.norm = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")

    def call(self, inputs, training=False):
        x = self.conv(inputs)
        if self.pooling:
            x = self.pooling(x)
        return tf.nn.relu(self.norm(x, training=training))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "pool": self.pool}


class Residual(keras.layers.Layer):
    """``x + ConvBN(ConvBN(x))``: the residual block of ResNet-9."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.first = ConvBN(filters, name="res1")
        self.second = ConvBN(filters, name="res2")

    def call(self, inputs, training=False):
        return inputs + self.second(self.first(inputs, training=training), training=training)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def _resnet():
    """A small residual network after ResNet-9 (the DAWNBench winner), at half its widths."""
    w = RESNET_WIDTHS
    layers = keras.layers
    return keras.Sequential([
        keras.Input((RESNET_IMAGE_SIZE, RESNET_IMAGE_SIZE, 3), name="images"),
        ConvBN(w[0], name="prep"),
        ConvBN(w[1], pool=True, name="layer1"),
        Residual(w[1], name="layer1_residual"),
        ConvBN(w[2], pool=True, name="layer2"),
        ConvBN(w[3], pool=True, name="layer3"),
        Residual(w[3], name="layer3_residual"),
        layers.GlobalMaxPooling2D(name="global_pool"),
        layers.Dense(NUM_CLASSES, use_bias=False, name="logits"),
        # ResNet-9's final scaling keeps the initial logits small.
        layers.Rescaling(0.125, name="scale"),
    ], name="cifar10_resnet")


def build_model(config):
    """A Keras model mapping images to [batch, 10] logits.

    ``tutorial``: [batch, 24, 24, 3] central or random crops, per-image
    standardized. ``resnet``: [batch, 32, 32, 3] whole images, normalized
    per channel (see ``cifar10.input``).
    """
    if config.model == "resnet":
        return _resnet()
    if config.model != "tutorial":
        raise ValueError(f"unknown CIFAR-10 model {config.model!r}; choose one of {MODELS}")
    layers = keras.layers
    const = keras.initializers.Constant
    return keras.Sequential([
        keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images"),
        layers.Conv2D(64, 5, padding="same", activation="relu", name="conv1",
                      kernel_initializer=_normal(5e-2), bias_initializer="zeros"),
        layers.MaxPooling2D(3, strides=2, padding="same", name="pool1"),
        LocalResponseNormalization(name="norm1"),
        layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2",
                      kernel_initializer=_normal(5e-2), bias_initializer=const(0.1)),
        LocalResponseNormalization(name="norm2"),
        layers.MaxPooling2D(3, strides=2, padding="same", name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(384, activation="relu", name="local3",
                     kernel_initializer=_normal(0.04), bias_initializer=const(0.1)),
        layers.Dense(192, activation="relu", name="local4",
                     kernel_initializer=_normal(0.04), bias_initializer=const(0.1)),
        layers.Dense(NUM_CLASSES, name="softmax_linear",
                     kernel_initializer=_normal(1 / 192.0), bias_initializer="zeros"),
    ], name=f"cifar10_{config.model}")


def regularization_loss(model, config):
    """``l2_regularization * l2_loss(w)`` summed over local3's and local4's weights
    (``tutorial``), or over every convolution and dense kernel (``resnet``)."""
    if not config.l2_regularization:
        return tf.constant(0.0)
    if config.model == "resnet":
        kernels = [v.value for v in model.trainable_variables if v.name == "kernel"]
    else:
        kernels = [model.get_layer(name).kernel.value for name in DECAYED_LAYERS]
    return config.l2_regularization * tf.add_n([tf.nn.l2_loss(k) for k in kernels])


def eval_logits(model, images, config):
    """The logits the evaluator scores: ``resnet`` averages the image and its mirror
    (test-time flip); ``tutorial`` scores the image as is."""
    logits = model(images, training=False)
    if config.model == "resnet":
        logits = 0.5 * (logits + model(tf.reverse(images, axis=[2]), training=False))
    return logits
