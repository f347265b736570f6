"""MNIST on the trainkit engine: the classic MNIST tutorials' models and settings."""

import trainkit  # noqa: F401  (sets up TensorFlow logging before it loads)

# The networks mnist.model builds, named here, where the command-line flags (and
# --help) find them without loading TensorFlow.
MODELS = ("cnn", "deep_cnn", "fc")
