"""What a checkpoint holds, how it is saved, found and restored.

Keys: ``step``, ``model`` (every model variable, keyed stably), ``optimizer``,
``ema`` (the shadows, keyed like ``model``) and, with Lookahead,
``lookahead`` (docs/code-tour.md, "What a checkpoint holds").
"""

import re

import tensorflow as tf
from absl import logging

from trainkit import errors
from trainkit import rundir

_STEP_RE = re.compile(rf"{rundir.CHECKPOINT_PREFIX}-(\d+)$")


def model_variables(model, trainable_only=False):
    """Returns ``{key: keras.Variable}`` with keys stable across processes.

    Variables of explicitly named layers are keyed by their path
    (``cnn.conv1.kernel``). Keras-internal state outside the model's scope
    (the dropout seed generator, named ``seed_generator_N`` with a process
    counter) is keyed by its position instead.
    """
    keyed = {}
    for index, var in enumerate(model.variables):
        if trainable_only and not var.trainable:
            continue
        if var.path.startswith(model.name + "/"):
            key = var.path.replace("/", ".")
        else:
            key = f"{index:03d}.{var.name}"
        if key in keyed:
            raise ValueError(f"two model variables share the checkpoint key {key!r}; "
                             "give every layer an explicit unique name")
        keyed[key] = var
    return keyed


def _tf_vars(keyed):
    return {key: var.value for key, var in keyed.items()}


def training_checkpoint(step, model, optimizer, shadows, slow=None):
    """The trainer's checkpoint object (see the module docstring)."""
    extra = {"lookahead": slow} if slow else {}
    checkpoint = tf.train.Checkpoint(step=step, model=_tf_vars(model_variables(model)),
                                     optimizer=optimizer, ema=shadows, **extra)
    # restore() makes the checkpoint's save counter and then expects it in the file:
    # made now, every write carries it (Manager.save writes without counting).
    checkpoint.save_counter  # noqa: B018
    return checkpoint


def step_of(path):
    """The global step encoded in a checkpoint path ``.../ckpt-STEP``."""
    match = _STEP_RE.search(path)
    return int(match.group(1)) if match else None


def latest(train_dir):
    """Path prefix of the newest checkpoint in ``train_dir`` (found by its files), or None."""
    return rundir.latest_checkpoint(train_dir)


class Manager:
    """Saves ``checkpoint`` as ``DIR/ckpt-STEP`` and keeps the newest ``max_to_keep``.

    TensorFlow's CheckpointManager finds the checkpoints to delete with a
    glob of the folder's path, so a folder named with ``*`` or ``?`` could
    lose another folder's files and one with ``[`` kept all of its own; this
    lists the folder literally. It writes the same ``checkpoint`` index.
    """

    def __init__(self, checkpoint, directory, max_to_keep):
        self.checkpoint = checkpoint
        self.directory = directory
        self.max_to_keep = max_to_keep

    def save(self, step):
        """Writes the checkpoint of ``step``, then drops the oldest beyond ``max_to_keep``;
        returns its path. A save writes to ``ckpt-STEP_temp/`` and renames the files
        into place when complete, so a kill mid-save leaves no half checkpoint."""
        path = self.checkpoint.write(rundir.checkpoint_path(self.directory, step))
        # Newer ones can only be unreadable leftovers a resume fell back from: they are
        # neither counted nor deleted here (the run's own save at their step replaces them).
        older = [s for s in rundir.checkpoint_steps(self.directory) if s < step]
        others = self.max_to_keep - 1
        kept = older[-others:] if others else []
        rundir.write_index(self.directory, [rundir.checkpoint_path(self.directory, s)
                                            for s in kept + [step]])
        for old in older[:len(older) - len(kept)]:
            rundir.remove_checkpoint(rundir.checkpoint_path(self.directory, old))
        return path


def restore_for_training(checkpoint, train_dir):
    """Restores the newest readable checkpoint of ``train_dir``; returns its path.

    Checkpoints are found by their files, whatever the ``checkpoint`` index
    says (it may be gone or garbled). Everything must come back (optimizer
    slots exist already: the optimizer is built first). If the newest is
    unreadable (a kill -9 mid-save on a file system without atomic renames,
    a truncated file), the one before is used, with a warning naming both;
    UserError if none can be read.
    """
    paths = [rundir.checkpoint_path(train_dir, step)
             for step in reversed(rundir.checkpoint_steps(train_dir))]

    def restore(path):
        with rundir.glob_safe(path, parent=True) as alias:  # * ? [ read literally
            checkpoint.restore(alias).assert_existing_objects_matched()

    path, failures = first_readable(paths, restore)
    if path is None:
        raise errors.UserError(
            f"no readable checkpoint in {train_dir}: " + ("; ".join(failures) or "none found")
            + "; start a new run with a new --train_dir")
    if failures:
        logging.warning("Checkpoint %s is unreadable; resuming from the one before, %s",
                        "; ".join(failures), path)
    return path


def first_readable(paths, restore):
    """Calls ``restore(path)`` for each of ``paths`` until one succeeds; returns (that
    path or None, ["PATH (why)" for each that failed before])."""
    failures = []
    for path in paths:
        try:
            restore(path)
        except Exception as e:  # noqa: BLE001 -- a corrupt file can fail in any reader layer
            failures.append(f"{path} ({errors.first_line(e)})")
            continue
        return path, failures
    return None, failures


def restore_averaged(path, model):
    """Loads the shadow (averaged) weights of checkpoint ``path`` into ``model``.

    Trainable variables get the ``ema`` values; non-trainable ones (batch-norm
    statistics) get their saved values from ``model``. Raises
    ``tf.errors.OpError`` if the checkpoint is unreadable.
    """
    trainable = model_variables(model, trainable_only=True)
    others = {k: v for k, v in model_variables(model).items() if k not in trainable}
    checkpoint = tf.train.Checkpoint(ema=_tf_vars(trainable), model=_tf_vars(others))
    with rundir.glob_safe(path, parent=True) as alias:
        checkpoint.read(alias).assert_existing_objects_matched().expect_partial()
