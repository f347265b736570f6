"""Scoring a model on a dataset: precision @ 1, loss and the confusion matrix.

Shared by the evaluator process and the trainer's in-run validation, so both
count the same way: every example of the dataset once, the last smaller
batch included.
"""

import numpy as np
import tensorflow as tf


class Scorer:
    """Scores ``model`` on batches of ``(images, labels)``.

    ``logits_fn(model, images)``, if given, computes the logits instead of
    ``model(images)`` (e.g. a test-time flip; see ``eval_logits_fn``).
    """

    def __init__(self, model, num_classes, logits_fn=None):
        self.num_classes = num_classes

        @tf.function
        def step(images, labels):
            logits = (logits_fn(model, images) if logits_fn
                      else model(images, training=False))
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            predictions = tf.argmax(logits, axis=1, output_type=labels.dtype)
            confusion = tf.math.confusion_matrix(labels, predictions, num_classes,
                                                 dtype=tf.int64)
            confidence = tf.reduce_max(tf.nn.softmax(logits), axis=1)
            return tf.reduce_sum(losses), confusion, predictions, confidence

        self._step = step

    def score(self, dataset, keep_misclassified=0):
        """A dict: precision_at_1, loss, num_examples, confusion (rows: true class).

        With ``keep_misclassified=N`` it also returns up to N misclassified
        examples as ``(image, true label, predicted label, its probability)``.
        """
        confusion = np.zeros([self.num_classes, self.num_classes], np.int64)
        loss_sum = 0.0
        misclassified = []
        for images, labels in dataset:
            loss, batch_confusion, predictions, confidence = self._step(images, labels)
            loss_sum += float(loss)
            confusion += batch_confusion.numpy()
            if len(misclassified) < keep_misclassified:
                wrong = np.flatnonzero(predictions.numpy() != labels.numpy())
                for i in wrong[:keep_misclassified - len(misclassified)]:
                    misclassified.append((images[i].numpy(), int(labels[i]), int(predictions[i]),
                                          float(confidence[i])))
        count = int(confusion.sum())
        correct = int(np.trace(confusion))
        return {"precision_at_1": correct / count if count else 0.0,
                "loss": loss_sum / count if count else 0.0,
                "num_examples": count, "confusion": confusion,
                "misclassified": misclassified}


def eval_logits_fn(model, config):
    """``model``'s (a ``trainkit.dataset.Model``) ``eval_logits`` as a ``logits_fn``, or
    None if it has none (the network's own logits are scored)."""
    if model.eval_logits is None:
        return None
    return lambda keras_model, images: model.eval_logits(keras_model, images, config)


def per_class(confusion):
    """Per-class precision (right among predicted as k) and recall (right among true k)."""
    confusion = np.asarray(confusion, np.float64)
    diagonal = np.diag(confusion)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(confusion.sum(axis=0) > 0, diagonal / confusion.sum(axis=0), 0.0)
        recall = np.where(confusion.sum(axis=1) > 0, diagonal / confusion.sum(axis=1), 0.0)
    return precision, recall
