"""Your own pictures on the trainkit engine: a folder with one sub-folder per class.

``DATA_DIR/train/CLASS/*.png`` (PNG, JPEG, GIF or BMP) and
``DATA_DIR/test/CLASS/...``; or the class folders right in ``DATA_DIR`` and
``--test_split`` holding out part of each class as the test split.
``--validation_split`` holds out part of each class's training pictures as
the validation split.
Every image is brought to ``--image_size`` (its central square, resized),
decoded once and cached. The networks are CIFAR-10's, sized to the class
count. ``SPEC`` is what the command line needs (no TensorFlow); the data is
``images.input.DATASET`` (see ``trainkit.dataset``).
"""

import cifar10
import trainkit  # noqa: F401  (sets up TensorFlow logging before it loads)
from trainkit import dataset

SPEC = dataset.DatasetSpec(
    name="images",
    models=("tutorial", "airbench94", "airbench95"),
    # CIFAR-10's defaults under its "short" preset (momentum and a cosine decay, for a CPU);
    # set --max_steps for your data (an epoch is the training images / --batch_size steps).
    # The validation split is --validation_split's, not a count.
    defaults={**cifar10.SPEC.defaults, **cifar10.SPEC.presets["short"], "max_steps": 10000,
              "validation_size": 0},
    eval_interval_secs=60.0,
    options={
        **cifar10.NETWORK_OPTIONS,
        "image_size": dataset.Option(32, "Side, in pixels, every image is brought to: its "
                                     "central square, resized by area averaging.", 8, 512),
        "validation_split": dataset.Option(
            0.1, "Fraction of each class's training pictures held out as the validation split "
            "the evaluator selects the best checkpoint on (as Keras's validation_split); 0 = "
            "none: no best is chosen.", 0.0, 0.9, absent=0.0),
        "test_split": dataset.Option(
            0.0, "Without a test/ folder: the fraction of each class held out as the test "
            "split; 0 = there must be a test/ folder.", 0.0, 0.9),
    },
    # Runs written before test_split existed named it validation_split.
    renamed_options={"validation_split": "test_split"},
    validation_option="validation_split",
    downloads=False,
)
