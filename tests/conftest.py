import os

import pytest

from tests import helpers


def _synthetic(tmp_path_factory, name):
    """Dataset ``name``'s own small synthetic data, in its real file format (its
    ``Dataset.synthetic``, through the registry)."""
    from trainkit import registry
    return registry.load(name).synthetic(str(tmp_path_factory.mktemp(f"{name}_data")), "small")


@pytest.fixture(scope="session")
def mnist_data(tmp_path_factory):
    """A small synthetic MNIST in the official IDX.gz format (600 train, 250 test)."""
    return _synthetic(tmp_path_factory, "mnist")


@pytest.fixture(scope="session")
def cifar_data(tmp_path_factory):
    """Small synthetic CIFAR-10 in the official binary format (5 x 40 train, 50 test)."""
    return _synthetic(tmp_path_factory, "cifar10")


@pytest.fixture(scope="session")
def images_data(tmp_path_factory):
    """A small tree of PNG pictures in train/ and test/ folders of three classes."""
    return _synthetic(tmp_path_factory, "images")


@pytest.fixture
def real_mnist():
    path = os.path.join(helpers.SHARED_DATA, "mnist")
    if not os.path.exists(os.path.join(path, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"real MNIST not found at {path} (only present beside the project's "
                    "development checkout)")
    return path
