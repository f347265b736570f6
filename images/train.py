"""Trains a classifier of your own pictures: ``python -m images.train --data_dir=DIR``.

``DIR`` holds one folder per class (see ``images/__init__.py``). The
defaults are CIFAR-10's ``--preset=short`` on ``--image_size=32``: set
``--max_steps`` for your data, ``--model=airbench94`` for the fast network.
"""

import images
from trainkit import flags as tk_flags

tk_flags.define_train_flags(images.SPEC)


def run():
    tk_flags.run_trainer(images.SPEC)


if __name__ == "__main__":
    run()
