"""The polling evaluator: waits for checkpoints and scores their averaged weights.

``run(eval_config, dataset)`` rebuilds the model from the
trainer's ``config.json`` and loops. Each checkpoint it picks
(``--eval_policy=latest``: the newest; ``all``: every one still on disk, in
step order) is first hard-linked into ``EVAL_DIR/.staging``, so the trainer's
``max_to_keep`` can delete the original at any moment without harm; then
its moving-average shadow values are restored into the model and it is
scored on the whole eval set (every example once). A checkpoint that is
gone, half-written or corrupt is skipped with one warning.

Per checkpoint: one line in ``EVAL_DIR/metrics.jsonl`` (with the confusion
matrix and per-class precision), TensorBoard scalars and a confusion image
in ``EVAL_DIR``, one log line. A new best precision moves the staged copy to
``EVAL_DIR/best/`` with ``best.json`` and (``--export_best``, default on)
exports it as a SavedModel taking raw images in ``EVAL_DIR/best/saved_model``.
``--early_stopping_evals=K`` writes a stop request into the train dir after
K evaluations without improvement.

The evaluator exits after the last checkpoint once the trainer has written
``DONE``, after ``--timeout_secs`` without a new checkpoint, or after one
checkpoint with ``--run_once``. ``metrics.jsonl`` and ``best/best.json`` are
its state: started again, it skips the steps it has scored. Started before
the trainer, it waits for the trainer's config.json.

One evaluator per eval dir: it holds the dir's lock (``trainkit.rundir``)
for its life. Checkpoints are found by their files. Records carry the run's
``run_id``: an eval dir holding another run's record has it moved to
``previous-run-ID/`` first. A failure to write its own outputs (a full
disk, a read-only dir) is a UserError, never a skipped checkpoint.
"""

import json
import os
import time

import keras
import tensorflow as tf
from absl import logging

from trainkit import best as best_lib
from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import errors
from trainkit import export
from trainkit import fs
from trainkit import loop
from trainkit import metrics
from trainkit import pipeline
from trainkit import reports
from trainkit import rundir
from trainkit import summaries

METRICS_FILE = "metrics.jsonl"
BEST_DIR = export.BEST_DIR
STAGING_DIR = ".staging"
MISCLASSIFIED_SHOWN = 25
_COPY_CHUNK = 1 << 22


class _SourceGone(Exception):
    """A checkpoint file vanished or could not be read while it was staged."""


def _own_write_error(eval_dir, error):
    """The UserError for the evaluator failing to write its own outputs."""
    reason = getattr(error, "strerror", None) or errors.first_line(error)
    return errors.UserError(
        f"the evaluator cannot write to its eval dir {eval_dir} ({reason}); free space there, "
        "or pass --eval_dir=DIR to write elsewhere (needed when the train dir is read-only)")


def _signature(path):
    """What a checkpoint's files look like now: sizes and times, to notice a change."""
    found = []
    for name in rundir.checkpoint_files(path):
        try:
            found.append((name, *fs.signature(name)))
        except OSError:
            continue
    return tuple(found)


def read_records(path):
    """The evaluation records of ``metrics.jsonl``; UserError for a line of the wrong shape.

    A torn last line (a crash mid-write) is ignored, as the next record is
    appended after it.
    """
    try:
        with rundir.open_regular(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise errors.UserError(f"cannot read {path}: {e.strerror or e}") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                continue  # torn by a crash mid-write
            record = None
        if not (isinstance(record, dict) and rundir.is_int(record.get("step"))
                and rundir.is_number(record.get("precision_at_1"))):
            raise errors.UserError(
                f"{path} line {number} is not an evaluation record of this toolkit (a JSON "
                "object with an integer step and a precision_at_1); move the file away to "
                "start a fresh record")
        records.append(record)
    return records


class Evaluator:
    """Scores checkpoints of one train dir on one eval set."""

    def __init__(self, eval_config, dataset, clock=time.monotonic):
        self.config = eval_config
        if eval_config.eval_policy not in config_lib.EVAL_POLICIES:
            raise errors.UserError(f"--eval_policy={eval_config.eval_policy}: expected "
                                   f"{' or '.join(config_lib.EVAL_POLICIES)}")
        self.train_config = config_lib.check_run(eval_config.train_dir, dataset.spec, "eval")
        if eval_config.data_dir:
            self.train_config.data_dir = eval_config.data_dir
        # One evaluator per eval dir, for its whole life (see trainkit.rundir).
        self._hold = rundir.hold(eval_config.eval_dir, "evaluator", "eval dir", "--eval_dir")
        try:
            self._start(eval_config, dataset, clock)
        except BaseException:
            self._hold.release()
            raise

    def _start(self, eval_config, dataset, clock):
        self.run_id = self.train_config.run_id
        self.best_dir = fs.join(eval_config.eval_dir, BEST_DIR)
        self.staging_dir = fs.join(eval_config.eval_dir, STAGING_DIR)
        metrics_path = fs.join(eval_config.eval_dir, METRICS_FILE)
        records = read_records(metrics_path)
        others = {r.get("run_id", "") for r in records} - {self.run_id}
        if others:
            self._move_previous_run(sorted(others)[0])
            records = []
        # (A best of another run left without records is moved aside on its own.)
        self.best = best_lib.BestRecord(self.best_dir, self.run_id)
        self.dataset, self.num_examples = pipeline.eval_dataset(
            dataset, self.train_config, eval_config.eval_data, eval_config.eval_batch_size)
        if 0 < eval_config.num_examples < self.num_examples:
            self.num_examples = eval_config.num_examples
            self.dataset = (self.dataset.unbatch().take(self.num_examples)
                            .batch(eval_config.eval_batch_size).prefetch(pipeline.PREFETCH))
        self.class_names = dataset.classes(self.train_config)
        self.model = dataset.build(self.train_config)
        # Exports of the best checkpoint: the model as it is right after scoring it.
        self.classifier = (export.Classifier(self.model, self.train_config, dataset)
                           if eval_config.export_best else None)
        self.scorer = metrics.Scorer(
            self.model, len(self.class_names),
            metrics.eval_logits_fn(dataset.model(self.train_config), self.train_config)
            if eval_config.test_time_augmentation else None)
        with self._writing():
            self.writer = summaries.Writer(eval_config.eval_dir, jsonl_name=METRICS_FILE)
        self._clock = clock
        self.skipped = {}  # checkpoint path -> its files' signature when it failed
        self.evaluated = {r["step"] for r in records}
        # Evaluations since the best one, recounted from the record after a restart.
        self.evals_since_best = sum(1 for r in records
                                    if self.best.step is not None and r["step"] > self.best.step)
        self.stop_requested = False

    def _writing(self):
        """A context in which failing to write the evaluator's own outputs is a UserError."""
        return _OwnWrites(self.config.eval_dir)

    def _move_previous_run(self, other):
        """Moves another run's evaluation record out of the way, into a folder of its own."""
        with self._writing():
            target = rundir.move_previous_run(self.config.eval_dir, other, keep=(STAGING_DIR,))
        logging.warning("%s held the evaluation of another run (%s), not of the run now in %s "
                        "(%s); moved it to %s and started a fresh record", self.config.eval_dir,
                        other or "a run without an id", self.config.train_dir,
                        self.run_id or "a run without an id", target)

    def candidates(self):
        """Checkpoints to evaluate now, oldest first, per ``--eval_policy``.

        Found by their files (the ``checkpoint`` index may be gone or being
        rewritten). One that failed before is tried again only once its files
        have changed (an index still being written when it was first read).
        """
        steps = rundir.checkpoint_steps(self.config.train_dir)
        if self.config.eval_policy == "latest":
            steps = steps[-1:]
        fresh = []
        for step in steps:
            path = rundir.checkpoint_path(self.config.train_dir, step)
            if step in self.evaluated:
                continue
            if path in self.skipped and self.skipped[path] == _signature(path):
                continue
            fresh.append(path)
        return fresh

    def check_same_run(self):
        """UserError if the train dir now holds another run than the one being scored."""
        values = rundir.read_config_values(self.config.train_dir)
        if values is not None and values.get("run_id", "") != self.run_id:
            raise errors.UserError(
                f"{self.config.train_dir} now holds another run ({values.get('run_id') or 'none'}"
                f", not {self.run_id or 'a run without an id'}); start the evaluator again to "
                "score it")

    # -- one checkpoint ------------------------------------------------------------

    def _stage(self, path):
        """Hard-links (or copies) checkpoint ``path`` into the staging dir; returns its new path.

        Raises ``_SourceGone`` if the checkpoint's files vanish or cannot be
        read, UserError if the evaluator cannot write its own copy.
        """
        files = rundir.checkpoint_files(path)
        if not any(f.endswith(".index") for f in files) or len(files) < 2:
            raise _SourceGone(f"{path} has no complete set of .index and .data files")
        with self._writing():
            fs.rmtree(self.staging_dir)
            fs.makedirs(self.staging_dir)
        for name in files:
            target = fs.join(self.staging_dir, os.path.basename(name))
            if fs.is_remote(name) or fs.is_remote(target):
                self._copy(name, target)
                continue
            try:
                os.link(name, target)
            except FileNotFoundError:
                raise _SourceGone(f"{name} vanished") from None
            except OSError:
                self._copy(name, target)  # another file system, or no hard links: copy
        return fs.join(self.staging_dir, os.path.basename(path))

    def _copy(self, source, target):
        try:
            reader = fs.open(source, "rb")
        except OSError as e:
            raise _SourceGone(f"{source}: {e.strerror or e}") from None
        with reader, self._writing(), fs.open(target, "wb") as writer:
            while True:
                try:
                    chunk = reader.read(_COPY_CHUNK)
                except OSError as e:
                    raise _SourceGone(f"{source}: {e.strerror or e}") from None
                if not chunk:
                    break
                writer.write(chunk)

    def evaluate_and_record(self, path):
        """Stages, evaluates, logs and records checkpoint ``path``; None if it was unreadable.

        UserError if the evaluator cannot write its own outputs: that is its
        failure, not the checkpoint's, and must not pass for a skipped one.
        """
        try:
            return self._evaluate_and_record(path)
        finally:
            fs.rmtree(self.staging_dir)

    def _evaluate_and_record(self, path):
        step = checkpoints.step_of(path)
        start = self._clock()
        logging.info("Evaluating %s (step %d) on %d %s examples", path, step, self.num_examples,
                     self.config.eval_data)
        signature = _signature(path)
        try:
            staged = self._stage(path)
            checkpoints.restore_averaged(staged, self.model)
        except errors.UserError:
            raise
        except Exception as e:  # noqa: BLE001 -- a corrupt file can fail in any reader layer
            logging.warning("Skipping checkpoint %s: it is gone, incomplete or corrupt (%s: %s)",
                            path, type(e).__name__, errors.first_line(e))
            self.skipped[path] = signature
            return None
        result = self.scorer.score(self.dataset, MISCLASSIFIED_SHOWN)
        result["eval_secs"] = round(self._clock() - start, 3)
        precision, recall = metrics.per_class(result["confusion"])
        improved = self.best.improves(result["precision_at_1"])
        record = {
            "step": step, "checkpoint": path, "run_id": self.run_id,
            "precision_at_1": result["precision_at_1"],
            "loss": result["loss"], "num_examples": result["num_examples"],
            "eval_data": self.config.eval_data, "eval_secs": result["eval_secs"],
            "wall_time": time.time(), "best": improved,
            "confusion_matrix": result["confusion"].tolist(),
            "per_class_precision": dict(zip(self.class_names, precision.round(4).tolist())),
            "per_class_recall": dict(zip(self.class_names, recall.round(4).tolist())),
        }
        logging.info("step %d: precision @ 1 = %.2f%%%s, loss = %.4f over %d %s examples "
                     "(%.1f s, %s)", step, 100 * record["precision_at_1"],
                     " *" if improved else "",
                     record["loss"], record["num_examples"], self.config.eval_data,
                     record["eval_secs"], path)
        with self._writing():
            if step not in self.evaluated:
                self.writer.record(record)
                self.writer.scalars(step, {"precision_at_1": record["precision_at_1"],
                                           "loss": record["loss"]})
                self.writer.images(step, {"confusion_matrix": reports.confusion_image(
                    result["confusion"], self.class_names, step)})
                self.writer.flush()
                self.evaluated.add(step)
            if improved:
                self._keep_best(staged, record)
                self.evals_since_best = 0
            else:
                self.evals_since_best += 1
            if improved or self.config.run_once:
                self._write_reports(step, result)
        result.update(record)
        return result

    def _keep_best(self, staged, record):
        """Moves the staged checkpoint into best/ and records it, then drops the old best."""
        fs.makedirs(self.best_dir)
        old = set(fs.listdir(self.best_dir))
        base = os.path.basename(staged)
        for name in rundir.checkpoint_files(staged):
            fs.replace(name, fs.join(self.best_dir, os.path.basename(name)))
        prefix = fs.join(self.best_dir, base)
        checkpoints.write_state(self.best_dir, base)
        self.best.record({"step": record["step"], "precision_at_1": record["precision_at_1"],
                          "checkpoint": prefix, "source": record["checkpoint"],
                          "run_id": self.run_id, "eval_data": record["eval_data"],
                          "wall_time": record["wall_time"]})
        for name in old:
            if rundir.step_of_file(name) is not None and not name.startswith(base + "."):
                fs.remove(fs.join(self.best_dir, name))
        if self.classifier:
            target = fs.join(self.best_dir, export.SAVED_MODEL_DIR)
            export.save(self.classifier, target, export.info_for(
                prefix, self.train_config, self.classifier))

    def _maybe_request_stop(self):
        patience = self.config.early_stopping_evals
        if not patience or self.stop_requested or self.evals_since_best < patience:
            return
        path = fs.join(self.config.train_dir, loop.STOP_FILE)
        best = self.best.value
        reason = (f"{self.evals_since_best} evaluations without improving on precision @ 1 = "
                  f"{100 * best['precision_at_1']:.2f}% (step {best['step']})")
        try:
            rundir.write_json(path, {"requested_by": "evaluator", "reason": reason,
                                     "best_step": best["step"],
                                     "best_precision_at_1": best["precision_at_1"]})
        except OSError as e:
            raise errors.UserError(
                f"cannot write the stop request {path} ({e.strerror or e}): "
                "--early_stopping_evals needs a writable train dir") from None
        self.stop_requested = True
        logging.info("Early stopping: %s; asked the trainer to stop (%s)", reason, path)

    # -- the loops -----------------------------------------------------------------

    def run_once(self):
        path = checkpoints.latest(self.config.train_dir)
        if path is None:
            raise errors.UserError(
                f"no checkpoint in {self.config.train_dir} to evaluate; "
                "start the trainer there first, or drop --run_once to wait for one")
        result = self.evaluate_and_record(path)
        if result is None:
            raise errors.UserError(f"checkpoint {path} cannot be read; see the warning above")
        return result

    def _write_reports(self, step, result):
        """The PNG reports of the checkpoint just scored (for each new best, and --run_once)."""
        convs = [layer for layer in self.model.layers if isinstance(layer, keras.layers.Conv2D)]
        first_conv = convs[0].kernel.numpy() if convs else None
        pngs = reports.write_pngs(self.config.eval_dir, step, result["confusion"],
                                  self.class_names, result["misclassified"], first_conv)
        if pngs:
            logging.info("Wrote %s (step %d)", ", ".join(os.path.basename(p) for p in pngs),
                         step)

    def poll(self, sleep=time.sleep):
        """Evaluates new checkpoints until the trainer is DONE (or the timeout passes)."""
        done_file = fs.join(self.config.train_dir, loop.DONE_FILE)
        last_new = self._clock()
        waiting_logged = False
        while True:
            # Read DONE before the checkpoint list: if DONE was there, the
            # list read next already has the final checkpoint.
            done = fs.exists(done_file)
            self.check_same_run()
            pending = self.candidates()
            if pending:
                for path in pending:
                    self.evaluate_and_record(path)
                    self._maybe_request_stop()
                last_new = self._clock()
                waiting_logged = False
                continue
            if done:
                logging.info("The trainer is done and its last checkpoint is evaluated; %s",
                             self.summary())
                return
            timeout = self.config.timeout_secs
            if timeout and self._clock() - last_new >= timeout:
                logging.info("No new checkpoint for %g s (--timeout_secs); %s", timeout,
                             self.summary())
                return
            if not waiting_logged:
                logging.info("Waiting for a new checkpoint in %s (polling every %g s)",
                             self.config.train_dir, self.config.eval_interval_secs)
                waiting_logged = True
            sleep(self.config.eval_interval_secs)

    def summary(self):
        """The evaluator's last words: how many checkpoints it scored and the best."""
        line = f"exiting after scoring {len(self.evaluated)} checkpoint(s)"
        best = self.best.value
        if best:
            line += (f"; best: step {best['step']}, precision @ 1 "
                     f"{100 * best['precision_at_1']:.2f}% ({best['checkpoint']}")
            if self.classifier:
                line += f", exported to {fs.join(self.best_dir, export.SAVED_MODEL_DIR)}"
            line += ")"
        return line

    def close(self):
        try:
            self.writer.close()
        finally:
            self._hold.release()


class _OwnWrites:
    """Turns a failure to write the evaluator's outputs (disk full, read-only) into a UserError."""

    def __init__(self, eval_dir):
        self.eval_dir = eval_dir

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, (OSError, tf.errors.OpError)):
            raise _own_write_error(self.eval_dir, error) from None
        return False


def run(eval_config, dataset):
    """The evaluator process: ``run_once`` or poll until the trainer is done."""
    if not eval_config.run_once:
        config_lib.wait_for_trainer(eval_config)
    evaluator = Evaluator(eval_config, dataset)
    try:
        if eval_config.run_once:
            return evaluator.run_once()
        return evaluator.poll()
    finally:
        evaluator.close()
