"""Trains an MNIST model: ``python -m mnist.train --train_dir=runs/m1``.

Defaults follow the classic convolutional MNIST tutorial: momentum 0.9,
learning rate 0.01 decayed x0.95 every epoch, L2 5e-4 on the dense layers,
batch 64; moving-average decay 0.99. The default ``cnn`` reaches about 99%
test precision (averaged weights) in about two minutes on two CPU cores
(see the README for the measured figure).
"""

import mnist
from trainkit import flags as tk_flags

DEFAULTS = dict(
    model="cnn", batch_size=64, max_steps=6000, optimizer="momentum", learning_rate=0.01,
    learning_rate_decay=0.95, num_epochs_per_decay=1.0, staircase=True, momentum=0.9,
    l2_regularization=5e-4, moving_average_decay=0.99, log_frequency=100,
    save_summaries_steps=100, save_checkpoint_steps=500, save_checkpoint_secs=0,
    validation_size=5000, validate_every_steps=1000,
)
SCHEDULES = {
    "classic": {},
    # 99% in about a minute on two CPU cores (README): larger batches, a cosine decay
    # from a higher rate, fewer steps.
    "fast": dict(batch_size=128, learning_rate=0.05, lr_schedule="cosine", max_steps=2400,
                 save_checkpoint_steps=600, validate_every_steps=600),
}
tk_flags.define_train_flags("mnist", mnist.MODELS, DEFAULTS, SCHEDULES)


def run():
    tk_flags.run_trainer("mnist", SCHEDULES)


if __name__ == "__main__":
    run()
