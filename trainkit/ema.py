"""Exponential moving averages of the weights, as the classic tutorial kept them.

At each update, with the global step ``t``, ``d = min(decay, (1 + t) / (10 + t))``
and ``shadow -= (1 - d) * (shadow - variable)``: the rule of
``tf.train.ExponentialMovingAverage(decay, num_updates=step)``. Early in
training the average follows the weights closely, later it smooths over the
last ~1/(1-decay) steps. The evaluator scores the shadow values, not the raw
weights.

Written out here rather than with ``tf.train.ExponentialMovingAverage``
because that class fails inside a ``tf.function`` under a distribution
strategy. ``update`` runs in the strategy's cross-replica context and
updates each device's copy of a shadow from that device's copy of its
variable (``strategy.extended.update``), so no weights move between devices.
``shadows`` (a dict keyed like the model's variables) is what goes into the
checkpoint under ``ema``.

``every`` > 1 updates the shadows only at steps that are multiples of it,
with the decay raised to that power, ``d ** every``: the same time constant
at a fraction of the memory traffic (each update reads every weight and its
shadow, which for the MNIST cnn's 3.2M-weight layer costs as much as the
optimizer's own update). torchvision's reference scripts average this way.
``every=1`` is the tutorial's rule exactly.

Each update is a subtraction and one fused kernel per variable
(``ResourceApplyGradientDescent`` with ``alpha = 1 - d`` and
``delta = shadow - variable``) rather than three ops, each writing a
temporary the size of the weights.
"""

import tensorflow as tf


class MovingAverages:
    """Shadow copies of ``variables`` (a ``{key: keras.Variable}`` dict).

    Create it inside the strategy's scope (if any), so the shadows are
    placed like the variables.
    """

    def __init__(self, variables, decay, step, every=1):
        self._decay = decay
        self._step = step
        self._every = max(1, int(every))
        # The strategy whose scope we are in: update() runs outside it.
        self._strategy = tf.distribute.get_strategy()
        self.shadows = {}
        self._pairs = []
        for key, var in variables.items():
            # Each shadow starts at its variable's value.
            shadow = tf.Variable(var.value, trainable=False, name="ema/" + key)
            self.shadows[key] = shadow
            self._pairs.append((shadow, var.value))

    def update(self):
        """One averaging step; call in the training step, after the step counter moved.

        With ``every`` > 1, a step that is not a multiple of it leaves the shadows as
        they are.
        """
        if self._every == 1:
            self._move()
            return
        tf.cond(tf.equal(self._step % self._every, 0), self._move, lambda: tf.constant(False))

    def _move(self):
        t = tf.cast(self._step, tf.float32)
        decay = tf.minimum(self._decay, (1.0 + t) / (10.0 + t)) ** self._every

        def move(shadow, value):
            return tf.raw_ops.ResourceApplyGradientDescent(
                var=shadow.handle, alpha=tf.cast(1.0 - decay, shadow.dtype),
                delta=shadow - value)

        for shadow, var in self._pairs:
            self._strategy.extended.update(shadow, move, args=(var,))
        return tf.constant(True)
