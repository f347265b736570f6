"""The best checkpoint of a run so far, as ``DIR/best.json`` records it, for the
trainer's in-run validation and the evaluator; another run's record is moved aside.
"""


from absl import logging

from trainkit import fs
from trainkit import rundir

METRIC = "precision_at_1"


class BestRecord:
    """``DIR/best.json`` of run ``run_id``; ``keep`` names files a move aside leaves."""

    def __init__(self, directory, run_id, keep=()):
        self.directory = directory
        self.path = fs.join(directory, rundir.BEST_FILE)
        self.value = rundir.read_best(self.path)
        if self.value is not None and self.value.get("run_id", "") != run_id:
            target = rundir.move_previous_run(directory, self.value.get("run_id", ""), keep)
            logging.warning("%s held another run's best checkpoint; moved it to %s",
                            directory, target)
            self.value = None

    @property
    def step(self):
        """The step of the best checkpoint, or None if there is none yet."""
        return self.value["step"] if self.value else None

    def improves(self, metric):
        """Whether ``metric`` (a precision) beats the best so far (any does at first)."""
        return self.value is None or metric > self.value[METRIC]

    def record(self, values):
        """Writes ``values`` (with ``step`` and ``precision_at_1``) as the new best."""
        fs.makedirs(self.directory)
        rundir.write_json(self.path, values)
        self.value = values
