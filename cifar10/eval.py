"""Evaluates a CIFAR-10 run's checkpoints: ``python -m cifar10.eval --train_dir=runs/c1``.

As the tutorial's cifar10_eval: polls every 300 s, scores the moving-average
weights of each new checkpoint on the 10,000 test images (``--num_examples``
fewer), and exits once the trainer is done; ``--run_once`` scores the latest
checkpoint and exits. Unlike the tutorial's, every image counts exactly once.
"""

import cifar10
from trainkit import flags as tk_flags

tk_flags.define_eval_flags(cifar10.SPEC)


def run():
    tk_flags.run_evaluator(cifar10.SPEC)


if __name__ == "__main__":
    run()
