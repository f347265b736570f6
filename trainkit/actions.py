"""What the training loop does between calls of the step function, one action each.

An action has ``periodic`` (a ``trainkit.periodic.PeriodicAction``, whose
``every_steps`` also ends a call of the step there) and ``__call__(step,
outputs)``, which does its work if due and returns a ``Stop`` to end the
run, else None. ``loop.train(..., actions=[...])`` adds more.
"""

import collections
import dataclasses
import json
import signal
import time

import tensorflow as tf
from absl import logging

from trainkit import fs
from trainkit import periodic

STOP_CHECK_SECS = 1.0
ETA_WINDOW_SECS = 300.0  # the pace the ETA is taken from


@dataclasses.dataclass(frozen=True)
class Stop:
    """An action's request to end the run, with ``reason`` for the log. ``signal``: the
    signal that interrupted it (the run then ends saved, but without DONE)."""

    reason: str
    signal: str = ""


def more_urgent(stop, other):
    """The one of two stop requests (either may be None) the run ends by: a signal first."""
    if stop is None or (other is not None and other.signal and not stop.signal):
        return other
    return stop


def check(actions):
    """TypeError naming an action that does not follow the protocol (module docstring)."""
    for action in actions:
        if not callable(action) or not isinstance(getattr(action, "periodic", None),
                                                  periodic.PeriodicAction):
            raise TypeError(f"{action!r} is not an action: it needs a periodic attribute (a "
                            "trainkit.periodic.PeriodicAction) and __call__(step, outputs)")
    return list(actions)


def steps_to_run(current, steps_per_call, max_steps, actions):
    """Steps for the next call of the step: up to ``steps_per_call``, ending at the next
    step where one of ``actions`` is due by its step period, and at ``max_steps``."""
    n = min(steps_per_call, max_steps - current)
    for action in actions:
        every = action.periodic.every_steps
        if every:
            n = min(n, every - current % every)
    return max(n, 1)


def duration(seconds):
    """``seconds`` for a person: "45 s", "12 min 05 s", "3 h 07 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LogProgress:
    """Every ``every_steps``: step, loss, epoch, examples/s and the ETA, in a line that fits
    100 columns; and, unless that line comes first, a first ETA after the second call of
    the step (the first holds the step's compilation), so that every run says early how
    long it takes.

    The examples/s are those since the last line; the ETA comes from the pace over the
    last ``ETA_WINDOW_SECS`` (or since the first timed step, if less), so that a moment of
    other load does not swing it.
    """

    def __init__(self, every_steps, start_step, config, steps_per_epoch, check_finite,
                 clock=time.monotonic):
        self.periodic = periodic.PeriodicAction(every_steps=every_steps, start=start_step)
        self._config, self._steps_per_epoch = config, steps_per_epoch
        self._check_finite, self._clock = check_finite, clock
        self._last_time, self._last_step = clock(), start_step
        self._calls = 0
        self._points = collections.deque()  # (time, step) since the first timed step
        self.loss = None  # the last loss logged

    def __call__(self, step, outputs):
        self._calls += 1
        due = self.periodic.should_fire(step)
        if self._calls <= 2 and not due:
            self._first_estimate(step, outputs)
        if not due:
            return None
        self._check_finite()
        loss = float(outputs[0])  # waits for the step to finish
        now = self._clock()
        speed = self._config.batch_size * (step - self._last_step) / max(
            now - self._last_time, 1e-9)
        self._add_point(now, step)
        logging.info("step %s/%s: loss %.4f, epoch %.2f, %s examples/s, ETA %s",
                     f"{step:,}", f"{self._config.max_steps:,}", loss,
                     step / self._steps_per_epoch, f"{speed:,.0f}",
                     self._eta(step, self._config.batch_size / max(speed, 1e-9)))
        self._last_time, self._last_step = now, step
        self.loss = loss
        return None

    def _add_point(self, now, step):
        self._points.append((now, step))
        while len(self._points) > 2 and now - self._points[1][0] >= ETA_WINDOW_SECS:
            self._points.popleft()

    def _eta(self, step, pace=None):
        """The time to ``max_steps`` at the pace of the window (seconds a step; ``pace`` until
        the window holds two points), for a person."""
        (start, first), (now, last) = self._points[0], self._points[-1]
        if last > first:
            pace = (now - start) / (last - first)
        return duration((self._config.max_steps - step) * pace)

    def _first_estimate(self, step, outputs):
        float(outputs[0])  # waits for the step to finish
        now = self._clock()
        self._add_point(now, step)
        if len(self._points) < 2:
            return
        (start, first), _ = self._points[0], self._points[-1]
        logging.info("step %s/%s: %s examples/s so far, ETA %s", f"{step:,}",
                     f"{self._config.max_steps:,}",
                     f"{self._config.batch_size * (step - first) / max(now - start, 1e-9):,.0f}",
                     self._eta(step))

    def exclude(self, seconds):
        """Leaves ``seconds`` (spent on something else, such as validating) out of the speed
        and the ETA."""
        self._last_time += seconds
        self._points = collections.deque((t + seconds, s) for t, s in self._points)


class WriteSummaries:
    """Every ``every_steps``: the tutorial's TensorBoard summaries (``summarize``)."""

    def __init__(self, every_steps, start_step, summarize):
        self.periodic = periodic.PeriodicAction(every_steps=every_steps, start=start_step)
        self._summarize = summarize

    def __call__(self, step, outputs):
        if self.periodic.should_fire(step):
            self._summarize(step, *outputs)
        return None


class Validate:
    """Every ``every_steps``: the averaged weights on the validation split
    (``loop.Validator``); returns why to stop early, if it is time to."""

    def __init__(self, every_steps, start_step, validator, writer, progress, check_finite):
        self.periodic = periodic.PeriodicAction(every_steps=every_steps, start=start_step)
        self._validator, self._writer = validator, writer
        self._progress, self._check_finite = progress, check_finite

    def __call__(self, step, outputs):
        del outputs
        if not self.periodic.should_fire(step):
            return None
        self._check_finite()
        start = time.monotonic()
        score, improved = self._validator.validate(step)
        logging.info("step %d: validation %.2f%%%s (%.1f s)", step,
                     100 * score["precision_at_1"], " (new best)" if improved else "",
                     time.monotonic() - start)
        if self._writer:
            # Its own run (validation/), with the tags of the train run and the evaluator's.
            self._writer.scalars(step, {"precision_at_1": score["precision_at_1"],
                                        "loss": score["loss"]})
        self._progress.exclude(time.monotonic() - start)  # validating is not training
        reason = self._validator.stop_reason(step)
        return Stop(reason) if reason else None


class WatchStopRequest:
    """Once a second (a stat, not one per step): the evaluator's STOP file. The
    ``Checkpointer`` asks it, since a stop, like a signal, ends in a save."""

    def __init__(self, path, start_step):
        self.path = path
        self.periodic = periodic.PeriodicAction(every_secs=STOP_CHECK_SECS, start=start_step)

    def requested(self, step):
        return self.periodic.should_fire(step) and fs.exists(self.path)

    def reason(self):
        """What the request says, for the log ("stop requested in PATH (why)")."""
        if not fs.exists(self.path):
            return "stop requested by the chief"
        try:
            with fs.open(self.path) as f:
                why = f" ({json.load(f)['reason']})"
        except (OSError, ValueError, KeyError, TypeError):
            why = ""
        return f"stop requested in {self.path}{why}"


class Checkpointer:
    """Every save of a run: every ``every_steps``, every ``every_secs``, the last step
    (``final``), and at once on SIGTERM/SIGINT or a stop request in ``stop_file``, which
    then end the run.

    ``save(step)`` writes one. The requests from outside the step (a signal,
    a stop request, a save due by the clock) are acted on after ``agree``
    (multi-worker: an all-reduce, so every worker saves and stops at the same
    step; None: one process).
    """

    def __init__(self, save, every_steps, every_secs, start_step, resumed, stop_file=None,
                 agree=None):
        self.periodic = periodic.PeriodicAction(every_steps=every_steps, start=start_step)
        self._clock_periodic = periodic.PeriodicAction(every_secs=every_secs, start=start_step)
        self._stop_watch = WatchStopRequest(stop_file, start_step) if stop_file else None
        self._save, self._agree = save, agree
        self.last_saved = start_step if resumed else None
        self.signals = StopSignals()

    def __call__(self, step, outputs):
        """Saves if due; a Stop for a signal or a stop request, as agreed."""
        del outputs
        requests = [self.signals.received is not None,
                    bool(self._stop_watch and self._stop_watch.requested(step)),
                    self._clock_periodic.should_fire(step)]
        if self._agree:
            requests = [n > 0 for n in self._agree(tf.constant(requests, tf.float32))]
        signalled, stop_requested, save_due = requests
        if self.periodic.should_fire(step) or save_due:
            self.save(step)
        if signalled:
            received = self.signals.received
            name = signal.Signals(received).name if received else "another worker's stop signal"
            return Stop(f"stopped by {name}", signal=name)
        if stop_requested:
            return Stop(self._stop_watch.reason() if self._stop_watch else "stop requested")
        return None

    def save(self, step):
        self._save(step)
        self.last_saved = step

    def final(self, step):
        """The last save of the run, unless ``step`` is saved already."""
        if self.last_saved != step:
            self.save(step)


class StopSignals:
    """While active (``with``, in the main thread), SIGTERM/SIGINT only set ``received``;
    a second SIGINT aborts at once. The evaluator's own kind overrides ``_handle``."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        logging.info("Received %s: finishing this step, then saving and stopping "
                     "(Ctrl-C again aborts at once)", signal.Signals(signum).name)

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False
