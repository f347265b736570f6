"""Exponential moving averages of the weights, as the classic tutorial kept them.

``tf.train.ExponentialMovingAverage(decay, num_updates=step)`` uses, at each
update, ``d = min(decay, (1 + step) / (10 + step))`` and sets
``shadow -= (1 - d) * (shadow - variable)``: early in training the average
follows the weights closely, later it smooths over the last ~1/(1-decay)
steps. The evaluator scores the shadow values, not the raw weights.

Keras 3 variables wrap a ``tf.Variable`` in ``.value``; the EMA object works
on those. It is not trackable itself, so ``shadows`` (a dict keyed like the
model's variables) is what goes into the checkpoint under ``ema``.
"""

import tensorflow as tf


class MovingAverages:
    """Shadow copies of ``variables`` (a ``{key: keras.Variable}`` dict)."""

    def __init__(self, variables, decay, step):
        self._variables = [v.value for v in variables.values()]
        self._ema = tf.train.ExponentialMovingAverage(decay, num_updates=step)
        # Creating the shadows now, outside any tf.function, starts each one
        # at its variable's value; applying here changes nothing, since
        # shadow == variable.
        self._ema.apply(self._variables)
        self.shadows = {
            key: self._ema.average(tf_var)
            for key, tf_var in zip(variables.keys(), self._variables)
        }

    def update(self):
        """One averaging step; call inside the training step, after the step counter moved."""
        return self._ema.apply(self._variables)
