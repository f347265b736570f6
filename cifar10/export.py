"""Exports a CIFAR-10 run as a SavedModel: ``python -m cifar10.export --train_dir=runs/X``.

The SavedModel holds the moving-average (shadow) weights of the evaluator's
best checkpoint (else the newest; ``--checkpoint`` picks one) and the
evaluation preprocessing, so it takes raw uint8 images [N, 32, 32, 3] and
returns ``logits`` and ``probabilities``; see ``trainkit/export.py``.
"""

import cifar10
from trainkit import flags as tk_flags

tk_flags.define_export_flags(cifar10.SPEC)


def run():
    tk_flags.run_export(cifar10.SPEC)


if __name__ == "__main__":
    run()
