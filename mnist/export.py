"""Exports a MNIST run as a SavedModel: ``python -m mnist.export --train_dir=runs/X``.

The SavedModel holds the moving-average (shadow) weights of the evaluator's
best checkpoint (else the newest; ``--checkpoint`` picks one) and the
evaluation preprocessing, so it takes raw uint8 images [N, 28, 28, 1] and
returns ``logits`` and ``probabilities``; see ``trainkit/export.py``.
"""

import mnist
from trainkit import flags as tk_flags

tk_flags.define_export_flags(mnist.SPEC)


def run():
    tk_flags.run_export(mnist.SPEC)


if __name__ == "__main__":
    run()
