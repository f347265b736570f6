"""Trains an MNIST model: ``python -m mnist.train --train_dir=runs/m1``.

Defaults follow the classic convolutional MNIST tutorial: momentum 0.9,
learning rate 0.01 decayed x0.95 every epoch, L2 5e-4 on the dense layers,
batch 64; moving-average decay 0.99. ``--preset=fast`` trains larger
batches on a cosine decay for fewer steps; ``--preset=one_epoch`` sees each
training image once. What each reaches, and in how long: docs/results.md.
"""

import mnist
from trainkit import flags as tk_flags

tk_flags.define_train_flags(mnist.SPEC)


def run():
    tk_flags.run_trainer(mnist.SPEC)


if __name__ == "__main__":
    run()
