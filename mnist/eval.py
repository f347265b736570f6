"""Evaluates an MNIST run's checkpoints: ``python -m mnist.eval --train_dir=runs/m1``.

Polls the train dir every 5 s (as the classic mnist_test did), scores the
moving-average weights of each new checkpoint on the 10,000 test images (or
the validation split) and exits once the trainer is done. ``--run_once``
scores the latest checkpoint and exits.
"""

from trainkit import flags as tk_flags

tk_flags.define_eval_flags(dict(dataset="mnist", train_dir="runs/mnist", eval_interval_secs=5,
                                eval_data_choices=["test", "validation"]))


def run():
    tk_flags.run_evaluator("mnist")


if __name__ == "__main__":
    run()
