"""Exports an images run as a SavedModel: ``python -m images.export --train_dir=runs/X``.

The SavedModel holds the moving-average weights of the evaluator's best
checkpoint (else the newest; ``--checkpoint`` picks one), the preprocessing
and the run's class names, so it takes raw uint8 images [N, S, S, 3]
(``S``: the run's ``--image_size``); see ``trainkit/export.py``.
"""

import images
from trainkit import flags as tk_flags

tk_flags.define_export_flags(images.SPEC)


def run():
    tk_flags.run_export(images.SPEC)


if __name__ == "__main__":
    run()
