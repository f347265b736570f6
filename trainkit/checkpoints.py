"""What a checkpoint holds, how it is saved, found and restored.

A checkpoint ``TRAIN_DIR/ckpt-STEP`` holds, under these keys:

* ``step``: the global step (int64);
* ``model``: every model variable, trainable or not, keyed stably (see
  ``model_variables``), because a Keras 3 model handed to
  ``tf.train.Checkpoint`` directly does not save its non-trainable state;
* ``optimizer``: the Keras optimizer with its slots;
* ``ema``: the moving-average shadow of every trainable variable, under the
  same keys as in ``model``;
* ``lookahead`` (with ``--lookahead_every_steps``): the slow copy of every
  float model variable (see ``trainkit.lookahead``).

The evaluator restores ``ema`` straight into a fresh model's trainable
variables (and ``model`` into its non-trainable ones): no weight swap.
"""

import os
import re

import tensorflow as tf
from absl import logging

from trainkit import errors

CHECKPOINT_PREFIX = "ckpt"
_STEP_RE = re.compile(r"ckpt-(\d+)$")


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
    return tf.train.Checkpoint(step=step, model=_tf_vars(model_variables(model)),
                               optimizer=optimizer, ema=shadows, **extra)


def step_of(path):
    """The global step encoded in a checkpoint path ``.../ckpt-STEP``."""
    match = _STEP_RE.search(path)
    return int(match.group(1)) if match else None


def latest(train_dir):
    """Path prefix of the newest checkpoint in ``train_dir``, or None."""
    if not os.path.isdir(train_dir):
        return None
    return tf.train.latest_checkpoint(train_dir)


def write_state(directory, name):
    """Writes the ``checkpoint`` index file naming ``name`` as the one checkpoint in ``directory``.

    The same text format CheckpointManager writes, so ``tf.train.latest_checkpoint``
    finds it; the name is relative, so the folder can be moved.
    """
    path = os.path.join(directory, "checkpoint")
    with open(path + ".tmp", "w") as f:
        f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    os.replace(path + ".tmp", path)


def manager(checkpoint, train_dir, max_to_keep):
    return tf.train.CheckpointManager(checkpoint, train_dir, max_to_keep=max_to_keep,
                                      checkpoint_name=CHECKPOINT_PREFIX)


def restore_for_training(checkpoint, train_dir):
    """Restores the newest readable checkpoint of ``train_dir``; returns its path.

    Everything must come back (optimizer slots exist already: the optimizer
    is built first). If the newest is unreadable (a kill -9 mid-save on a
    file system without atomic renames, a truncated file), the one before is
    used, with a warning naming both; UserError if none can be read.
    """
    state = tf.train.get_checkpoint_state(train_dir)
    paths = [state.model_checkpoint_path] if state else []
    paths += [p for p in reversed(state.all_model_checkpoint_paths if state else [])
              if p not in paths]
    failures = []
    for path in paths:
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 -- a corrupt file can fail in any reader layer
            text = str(e).strip()
            failures.append(f"{path} ({text.splitlines()[0] if text else type(e).__name__})")
            continue
        if failures:
            logging.warning("Checkpoint %s is unreadable; resuming from the one before, %s",
                            "; ".join(failures), path)
        return path
    raise errors.UserError(
        f"no readable checkpoint in {train_dir}: " + ("; ".join(failures) or "none listed")
        + "; start a new run with a new --train_dir")


def restore_averaged(path, model):
    """Loads the shadow (averaged) weights of checkpoint ``path`` into ``model``.

    Trainable variables get the ``ema`` values; non-trainable ones (batch-norm
    statistics) get their saved values from ``model``. Raises
    ``tf.errors.OpError`` if the checkpoint is unreadable.
    """
    trainable = model_variables(model, trainable_only=True)
    others = {k: v for k, v in model_variables(model).items() if k not in trainable}
    checkpoint = tf.train.Checkpoint(ema=_tf_vars(trainable), model=_tf_vars(others))
    checkpoint.read(path).assert_existing_objects_matched().expect_partial()
