"""CIFAR-10's networks (the tutorial's cifar10.py), each with the data it takes: one ``Model`` each.

``TUTORIAL`` is TensorFlow's classic CIFAR-10 network exactly (its
``cifar10.py``, with its distorted inputs). ``AIRBENCH94`` and ``AIRBENCH95``
are Keller Jordan's airbench94 and airbench95 networks (2024), scored with
test-time flips and shifts; docs/results.md describes their recipe. The
``images`` dataset offers the same networks, sized to its classes.
"""

import keras
import numpy as np
import tensorflow as tf

from cifar10 import augment
from trainkit import dataset as dataset_lib

# The tutorial's layers whose kernels carry weight decay (its _variable_with_weight_decay).
TUTORIAL_DECAYED = ("local3", "local4")
AIRBENCH_WIDTHS = {"airbench94": (64, 256, 256), "airbench95": (128, 384, 384)}
WHITENING_SIZE = 2
WHITENING_IMAGES = 5000  # the training images whose patches set the whitening filters


class LocalResponseNormalization(keras.layers.Layer):
    """The tutorial's local response normalization, computed as a banded matmul.

    ``y = x / (bias + alpha * sum(x[..., c - r : c + r + 1] ** 2)) ** beta``,
    the formula of ``tf.nn.local_response_normalization``. The windowed sum
    over channels is a matmul with a fixed band matrix, and ``s ** -0.75`` is
    ``rsqrt(s) * sqrt(rsqrt(s))``: faster on a CPU than TensorFlow's LRN
    kernels, forward and backward (docs/speed.md), and equal to them within
    1e-6 (a test checks).
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
        band = tf.cast(self._band, squares.dtype)  # bfloat16 under --precision=bfloat16
        scale = self.bias + tf.reshape(tf.matmul(squares, band), shape)
        if self.beta == 0.75:
            inverse_root = tf.math.rsqrt(scale)
            return inputs * inverse_root * tf.sqrt(inverse_root)
        return inputs * tf.pow(scale, -self.beta)

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


def _normal(stddev):
    return keras.initializers.TruncatedNormal(stddev=stddev)


class Whitening(keras.layers.Layer):
    """A fixed 2x2 "whitening" convolution (valid padding) with a trained bias.

    Its 2 * 12 filters are the eigenvectors of the (uncentred, as airbench's)
    covariance of the training images' 2x2x3 patches, each scaled by
    1/sqrt(eigenvalue + eps), and their negatives (``initialize`` computes
    them from the data at the start of a run; a checkpoint carries them). The first layer thus starts
    as a decorrelating map instead of being learned, as in the fastest
    CIFAR-10 recipes (Keller Jordan's airbench).
    """

    EPSILON = 5e-4

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.filters = 2 * WHITENING_SIZE * WHITENING_SIZE * 3

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(WHITENING_SIZE, WHITENING_SIZE, 3, self.filters),
            initializer="glorot_uniform", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        return tf.nn.conv2d(inputs, self.kernel.value, 1, "VALID") + self.bias.value

    def initialize(self, images):
        """Sets the filters from a float [N, H, W, 3] batch of normalized training images."""
        size = WHITENING_SIZE
        patches = tf.image.extract_patches(images, [1, size, size, 1], [1, 1, 1, 1],
                                           [1, 1, 1, 1], "VALID")
        patches = tf.reshape(patches, [-1, size * size * 3]).numpy().astype(np.float64)
        eigenvalues, eigenvectors = np.linalg.eigh(patches.T @ patches / len(patches))
        filters = eigenvectors / np.sqrt(eigenvalues + self.EPSILON)  # columns
        filters = np.concatenate([filters, -filters], axis=1)
        self.kernel.assign(filters.reshape(size, size, 3, self.filters).astype(np.float32))


class BatchNorm(keras.layers.Layer):
    """Batch norm without a scale, as one fused kernel, with a fast-learning offset.

    The offset is stored as ``offset / BIAS_SCALE``: a gradient step on the
    stored value moves the offset ``BIAS_SCALE ** 2`` (64) times as far as
    it would move a plain weight, the offsets' higher learning rate of the
    fast recipes, while the L2 penalty shrinks it at the plain weights' rate.
    The running statistics follow the last few batches: each update keeps
    0.6 of the old value (``momentum``; airbench94's ``batchnorm_momentum=0.6``,
    which is PyTorch's ``momentum=0.4``, the weight of the new batch).
    ``epsilon`` is airbench's 1e-12.
    """

    BIAS_SCALE = 8.0

    def __init__(self, momentum=0.6, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.momentum, self.epsilon = momentum, epsilon

    def build(self, input_shape):
        channels = int(input_shape[-1])
        # float32 even under --precision=bfloat16 (autocast off): the fused kernel
        # takes bfloat16 activations with float32 offset and statistics.
        self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros",
                                      autocast=False)
        self.moving_mean = self.add_weight(name="moving_mean", shape=(channels,),
                                           initializer="zeros", trainable=False,
                                           aggregation="mean", autocast=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(channels,),
                                               initializer="ones", trainable=False,
                                               aggregation="mean", autocast=False)

    def call(self, inputs, training=False):
        offset = self.BIAS_SCALE * self.offset.value
        scale = tf.ones_like(offset)
        if not training:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, mean=self.moving_mean.value,
                variance=self.moving_variance.value, epsilon=self.epsilon, is_training=False)
            return outputs
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, is_training=True)
        for average, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            average.assign(self.momentum * average.value + (1.0 - self.momentum) * value)
        return outputs

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


_SQRT_HALF, _INV_SQRT_2PI = float(np.sqrt(0.5)), float(1.0 / np.sqrt(2.0 * np.pi))


@tf.function(jit_compile=True)
def _gelu_forward(inputs):
    x = tf.cast(inputs, tf.float32)
    return tf.cast(0.5 * x * (1.0 + tf.math.erf(x * _SQRT_HALF)), inputs.dtype)


@tf.function(jit_compile=True)
def _gelu_backward(inputs, upstream):
    x = tf.cast(inputs, tf.float32)
    cdf = 0.5 * (1.0 + tf.math.erf(x * _SQRT_HALF))
    pdf = tf.exp(-0.5 * tf.square(x)) * _INV_SQRT_2PI
    return tf.cast(tf.cast(upstream, tf.float32) * (cdf + x * pdf), inputs.dtype)


@tf.custom_gradient
def fused_gelu(inputs):
    """The exact GELU, ``x * Phi(x)``, forward and backward each one XLA-fused loop in
    float32 (keeping only the input for the backward pass).

    TensorFlow's ``tf.nn.gelu`` runs about ten element-wise kernels, each a pass
    over memory, and in bfloat16 converts element by element; fused, the training
    step's GELUs take a fraction of the time (docs/speed.md).
    """
    return _gelu_forward(inputs), lambda upstream: _gelu_backward(inputs, upstream)


class GELU(keras.layers.Layer):
    """The exact GELU: ``fused_gelu`` when training, ``tf.nn.gelu`` otherwise, so that
    the evaluator's and exported graphs hold only standard kernels."""

    def call(self, inputs, training=False):
        return fused_gelu(inputs) if training else tf.nn.gelu(inputs, approximate=False)


def _torch_default():
    """PyTorch's default for convolutions and dense layers: uniform within 1/sqrt(fan_in).
    Made when the network is built, since a Keras initializer draws its seed when made:
    one made at import would ignore ``--seed`` and differ from process to process."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


# oneDNN's bfloat16 weight gradient of a 3x3 convolution is slow on small feature
# maps, where nine matmuls over shifted inputs compute it several times faster; on
# larger maps, and in float32, the kernel is as fast. The matmuls stand in only up to
# this side (benchmarks/conv_grad_bench.py measures both; docs/speed.md).
SHIFTED_GRAD_MAX_SIDE = 8


def kernel_grad_by_shifts(inputs, grad, kernel_size):
    """The gradient of a stride-1 ``same`` convolution's kernel, as matmuls.

    ``dkernel[i, j] = sum over batch and positions of x[y + i, x + j]^T dy[y, x]``
    on the zero-padded input: one [channels_in, n*h*w] x [n*h*w, channels_out]
    matmul per kernel tap.
    """
    kh, kw = kernel_size
    h, w, channels_in = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    padded = tf.pad(inputs, [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]])
    grad = tf.reshape(grad, (-1, grad.shape[-1]))
    return tf.stack([
        tf.stack([tf.matmul(tf.reshape(padded[:, i:i + h, j:j + w], (-1, channels_in)),
                            grad, transpose_a=True) for j in range(kw)])
        for i in range(kh)])


@tf.custom_gradient
def conv_same_shifted_grad(inputs, kernel):
    """``tf.nn.conv2d(inputs, kernel, 1, "SAME")`` whose kernel gradient is
    ``kernel_grad_by_shifts``; the input gradient is TensorFlow's own."""
    outputs = tf.nn.conv2d(inputs, kernel, 1, "SAME")

    def grad(dy):
        dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(inputs), filter=kernel,
                                            out_backprop=dy, strides=[1, 1, 1, 1],
                                            padding="SAME")
        return dx, kernel_grad_by_shifts(inputs, dy, kernel.shape[:2])

    return outputs, grad


class Conv(keras.layers.Conv2D):
    """A stride-1 ``same`` Conv2D that takes ``conv_same_shifted_grad`` where
    that is faster: bfloat16 on the CPU, feature maps at most
    ``SHIFTED_GRAD_MAX_SIDE`` on a side. Same variables, same outputs."""

    def convolution_op(self, inputs, kernel):
        h, w = inputs.shape[1], inputs.shape[2]
        if (inputs.dtype == tf.bfloat16 and h is not None and w is not None
                and tuple(self.strides) == (1, 1) and self.padding == "same"
                and tuple(self.dilation_rate) == (1, 1) and self.groups == 1
                and max(h, w) <= SHIFTED_GRAD_MAX_SIDE
                and not tf.config.list_logical_devices("GPU")):
            return conv_same_shifted_grad(inputs, tf.cast(kernel, inputs.dtype))
        return super().convolution_op(inputs, kernel)


def _conv(filters, name):
    """3x3, no bias; PyTorch's default initialization, except that the first
    ``inputs`` filters start as the identity (``dirac``), so a fresh network
    passes its input through."""
    uniform = _torch_default()

    def initializer(shape, dtype=None):
        inputs = min(shape[2], shape[3])
        identity = tf.pad(tf.eye(shape[2], inputs)[None, None], [[1, 1], [1, 1], [0, 0], [0, 0]])
        return tf.concat([identity, uniform(shape, dtype="float32")[..., inputs:]], axis=3)

    return Conv(filters, 3, padding="same", use_bias=False, name=name,
                kernel_initializer=initializer)


class ConvGroup(keras.layers.Layer):
    """conv, 2x2 max-pool, norm, GELU, conv, norm, GELU (airbench94's block)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv1 = _conv(filters, "conv1")
        self.pool = keras.layers.MaxPooling2D(2, name="pool")
        self.norm1 = BatchNorm(name="norm1")
        self.conv2 = _conv(filters, "conv2")
        self.norm2 = BatchNorm(name="norm2")
        self.gelu = GELU(name="gelu")

    def call(self, inputs, training=False):
        x = self.pool(self.conv1(inputs))
        x = self.gelu(self.norm1(x, training=training), training=training)
        return self.gelu(self.norm2(self.conv2(x), training=training), training=training)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


def tutorial_network(num_classes, input_side, name):
    """The tutorial's network on [batch, input_side, input_side, 3] crops."""
    layers = keras.layers
    const = keras.initializers.Constant
    return keras.Sequential([
        keras.Input((input_side, input_side, 3), name="images"),
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
        layers.Dense(num_classes, name="softmax_linear",
                     kernel_initializer=_normal(1 / 192.0), bias_initializer="zeros"),
    ], name=name)


def airbench_network(widths, num_classes, raw_shape, name):
    """Whitening, three conv groups of ``widths``, max-pool, a scaled classifier."""
    return keras.Sequential([
        keras.Input(raw_shape, name="images"),
        Whitening(name="whiten"),
        GELU(name="whiten_gelu"),
        *[ConvGroup(width, name=f"group{i + 1}") for i, width in enumerate(widths)],
        keras.layers.GlobalMaxPooling2D(name="global_pool"),
        keras.layers.Dense(num_classes, use_bias=False, name="logits",
                           kernel_initializer=_torch_default()),
        # Small initial logits, as the fast recipes scale theirs.
        keras.layers.Rescaling(1.0 / 9.0, name="scale"),
    ], name=name)


def _flip_mean(model, images):
    mirror = tf.reverse(images, axis=[2])
    return 0.5 * (model(images, training=False) + model(mirror, training=False))


def airbench_eval_logits(model, images, config):
    """Test-time augmentation: half the mean over the image and its mirror, half the
    same mean over the image shifted one pixel up-left and one down-right
    (reflection-padded), as airbench's ``tta_level=2``."""
    del config
    size = images.shape[1]
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    shifted = (_flip_mean(model, padded[:, :size, :size]) +
               _flip_mean(model, padded[:, 2:, 2:]))
    return 0.5 * _flip_mean(model, images) + 0.25 * shifted


def _tutorial_side(raw_side):
    return raw_side * 3 // 4  # 24 of CIFAR-10's 32, as the tutorial crops


def _airbench(name, checkpoint_name):
    return dataset_lib.Model(
        name=name, checkpoint_name=checkpoint_name,
        build=lambda config, classes, raw_shape, keras_name: airbench_network(
            AIRBENCH_WIDTHS[name], classes, raw_shape, keras_name),
        train_preprocess=lambda images, random, config: augment.cutout(
            augment.normalize(augment.flip_translate(images, random,
                                                     config.options["translate"])),
            random, config.options["cutout"]),
        eval_preprocess=lambda images, config: augment.normalize(images),
        # Every parameter, as the fast recipes decay them all.
        decayed_weights=lambda model: list(model.trainable_variables),
        eval_logits=airbench_eval_logits,
        initialize=lambda model, images, config: model.get_layer("whiten").initialize(
            augment.normalize(images[:WHITENING_IMAGES])),
        trained_until=lambda model, config: [
            (model.get_layer("whiten").bias, config.options["whiten_bias_steps"])])


TUTORIAL = dataset_lib.Model(
    name="tutorial",
    build=lambda config, classes, raw_shape, name: tutorial_network(
        classes, _tutorial_side(raw_shape[0]), name),
    train_preprocess=lambda images, random, config: augment.distort(
        images, random, _tutorial_side(images.shape[1])),
    eval_preprocess=lambda images, config: augment.central_crop(
        images, _tutorial_side(images.shape[1])),
    decayed_weights=lambda model: [model.get_layer(name).kernel for name in TUTORIAL_DECAYED])
AIRBENCH94 = _airbench("airbench94", checkpoint_name="resnet")
AIRBENCH95 = _airbench("airbench95", checkpoint_name="resnet_wide")
MODELS = {model.name: model for model in (TUTORIAL, AIRBENCH94, AIRBENCH95)}

