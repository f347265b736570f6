"""Trains a classifier of your own pictures: ``python -m images.train --data_dir=DIR``.

``DIR`` holds ``train/CLASS/`` and ``test/CLASS/`` folders of pictures (PNG,
JPEG, GIF or BMP), or the class folders themselves with ``--test_split``
holding out part of each as the test split. ``--validation_split`` (10% by
default) of each class's training pictures is held out as the validation
split the evaluator chooses the best checkpoint on. The defaults are
CIFAR-10's ``--preset=short`` on ``--image_size=32``: set ``--max_steps`` for
your data, ``--model=airbench94`` for the fast network.
"""

import images
from trainkit import flags as tk_flags

tk_flags.define_train_flags(images.SPEC)


def run():
    tk_flags.run_trainer(images.SPEC)


if __name__ == "__main__":
    run()
