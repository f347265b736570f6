"""Lookahead: every few steps the weights are pulled back to a slow copy (airbench94's).

The slow copy is checkpointed under ``lookahead``; docs/code-tour.md
("Lookahead") has the rule.
"""

import tensorflow as tf


def _assign(var, value):
    return var.assign(value)


class Lookahead:
    """Slow copies of the float variables of ``variables`` (``{key: keras.Variable}``).

    Create it inside the strategy's scope (if any), after the weights are set.
    """

    def __init__(self, variables, decay, every, step, max_steps, start=0, sync_every=0):
        self._decay = decay
        self._every = int(every)
        self._step = step
        self._max_steps = max_steps
        self._start = int(start)
        self._sync_every = int(sync_every)
        self._strategy = tf.distribute.get_strategy()
        self.slow = {}
        self._pairs = []
        for key, var in variables.items():
            if not tf.as_dtype(var.dtype).is_floating:
                continue  # e.g. the dropout's seed: not a weight
            slow = tf.Variable(var.value, trainable=False, name="lookahead/" + key)
            self.slow[key] = slow
            self._pairs.append((slow, var.value))

    def update(self):
        """Call in the training step after the step counter moved: a pull or a copy back
        if one is due."""
        step, every = self._step, self._every
        pull = tf.logical_and(tf.equal(step % every, 0), step > self._start)
        # A pull has happened since the start: the slow copy holds weights of this run.
        pulled = step // every > self._start // every
        sync = tf.equal(step, self._max_steps)
        if self._sync_every:
            sync = tf.logical_or(sync, tf.equal(step % self._sync_every, 0))
        # A pull ends with the copy back itself.
        copy = tf.logical_and(tf.logical_and(sync, pulled), tf.logical_not(pull))
        tf.cond(pull, self._pull, lambda: tf.constant(False))
        tf.cond(copy, self._copy_back, lambda: tf.constant(False))

    def _copy_back(self):
        for slow, var in self._pairs:
            self._strategy.extended.update(var, _assign, args=(slow,))
        return tf.constant(True)

    def _pull(self):
        progress = tf.minimum(tf.cast(self._step, tf.float32) / self._max_steps, 1.0)
        # The first pull after the start takes the weights as they are.
        first = self._step - self._every <= self._start
        keep = tf.where(first, 0.0, self._decay ** self._every * progress ** 3)

        def move(slow, value):
            return tf.raw_ops.ResourceApplyGradientDescent(
                var=slow.handle, alpha=tf.cast(1.0 - keep, slow.dtype), delta=slow - value)

        for slow, var in self._pairs:
            self._strategy.extended.update(slow, move, args=(var,))
        return self._copy_back()
