"""IDX parsing, splits, pipelines and the download path of mnist/input.py."""

import gzip
import hashlib
import io
import os
import uuid

import numpy as np
import pytest

from mnist import input as mnist_input
from tests import helpers
from trainkit import data as data_lib
from trainkit import errors
from trainkit import fs
from trainkit import pipeline


def make_config(data_dir, **overrides):
    return helpers.train_config("mnist", data_dir, **overrides)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trips_images_and_labels(tmp_path, compress):
    images, labels = helpers.synthetic_mnist(7, seed=3)
    suffix = ".gz" if compress else ""
    helpers.write_idx(str(tmp_path / f"i{suffix}"), images, compress=compress)
    helpers.write_idx(str(tmp_path / f"l{suffix}"), labels, compress=compress)
    np.testing.assert_array_equal(mnist_input.read_idx(str(tmp_path / f"i{suffix}")), images)
    np.testing.assert_array_equal(mnist_input.read_idx(str(tmp_path / f"l{suffix}")), labels)


def test_read_idx_rejects_wrong_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes((1234).to_bytes(4, "big") + bytes(100))
    with pytest.raises(errors.UserError, match=r"bad has magic number 1234, expected 2051"):
        mnist_input.read_idx(str(path))


def test_read_idx_rejects_truncated_file_naming_sizes(tmp_path):
    images, _ = helpers.synthetic_mnist(5, seed=0)
    path = str(tmp_path / "train-images-idx3-ubyte")
    helpers.write_idx(path, images, compress=False)
    with open(path, "r+b") as f:
        f.truncate(16 + 4 * 784 + 10)
    with pytest.raises(errors.UserError) as info:
        mnist_input.read_idx(path)
    message = str(info.value)
    assert path in message and "3162 bytes" in message and "expected 3936" in message


def test_read_idx_rejects_truncated_gzip(tmp_path):
    images, _ = helpers.synthetic_mnist(50, seed=0)
    path = str(tmp_path / "x.gz")
    helpers.write_idx(path, images)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(errors.UserError, match=r"cannot read .*x.gz"):
        mnist_input.read_idx(path)


def test_read_idx_rejects_wrong_image_size(tmp_path):
    path = str(tmp_path / "small")
    helpers.write_idx(path, np.zeros((3, 14, 14)), compress=False)
    with pytest.raises(errors.UserError, match="expected 28x28"):
        mnist_input.read_idx(path)


def test_load_rejects_image_label_count_mismatch(tmp_path):
    data_dir = helpers.make_mnist_dir(str(tmp_path), num_train=300, num_test=20)
    _, labels = helpers.synthetic_mnist(299, seed=1)
    helpers.write_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"), labels)
    with pytest.raises(errors.UserError, match="has 300 images but .* has 299 labels"):
        mnist_input.arrays(make_config(data_dir), "train")


def test_splits_hold_out_the_first_validation_images(mnist_data):
    config = make_config(mnist_data, validation_size=100)
    all_images = mnist_input.read_idx(os.path.join(mnist_data, "train-images-idx3-ubyte.gz"))
    train_images, _ = mnist_input.arrays(config, "train")
    validation_images, _ = mnist_input.arrays(config, "validation")
    test_images, test_labels = mnist_input.arrays(config, "test")
    assert len(train_images) == 500 and len(validation_images) == 100
    np.testing.assert_array_equal(validation_images[..., 0], all_images[:100])
    np.testing.assert_array_equal(train_images[..., 0], all_images[100:])
    assert len(test_images) == 250 and test_labels.dtype == np.int32


def test_eval_dataset_yields_every_example_once_with_remainder(mnist_data):
    dataset, count = pipeline.eval_dataset(mnist_input.DATASET, make_config(mnist_data), "test",
                                           batch_size=64)
    sizes = [int(labels.shape[0]) for _, labels in dataset]
    assert count == 250 and sizes == [64, 64, 64, 58]
    images, _ = next(iter(dataset))
    assert images.shape[1:] == (28, 28, 1)
    assert -0.5 <= float(images.numpy().min()) and float(images.numpy().max()) <= 0.5


def test_train_dataset_batches_are_full_and_shuffled(mnist_data):
    config = make_config(mnist_data, batch_size=32)
    images, labels = mnist_input.arrays(config, "train")
    dataset, count = pipeline.train_dataset(mnist_input.DATASET, config, images, labels), 500
    batches = list(dataset.take(20))
    assert count == len(labels)
    assert all(b[0].shape == (32, 28, 28, 1) for b in batches)
    first = np.concatenate([b[1].numpy() for b in batches[:15]])
    ordered = mnist_input.arrays(make_config(mnist_data), "train")[1][:len(first)]
    assert not np.array_equal(first, ordered)


# --- downloads, against a local HTTP server -------------------------------------

@pytest.fixture
def served_mnist(tmp_path, monkeypatch):
    """A mirror on 127.0.0.1 serving small MNIST files; FILES' checksums point at them."""
    root = helpers.make_mnist_dir(str(tmp_path / "mirror"), num_train=300, num_test=40)
    for name, (magic, count, _) in list(mnist_input.FILES.items()):
        with gzip.open(os.path.join(root, name + ".gz"), "rb") as f:
            digest = hashlib.md5(f.read()).hexdigest()
        monkeypatch.setitem(mnist_input.FILES, name, (magic, count, digest))
    server = helpers.HttpServer(root)
    yield server, root
    server.close()


def test_download_fetches_verifies_and_loads(served_mnist, tmp_path):
    server, _ = served_mnist
    data_dir = str(tmp_path / "empty")
    config = make_config(data_dir, data_mirrors=("http://127.0.0.1:9/", server.url))
    images, labels = mnist_input.arrays(config, "test")
    assert images.shape == (40, 28, 28, 1) and labels.shape == (40,)
    assert sorted(os.listdir(data_dir)) == sorted(n + ".gz" for n in mnist_input.FILES)


def test_download_into_a_data_dir_with_a_scheme_is_staged_locally(served_mnist):
    server, root = served_mnist
    data_dir = f"ram://mnist{uuid.uuid4().hex[:8]}/data"
    images, labels = mnist_input.arrays(make_config(data_dir, data_mirrors=(server.url,)), "test")
    assert images.shape == (40, 28, 28, 1) and labels.shape == (40,)
    assert sorted(fs.listdir(data_dir)) == sorted(n + ".gz" for n in mnist_input.FILES)
    for name in mnist_input.FILES:
        with open(os.path.join(root, name + ".gz"), "rb") as f:
            assert fs.read_bytes(fs.join(data_dir, name + ".gz")) == f.read(), name


def test_download_with_wrong_checksum_is_refused_and_removed(served_mnist, tmp_path):
    server, root = served_mnist
    # The mirror serves a different (but well-formed) test-label file.
    _, other = helpers.synthetic_mnist(40, seed=99)
    helpers.write_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"), other)
    data_dir = str(tmp_path / "dl")
    with pytest.raises(errors.UserError, match="checksum mismatch"):
        mnist_input.arrays(make_config(data_dir, data_mirrors=(server.url,)), "test")
    assert not any(n.startswith("t10k-labels") for n in os.listdir(data_dir))


def test_no_network_says_where_to_put_the_files(tmp_path):
    data_dir = str(tmp_path / "nothing")
    with pytest.raises(errors.UserError) as info:
        mnist_input.arrays(make_config(data_dir, data_mirrors=("http://127.0.0.1:9/",)), "test")
    message = str(info.value)
    assert "MNIST not found in" in message and "train-images-idx3-ubyte.gz" in message
    assert data_dir in message


def test_real_mnist_files_parse_with_official_counts(real_mnist, tmp_path):
    config = make_config(real_mnist, validation_size=5000)
    assert len(mnist_input.arrays(config, "train")[0]) == 55000
    assert len(mnist_input.arrays(config, "validation")[0]) == 5000
    assert len(mnist_input.arrays(config, "test")[0]) == 10000


def test_real_mnist_matches_published_checksums(real_mnist):
    for name, (_, _, md5) in mnist_input.FILES.items():
        path = os.path.join(real_mnist, name + ".gz")
        assert mnist_input.data_lib.file_digest(path, "md5", opener=gzip.open) == md5


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_download_shows_a_progress_bar_with_size_and_rate(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (root / "big.bin").write_bytes(payload)
    server = helpers.HttpServer(str(root))
    try:
        screen = _Terminal()
        data_lib.fetch(server.url + "big.bin", str(tmp_path / "big.bin"), stream=screen)
    finally:
        server.close()
    assert (tmp_path / "big.bin").read_bytes() == payload
    final = screen.getvalue().split("\r")[-1]
    assert final.startswith("  big.bin [" + "#" * 30 + "] 100%  3.1 of 3.1 MB, ")
    assert final.endswith(" MB/s\n")
    # The bar's arithmetic, part-way and with an unknown size.
    assert data_lib.progress_bar(50, 200, 1.0, width=10) == \
        "[##........]  25%  0.0 of 0.0 MB, 0.0 MB/s"
    assert data_lib.progress_bar(2_500_000, 0, 2.0) == "2.5 MB, 1.2 MB/s"
