"""From a checkpoint to a classifier of raw images, in memory or as a SavedModel.

``Classifier`` holds the averaged weights with the evaluation preprocessing
and test-time augmentation, so it takes uint8 images of ``Dataset.raw_shape``;
``save`` writes it as a SavedModel that standard serving runs as it is.
"""

import os
import tempfile

import tensorflow as tf
from absl import logging

from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import errors
from trainkit import fs
from trainkit import metrics
from trainkit import rundir

FORMAT = rundir.EXPORT_FORMAT


class Classifier(tf.Module):
    """``classify(images)``: uint8 raw images -> {"classes", "class_names", "probabilities",
    "logits"}."""

    def __init__(self, keras_model, train_config, dataset):
        super().__init__(name="classifier")
        self.model = keras_model
        # Keras 3 variables are not tf.Variables: tracked only through the Keras model,
        # they reach the SavedModel's object graph but not the variables a session-based
        # loader (saved_model_cli, TensorFlow Serving) restores. Their tf.Variables, listed
        # here, are.
        self.model_variables = [variable.value for variable in keras_model.variables]
        names = [str(name) for name in dataset.classes(train_config)]
        self.class_name_list = names
        self.raw_shape = dataset.shape(train_config)
        model = dataset.model(train_config)
        logits_fn = metrics.eval_logits_fn(model, train_config)

        @tf.function(input_signature=[
            tf.TensorSpec([None, *self.raw_shape], tf.uint8, name="images")])
        def classify(images):
            inputs = model.eval_preprocess(images, train_config)
            logits = tf.cast(logits_fn(keras_model, inputs) if logits_fn
                             else keras_model(inputs, training=False), tf.float32)
            classes = tf.argmax(logits, axis=-1, output_type=tf.int32)
            return {"classes": classes, "class_names": tf.gather(tf.constant(names), classes),
                    "probabilities": tf.nn.softmax(logits), "logits": logits}

        @tf.function(input_signature=[])
        def class_names():
            return tf.constant(names)

        self.classify = classify
        self.class_names = class_names


def candidate_checkpoints(train_dir, run_id):
    """The checkpoints a classifier of ``train_dir`` is made from, best first: the
    evaluator's best (``TRAIN_DIR/eval/best``) if it belongs to this run and was chosen on
    validation, then the run's own checkpoints, newest first (a run without a validation
    split has no best: its newest). UserError if there are none."""
    best_dir = fs.join(train_dir, rundir.EVAL_DIR, rundir.BEST_DIR)
    found = []
    best = rundir.latest_checkpoint(best_dir)
    if best:
        record = rundir.read_best(fs.join(best_dir, rundir.BEST_FILE)) or {}
        if record.get("run_id", "") != run_id:
            logging.warning("%s holds the best checkpoint of another run (%s), not of this one "
                            "(%s); using this run's own checkpoints", best_dir,
                            record.get("run_id") or "a run without an id",
                            run_id or "a run without an id")
        elif record.get("selected_on") != "validation":
            logging.warning("%s holds a best checkpoint chosen on the test set (by an earlier "
                            "version); using the newest checkpoint instead (start the "
                            "evaluator again to choose one on validation)", best_dir)
        else:
            found.append(best)
    found += [rundir.checkpoint_path(train_dir, step)
              for step in reversed(rundir.checkpoint_steps(train_dir))]
    if not found:
        raise errors.UserError(
            f"no checkpoint in {train_dir} (nor an evaluator's best in {best_dir}); "
            "train first, or pass --checkpoint or --saved_model")
    return found


def load_classifier(train_dir, dataset, checkpoint=None):
    """A ``Classifier`` with the shadow weights of ``checkpoint`` (default: the first
    readable of ``candidate_checkpoints``, saying so when it passes one over); returns
    (classifier, checkpoint path, train config)."""
    train_config = config_lib.check_run(train_dir, dataset.spec, "export")
    model = dataset.build(train_config)
    paths = [checkpoint] if checkpoint else candidate_checkpoints(train_dir,
                                                                  train_config.run_id)
    path, failures = checkpoints.first_readable(
        paths, lambda path: checkpoints.restore_averaged(path, model))
    if path is None and checkpoint:
        raise errors.UserError(f"cannot read checkpoint {failures[0]}; "
                               "pick another with --checkpoint")
    if path is None:
        raise errors.UserError(f"no readable checkpoint in {train_dir}: {'; '.join(failures)}; "
                               "pick one with --checkpoint")
    if failures:
        logging.warning("Checkpoint %s is unreadable; using %s instead", "; ".join(failures),
                        path)
    return Classifier(model, train_config, dataset), path, train_config


def save(classifier, directory, info):
    """Writes ``classifier`` as a SavedModel in ``directory`` (replacing what was there
    only once the new one is complete) with ``info`` in classifier.json.

    The caller has checked that ``directory`` is absent, empty or a previous
    export (``rundir.check_export_dir``). Raises OSError or ``tf.errors.OpError``,
    with the previous export still in place. On a filesystem with a scheme the
    folders move file by file (``trainkit.fs.move``).
    """
    directory = fs.normpath(directory)
    parent = os.path.dirname(directory) or "."
    tmp = fs.join(parent, f".{os.path.basename(directory)}.tmp-{os.getpid()}")
    old = fs.join(parent, f".{os.path.basename(directory)}.old-{os.getpid()}")
    fs.makedirs(parent)
    try:
        with rundir.glob_safe(parent) as safe_parent, tempfile.TemporaryDirectory() as names_dir:
            names_file = os.path.join(names_dir, rundir.EXPORT_ASSET)
            with open(names_file, "w", encoding="utf-8") as f:
                f.write("".join(f"{name}\n" for name in classifier.class_name_list))
            # Copied into the export's assets/ as it is saved.
            classifier.class_names_file = tf.saved_model.Asset(names_file)
            tf.saved_model.save(classifier, fs.join(safe_parent, os.path.basename(tmp)),
                                signatures={"serving_default": classifier.classify})
        rundir.write_json(fs.join(tmp, rundir.EXPORT_INFO_FILE), dict(info, format=FORMAT))
        if fs.exists(directory):
            fs.move(directory, old)
        fs.move(tmp, directory)
    except BaseException:
        fs.rmtree(tmp)
        if fs.exists(old) and not fs.exists(directory):
            fs.move(old, directory)
        raise
    fs.rmtree(old)
    return directory


def info_for(path, train_config, classifier):
    return {"checkpoint": fs.abspath(path),
            "step": checkpoints.step_of(path),
            "dataset": train_config.dataset, "model": train_config.model,
            "class_names": classifier.class_name_list,
            "input": {"dtype": "uint8", "shape": [None, *classifier.raw_shape]}}


def export(train_dir, dataset, checkpoint=None, export_dir=None):
    """``python -m DATASET.export``: the checkpoint's shadow weights as a SavedModel."""
    export_dir = export_dir or fs.join(train_dir, rundir.EXPORT_DIR)
    train_config = config_lib.read_train_config(train_dir)
    rundir.check_export_dir(export_dir, train_dir, train_config.data_dir)
    classifier, path, train_config = load_classifier(train_dir, dataset, checkpoint)
    try:
        save(classifier, export_dir, info_for(path, train_config, classifier))
    except (OSError, tf.errors.OpError) as e:
        raise rundir.unwritable(export_dir, e, "export dir", "--export_dir") from None
    logging.info("Exported %s (step %s, averaged weights) to %s", path,
                 checkpoints.step_of(path), export_dir)
    return export_dir


class SavedClassifier:
    """A SavedModel written by ``save``, with the ``Classifier``'s interface."""

    def __init__(self, directory, dataset=None):
        rundir.check_saved_model(directory, dataset)
        how = "export one with python -m DATASET.export"
        try:
            with rundir.glob_safe(directory) as alias:
                self._loaded = tf.saved_model.load(alias)
            self.classify = self._loaded.signatures["serving_default"]
            self.class_name_list = [n.decode() for n in self._loaded.class_names().numpy()]
            shape = self.classify.structured_input_signature[1]["images"].shape
        except (OSError, tf.errors.OpError, ValueError, KeyError, AttributeError,
                TypeError) as e:
            raise errors.UserError(f"cannot load the SavedModel in {directory}: "
                                   f"{errors.first_line(e)}; {how}") from None
        self.raw_shape = tuple(shape[1:])
