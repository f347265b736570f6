"""Classifies image files with an images run: ``python -m images.predict --train_dir=runs/X a.jpg``.

One line per file with the ``--top_k`` classes and their probabilities, or
``--json``; ``--saved_model`` uses an export instead. Each file is brought
to the run's ``--image_size`` as in training: ``trainkit/predict.py``.
"""

import images
from trainkit import flags as tk_flags

tk_flags.define_predict_flags(images.SPEC)


def run():
    tk_flags.run_predict(images.SPEC)


if __name__ == "__main__":
    run()
