"""CIFAR-10 on the trainkit engine: the classic TensorFlow tutorial's input, model and runs."""

import trainkit  # noqa: F401  (sets up TensorFlow logging before it loads)

# The networks cifar10.model builds, named here, where the command-line flags (and
# --help) find them without loading TensorFlow.
MODELS = ("tutorial", "resnet", "resnet_wide")
