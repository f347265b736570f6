"""The polling evaluator: waits for checkpoints and scores their averaged weights.

``run(eval_config, input_lib, model_lib)`` rebuilds the model from the
trainer's ``config.json``, then loops: when the train dir's newest checkpoint
is one it has not evaluated, it restores that checkpoint's moving-average
shadow values into the model and computes precision @ 1 over the whole eval
set (every example exactly once: the last, smaller batch is kept). Each
result is one line in ``EVAL_DIR/metrics.jsonl``, TensorBoard scalars in
``EVAL_DIR`` and one log line. It stops after evaluating the last checkpoint
once the trainer has written ``DONE``, or after one checkpoint with
``run_once``. Steps already in ``metrics.jsonl`` are not evaluated again,
so a restarted evaluator carries on where it stopped. Started before the
trainer, it waits for the trainer's config.json.
"""

import os
import time

import tensorflow as tf
from absl import logging

from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import errors
from trainkit import loop
from trainkit import summaries

METRICS_FILE = "metrics.jsonl"


class Evaluator:
    """Scores checkpoints of one train dir on one eval set."""

    def __init__(self, eval_config, input_lib, model_lib):
        self.config = eval_config
        self.train_config = config_lib.read_train_config(eval_config.train_dir)
        if eval_config.data_dir:
            self.train_config.data_dir = eval_config.data_dir
        self.dataset, self.num_examples = input_lib.eval_dataset(
            self.train_config, eval_config.eval_data, eval_config.eval_batch_size)
        if 0 < eval_config.num_examples < self.num_examples:
            self.num_examples = eval_config.num_examples
            self.dataset = (self.dataset.unbatch().take(self.num_examples)
                            .batch(eval_config.eval_batch_size).prefetch(tf.data.AUTOTUNE))
        self.model = model_lib.build_model(self.train_config)
        self.writer = summaries.Writer(eval_config.eval_dir, jsonl_name=METRICS_FILE)
        self.evaluated = {r["step"] for r in summaries.read_jsonl(self.writer.jsonl_path)}
        model = self.model

        @tf.function
        def eval_step(images, labels):
            logits = model(images, training=False)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            correct = tf.equal(tf.argmax(logits, axis=1, output_type=labels.dtype), labels)
            return (tf.reduce_sum(tf.cast(correct, tf.int64)), tf.reduce_sum(losses),
                    tf.size(labels, out_type=tf.int64))

        self._eval_step = eval_step

    def evaluate(self, path):
        """Metrics of checkpoint ``path`` (averaged weights) as a dict.

        Raises ``tf.errors.OpError`` when the checkpoint cannot be read.
        """
        start = time.monotonic()
        checkpoints.restore_averaged(path, self.model)
        correct = count = 0
        loss_sum = 0.0
        for images, labels in self.dataset:
            c, l, n = self._eval_step(images, labels)
            correct += int(c)
            loss_sum += float(l)
            count += int(n)
        return {
            "step": checkpoints.step_of(path),
            "checkpoint": path,
            "precision_at_1": correct / count,
            "loss": loss_sum / count,
            "num_examples": count,
            "eval_data": self.config.eval_data,
            "eval_secs": round(time.monotonic() - start, 3),
            "wall_time": time.time(),
        }

    def evaluate_and_record(self, path):
        """Evaluates, logs, and records a new result; returns it (None if unreadable)."""
        try:
            result = self.evaluate(path)
        except (tf.errors.OpError, AssertionError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            logging.warning("Skipping checkpoint %s: it cannot be read (%s)", path, first)
            return None
        logging.info("step %d: precision @ 1 = %.4f, loss = %.4f over %d %s examples (%.1f s, %s)",
                     result["step"], result["precision_at_1"], result["loss"],
                     result["num_examples"], self.config.eval_data, result["eval_secs"], path)
        if result["step"] not in self.evaluated:
            self.writer.record(result)
            self.writer.scalars(result["step"], {"precision_at_1": result["precision_at_1"],
                                                 "loss": result["loss"]})
            self.writer.flush()
            self.evaluated.add(result["step"])
        return result

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

    def poll(self, sleep=time.sleep):
        """Evaluates each new newest checkpoint until the trainer is DONE."""
        done_file = os.path.join(self.config.train_dir, loop.DONE_FILE)
        skipped = set()
        waiting_logged = False
        while True:
            # Read DONE before the checkpoint list: if DONE was there, the
            # list we read next already has the final checkpoint.
            done = os.path.exists(done_file)
            path = checkpoints.latest(self.config.train_dir)
            if path is not None:
                step = checkpoints.step_of(path)
                if step not in self.evaluated and path not in skipped:
                    if self.evaluate_and_record(path) is None:
                        skipped.add(path)
                    waiting_logged = False
                    continue
            if done:
                logging.info("Trainer is done and its last checkpoint is evaluated; exiting")
                return
            if not waiting_logged:
                logging.info("Waiting for a new checkpoint in %s (polling every %g s)",
                             self.config.train_dir, self.config.eval_interval_secs)
                waiting_logged = True
            sleep(self.config.eval_interval_secs)

    def close(self):
        self.writer.close()


def wait_for_trainer(eval_config, sleep=time.sleep):
    """Waits until the trainer has written config.json, so the evaluator may start first."""
    path = os.path.join(eval_config.train_dir, config_lib.CONFIG_FILE)
    if not os.path.exists(path):
        logging.info("Waiting for the trainer to write %s", path)
    while not os.path.exists(path):
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
