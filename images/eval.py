"""Evaluates an images run's checkpoints: ``python -m images.eval --train_dir=runs/i1``.

Polls every 60 s, scores the moving-average weights of each new checkpoint
on the test split (every image once) and exits once the trainer is done;
``--run_once`` scores the latest checkpoint and exits.
"""

import images
from trainkit import flags as tk_flags

tk_flags.define_eval_flags(images.SPEC)


def run():
    tk_flags.run_evaluator(images.SPEC)


if __name__ == "__main__":
    run()
