"""The optimizers: Keras's, with the SGD update as one fused kernel per variable.

Keras 3 writes SGD's update as separate element-wise ops (for momentum:
``m = m * momentum - g * lr`` then ``w += m``), each reading and writing a
tensor the size of the weights. TensorFlow has the same update as one
kernel, ``ResourceApplyKerasMomentum`` (``ResourceApplyGradientDescent``
without momentum), which reads weights, slot and gradient once and writes
weights and slot once. On a memory-bound step, such as the MNIST cnn's
3.2M-weight layer on a CPU, that saves much of the update's cost
(docs/speed.md). The arithmetic is Keras's: same slots (so checkpoints
are unchanged), same learning-rate callable, same results within float
rounding.
"""

import keras
import tensorflow as tf

from trainkit import config as config_lib
from trainkit import errors

OPTIMIZERS = config_lib.OPTIMIZERS


def _tf_variable(variable):
    """The ``tf.Variable`` behind a Keras variable (per device, inside an update)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


class FusedSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` whose dense update is one fused kernel."""

    def update_step(self, gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        var = _tf_variable(variable)
        learning_rate = tf.cast(learning_rate, var.dtype)
        gradient = tf.cast(gradient, var.dtype)
        if self.momentum == 0:
            return tf.raw_ops.ResourceApplyGradientDescent(
                var=var.handle, alpha=learning_rate, delta=gradient)
        momentum = _tf_variable(self.momentums[self._get_variable_index(variable)])
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=var.handle, accum=momentum.handle, lr=learning_rate, grad=gradient,
            momentum=tf.cast(self.momentum, var.dtype), use_nesterov=self.nesterov)


def make_optimizer(config, learning_rate):
    """The optimizer ``--optimizer`` names; ``learning_rate`` is a no-argument callable."""
    if config.optimizer == "sgd":
        return FusedSGD(learning_rate)
    if config.optimizer == "momentum":
        return FusedSGD(learning_rate, momentum=config.momentum)
    if config.optimizer == "nesterov":
        return FusedSGD(learning_rate, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise errors.UserError(
        f"unknown --optimizer={config.optimizer}; choose one of {', '.join(OPTIMIZERS)}")
