"""CIFAR-10 on the trainkit engine: the classic TensorFlow tutorial's input, model and runs."""

import trainkit  # noqa: F401  (sets up TensorFlow logging before it loads)
