"""MNIST models from the classic tutorials, as Keras models with named layers.

* ``cnn`` (default): conv 5x5x16, max-pool 2, conv 5x5x36, max-pool 2,
  dense 128, dense 10 (the classic convolutional.py's network).
* ``deep_cnn``: conv 5x5x32, pool, conv 5x5x64, pool, dense 1024,
  dropout 0.4, dense 10 (the "Deep MNIST for experts" network).
* ``fc``: 784-500-10, the fully connected net.

Every model takes pixels scaled to -0.5..0.5, unaugmented; the L2 penalty
covers the dense layers' kernels, as the classic convolutional.py
regularized its fully connected layers. What each reaches: docs/results.md.
"""

import keras
import tensorflow as tf

from trainkit import dataset as dataset_lib


def _conv(filters, name):
    return keras.layers.Conv2D(filters, 5, padding="same", activation="relu", name=name)


def _bodies():
    layers = keras.layers
    return {
        "cnn": lambda: [_conv(16, "conv1"), layers.MaxPooling2D(2, name="pool1"),
                        _conv(36, "conv2"), layers.MaxPooling2D(2, name="pool2"),
                        layers.Flatten(name="flatten"),
                        layers.Dense(128, activation="relu", name="fc1")],
        "deep_cnn": lambda: [_conv(32, "conv1"), layers.MaxPooling2D(2, name="pool1"),
                             _conv(64, "conv2"), layers.MaxPooling2D(2, name="pool2"),
                             layers.Flatten(name="flatten"),
                             layers.Dense(1024, activation="relu", name="fc1"),
                             layers.Dropout(0.4, name="dropout")],
        "fc": lambda: [layers.Flatten(name="flatten"),
                       layers.Dense(500, activation="relu", name="fc1")],
    }


def build(model_name):
    """The builder of network ``model_name``: [batch, 28, 28, 1] floats -> logits."""
    def build_model(config, num_classes, raw_shape, name):
        del config
        return keras.Sequential(
            [keras.Input(raw_shape, name="images")] + _bodies()[model_name]()
            + [keras.layers.Dense(num_classes, name="logits")], name=name)
    return build_model


def scale(images, config=None):
    """uint8 [N, 28, 28, 1] -> pixels scaled to -0.5..0.5. Also inside every exported
    SavedModel, so it takes raw images."""
    del config  # the same for every MNIST model
    return tf.cast(images, tf.float32) * (1.0 / 255.0) - 0.5


def dense_kernels(model):
    return [layer.kernel for layer in model.layers if isinstance(layer, keras.layers.Dense)]


MODELS = {name: dataset_lib.Model(
    name=name, build=build(name), train_preprocess=lambda images, random, config: scale(images),
    eval_preprocess=scale, decayed_weights=dense_kernels) for name in ("cnn", "deep_cnn", "fc")}
