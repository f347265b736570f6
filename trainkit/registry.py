"""The datasets this toolkit knows: the one list everything else reads.

``spec(name)`` is a dataset's ``DatasetSpec`` (no TensorFlow);
``load(name)`` its ``Dataset`` (loads TensorFlow). The Makefile asks
``python -m trainkit.registry`` for the names. A new dataset is a package
that fills in ``trainkit.dataset``'s contract, plus its name here.
"""

import importlib
import sys

DATASETS = ("cifar10", "mnist", "images")


def _check(name):
    if name not in DATASETS:
        from trainkit import errors
        raise errors.UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def spec(name):
    """The ``DatasetSpec`` of dataset ``name`` (its package's ``SPEC``)."""
    _check(name)
    return importlib.import_module(name).SPEC


def load(name):
    """The ``Dataset`` of dataset ``name`` (its input module's ``DATASET``)."""
    _check(name)
    return importlib.import_module(f"{name}.input").DATASET


if __name__ == "__main__":
    print(" ".join(DATASETS))
    sys.exit(0)
