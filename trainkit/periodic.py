"""PeriodicAction: run something every N steps and/or every T seconds.

Called once per training step with the current step; cheap when it does not
fire (an integer compare and, only if ``every_secs`` is set, one clock read).
The clock is injectable so tests need no sleep.
"""

import time


class PeriodicAction:
    """Fires at multiples of ``every_steps`` or ``every_secs`` seconds have passed.

    Either may be 0 or None to disable it; with both disabled the action never
    fires by itself (callers still trigger it explicitly at the last step).
    ``start``: the step counting starts from (default: the first step it is asked about).
    """

    def __init__(self, every_steps=None, every_secs=None, clock=time.monotonic, start=None):
        self.every_steps = every_steps or 0
        self.every_secs = every_secs or 0
        self._clock = clock
        self._last_step = self._last_time = None
        if start is not None:
            self.start(start)

    def start(self, step):
        """Marks ``step`` as the reference point (the step a run starts from)."""
        self._last_step = step
        self._last_time = self._clock()

    def should_fire(self, step):
        """True when the action is due at ``step``; resets the counters if so."""
        if self._last_step is None:
            self.start(step)
        due = False
        # Crossing a multiple of every_steps, so that a resumed run still saves
        # and logs at round steps (ckpt-1000, not ckpt-1037).
        if self.every_steps and step // self.every_steps > self._last_step // self.every_steps:
            due = True
        elif self.every_secs and self._clock() - self._last_time >= self.every_secs:
            due = True
        if due:
            self._last_step = step
            self._last_time = self._clock()
        return due
