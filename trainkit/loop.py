"""The training loop: one ``tf.function`` step plus actions between its calls.

``train(config, dataset)`` is the whole trainer; nothing but forward,
backward, the update, the step counter and the averages happens in the step.
"""

import math
import time

import keras
import tensorflow as tf
from absl import logging

from trainkit import actions
from trainkit import best as best_lib
from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import data
from trainkit import distribution as distribution_lib
from trainkit import ema as ema_lib
from trainkit import errors
from trainkit import fs
from trainkit import lookahead as lookahead_lib
from trainkit import metrics
from trainkit import optimizers
from trainkit import pipeline
from trainkit import precision as precision_lib
from trainkit import rundir
from trainkit import summaries

_check_actions = actions.check  # Trainer.run's argument named actions hides the module

VALIDATION_BATCH_SIZE = 1000
LOSS_AVERAGE_DECAY = 0.9  # of the smoothed losses in TensorBoard, as the tutorial's
SUMMARY_IMAGES = 3
CLASSES_SHOWN = 10  # class names named in the data line at the start


def learning_rate_fn(config, steps_per_epoch):
    """The learning rate as a function of the global step, as ``lr_schedule``,
    ``warmup_steps`` and ``warmup_from`` declare it (``config.TrainConfig``): a function
    of the restored step, so a resumed run continues where it stopped."""
    if config.lr_schedule == "cosine":
        def schedule(step):
            progress = tf.minimum(tf.cast(step, tf.float32) / config.max_steps, 1.0)
            return config.learning_rate * 0.5 * (1.0 + tf.cos(math.pi * progress))
    elif config.lr_schedule == "linear":
        # Down from the end of the warm-up: with it, a triangle peaking at warmup_steps.
        start, span = config.warmup_steps, max(1, config.max_steps - config.warmup_steps)

        def schedule(step):
            progress = tf.clip_by_value((tf.cast(step, tf.float32) - start) / span, 0.0, 1.0)
            return config.learning_rate * (1.0 - (1.0 - config.decay_to) * progress)
    elif config.lr_schedule == "exponential":
        decay_steps = max(1.0, steps_per_epoch * config.num_epochs_per_decay)

        def schedule(step):
            progress = tf.cast(step, tf.float32) / decay_steps
            if config.staircase:
                progress = tf.floor(progress)
            return config.learning_rate * tf.pow(config.learning_rate_decay, progress)
    else:
        raise errors.UserError(f"unknown --lr_schedule={config.lr_schedule}; "
                               f"choose one of {', '.join(config_lib.LR_SCHEDULES)}")
    if not config.warmup_steps:
        return schedule

    warmup_from = config.warmup_from

    def warmed_up(step):
        step = tf.cast(step, tf.float32)
        if warmup_from:
            ramp = warmup_from + (1.0 - warmup_from) * tf.minimum(1.0, step / config.warmup_steps)
        else:
            ramp = tf.minimum(1.0, (step + 1.0) / config.warmup_steps)
        return ramp * schedule(step)

    return warmed_up


def regularization_loss(weights, l2):
    """``l2 * sum(l2_loss(w))`` over ``weights`` (Keras variables), the L2 penalty."""
    if not l2 or not weights:
        return tf.constant(0.0)
    return l2 * tf.add_n([tf.nn.l2_loss(w.value) for w in weights])


def cross_entropy(labels, logits, label_smoothing=0.0):
    """Per-example softmax cross-entropy against integer ``labels``; with
    ``label_smoothing`` e, against ``(1 - e) * one_hot + e / classes``."""
    logits = tf.cast(logits, tf.float32)  # bfloat16 logits: the loss in float32
    if not label_smoothing:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    classes = logits.shape[-1]
    targets = tf.one_hot(labels, classes) * (1.0 - label_smoothing) + label_smoothing / classes
    return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)


def start_run(config, resumed):
    """The chief's writes once data and model are ready: config.json (which an evaluator
    waits for) and, on resume, the removal of the litter of interrupted saves."""
    train_dir = config.train_dir
    try:
        config_lib.write_train_config(config)
        for path in rundir.unfinished_saves(train_dir) if resumed else ():
            logging.info("Removing %s, left by a save that was interrupted", path)
            (fs.rmtree if fs.isdir(path) and not fs.islink(path) else fs.remove)(path)
    except OSError as e:
        raise rundir.unwritable(train_dir, e) from None


def _write_checkpoint(manager, step):
    try:
        return manager.save(step)
    except (OSError, tf.errors.OpError) as e:
        raise errors.UserError(
            f"saving the checkpoint at step {step} in {manager.directory} failed: "
            f"{errors.first_line(e)}; earlier checkpoints are untouched (free space or fix "
            "permissions, then --resume)") from None


def activation_bytes(model):
    """Bytes of every float tensor the forward pass makes per example (the tensors
    whose first dimension is the batch), from one trace of the model: no step is run.
    Traced in inference mode, which updates no state (batch-norm statistics), so it
    can be traced under any distribution strategy."""
    inputs = model.inputs[0]
    forward = tf.function(lambda images: model(images, training=False))
    graph = forward.get_concrete_function(
        tf.TensorSpec([None, *inputs.shape[1:]], inputs.dtype)).graph
    total = 0
    for op in graph.get_operations():
        for tensor in op.outputs:
            shape = tensor.shape
            if (shape.rank and shape[0] is None and shape[1:].is_fully_defined()
                    and tensor.dtype.is_floating):
                total += math.prod(shape[1:]) * tensor.dtype.size
    return total


def check_batch_fits(model, config):
    """UserError, before any work, if ``--batch_size``'s activations (``activation_bytes``)
    exceed the available memory, which a step's peak follows (docs/operations.md), so
    that no run ends in the OOM killer. CPU only: a GPU's memory is its own."""
    available = data.available_memory()
    if not available or tf.config.list_logical_devices("GPU"):
        return
    per_example = activation_bytes(model)
    if config.batch_size * per_example > available:
        raise errors.UserError(
            f"--batch_size={config.batch_size} needs about "
            f"{data.gigabytes(config.batch_size * per_example)} of memory for --model="
            f"{config.model}, and this machine has {data.gigabytes(available)} available: use "
            f"--batch_size={int(available // per_example)} or less")


def describe_data(dataset, config, train_count):
    """Reads the splits the evaluator will score (a missing one is refused now, not after
    training) and says in one line what the run learns from and is scored on."""
    counts = [f"{train_count:,} training"] + [
        f"{len(dataset.arrays(config, split)[1]):,} {split}"
        for split in dataset.spec.eval_splits(config)]
    names = list(config.class_names)
    shown = ", ".join(names[:CLASSES_SHOWN]) + (
        f" and {len(names) - CLASSES_SHOWN} more" if len(names) > CLASSES_SHOWN else "")
    logging.info("Data in %s: %s and %s images of %d classes (%s)", config.data_dir,
                 ", ".join(counts[:-1]), counts[-1], len(names), shown)
    if not dataset.spec.has_validation(config):
        logging.info("No validation split (--%s=0): the evaluator reports test figures but "
                     "selects no best checkpoint", dataset.spec.validation_option
                     or "validation_size")


class Validator:
    """In-run validation of the averaged weights, as the classic MNIST tutorials did.

    Every ``validate_every_steps`` the shadow values are copied into a second
    model and scored on the validation split. A new best saves the whole
    training checkpoint to ``TRAIN_DIR/best_validation/`` (with best.json);
    ``early_stopping_steps`` without one ends training.
    """

    def __init__(self, config, dataset, trainer, directory):
        self.config = config
        self.dataset, self.num_examples = pipeline.eval_dataset(
            dataset, config, "validation", VALIDATION_BATCH_SIZE)
        self.model = dataset.build(config)
        shadows = trainer.averages.shadows
        sources = checkpoints.model_variables(trainer.model)
        self._pairs = [(var, shadows[key] if key in shadows else sources[key].value)
                       for key, var in checkpoints.model_variables(self.model).items()]
        self.scorer = metrics.Scorer(self.model, len(config.class_names),
                                     metrics.eval_logits_fn(dataset.model(config), config))
        self.dir = fs.join(directory, rundir.BEST_VALIDATION_DIR)
        self.manager = checkpoints.Manager(trainer.checkpoint, self.dir, max_to_keep=1)
        self.best = best_lib.BestRecord(self.dir, config.run_id)

    def validate(self, step):
        """Scores the averaged weights; returns (the score: precision_at_1, loss and more;
        whether it is a new best)."""
        for var, source in self._pairs:
            var.assign(source)
        score = self.scorer.score(self.dataset)
        precision = score["precision_at_1"]
        improved = self.best.improves(precision)
        if improved:
            path = _write_checkpoint(self.manager, step)
            self.best.record({"step": step, "precision_at_1": precision,
                              "checkpoint": fs.relpath(path, self.config.train_dir),
                              "num_examples": self.num_examples,
                              "selected_on": "validation", "run_id": self.config.run_id})
        return score, improved

    def stop_reason(self, step):
        """Why to stop at ``step`` (``early_stopping_steps`` without a new best), or None."""
        patience = self.config.early_stopping_steps
        best = self.best.value
        if not patience or best is None or step - best["step"] < patience:
            return None
        return (f"no validation improvement for {step - best['step']} steps (best "
                f"{100 * best['precision_at_1']:.2f}% at step {best['step']}, kept in {self.dir})")


class Trainer:
    """A run: model, optimizer, moving averages and checkpoint, ready to ``run()``.

    Building it checks the train dir (``config.claim_train_dir``) and, with
    ``--resume``, restores step, weights, optimizer slots and shadow values.
    ``distribution`` (``trainkit.distribution``; default: one device) says
    which strategy replicates the step and whether this process writes.
    """

    def __init__(self, config, dataset, distribution=None, hold=None):
        self.config = config.validate()
        self.distribution = distribution or distribution_lib.default()
        resume, self._hold = config_lib.claim_train_dir(
            config, dataset.spec, self.distribution.is_chief, hold)
        try:
            self._build(config, dataset, resume)
            if self.distribution.is_chief:
                start_run(config, resume)
        except BaseException:
            self.distribution.close()
            if self._hold:
                self._hold.release()
            raise

    def _build(self, config, dataset, resume):
        # The data first: nothing is written into the train dir before it is verified,
        # the splits the evaluator will score included.
        images, labels = dataset.arrays(config, "train")
        config.class_names = tuple(dataset.classes(config))
        describe_data(dataset, config, len(labels))
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(config.seed)
        self.precision, reason = precision_lib.resolve(config.precision)
        precision_lib.describe(self.precision, reason)
        # Everything with state is made in the strategy's scope, so it is mirrored on
        # every replica.
        with self.distribution.strategy.scope():
            self._build_state(config, dataset, images, resume)
        self._build_checkpoint(config, resume)
        self._build_input(config, dataset, images, labels)
        # Made at the first run() and kept: a second call (the bench times one) goes on
        # with the next batch and the same summary log, without compiling them again.
        self._iterator = self._writer = self._validation_writer = self._summarize = None
        self._agree = self._make_agreement() if self.distribution.num_workers > 1 else None
        self.validator = (Validator(config, dataset, self, self.save_dir)
                          if config.validate_every_steps else None)

    def _build_state(self, config, dataset, images, resume):
        """The training state: model, step, optimizer, moving averages, Lookahead."""
        model_spec = dataset.model(config)
        with precision_lib.policy(self.precision):
            self.model = dataset.build(config)
        check_batch_fits(self.model, config)
        if not resume and model_spec.initialize:
            # Weights set from the data (before the shadows copy them); a resumed run has
            # them in its checkpoint.
            model_spec.initialize(self.model, images, config)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # Called by the optimizer at each step; set in _build_input, once the data size is
        # known.
        self.optimizer = optimizers.make_optimizer(config, lambda: self.learning_rate(self.step))
        # Building the slots now lets a restore fill them at once instead of lazily.
        self.optimizer.build(self.model.trainable_variables)
        if model_spec.trained_until:
            optimizers.train_only_until(self.optimizer, config,
                                        model_spec.trained_until(self.model, config))
        self.averages = ema_lib.MovingAverages(
            checkpoints.model_variables(self.model, trainable_only=True),
            config.moving_average_decay, self.step, config.moving_average_every_steps)
        self.lookahead = None
        if config.lookahead_every_steps and config.lookahead_start_steps >= config.max_steps:
            logging.warning("Lookahead starts after step %d (--lookahead_start_steps), at or "
                            "past --max_steps=%d: this run has none and ends on its last "
                            "weights", config.lookahead_start_steps, config.max_steps)
        if config.lookahead_every_steps:
            self.lookahead = lookahead_lib.Lookahead(
                checkpoints.model_variables(self.model), config.lookahead_decay,
                config.lookahead_every_steps, self.step, config.max_steps,
                config.lookahead_start_steps, config.lookahead_sync_steps)
        # The tutorial's smoothed losses for TensorBoard: [loss, total_loss].
        self.loss_averages = tf.Variable([0.0, 0.0], trainable=False, name="loss_averages")
        # The first step whose loss was NaN or infinite (0: none yet), set inside the step
        # and read only when something is about to be saved or logged.
        self.nonfinite_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.decayed_weights = optimizers.penalized(config,
                                                    model_spec.decayed_weights(self.model))

    def _build_checkpoint(self, config, resume):
        """The checkpoint and its manager; with ``resume``, the state restored from it."""
        self.checkpoint = checkpoints.training_checkpoint(
            self.step, self.model, self.optimizer, self.averages.shadows,
            self.lookahead.slow if self.lookahead else None)
        # Only the chief saves into the train dir (see trainkit.distribution).
        self.save_dir = self.distribution.writable_dir(config.train_dir)
        self.manager = checkpoints.Manager(self.checkpoint, self.save_dir, config.max_to_keep)
        self.resumed_from = None
        if resume:
            self.resumed_from = checkpoints.restore_for_training(self.checkpoint, config.train_dir)
            logging.info("Resuming %s from %s at step %d",
                         config.train_dir, self.resumed_from, int(self.step.numpy()))
        else:
            logging.info("Starting a new run in %s at step 0", config.train_dir)
        if self.distribution.name != "default":
            logging.info("%s", self.distribution.describe(config.batch_size))

    def _build_input(self, config, dataset, images, labels):
        """The batches from the restored step on (the data order needs no checkpointing;
        each worker's pipeline makes its share of every global batch), the learning-rate
        schedule, and the compiled step."""
        start_step = int(self.step.numpy())

        def dataset_fn(input_context):
            return pipeline.train_dataset(dataset, config, images, labels, start_step,
                                          pipeline.Part.of(input_context))

        self.dataset = self.distribution.strategy.distribute_datasets_from_function(dataset_fn)
        self.steps_per_epoch = len(labels) / config.batch_size
        self.learning_rate = learning_rate_fn(config, self.steps_per_epoch)
        self._activations = keras.Model(
            self.model.inputs, [layer.output for layer in self.model.layers if layer.weights])
        self.train_steps = self._make_train_steps()

    def _make_train_steps(self):
        """The compiled ``train_steps(iterator, n)``: ``n`` steps in one call.

        Each call costs Python and function dispatch; running up to
        ``--steps_per_call`` steps in a loop inside the function saves most
        of it (a small model's step is short enough for it to matter). The loop
        never crosses a step at which something periodic is due (see
        ``actions.steps_to_run``). Returns the last step's losses and input batch.
        """
        model, optimizer, config = self.model, self.optimizer, self.config
        strategy = self.distribution.strategy
        trainable = model.trainable_variables
        decayed = self.decayed_weights

        def replica_step(images, labels):
            """On each replica, its slice of the global batch."""
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                # Sum over this slice / the global batch: summed over replicas, the mean.
                loss = tf.nn.compute_average_loss(
                    cross_entropy(labels, logits, config.label_smoothing),
                                                  global_batch_size=config.batch_size)
                total_loss = loss + tf.nn.scale_regularization_loss(
                    regularization_loss(decayed, config.l2_regularization))
            grads = tape.gradient(total_loss, trainable)
            # Keras all-reduces (sums) the gradients across replicas, then applies them.
            optimizer.apply_gradients(zip(grads, trainable))
            return loss, total_loss, images

        # XLA, if asked, compiles the per-replica computation; the iterator and
        # the cross-replica updates stay outside it.
        if config.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)

        def train_step(iterator):
            per_replica = strategy.run(replica_step, args=next(iterator))
            loss, total_loss = (strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                                for value in per_replica[:2])
            # The first replica's slice, for the summaries' images and activations.
            images = strategy.experimental_local_results(per_replica[2])[0]
            self._after_update(loss, total_loss)
            return loss, total_loss, images

        @tf.function
        def train_steps(iterator, n):
            outputs = train_step(iterator)
            for _ in tf.range(n - 1):
                outputs = train_step(iterator)
            return outputs

        return train_steps

    def _after_update(self, loss, total_loss):
        """In the compiled step, after the weights moved: the step count, Lookahead, the
        moving averages, the smoothed losses and the first non-finite step."""
        self.step.assign_add(1)
        if self.lookahead:
            self.lookahead.update()  # before the averages, which then see the pulled weights
        self.averages.update()
        t = tf.cast(self.step, tf.float32)
        decay = tf.minimum(LOSS_AVERAGE_DECAY, (1.0 + t) / (10.0 + t))
        self.loss_averages.assign(decay * self.loss_averages
                                  + (1.0 - decay) * tf.stack([loss, total_loss]))
        first_bad = tf.logical_and(tf.logical_not(tf.math.is_finite(total_loss)),
                                   tf.equal(self.nonfinite_step, 0))
        self.nonfinite_step.assign(tf.where(first_bad, self.step, self.nonfinite_step))

    def _make_agreement(self):
        """Multi-worker: an all-reduce that makes every worker see any worker's request.

        A worker that saved or stopped alone would leave the others waiting
        in their next collective, so a signal, a STOP file and a save due by
        the clock are acted on only once agreed, at the same step everywhere.
        """
        strategy = self.distribution.strategy

        @tf.function
        def agree(requests):
            def replica(requests):
                # A copy made on the replica's device: the all-reduce needs one.
                return tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, tf.identity(requests))
            return strategy.experimental_local_results(strategy.run(replica, (requests,)))[0]

        return agree

    def _make_summarize(self, writer):
        """The compiled ``summarize(step, loss, total_loss, images)``: losses, learning
        rate, weights, activations and a few inputs, as the tutorial wrote them.

        One graph call instead of a hundred eager ops, whose dispatch would
        take a visible share of a small model's training time.
        """
        layers = [layer for layer in self.model.layers if layer.weights]
        variables = self.model.trainable_variables

        @tf.function
        def summarize(step, loss, total_loss, images):
            averages = self.loss_averages.read_value()
            scalars = {"loss": loss, "total_loss": total_loss, "loss_average": averages[0],
                       "total_loss_average": averages[1],
                       "learning_rate": self.learning_rate(step)}
            histograms = {v.path: v.value for v in variables}
            for layer, activation in zip(layers, self._activations(images, training=False)):
                activation = tf.cast(activation, tf.float32)
                histograms[f"activations/{layer.name}"] = activation
                scalars[f"sparsity/{layer.name}"] = tf.math.zero_fraction(activation)
            writer.scalars(step, scalars)
            writer.histograms(step, histograms)
            writer.images(step, {"input_images": summaries.to_uint8(images[:SUMMARY_IMAGES])})

        return lambda step, *tensors: summarize(tf.constant(step, tf.int64), *tensors)

    def _check_finite(self):
        bad = int(self.nonfinite_step.numpy())
        if not bad:
            return
        saved = self.checkpointer.last_saved
        if saved is None:
            fix = ("no checkpoint was saved before it: start again (a new --train_dir, or this "
                   "one emptied) with a lower --learning_rate")
        else:
            fix = (f"the newest checkpoint, step {saved}, holds finite values: --resume "
                   "--learning_rate=LOWER continues from it")
        raise errors.UserError(f"the loss became NaN or infinite at step {bad}; stopped "
                               f"without saving it; {fix}")

    def _check_writes(self):
        """UserError if this trainer no longer holds its train dir's lock (see
        ``locks.Lock.check``): nothing may be written then."""
        if self._hold:
            self._hold.check()

    def _check_before_write(self):
        self._check_finite()
        self._check_writes()

    def _save(self, step):
        """Saves a checkpoint at ``step`` unless the loss went non-finite or the dir's lock
        is no longer this trainer's."""
        self._check_before_write()
        path = _write_checkpoint(self.manager, step)
        logging.info("Saved checkpoint %s", path)

    def _write_summaries(self, step, *outputs):
        self._check_writes()
        self._summarize(step, *outputs)

    def run(self, actions=()):
        """Trains until ``max_steps``, saves, writes DONE; returns the final step.

        ``actions``: more to do between calls of the step, after the trainer's own
        (``trainkit.actions``); in a multi-worker run, one that stops must decide alike
        on every worker. A signal ends the run saved, without DONE, by
        ``errors.Interrupted`` (exit 0 for SIGTERM, 130 for SIGINT; ``actions.Checkpointer``).
        """
        try:
            return self._run(_check_actions(actions))
        except tf.errors.ResourceExhaustedError as e:
            raise errors.UserError(
                f"out of memory at --batch_size={self.config.batch_size} "
                f"({errors.first_line(e)}); lower --batch_size and start again, or --resume "
                "with it (the checkpoints saved so far are intact)") from None
        finally:
            self.distribution.close()
            if self._hold:
                self._hold.release()

    def _actions(self, start):
        """The trainer's own actions for a run from step ``start``, the saves last."""
        config, chief = self.config, self.distribution.is_chief
        if chief and self._writer is None:
            self._writer = summaries.Writer(fs.join(config.train_dir, rundir.TRAIN_RUN))
            self._summarize = self._make_summarize(self._writer)
            if self.validator:
                self._validation_writer = summaries.Writer(
                    fs.join(config.train_dir, rundir.VALIDATION_RUN))
        progress = actions.LogProgress(config.log_frequency, start, config,
                                       self.steps_per_epoch, self._check_finite)
        own = [progress]
        if chief:
            own.append(actions.WriteSummaries(config.save_summaries_steps, start,
                                              self._write_summaries))
        if self.validator:
            own.append(actions.Validate(config.validate_every_steps, start, self.validator,
                                        self._validation_writer, progress,
                                        self._check_before_write))
        return own

    def _run(self, extra_actions):
        config = self.config
        start, started = int(self.step.numpy()), time.monotonic()
        self.checkpointer = actions.Checkpointer(
            self._save, config.save_checkpoint_steps, config.save_checkpoint_secs, start,
            bool(self.resumed_from), fs.join(config.train_dir, rundir.STOP_FILE), self._agree)
        run_actions = self._actions(start) + extra_actions + [self.checkpointer]
        if self._iterator is None:
            self._iterator = iter(self.dataset)
        current, stop, outputs = start, None, None
        with self.checkpointer.signals:
            while current < config.max_steps and stop is None:
                n = actions.steps_to_run(current, config.steps_per_call, config.max_steps,
                                         run_actions)
                outputs = self.train_steps(self._iterator, tf.constant(n, tf.int64))
                current += n
                for action in run_actions:
                    stop = actions.more_urgent(stop, action(current, outputs))
            # Still inside: a signal during the final save only marks it received.
            self.checkpointer.final(current)
        return self._end(current, stop, time.monotonic() - started, outputs)

    def _end(self, current, stop, seconds, outputs):
        """The run's end at step ``current``: Interrupted for a signal, else DONE."""
        for summary_writer in (self._writer, self._validation_writer):
            if summary_writer:
                summary_writer.flush()
        if stop and stop.signal:
            raise errors.Interrupted(
                f"Stopped by {stop.signal} at step {current}; the checkpoint for step "
                f"{current} is saved in {self.config.train_dir}: continue with --resume",
                exit_code=130 if stop.signal == "SIGINT" else 0)
        if stop:
            logging.info("Stopping early at step %d: %s", current, stop.reason)
        if self.distribution.is_chief:
            self._check_writes()
            fs.write_atomic(fs.join(self.config.train_dir, rundir.DONE_FILE), f"{current}\n")
        logging.info("%s", self._summary(current, seconds, outputs))
        return current

    def close(self):
        """Closes the summary log (a Trainer that is not run again)."""
        for summary_writer in (self._writer, self._validation_writer):
            if summary_writer:
                summary_writer.close()
        self._writer = self._validation_writer = self._summarize = None

    def _summary(self, step, seconds, outputs):
        """The run's last line: where it ended, in how long, its loss and best validation."""
        line = f"Training finished at step {step} after {actions.duration(seconds)} of training"
        if outputs is not None:
            line += f", final loss {float(outputs[0]):.4f}"
        best = self.validator.best.value if self.validator else None
        if best:
            line += (f"; best validation precision @ 1 {100 * best['precision_at_1']:.2f}% at "
                     f"step {best['step']} "
                     f"({fs.join(self.config.train_dir, best['checkpoint'])})")
        if self.distribution.is_chief:
            return line + f"; wrote {fs.join(self.config.train_dir, rundir.DONE_FILE)}"
        return line + f" ({self.distribution.task})"


def train(config, dataset, distribution=None, actions=(), hold=None):
    """The whole trainer: builds a ``Trainer`` and runs it with ``actions`` beside its own
    (see ``Trainer.run``); returns the final step. ``hold``: the train dir's lock, if the
    caller took it (``locks.hold``); else the trainer takes it."""
    trainer = Trainer(config, dataset, distribution, hold)
    try:
        return trainer.run(actions)
    finally:
        trainer.close()
