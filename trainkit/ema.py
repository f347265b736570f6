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
"""

import tensorflow as tf


class MovingAverages:
    """Shadow copies of ``variables`` (a ``{key: keras.Variable}`` dict).

    Create it inside the strategy's scope (if any), so the shadows are
    placed like the variables.
    """

    def __init__(self, variables, decay, step):
        self._decay = decay
        self._step = step
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
        """One averaging step; call in the training step, after the step counter moved."""
        t = tf.cast(self._step, tf.float32)
        decay = tf.minimum(self._decay, (1.0 + t) / (10.0 + t))

        def move(shadow, value):
            return shadow.assign_sub((shadow - value) * (1.0 - decay))

        for shadow, var in self._pairs:
            self._strategy.extended.update(shadow, move, args=(var,))
