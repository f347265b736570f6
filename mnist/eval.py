"""Evaluates an MNIST run's checkpoints: ``python -m mnist.eval --train_dir=runs/m1``.

Polls the train dir every 5 s (as the classic mnist_test did), scores the
moving-average weights of each new checkpoint on the 10,000 test images (or
the validation split) and exits once the trainer is done. ``--run_once``
scores the latest checkpoint and exits.
"""

import mnist
from trainkit import flags as tk_flags

tk_flags.define_eval_flags(mnist.SPEC)


def run():
    tk_flags.run_evaluator(mnist.SPEC)


if __name__ == "__main__":
    run()
