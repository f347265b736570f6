"""Exponential moving averages of the weights, as the classic tutorial kept them.

The rule of ``tf.train.ExponentialMovingAverage(decay, num_updates=step)``,
written out because that class fails inside a ``tf.function`` under a
distribution strategy; docs/code-tour.md ("Moving averages") has the details.
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
