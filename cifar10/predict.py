"""Classifies image files with a CIFAR-10 run: ``python -m cifar10.predict --train_dir=runs/X a.png``.

One line per file with the ``--top_k`` classes and their probabilities,
or ``--json``; ``--saved_model`` uses an export instead of a checkpoint.
How files are cropped and resized: ``trainkit/predict.py``.
"""

import cifar10
from trainkit import flags as tk_flags

tk_flags.define_predict_flags(cifar10.SPEC)


def run():
    tk_flags.run_predict(cifar10.SPEC)


if __name__ == "__main__":
    run()
