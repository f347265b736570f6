"""Trains a CIFAR-10 model: ``python -m cifar10.train --train_dir=runs/c1``.

``--preset=tutorial`` (default) is the classic cifar10_train: batch 128,
plain SGD at 0.1 decayed x0.1 every 350 epochs, moving-average decay
0.9999, 1,000,000 steps: days on a CPU. ``--preset=short`` is for machines
without a GPU: SGD with momentum 0.9 and a cosine decay of the learning rate
from 0.02 to 0 over 40 epochs (15,625 steps). ``--preset=airbench`` trains
the wider fast network with airbench's recipe; ``--preset=airbench94`` is
Keller Jordan's airbench94 as it is. What each reaches, and in how long:
docs/results.md.
"""

import cifar10
from trainkit import flags as tk_flags

tk_flags.define_train_flags(cifar10.SPEC)


def run():
    tk_flags.run_trainer(cifar10.SPEC)


if __name__ == "__main__":
    run()
