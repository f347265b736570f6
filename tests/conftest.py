import os

import pytest

from tests import helpers


@pytest.fixture(scope="session")
def mnist_data(tmp_path_factory):
    """A small synthetic MNIST in the official IDX.gz format (600 train, 250 test)."""
    return helpers.make_mnist_dir(str(tmp_path_factory.mktemp("mnist_data")))


@pytest.fixture
def real_mnist():
    path = os.path.join(helpers.SHARED_DATA, "mnist")
    if not os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"real MNIST not found at {path} (only present beside the project's "
                    "development checkout)")
    return path


@pytest.fixture(scope="session")
def cifar_data(tmp_path_factory):
    """Small synthetic CIFAR-10 in the official binary format (5 x 40 train, 50 test)."""
    return helpers.make_cifar_dir(str(tmp_path_factory.mktemp("cifar_data")))
