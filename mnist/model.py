"""MNIST models from the classic tutorials, as Keras models with named layers.

* ``cnn`` (default): conv 5x5x16, max-pool 2, conv 5x5x36, max-pool 2,
  dense 128, dense 10. About 99% test precision after a few epochs.
* ``deep_cnn``: conv 5x5x32, pool, conv 5x5x64, pool, dense 1024,
  dropout 0.4, dense 10 (the "Deep MNIST for experts" network, ~99.2%+).
* ``fc``: 784-500-10, the fully connected net (~98%).

``regularization_loss`` is ``l2_regularization * sum(l2_loss(kernel))`` over
the dense layers' kernels, as the classic convolutional.py regularized its
fully connected layers.
"""

import keras
import tensorflow as tf

import mnist

MODELS = mnist.MODELS
NUM_CLASSES = 10


def _conv(filters, name):
    return keras.layers.Conv2D(filters, 5, padding="same", activation="relu", name=name)


def build_model(config):
    """A Keras model mapping [batch, 28, 28, 1] floats to [batch, 10] logits."""
    layers = keras.layers
    if config.model == "cnn":
        body = [_conv(16, "conv1"), layers.MaxPooling2D(2, name="pool1"),
                _conv(36, "conv2"), layers.MaxPooling2D(2, name="pool2"),
                layers.Flatten(name="flatten"),
                layers.Dense(128, activation="relu", name="fc1")]
    elif config.model == "deep_cnn":
        body = [_conv(32, "conv1"), layers.MaxPooling2D(2, name="pool1"),
                _conv(64, "conv2"), layers.MaxPooling2D(2, name="pool2"),
                layers.Flatten(name="flatten"),
                layers.Dense(1024, activation="relu", name="fc1"),
                layers.Dropout(0.4, name="dropout")]
    elif config.model == "fc":
        body = [layers.Flatten(name="flatten"),
                layers.Dense(500, activation="relu", name="fc1")]
    else:
        raise ValueError(f"unknown MNIST model {config.model!r}; choose one of {MODELS}")
    return keras.Sequential(
        [keras.Input((28, 28, 1), name="images")] + body
        + [layers.Dense(NUM_CLASSES, name="logits")],
        name=f"mnist_{config.model}")


def regularization_loss(model, config):
    """L2 penalty on the dense layers' kernels (0 when ``l2_regularization`` is 0)."""
    if not config.l2_regularization:
        return tf.constant(0.0)
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    return config.l2_regularization * tf.add_n([tf.nn.l2_loss(k.value) for k in kernels])
