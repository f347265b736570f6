"""The polling evaluator: waits for checkpoints and scores their averaged weights.

``run(eval_config, input_lib, model_lib)`` rebuilds the model from the
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
"""

import glob
import json
import os
import shutil
import time

import keras
import tensorflow as tf
from absl import logging

from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import errors
from trainkit import export
from trainkit import loop
from trainkit import metrics
from trainkit import reports
from trainkit import summaries

METRICS_FILE = "metrics.jsonl"
BEST_DIR = export.BEST_DIR
BEST_FILE = "best.json"
STAGING_DIR = ".staging"
EVAL_POLICIES = ("latest", "all")
MISCLASSIFIED_SHOWN = 25


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _write_json(path, values):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class Evaluator:
    """Scores checkpoints of one train dir on one eval set."""

    def __init__(self, eval_config, input_lib, model_lib, clock=time.monotonic):
        self.config = eval_config
        if eval_config.eval_policy not in EVAL_POLICIES:
            raise errors.UserError(f"--eval_policy={eval_config.eval_policy}: expected "
                                   f"{' or '.join(EVAL_POLICIES)}")
        self.train_config = config_lib.read_train_config(eval_config.train_dir)
        if eval_config.data_dir:
            self.train_config.data_dir = eval_config.data_dir
        self.dataset, self.num_examples = input_lib.eval_dataset(
            self.train_config, eval_config.eval_data, eval_config.eval_batch_size)
        if 0 < eval_config.num_examples < self.num_examples:
            self.num_examples = eval_config.num_examples
            self.dataset = (self.dataset.unbatch().take(self.num_examples)
                            .batch(eval_config.eval_batch_size).prefetch(tf.data.AUTOTUNE))
        self.class_names = list(input_lib.CLASS_NAMES)
        self.model = model_lib.build_model(self.train_config)
        # Exports of the best checkpoint: the model as it is right after scoring it.
        self.classifier = (export.Classifier(self.model, self.train_config, input_lib, model_lib)
                           if eval_config.export_best else None)
        self._input_lib = input_lib
        self.scorer = metrics.Scorer(self.model, len(self.class_names),
                                     metrics.eval_logits_fn(model_lib, self.train_config))
        self.writer = summaries.Writer(eval_config.eval_dir, jsonl_name=METRICS_FILE)
        self.best_dir = os.path.join(eval_config.eval_dir, BEST_DIR)
        self.staging_dir = os.path.join(eval_config.eval_dir, STAGING_DIR)
        self._clock = clock
        self.skipped = set()
        records = summaries.read_jsonl(self.writer.jsonl_path)
        self.evaluated = {r["step"] for r in records}
        self.best = self._read_best()
        best_step = self.best["step"] if self.best else None
        # Evaluations since the best one, recounted from the record after a restart.
        self.evals_since_best = sum(1 for r in records
                                    if best_step is not None and r["step"] > best_step)
        self.stop_requested = False

    # -- state ---------------------------------------------------------------------

    def _read_best(self):
        try:
            with open(os.path.join(self.best_dir, BEST_FILE)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def candidates(self):
        """Checkpoints to evaluate now, oldest first, per ``--eval_policy``."""
        try:
            state = tf.train.get_checkpoint_state(self.config.train_dir)
        except (tf.errors.OpError, ValueError) as e:  # the index rewritten under us
            logging.warning("Cannot read the checkpoint index of %s yet (%s)",
                            self.config.train_dir, _first_line(e))
            return []
        if state is None or not state.model_checkpoint_path:
            return []
        if self.config.eval_policy == "all":
            paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        else:
            paths = [state.model_checkpoint_path]
        fresh = [p for p in paths if checkpoints.step_of(p) is not None
                 and checkpoints.step_of(p) not in self.evaluated and p not in self.skipped]
        return sorted(fresh, key=checkpoints.step_of)

    # -- one checkpoint ------------------------------------------------------------

    def _stage(self, path):
        """Hard-links (or copies) checkpoint ``path`` into the staging dir; returns its new path."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        os.makedirs(self.staging_dir)
        files = glob.glob(glob.escape(path) + ".index") + glob.glob(glob.escape(path) + ".data-*")
        if not any(f.endswith(".index") for f in files) or len(files) < 2:
            raise FileNotFoundError(f"{path} has no complete set of .index and .data files")
        for name in files:
            target = os.path.join(self.staging_dir, os.path.basename(name))
            try:
                os.link(name, target)
            except OSError as e:
                if isinstance(e, FileNotFoundError):
                    raise
                shutil.copy2(name, target)  # another file system: copy instead
        return os.path.join(self.staging_dir, os.path.basename(path))

    def evaluate_and_record(self, path, keep_misclassified=0):
        """Stages, evaluates, logs and records checkpoint ``path``; None if it was unreadable."""
        step = checkpoints.step_of(path)
        start = self._clock()
        logging.info("Evaluating %s (step %d) on %d %s examples", path, step, self.num_examples,
                     self.config.eval_data)
        try:
            staged = self._stage(path)
            checkpoints.restore_averaged(staged, self.model)
        except Exception as e:  # noqa: BLE001 -- a corrupt file can fail in any reader layer
            logging.warning("Skipping checkpoint %s: it is gone, incomplete or corrupt (%s: %s)",
                            path, type(e).__name__, _first_line(e))
            self.skipped.add(path)
            shutil.rmtree(self.staging_dir, ignore_errors=True)
            return None
        result = self.scorer.score(self.dataset, keep_misclassified)
        result["eval_secs"] = round(self._clock() - start, 3)
        precision, recall = metrics.per_class(result["confusion"])
        improved = self.best is None or result["precision_at_1"] > self.best["precision_at_1"]
        record = {
            "step": step, "checkpoint": path, "precision_at_1": result["precision_at_1"],
            "loss": result["loss"], "num_examples": result["num_examples"],
            "eval_data": self.config.eval_data, "eval_secs": result["eval_secs"],
            "wall_time": time.time(), "best": improved,
            "confusion_matrix": result["confusion"].tolist(),
            "per_class_precision": dict(zip(self.class_names, precision.round(4).tolist())),
            "per_class_recall": dict(zip(self.class_names, recall.round(4).tolist())),
        }
        logging.info("step %d: precision @ 1 = %.4f%s, loss = %.4f over %d %s examples "
                     "(%.1f s, %s)", step, record["precision_at_1"], " *" if improved else "",
                     record["loss"], record["num_examples"], self.config.eval_data,
                     record["eval_secs"], path)
        if step not in self.evaluated:
            self.writer.record(record)
            self.writer.scalars(step, {"precision_at_1": record["precision_at_1"],
                                       "loss": record["loss"]})
            self.writer.images(step, {"confusion_matrix":
                                      reports.confusion_image(result["confusion"])})
            self.writer.flush()
            self.evaluated.add(step)
        if improved:
            self._keep_best(staged, record)
            self.evals_since_best = 0
        else:
            self.evals_since_best += 1
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        result.update(record)
        return result

    def _keep_best(self, staged, record):
        """Moves the staged checkpoint into best/ and records it, then drops the old best."""
        os.makedirs(self.best_dir, exist_ok=True)
        old = set(glob.glob(os.path.join(self.best_dir, "ckpt-*")))
        for name in glob.glob(glob.escape(staged) + ".*"):
            os.replace(name, os.path.join(self.best_dir, os.path.basename(name)))
        prefix = os.path.join(self.best_dir, os.path.basename(staged))
        checkpoints.write_state(self.best_dir, os.path.basename(staged))
        self.best = {"step": record["step"], "precision_at_1": record["precision_at_1"],
                     "checkpoint": prefix, "source": record["checkpoint"],
                     "eval_data": record["eval_data"], "wall_time": record["wall_time"]}
        _write_json(os.path.join(self.best_dir, BEST_FILE), self.best)
        for name in old - set(glob.glob(prefix + ".*")):
            os.remove(name)
        if self.classifier:
            target = os.path.join(self.best_dir, export.SAVED_MODEL_DIR)
            try:
                export.save(self.classifier, target, export.info_for(
                    prefix, self.train_config, self.classifier, self._input_lib))
            except errors.UserError as e:  # the evaluation itself is recorded: carry on
                logging.warning("Could not export the new best: %s", e)

    def _maybe_request_stop(self):
        patience = self.config.early_stopping_evals
        if not patience or self.stop_requested or self.evals_since_best < patience:
            return
        path = os.path.join(self.config.train_dir, loop.STOP_FILE)
        reason = (f"{self.evals_since_best} evaluations without improving on precision @ 1 = "
                  f"{self.best['precision_at_1']:.4f} (step {self.best['step']})")
        _write_json(path, {"requested_by": "evaluator", "reason": reason,
                           "best_step": self.best["step"],
                           "best_precision_at_1": self.best["precision_at_1"]})
        self.stop_requested = True
        logging.info("Early stopping: %s; asked the trainer to stop (%s)", reason, path)

    # -- the loops -----------------------------------------------------------------

    def run_once(self):
        path = checkpoints.latest(self.config.train_dir)
        if path is None:
            raise errors.UserError(
                f"no checkpoint in {self.config.train_dir} to evaluate; "
                "start the trainer there first, or drop --run_once to wait for one")
        result = self.evaluate_and_record(path, keep_misclassified=MISCLASSIFIED_SHOWN)
        if result is None:
            raise errors.UserError(f"checkpoint {path} cannot be read; see the warning above")
        convs = [layer for layer in self.model.layers if isinstance(layer, keras.layers.Conv2D)]
        first_conv = convs[0].kernel.numpy() if convs else None
        for png in reports.write_pngs(self.config.eval_dir, result["step"], result["confusion"],
                                      self.class_names, result["misclassified"], first_conv):
            logging.info("Wrote %s", png)
        return result

    def poll(self, sleep=time.sleep):
        """Evaluates new checkpoints until the trainer is DONE (or the timeout passes)."""
        done_file = os.path.join(self.config.train_dir, loop.DONE_FILE)
        last_new = self._clock()
        waiting_logged = False
        while True:
            # Read DONE before the checkpoint list: if DONE was there, the
            # list read next already has the final checkpoint.
            done = os.path.exists(done_file)
            pending = self.candidates()
            if pending:
                for path in pending:
                    self.evaluate_and_record(path)
                    self._maybe_request_stop()
                last_new = self._clock()
                waiting_logged = False
                continue
            if done:
                logging.info("The trainer is done and its last checkpoint is evaluated; exiting")
                return
            timeout = self.config.timeout_secs
            if timeout and self._clock() - last_new >= timeout:
                logging.info("No new checkpoint for %g s (--timeout_secs); exiting", timeout)
                return
            if not waiting_logged:
                logging.info("Waiting for a new checkpoint in %s (polling every %g s)",
                             self.config.train_dir, self.config.eval_interval_secs)
                waiting_logged = True
            sleep(self.config.eval_interval_secs)

    def close(self):
        self.writer.close()


def wait_for_trainer(eval_config, sleep=time.sleep, clock=time.monotonic):
    """Waits until the trainer has written config.json, so the evaluator may start first."""
    path = os.path.join(eval_config.train_dir, config_lib.CONFIG_FILE)
    if not os.path.exists(path):
        logging.info("Waiting for the trainer to write %s", path)
    start = clock()
    while not os.path.exists(path):
        if eval_config.timeout_secs and clock() - start >= eval_config.timeout_secs:
            raise errors.UserError(
                f"no trainer wrote {path} within --timeout_secs={eval_config.timeout_secs:g}; "
                "check --train_dir")
        sleep(max(eval_config.eval_interval_secs, 0.1))


def run(eval_config, input_lib, model_lib):
    """The evaluator process: ``run_once`` or poll until the trainer is done."""
    if not eval_config.run_once:
        wait_for_trainer(eval_config)
    evaluator = Evaluator(eval_config, input_lib, model_lib)
    try:
        if eval_config.run_once:
            return evaluator.run_once()
        return evaluator.poll()
    finally:
        evaluator.close()
