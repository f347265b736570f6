"""MNIST on the trainkit engine: the classic MNIST tutorials' models and settings."""

import trainkit  # noqa: F401  (sets up TensorFlow logging before it loads)
