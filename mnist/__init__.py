"""MNIST on the trainkit engine: the classic MNIST tutorials' models and settings.

``SPEC`` is what the command line needs (no TensorFlow); the data and
networks are ``mnist.input.DATASET`` (see ``trainkit.dataset``).
"""

import trainkit  # noqa: F401  (sets up TensorFlow logging before it loads)
from trainkit import dataset

SPEC = dataset.DatasetSpec(
    name="mnist",
    models=("cnn", "deep_cnn", "fc"),
    # The classic convolutional MNIST tutorial: momentum 0.9, learning rate 0.01 decayed
    # x0.95 every epoch, L2 5e-4 on the dense layers, batch 64, moving-average decay 0.99;
    # 5,000 training images held out to validate on every 1,000 steps.
    defaults=dict(model="cnn", batch_size=64, max_steps=6000, optimizer="momentum",
                  learning_rate=0.01, learning_rate_decay=0.95, num_epochs_per_decay=1.0,
                  staircase=True, momentum=0.9, l2_regularization=5e-4,
                  moving_average_decay=0.99, log_frequency=100, save_summaries_steps=100,
                  save_checkpoint_steps=500, save_checkpoint_secs=0, validation_size=5000,
                  validate_every_steps=1000),
    presets={
        # bfloat16 where the hardware multiplies it natively: it kept float32's accuracy at
        # equal budget (docs/results.md, "bfloat16 against float32").
        "classic": dict(precision="auto"),
        # Larger batches, a cosine decay from a higher rate, fewer steps (docs/results.md).
        "fast": dict(batch_size=128, learning_rate=0.05, lr_schedule="cosine", max_steps=2400,
                     save_checkpoint_steps=600, validate_every_steps=600),
        # One pass over the 55,000 training images: 1,718 steps of 32, Nesterov momentum,
        # the one-cycle triangle (docs/results.md).
        "one_epoch": dict(batch_size=32, max_steps=1718, optimizer="nesterov",
                          learning_rate=0.05, lr_schedule="linear", warmup_steps=300,
                          save_checkpoint_steps=859, validate_every_steps=859),
    },
    eval_interval_secs=5.0,  # as the classic mnist_test
)
