"""CIFAR-10 on the trainkit engine: the classic TensorFlow tutorial's input, model and runs.

``SPEC`` is what the command line needs (no TensorFlow): the models, the
tutorial's settings as defaults, and the presets. The data and networks are
``cifar10.input.DATASET`` and ``cifar10.model`` (see ``trainkit.dataset``).
"""

import trainkit  # noqa: F401  (sets up TensorFlow logging before it loads)
from trainkit import dataset

# The fast recipes' settings per example, from airbench95 (Keller Jordan, 2024):
# Nesterov momentum 0.85; the learning rate 10 per 1,024 examples of summed loss, i.e.
# 10 / (1 + 1 / 0.15) = 1.3 for a mean loss at batch 1,024; its decoupled weight decay of
# 0.0153 per 1,024 examples as an L2 penalty, 0.0153 / 10; a triangle peaking at 23% of
# the steps; label smoothing 0.2; Lookahead every 5 steps (its slow weights are the
# average the evaluator scores, so the moving average is off); bfloat16 where the
# hardware has it. With airbench96's augmentation for long runs (a 4-pixel shift and
# 12-pixel Cutout) over 45 epochs (2,197 steps).
AIRBENCH = dict(model="airbench95", batch_size=1024, optimizer="nesterov", momentum=0.85,
                learning_rate=1.3, lr_schedule="linear", warmup_steps=505, max_steps=2197,
                translate=4, cutout=12, l2_regularization=0.0153 / 10, label_smoothing=0.2,
                lookahead_every_steps=5, lookahead_decay=0.95, moving_average_decay=0.0,
                moving_average_every_steps=1, precision="auto", save_checkpoint_secs=300,
                save_summaries_steps=100, log_frequency=10, validation_size=0)

# airbench94.py (Keller Jordan, 2024) as it is: 9.9 epochs of 1,024 as it counts them (48
# steps each: 476 steps); its learning rate 11.5 per 1,024 examples of summed loss, i.e.
# 11.5 / (1 + 1 / 0.15) = 1.5 for a mean loss; its decoupled weight decay 0.0153 per 1,024
# examples as an L2 penalty, 0.0153 / 11.5; its triangle from 0.2 up to 1 at 23% of the
# steps and down to 0.07; the whitening bias trained for 3 epochs; Lookahead from epoch 3,
# copied back at each epoch's end. Shorter runs keep the epoch-counted parts:
# --max_steps=240 --warmup_steps=55 is its schedule cut to 5 epochs.
AIRBENCH94 = dict(model="airbench94", batch_size=1024, optimizer="nesterov", momentum=0.85,
                  learning_rate=1.5, lr_schedule="linear", warmup_steps=109, warmup_from=0.2,
                  decay_to=0.07, max_steps=476, translate=2, cutout=0, whiten_bias_steps=144,
                  l2_regularization=0.0153 / 11.5, label_smoothing=0.2,
                  lookahead_every_steps=5, lookahead_decay=0.95, lookahead_start_steps=144,
                  lookahead_sync_steps=48, moving_average_decay=0.0,
                  moving_average_every_steps=1, precision="auto", save_checkpoint_secs=300,
                  save_summaries_steps=100, log_frequency=10, validation_size=0)

# airbench94 with Muon for the convolution kernels (Muon's rate 0.24 and momentum 0.6,
# airbench94_muon.py's); every other setting airbench94's.
AIRBENCH94_MUON = dict(AIRBENCH94, optimizer="muon")

# The airbench networks' own settings (cifar10.model), for the datasets that offer them.
NETWORK_OPTIONS = {
    "translate": dataset.Option(
        2, "Largest random shift, in pixels, of the airbench networks' training images "
        "(reflection-padded).", 0, 8),
    "cutout": dataset.Option(
        0, "Side of the square of each airbench training image set to the mean (Cutout, as "
        "airbench96); 0 = none.", 0, 32),
    "whiten_bias_steps": dataset.Option(
        0, "Steps in which the airbench networks' whitening bias trains, then stays fixed "
        "(airbench94: 3 epochs); 0 = throughout.", 0),
}

SPEC = dataset.DatasetSpec(
    name="cifar10",
    models=("tutorial", "airbench94", "airbench95"),
    model_aliases={"resnet": "airbench94", "resnet_wide": "airbench95"},
    # The tutorial's cifar10_train: batch 128, plain SGD at 0.1 decayed x0.1 every 350
    # epochs, weight decay 0.004, moving-average decay 0.9999, 1,000,000 steps. The last
    # 5,000 training images are held out as the validation split the evaluator selects
    # on (the airbench presets, which reproduce published recipes, train on all 50,000).
    defaults=dict(model="tutorial", batch_size=128, max_steps=1000000, optimizer="sgd",
                  learning_rate=0.1, learning_rate_decay=0.1, num_epochs_per_decay=350.0,
                  staircase=True, momentum=0.9, l2_regularization=0.004,
                  moving_average_decay=0.9999, log_frequency=10, save_summaries_steps=100,
                  save_checkpoint_steps=0, save_checkpoint_secs=600, validation_size=5000),
    presets={
        "tutorial": {},
        # For machines without a GPU: momentum and a cosine decay from 0.02 over 40 epochs;
        # bfloat16 where native, which kept float32's accuracy at equal budget
        # (docs/results.md, "bfloat16 against float32").
        "short": dict(optimizer="momentum", momentum=0.9, learning_rate=0.02,
                      lr_schedule="cosine", max_steps=15625, save_checkpoint_secs=300,
                      precision="auto"),
        "airbench": AIRBENCH,
        "airbench94": AIRBENCH94,
        "airbench94_muon": AIRBENCH94_MUON,
    },
    preset_aliases={"resnet": "airbench"},
    eval_interval_secs=300.0,  # as the tutorial's cifar10_eval
    options=NETWORK_OPTIONS,
)
