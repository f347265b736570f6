"""The optimizers: Keras's, with the SGD update as one fused kernel per variable
(same slots and results, so checkpoints are unchanged).
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
    """``keras.optimizers.SGD`` whose dense update is one fused kernel.

    ``train_only_until([(variable, steps)])``, after ``build``: those variables
    are updated in the first ``steps`` steps only, then left as they are
    (no momentum, no decay), as PyTorch leaves a weight whose
    ``requires_grad`` was turned off (airbench's whitening bias).
    """

    _until = None

    def train_only_until(self, pairs):
        self._until = {self._get_variable_index(variable): int(steps)
                       for variable, steps in pairs}

    def update_step(self, gradient, variable, learning_rate):
        until = (self._until or {}).get(self._get_variable_index(variable))
        if until is None:
            return self._update_step(gradient, variable, learning_rate)
        # iterations: the steps applied before this one (restored with the checkpoint).
        def update():
            self._update_step(gradient, variable, learning_rate)
            return tf.constant(True)

        return tf.cond(self.iterations < until, update, lambda: tf.constant(False))

    def _update_step(self, gradient, variable, learning_rate):
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


# Newton-Schulz: the quintic's coefficients and step count of airbench94_muon.py (Keller
# Jordan), chosen for the steepest slope at zero rather than exact convergence: singular
# values end near 1 (roughly 0.7-1.2), which trains as well as exactly 1.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)
NEWTON_SCHULZ_STEPS = 3


def orthogonalize(matrix, steps=NEWTON_SCHULZ_STEPS, eps=1e-7):
    """About ``U V^T`` of ``matrix = U S V^T``: every singular value moved near 1 by
    ``steps`` Newton-Schulz iterations of ``x -> a x + b (x x^T) x + c (x x^T)^2 x``
    after scaling to Frobenius norm 1. The iteration commutes with transposition, so it
    runs on the side whose Gram matrix is smaller."""
    a, b, c = NEWTON_SCHULZ
    x = matrix / (tf.norm(matrix) + eps)
    wide = matrix.shape[0] <= matrix.shape[1]
    if not wide:
        x = tf.transpose(x)
    for _ in range(steps):
        gram = tf.matmul(x, x, transpose_b=True)
        x = a * x + tf.matmul(b * gram + c * tf.matmul(gram, gram), x)
    return x if wide else tf.transpose(x)


class Muon(FusedSGD):
    """Muon for convolution kernels, Nesterov's SGD for every other weight (as
    airbench94_muon.py). A kernel's step: its momentum buffer ``m = mu m + g``, the
    Nesterov direction ``g + mu m`` orthogonalized as a matrix of one row per input tap
    and one column per output channel, the kernel first scaled to Frobenius norm
    sqrt(output channels), then moved by ``muon_scale`` times the scheduled learning
    rate. The kernels' buffers are the SGD momentum slots, so checkpoints look alike."""

    def __init__(self, learning_rate, momentum, muon_scale, muon_momentum, **kwargs):
        super().__init__(learning_rate, momentum=momentum, nesterov=True, **kwargs)
        self.muon_scale, self.muon_momentum = muon_scale, muon_momentum

    def _update_step(self, gradient, variable, learning_rate):
        if len(variable.shape) != 4 or isinstance(gradient, tf.IndexedSlices):
            return super()._update_step(gradient, variable, learning_rate)
        var = _tf_variable(variable)
        buffer = _tf_variable(self.momentums[self._get_variable_index(variable)])
        gradient = tf.cast(gradient, var.dtype)
        buffer.assign(buffer * self.muon_momentum + gradient)
        direction = gradient + self.muon_momentum * buffer
        outputs = var.shape[-1]
        var.assign(var * (float(outputs) ** 0.5 / (tf.norm(var) + 1e-12)))
        update = tf.reshape(orthogonalize(tf.reshape(direction, [-1, outputs])), var.shape)
        rate = tf.cast(learning_rate, var.dtype) * self.muon_scale
        return var.assign_sub(rate * update)


def penalized(config, weights):
    """The ``weights`` the L2 penalty covers under ``config``'s optimizer: Muon keeps its
    kernels at a fixed norm, so a penalty on them would only bend their steps (as
    airbench94_muon, which decays none of them); every weight for the others."""
    if config.optimizer != "muon":
        return weights
    return [w for w in weights if len(w.shape) != 4]


def train_only_until(optimizer, config, pairs):
    """Lets ``optimizer`` update each variable of ``[(variable, steps)]`` in its first
    ``steps`` steps only (``FusedSGD.train_only_until``); 0 steps: throughout."""
    pairs = [(variable, steps) for variable, steps in pairs if steps]
    if not pairs:
        return
    if not isinstance(optimizer, FusedSGD):
        raise errors.UserError(
            f"--optimizer={config.optimizer} cannot stop training some weights part-way "
            "(--whiten_bias_steps); use sgd, momentum, nesterov or muon, or set it to 0")
    optimizer.train_only_until(pairs)


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
    if config.optimizer == "muon":
        # TrainConfig.validate refuses a learning rate of 0, so the ratio is defined.
        return Muon(learning_rate, momentum=config.momentum,
                    muon_scale=config.muon_learning_rate / config.learning_rate,
                    muon_momentum=config.muon_momentum)
    raise errors.UserError(
        f"unknown --optimizer={config.optimizer}; choose one of {', '.join(OPTIMIZERS)}")
