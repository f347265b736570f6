"""From a checkpoint to a classifier of raw images, in memory or as a SavedModel.

``Classifier`` wraps a model holding the *averaged* (shadow) weights with
the dataset's evaluation preprocessing and the evaluator's logits (for the
CIFAR-10 ``resnet``, its test-time augmentation), so it takes uint8 images
of the dataset's raw shape (``input_lib.RAW_SHAPE``: [N, 32, 32, 3] for
CIFAR-10, [N, 28, 28, 1] for MNIST) and gives what the evaluator would.

``save`` writes it as a SavedModel (signature ``serving_default``: uint8
``images`` -> float ``logits`` and ``probabilities``; a ``class_names``
function; ``classifier.json`` beside ``saved_model.pb`` says which
checkpoint and step it holds). The folder is written next to its place and
renamed into it, so a reader sees the old export or the new one, never half
of one. ``python -m DATASET.export`` and the evaluator's ``best/saved_model``
use it; ``python -m DATASET.predict`` uses the ``Classifier`` directly or
loads the SavedModel.
"""

import json
import os
import shutil

import tensorflow as tf
from absl import logging

from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import errors
from trainkit import metrics

INFO_FILE = "classifier.json"
EVAL_DIR = "eval"  # the evaluator's default eval dir, under the train dir
BEST_DIR = "best"  # where the evaluator keeps its best checkpoint, under the eval dir
SAVED_MODEL_DIR = "saved_model"


class Classifier(tf.Module):
    """``classify(images)``: uint8 raw images -> {"logits", "probabilities"}."""

    def __init__(self, model, train_config, input_lib, model_lib):
        super().__init__(name="classifier")
        self.model = model
        names = [str(name) for name in input_lib.CLASS_NAMES]
        self.class_name_list = names
        logits_fn = metrics.eval_logits_fn(model_lib, train_config)
        preprocess = input_lib.eval_preprocess

        @tf.function(input_signature=[
            tf.TensorSpec([None, *input_lib.RAW_SHAPE], tf.uint8, name="images")])
        def classify(images):
            inputs = preprocess(images, train_config)
            logits = logits_fn(model, inputs) if logits_fn else model(inputs, training=False)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

        @tf.function(input_signature=[])
        def class_names():
            return tf.constant(names)

        self.classify = classify
        self.class_names = class_names


def default_checkpoint(train_dir):
    """The evaluator's best checkpoint (``TRAIN_DIR/eval/best``) if there is one, else
    the newest in ``train_dir``; raises ``UserError`` if there is neither."""
    best_dir = os.path.join(train_dir, EVAL_DIR, BEST_DIR)
    best = checkpoints.latest(best_dir)
    if best:
        return best
    latest = checkpoints.latest(train_dir)
    if latest:
        return latest
    raise errors.UserError(
        f"no checkpoint in {train_dir} (nor an evaluator's best in {best_dir}); "
        "train first, or pass --checkpoint or --saved_model")


def load_classifier(train_dir, input_lib, model_lib, checkpoint=None):
    """A ``Classifier`` with the shadow weights of ``checkpoint`` (default:
    ``default_checkpoint``); returns (classifier, checkpoint path, train config)."""
    train_config = config_lib.read_train_config(train_dir)
    path = checkpoint or default_checkpoint(train_dir)
    model = model_lib.build_model(train_config)
    try:
        checkpoints.restore_averaged(path, model)
    except (tf.errors.OpError, ValueError, AssertionError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise errors.UserError(f"cannot read checkpoint {path}: {message}; "
                               "pick another with --checkpoint") from None
    return Classifier(model, train_config, input_lib, model_lib), path, train_config


def save(classifier, directory, info):
    """Writes ``classifier`` as a SavedModel in ``directory`` (replacing what was there
    only once the new one is complete) with ``info`` in classifier.json."""
    directory = os.path.normpath(directory)
    parent = os.path.dirname(directory) or "."
    tmp = os.path.join(parent, f".{os.path.basename(directory)}.tmp-{os.getpid()}")
    old = os.path.join(parent, f".{os.path.basename(directory)}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(parent, exist_ok=True)
        tf.saved_model.save(classifier, tmp, signatures={"serving_default": classifier.classify})
        with open(os.path.join(tmp, INFO_FILE), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
        if os.path.exists(directory):
            os.replace(directory, old)
        os.replace(tmp, directory)
    except (OSError, tf.errors.OpError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.exists(old) and not os.path.exists(directory):
            os.replace(old, directory)
        message = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
        raise errors.UserError(f"cannot write the SavedModel to {directory}: {message}; "
                               "free space or choose another --export_dir") from None
    shutil.rmtree(old, ignore_errors=True)
    return directory


def info_for(path, train_config, classifier, input_lib):
    return {"checkpoint": os.path.abspath(path), "step": checkpoints.step_of(path),
            "dataset": train_config.dataset, "model": train_config.model,
            "class_names": classifier.class_name_list,
            "input": {"dtype": "uint8", "shape": [None, *input_lib.RAW_SHAPE]}}


def export(train_dir, input_lib, model_lib, checkpoint=None, export_dir=None):
    """``python -m DATASET.export``: the checkpoint's shadow weights as a SavedModel."""
    classifier, path, train_config = load_classifier(train_dir, input_lib, model_lib,
                                                     checkpoint)
    export_dir = export_dir or os.path.join(train_dir, "export")
    save(classifier, export_dir, info_for(path, train_config, classifier, input_lib))
    logging.info("Exported %s (step %s, averaged weights) to %s", path,
                 checkpoints.step_of(path), export_dir)
    return export_dir


class SavedClassifier:
    """A SavedModel written by ``save``, with the ``Classifier``'s interface."""

    def __init__(self, directory):
        try:
            self._loaded = tf.saved_model.load(directory)
        except (OSError, tf.errors.OpError, ValueError) as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise errors.UserError(f"cannot load a SavedModel from {directory}: {message}; "
                                   "export one with python -m DATASET.export") from None
        self.classify = self._loaded.signatures["serving_default"]
        self.class_name_list = [n.decode() for n in self._loaded.class_names().numpy()]
        shape = self.classify.structured_input_signature[1]["images"].shape
        self.raw_shape = tuple(shape[1:])
