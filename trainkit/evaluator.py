"""The polling evaluator: waits for checkpoints and scores their averaged weights.

Each checkpoint is staged (hard-linked) so the trainer may delete it, scored
on validation and test, then handed to the evaluator's actions: its record in
``metrics.jsonl``, the best on validation and its export, pictures, the stop
request. docs/code-tour.md ("The evaluator") has the rules it keeps.
"""

import contextlib
import dataclasses
import json
import os
import shlex
import signal
import time

import keras
import tensorflow as tf
from absl import logging

from trainkit import actions
from trainkit import best as best_lib
from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import errors
from trainkit import export
from trainkit import fs
from trainkit import locks
from trainkit import metrics
from trainkit import pipeline
from trainkit import priority as priority_lib
from trainkit import reports
from trainkit import rundir
from trainkit import summaries

MISCLASSIFIED_SHOWN = 25
SELECTED_ON = "validation"  # the split the best checkpoint is chosen on
REPORTED = "test"  # the split whose figures are reported
# Below this share of a core while scoring, the evaluator was starved, not slow.
STARVED_CORES = 0.25
_COPY_CHUNK = 1 << 22
# Why a checkpoint was not scored, as the summary words it.
SKIP_WORDS = {"behind": "passed over for a newer one under --eval_policy=latest",
              "unreadable": "unreadable", "deleted": "deleted by the trainer before scoring"}


class _SourceGone(Exception):
    """A checkpoint file vanished or could not be read while it was staged."""


@contextlib.contextmanager
def _own_writes(eval_dir):
    """Turns a failure to write the evaluator's outputs (disk full, read-only) into a UserError."""
    try:
        yield
    except (OSError, tf.errors.OpError) as error:
        raise rundir.unwritable(eval_dir, error, "eval dir", "--eval_dir") from None


def _signature(path):
    """What a checkpoint's files look like now: sizes and times, to notice a change."""
    found = []
    for name in rundir.checkpoint_files(path):
        try:
            found.append((name, *fs.signature(name)))
        except OSError:
            continue
    return tuple(found)


def _steps(steps):
    """Steps for a person: "1,200, 1,800 and 2,400"."""
    words = [f"{step:,}" for step in sorted(steps)]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def read_records(path):
    """The records of ``metrics.jsonl``, scored and skipped; UserError for a line of the
    wrong shape.

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
                and (rundir.is_number(record.get("precision_at_1"))
                     or isinstance(record.get("skipped"), str))):
            raise errors.UserError(
                f"{path} line {number} is not an evaluation record of this toolkit (a JSON "
                "object with an integer step and a precision_at_1 or a skipped reason); move "
                "the file away to start a fresh record")
        records.append(record)
    return records


def scored(records):
    """The records of scored checkpoints (not the skipped ones)."""
    return [record for record in records if "skipped" not in record]


class StopSignals(actions.StopSignals):
    """SIGINT and SIGTERM while the evaluator runs: between polls it stops at once; while
    it scores, after the current batch (``check``), so that no signal lands in the middle
    of a library's clean-up and is lost there. A second SIGINT stops at once."""

    def __init__(self):
        super().__init__()
        self._waiting = False

    def _handle(self, signum, frame):
        del frame
        again = self.received is not None
        self.received = signum
        if self._waiting or again:
            raise KeyboardInterrupt
        logging.info("Received %s: stopping after this batch (Ctrl-C again stops at once)",
                     signal.Signals(signum).name)

    def check(self):
        """Raises KeyboardInterrupt once a stop signal came."""
        if self.received is not None:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def waiting(self):
        """A stretch (a sleep) in which a stop signal stops at once."""
        self.check()
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


@dataclasses.dataclass(frozen=True)
class Scored:
    """A checkpoint just scored, as the evaluator's actions see it: its ``staged`` copy (the
    files best/ takes), ``results`` by split (``metrics.Scorer``), its metrics.jsonl
    ``record``, whether it is a new best on validation (``improved``) and whether its
    pictures are due (``pictures``; its misclassified examples were kept for them)."""

    step: int
    staged: str
    results: dict
    record: dict
    improved: bool
    pictures: bool


class Evaluator:
    """Scores checkpoints of one train dir on its validation and test splits, then runs
    its actions (the module's), and ``actions``, the caller's, on each ``Scored`` one.
    ``watch``: a ``trainkit.priority.CpuWatch`` told when the evaluator has work."""

    def __init__(self, eval_config, dataset, watch=None, clock=time.monotonic, actions=(),
                 hold=None):
        self.config = eval_config
        config_lib.check_bounds(eval_config)  # its declared choices and bounds
        # One evaluator per eval dir, for its whole life (see trainkit.locks).
        self.train_config, self._hold = config_lib.claim_eval_dir(eval_config, dataset.spec,
                                                                  hold)
        try:
            self._start(eval_config, dataset, watch, clock)
            self.actions = [self._write_record, self._keep_best, self._write_pictures,
                            self._request_stop, *actions]
        except BaseException:
            self._hold.release()
            raise

    def _start(self, eval_config, dataset, watch, clock):
        self.run_id = self.train_config.run_id
        self.dataset_name = dataset.name
        self.splits = dataset.spec.eval_splits(self.train_config)
        self.selects = SELECTED_ON in self.splits
        if eval_config.early_stopping_evals and not self.selects:
            raise errors.UserError(
                f"--early_stopping_evals needs a validation split to judge improvement on, and "
                f"the run in {eval_config.train_dir} holds none (--"
                f"{dataset.spec.validation_option or 'validation_size'}=0); drop the flag")
        self.best_dir = fs.join(eval_config.eval_dir, rundir.BEST_DIR)
        self.staging_dir = fs.join(eval_config.eval_dir, rundir.STAGING_DIR)
        self.records_path = fs.join(eval_config.eval_dir, rundir.METRICS_FILE)
        records = self._own_records(read_records(self.records_path))
        self.best = best_lib.BestRecord(self.best_dir, self.run_id) if self.selects else None
        self.data = {}
        for split in self.splits:
            batches, count = pipeline.eval_dataset(dataset, self.train_config, split,
                                                   eval_config.eval_batch_size)
            if 0 < eval_config.num_examples < count:
                count = eval_config.num_examples
                batches = (batches.unbatch().take(count).batch(eval_config.eval_batch_size)
                           .prefetch(pipeline.PREFETCH))
            self.data[split] = (batches, count)
        self.class_names = dataset.classes(self.train_config)
        self.model = dataset.build(self.train_config)
        # Exports of the best checkpoint: the model as it is right after scoring it.
        self.classifier = (export.Classifier(self.model, self.train_config, dataset)
                           if eval_config.export_best and self.selects else None)
        self.scorer = metrics.Scorer(
            self.model, len(self.class_names),
            metrics.eval_logits_fn(dataset.model(self.train_config), self.train_config)
            if eval_config.test_time_augmentation else None)
        with self._writing():
            self.writers = {split: summaries.Writer(fs.join(eval_config.eval_dir, split))
                            for split in self.splits}
        self._clock = clock
        self.watch = watch
        self.signals = StopSignals()
        self.failed = {}  # checkpoint path -> its files' signature when it could not be read
        done = scored(records)
        self.evaluated = {r["step"] for r in done}
        self.skipped = {r["step"]: r["skipped"] for r in records
                        if "skipped" in r and r["step"] not in self.evaluated}
        self.newest = max(done, key=lambda r: r["step"], default=None)
        self.top_test = max(done, key=lambda r: r["precision_at_1"], default=None)
        self._pending = set()  # steps seen on disk, not yet scored
        self.scored_while_training = 0
        self._behind_said = 0
        self._last_cores = None  # cores used while scoring the last checkpoint
        # Evaluations since the best one, recounted from the record after a restart.
        self.evals_since_best = sum(1 for r in done if self.best and self.best.step is not None
                                    and r["step"] > self.best.step)
        self.stop_requested = False

    def _own_records(self, records):
        """``records`` if they are this run's and chose their best as this evaluator does;
        else they (and best/) are moved aside and [] is returned."""
        others = {r.get("run_id", "") for r in records} - {self.run_id}
        best = rundir.read_best(fs.join(self.best_dir, rundir.BEST_FILE))
        on_test = (best is not None and best.get("selected_on") != SELECTED_ON) or (
            self.selects and any(SELECTED_ON not in r for r in scored(records)))
        if others:
            self._move_aside(sorted(others)[0], "the evaluation of another run")
        elif on_test and best and best.get("run_id", "") == self.run_id:
            self._move_aside(f"{self.run_id or 'unknown'}-selected-on-test",
                             "an evaluation that chose its best on the test set")
        else:
            return records
        return []

    def _move_aside(self, label, what):
        """Moves the eval dir's record out of the way, into a folder of its own."""
        with self._writing():
            target = rundir.move_previous_run(self.config.eval_dir, label,
                                              keep=(rundir.STAGING_DIR,))
        logging.warning("%s held %s, not one of the run now in %s (%s); moved it to %s and "
                        "started a fresh record", self.config.eval_dir, what,
                        self.config.train_dir, self.run_id or "a run without an id", target)

    def _writing(self):
        """A context in which failing to write the evaluator's own outputs is a UserError,
        entered only while the eval dir's lock is still this evaluator's."""
        self._hold.check()
        return _own_writes(self.config.eval_dir)

    # -- which checkpoints ---------------------------------------------------------

    def candidates(self):
        """Checkpoints to score now, oldest first, per ``--eval_policy``; every checkpoint
        it will not score gets a ``skipped`` record.

        Found by their files (the ``checkpoint`` index may be gone or being
        rewritten). One that failed before is tried again only once its files
        have changed (an index still being written when it was first read).
        """
        steps = rundir.checkpoint_steps(self.config.train_dir)
        gone = sorted(self._pending - set(steps))
        if gone:
            self._skip(gone, "deleted", "deleted by the trainer (its --max_to_keep) before "
                       "the evaluator scored it")
        fresh = [step for step in steps
                 if step not in self.evaluated and step not in self.skipped]
        self._pending = set(fresh)
        fresh = [step for step in fresh if self.failed.get(self._path(step), ()) !=
                 _signature(self._path(step)) or self._path(step) not in self.failed]
        self._say_if_behind(fresh)
        if self.config.eval_policy == "latest" and len(fresh) > 1:
            self._skip(fresh[:-1], "behind", f"--eval_policy=latest scores only the newest "
                       f"(step {fresh[-1]:,}); --eval_policy=all scores every one")
            fresh = fresh[-1:]
        return [self._path(step) for step in fresh]

    def _path(self, step):
        return rundir.checkpoint_path(self.config.train_dir, step)

    def _say_if_behind(self, fresh):
        """One line whenever the evaluator falls (further) behind the trainer: how far, and
        why (its CPU share, or how long a checkpoint takes)."""
        behind = len(fresh) - 1
        if behind <= self._behind_said:
            if behind <= 0:
                self._behind_said = 0
            return
        self._behind_said = behind
        if self._last_cores is None:
            logging.info("%d checkpoints are waiting to be scored (steps %s)", len(fresh),
                         _steps(fresh))
            return
        seconds, cores = self._last_cores
        if cores < STARVED_CORES:
            why = priority_lib.why_starved(self.config.priority)
        else:
            why = ("scoring one takes longer than the trainer takes to write the next; score "
                   "fewer examples (--num_examples), save checkpoints less often, or give the "
                   "evaluator a GPU (--device=gpu:N)")
        logging.warning("The evaluator is %d checkpoint%s behind the trainer (steps %s "
                        "waiting; the last took %.1f s using %.2f of a core): %s", behind,
                        "s" if behind > 1 else "", _steps(fresh), seconds, cores, why)

    def _skip(self, steps, reason, detail):
        """Records ``steps`` as not scored, for ``reason`` (a ``SKIP_WORDS`` key)."""
        logging.info("Not scoring step%s %s: %s", "s" if len(steps) > 1 else "", _steps(steps),
                     detail)
        with self._writing():
            for step in steps:
                fs.append(self.records_path, json.dumps(
                    {"step": step, "skipped": reason, "detail": detail, "run_id": self.run_id,
                     "checkpoint": self._path(step), "wall_time": time.time()},
                    sort_keys=True) + "\n")
                self.skipped[step] = reason
                self._pending.discard(step)

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
            try:
                fs.link(name, target)
            except FileNotFoundError:
                raise _SourceGone(f"{name} vanished") from None
            except OSError:
                self._copy(name, target)  # another device, or no hard links: copy
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
        """Stages, scores, logs and records checkpoint ``path``; None if it was unreadable.

        UserError if the evaluator cannot write its own outputs: that is its
        failure, not the checkpoint's, and must not pass for a skipped one.
        """
        try:
            return self._evaluate_and_record(path)
        finally:
            fs.rmtree(self.staging_dir)

    def _batches(self, split):
        """The split's batches, a stop signal honoured between them."""
        for batch in self.data[split][0]:
            self.signals.check()
            yield batch

    def _evaluate_and_record(self, path):
        step = checkpoints.step_of(path)
        start, cpu_start = self._clock(), time.process_time()
        signature = _signature(path)
        try:
            staged = self._stage(path)
            checkpoints.restore_averaged(staged, self.model)
        except errors.UserError:
            raise
        except Exception as e:  # noqa: BLE001 -- a corrupt file can fail in any reader layer
            self.failed[path] = signature
            self._skip([step], "unreadable", f"the checkpoint is gone, incomplete or corrupt "
                       f"({type(e).__name__}: {errors.first_line(e)})")
            return None
        results = {}
        if self.selects:
            results[SELECTED_ON] = self.scorer.score(self._batches(SELECTED_ON))
        improved = bool(self.best) and self.best.improves(results[SELECTED_ON]["precision_at_1"])
        pictures = improved or not self.selects or self.config.run_once
        results[REPORTED] = self.scorer.score(self._batches(REPORTED),
                                              MISCLASSIFIED_SHOWN if pictures else 0)
        seconds = self._clock() - start
        self._last_cores = (seconds, (time.process_time() - cpu_start) / max(seconds, 1e-6))
        scored = Scored(step, staged, results, self._record(step, path, results, improved,
                                                            seconds), improved, pictures)
        self._log(scored.record)
        self.signals.check()
        with self._writing():
            for action in self.actions:
                action(scored)
            for writer in self.writers.values():
                writer.flush()
        return dict(results[REPORTED], **scored.record)

    def _write_record(self, scored):
        """The checkpoint's line in metrics.jsonl, its scalars and confusion matrix (once)."""
        step, record = scored.step, scored.record
        if step not in self.evaluated:
            fs.append(self.records_path, json.dumps(record, sort_keys=True) + "\n")
            for split, result in scored.results.items():
                self.writers[split].scalars(step, {
                    "precision_at_1": result["precision_at_1"], "loss": result["loss"]})
            self.writers[REPORTED].images(step, {"confusion_matrix": reports.confusion_image(
                scored.results[REPORTED]["confusion"], self.class_names, step)})
            self.evaluated.add(step)
            self._pending.discard(step)
        if self.newest is None or step >= self.newest["step"]:
            self.newest = record
        if self.top_test is None or record["precision_at_1"] > self.top_test["precision_at_1"]:
            self.top_test = record

    def _record(self, step, path, results, improved, seconds):
        """The metrics.jsonl line of a scored checkpoint: the test split's figures at the top
        level (with its confusion matrix), the validation split's under "validation"."""
        test = results[REPORTED]
        precision, recall = metrics.per_class(test["confusion"])
        record = {
            "step": step, "checkpoint": path, "run_id": self.run_id,
            "precision_at_1": test["precision_at_1"], "loss": test["loss"],
            "num_examples": test["num_examples"], "eval_data": REPORTED,
            "eval_secs": round(seconds, 3), "wall_time": time.time(), "best": improved,
            "selected_on": SELECTED_ON if self.selects else None,
            "confusion_matrix": test["confusion"].tolist(),
            "per_class_precision": dict(zip(self.class_names, precision.round(4).tolist())),
            "per_class_recall": dict(zip(self.class_names, recall.round(4).tolist())),
        }
        if self.selects:
            validation = results[SELECTED_ON]
            record[SELECTED_ON] = {key: validation[key]
                                   for key in ("precision_at_1", "loss", "num_examples")}
        return record

    def _log(self, record):
        """One line per scored checkpoint: "step 1,200: validation 98.90% (new best), test
        99.02% (loss 0.0312); 5,000+10,000 examples in 3.1 s"."""
        validation, counts = record.get(SELECTED_ON), f"{record['num_examples']:,}"
        shown = ""
        if validation:
            shown = (f"validation {100 * validation['precision_at_1']:.2f}%"
                     + (" (new best)" if record["best"] else "") + ", ")
            counts = f"{validation['num_examples']:,}+{counts}"
        logging.info("step %s: %stest %.2f%% (loss %.4f); %s examples in %.1f s",
                     f"{record['step']:,}", shown, 100 * record["precision_at_1"],
                     record["loss"], counts, record["eval_secs"])

    def _keep_best(self, scored):
        """A new best on validation: the staged checkpoint moved into best/ and recorded (the
        old best dropped), and exported; the evaluations since the best counted."""
        if not scored.improved:
            self.evals_since_best += 1 if self.selects else 0
            return
        self.evals_since_best = 0
        staged, record = scored.staged, scored.record
        fs.makedirs(self.best_dir)
        old = set(fs.listdir(self.best_dir))
        base = os.path.basename(staged)
        for name in rundir.checkpoint_files(staged):
            fs.replace(name, fs.join(self.best_dir, os.path.basename(name)))
        prefix = fs.join(self.best_dir, base)
        rundir.write_index(self.best_dir, [base])
        self.best.record({"step": record["step"],
                          "precision_at_1": record[SELECTED_ON]["precision_at_1"],
                          "selected_on": SELECTED_ON,
                          "test_precision_at_1": record["precision_at_1"],
                          # Relative to the train dir: true of a copied or moved run too.
                          "checkpoint": fs.relpath(prefix, self.config.train_dir),
                          "source": fs.relpath(record["checkpoint"], self.config.train_dir),
                          "run_id": self.run_id, "wall_time": record["wall_time"]})
        for name in old:
            if rundir.step_of_file(name) is not None and not name.startswith(base + "."):
                fs.remove(fs.join(self.best_dir, name))
        if self.classifier:
            target = fs.join(self.best_dir, rundir.SAVED_MODEL_DIR)
            export.save(self.classifier, target, export.info_for(
                prefix, self.train_config, self.classifier))

    def _write_pictures(self, scored):
        """The pictures of the checkpoint just scored (a new best, or every one when nothing
        selects), as PNG files and TensorBoard images."""
        if not scored.pictures:
            return
        step, result = scored.step, scored.results[REPORTED]
        convs = [layer for layer in self.model.layers if isinstance(layer, keras.layers.Conv2D)]
        first_conv = convs[0].kernel.numpy() if convs else None
        pngs = reports.pictures(step, result["confusion"], self.class_names,
                                result["misclassified"], first_conv, REPORTED)
        if not pngs:
            return
        paths = reports.write_pngs(self.config.eval_dir, pngs)
        self.writers[REPORTED].images(step, {name[:-len(".png")]: png
                                             for name, png in pngs.items()})
        logging.info("Wrote %s (step %s)", ", ".join(os.path.basename(p) for p in paths),
                     f"{step:,}")

    def _request_stop(self, scored):
        """--early_stopping_evals: asks the trainer to stop (its STOP file) after that many
        evaluations without a new best."""
        del scored
        patience = self.config.early_stopping_evals
        if (not patience or self.config.run_once or self.stop_requested
                or self.evals_since_best < patience):
            return
        path = fs.join(self.config.train_dir, rundir.STOP_FILE)
        best = self.best.value
        reason = (f"{self.evals_since_best} evaluations without improving on validation "
                  f"precision @ 1 = {100 * best['precision_at_1']:.2f}% (step {best['step']})")
        try:
            rundir.write_json(path, {"requested_by": "evaluator", "reason": reason,
                                     "best_step": best["step"],
                                     "best_precision_at_1": best["precision_at_1"],
                                     "selected_on": SELECTED_ON})
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
        result = self._busy(self.evaluate_and_record, path)
        if result is None:
            raise errors.UserError(f"checkpoint {path} cannot be read; see the line above")
        return result

    def _busy(self, work, *args):
        """``work(*args)`` with the CPU watch told that the evaluator has work."""
        if self.watch:
            self.watch.busy = True
        try:
            return work(*args)
        finally:
            if self.watch:
                self.watch.busy = False

    def poll(self, sleep=time.sleep):
        """Scores new checkpoints until the trainer is DONE (or the timeout passes)."""
        done_file = fs.join(self.config.train_dir, rundir.DONE_FILE)
        last_new = self._clock()
        waiting_said = False
        while True:
            self.signals.check()
            # Read DONE before the checkpoint list: if DONE was there, the
            # list read next already has the final checkpoint.
            done = fs.exists(done_file)
            self.check_same_run()
            pending = self.candidates()
            if pending:
                for path in pending:
                    if self._busy(self.evaluate_and_record, path) and not fs.exists(done_file):
                        self.scored_while_training += 1
                last_new = self._clock()
                waiting_said = False
                continue
            if done:
                self._check_any_scored()
                logging.info("The trainer is done and its last checkpoint is evaluated; %s",
                             self.summary())
                return
            timeout = self.config.timeout_secs
            if timeout and self._clock() - last_new >= timeout:
                logging.info("No new checkpoint for %g s (--timeout_secs); %s", timeout,
                             self.summary())
                return
            if not waiting_said:
                self._say_waiting()
                waiting_said = True
            with self.signals.waiting():
                sleep(self.config.eval_interval_secs)

    def _say_waiting(self):
        """What the evaluator waits for: a new checkpoint, or a trainer that has stopped."""
        train_dir = self.config.train_dir
        if not locks.holder_gone(train_dir):
            logging.info("Waiting for a new checkpoint in %s (polling every %g s)", train_dir,
                         self.config.eval_interval_secs)
            return
        steps, quoted = rundir.checkpoint_steps(train_dir), shlex.quote(train_dir)
        logging.info(
            "The trainer of %s is not running and has not finished (no DONE; newest checkpoint: "
            "step %s of %s): waiting for it to continue (%s). To score the newest checkpoint once "
            "and exit instead: %s", train_dir, f"{steps[-1]:,}" if steps else "none",
            f"{self.train_config.max_steps:,}", errors.said(
                f"python -m {self.dataset_name}.train --train_dir={quoted} --resume",
                f"make resume TRAIN_DIR={quoted}"),
            errors.eval_command(self.dataset_name, train_dir, "--run_once"))

    def _check_any_scored(self):
        """UserError when the run ended and none of its checkpoints could be read."""
        unreadable = [step for step, reason in self.skipped.items() if reason == "unreadable"]
        if not self.evaluated and unreadable:
            raise errors.UserError(
                f"none of the {len(unreadable)} checkpoint(s) in {self.config.train_dir} could "
                f"be read (steps {_steps(unreadable)}; the lines above say why): nothing was "
                "scored; check the train dir's files, or resume the run to write new ones")

    def summary(self):
        """The evaluator's last words: what it scored and skipped, and the figure to quote."""
        skipped = {step: reason for step, reason in self.skipped.items()
                   if step not in self.evaluated}
        line = f"scored {len(self.evaluated)} of {len(self.evaluated) + len(skipped)} checkpoints"
        if skipped:
            counts = {}
            for reason in skipped.values():
                counts[reason] = counts.get(reason, 0) + 1
            line += f" ({len(skipped)} skipped: " + "; ".join(
                f"{n} {SKIP_WORDS.get(reason, reason)}" for reason, n in counts.items()) + ")"
        line += f", {self.scored_while_training} of them while the trainer ran"
        best = self.best.value if self.best else None
        if best:
            line += (f"; best on validation: step {best['step']:,}, validation "
                     f"{100 * best['precision_at_1']:.2f}%, test "
                     f"{100 * best['test_precision_at_1']:.2f}% "
                     f"({fs.join(self.config.train_dir, best['checkpoint'])}")
            if self.classifier:
                line += f", exported to {fs.join(self.best_dir, rundir.SAVED_MODEL_DIR)}"
            line += ")"
        elif not self.selects and self.newest:
            line += (f"; no validation split, so no best: the newest, step "
                     f"{self.newest['step']:,}, scored test "
                     f"{100 * self.newest['precision_at_1']:.2f}%")
            top = self.top_test
            if top and top["step"] != self.newest["step"]:
                line += (f" (the highest test figure, {100 * top['precision_at_1']:.2f}% at step "
                         f"{top['step']:,}, is picked on the test set: not a fair estimate)")
        return line

    def close(self):
        try:
            for writer in self.writers.values():
                writer.close()
        finally:
            self._hold.release()


def wait_for_trainer(eval_config, sleep=time.sleep, clock=time.monotonic):
    """Waits until the trainer has written config.json, so the evaluator may start first."""
    path = fs.join(eval_config.train_dir, rundir.CONFIG_FILE)
    if not fs.exists(path):
        logging.info("Waiting for the trainer to write %s", path)
    start = clock()
    while not fs.exists(path):
        if eval_config.timeout_secs and clock() - start >= eval_config.timeout_secs:
            raise errors.UserError(
                f"no trainer wrote {path} within --timeout_secs={eval_config.timeout_secs:g}; "
                "check --train_dir")
        sleep(max(eval_config.eval_interval_secs, 0.1))


def run(eval_config, dataset, watch=None, actions=(), hold=None):
    """The evaluator process: ``run_once`` or poll until the trainer is done, with
    ``actions`` after its own (see ``Evaluator``); ``hold``: the eval dir's lock, if the
    caller took it. A stop signal ends it with ``errors.Interrupted``, saying how to
    continue."""
    if not eval_config.run_once:
        wait_for_trainer(eval_config)
    evaluator = Evaluator(eval_config, dataset, watch, actions=actions, hold=hold)
    try:
        with evaluator.signals:
            try:
                if eval_config.run_once:
                    return evaluator.run_once()
                return evaluator.poll()
            except KeyboardInterrupt:
                received = evaluator.signals.received or signal.SIGINT
                raise errors.Interrupted(
                    f"Stopped by {signal.Signals(received).name}; {evaluator.summary()}. The "
                    f"record is in {evaluator.records_path}: continue with "
                    + errors.eval_command(dataset.name, eval_config.train_dir),
                    exit_code=130 if received == signal.SIGINT else 0) from None
    finally:
        evaluator.close()
