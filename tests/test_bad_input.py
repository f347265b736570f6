"""Bad input of every kind ends in one line and a non-zero exit, and one bad file cannot
take the machine: wrong labels, the other dataset's run, broken records, foreign
SavedModels, unsafe archives, absurd headers, FIFOs, huge images, huge batches."""

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import zlib

import numpy as np
import pytest
import tensorflow as tf

from cifar10 import input as cifar10_input
from mnist import input as mnist_input
from tests import helpers
from trainkit import data as data_lib
from trainkit import errors

FAST = ["--batch_size=20", "--validation_size=100", "--log_frequency=5",
        "--save_summaries_steps=0", "--data_mirrors=http://127.0.0.1:9/",
        "--validate_every_steps=0"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist_data):
    """A finished MNIST run keeping ckpt-10 and ckpt-20."""
    train_dir = str(tmp_path_factory.mktemp("bad_input") / "run")
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", *FAST, "--max_steps=20",
                             "--save_checkpoint_steps=10")
    assert result.returncode == 0, result.stderr
    return train_dir


def copy_run(run, target):
    return str(shutil.copytree(run, target, ignore=shutil.ignore_patterns(".lock")))


def write_png(path, image):
    tf.io.write_file(path, tf.io.encode_png(image))
    return path


# -- labels out of range ------------------------------------------------------------------


def test_mnist_label_out_of_range_names_file_and_record(tmp_path):
    data_dir = helpers.make_mnist_dir(str(tmp_path / "data"), num_train=300, num_test=20)
    path = os.path.join(data_dir, "train-labels-idx1-ubyte.gz")
    labels = mnist_input.read_idx(path).copy()
    labels[7] = 12
    helpers.write_idx(path, labels)
    result = helpers.run_cli("mnist.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={data_dir}", *FAST, "--max_steps=5")
    helpers.assert_one_clear_line(result, f"{path} record 7 has label 12, expected 0 to 9")


def test_cifar10_label_out_of_range_names_file_and_record(tmp_path):
    folder = helpers.make_cifar_dir(str(tmp_path / "data"))
    path = os.path.join(folder, "data_batch_2.bin")
    with open(path, "r+b") as f:
        f.seek(3 * cifar10_input.RECORD_BYTES)
        f.write(bytes([200]))
    result = helpers.run_cli("cifar10.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={folder}", "--max_steps=2", "--batch_size=8",
                             "--data_mirrors=http://127.0.0.1:9/")
    helpers.assert_one_clear_line(result, f"{path} record 3 has label 200, expected 0 to 9")


# -- the other dataset's run ------------------------------------------------------------------


def _config_json(dataset, **overrides):
    config = helpers.train_config(dataset, "unused", **overrides)
    return config.to_json()


@pytest.mark.parametrize("command", ["cifar10.eval", "cifar10.export", "cifar10.predict",
                                     "cifar10.train"])
def test_the_other_datasets_run_is_named_before_anything_loads(tmp_path, finished_run, command):
    run = copy_run(finished_run, tmp_path / "run")
    args = {"cifar10.predict": ["x.png"], "cifar10.train": ["--resume"],
            "cifar10.eval": ["--run_once"]}.get(command, [])
    before = helpers.tree_state(run)
    result = helpers.run_cli(command, f"--train_dir={run}", *args)
    kind = command.split(".")[1]
    helpers.assert_one_clear_line(result, f"{run} holds a mnist run, not a cifar10 one: use "
                                          f"python -m mnist.{kind}")
    assert "Downloading" not in result.stderr and "oneDNN" not in result.stderr
    assert helpers.tree_state(run) == before


def test_an_mnist_command_on_a_cifar10_run_names_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(_config_json("cifar10", train_dir=str(run)))
    for command, args in (("mnist.eval", ["--timeout_secs=1"]), ("mnist.export", [])):
        result = helpers.run_cli(command, f"--train_dir={run}", *args)
        helpers.assert_one_clear_line(result, "holds a cifar10 run, not a mnist one",
                                      f"python -m cifar10.{command.split('.')[1]}")


# -- records of the wrong shape ------------------------------------------------------------------


@pytest.mark.parametrize("change, fragment", [
    ({"batch_size": "abc"}, 'batch_size is "abc", expected an integer'),
    ({"staircase": "yes"}, 'staircase is "yes", expected true or false'),
    ({"data_mirrors": [1, 2]}, "data_mirrors is [1, 2], expected a list of strings"),
    ({"model": "resnet9000"}, "names model 'resnet9000', which mnist does not have (cnn,"),
])
def test_a_config_json_of_the_wrong_shape_is_one_line(tmp_path, finished_run, change, fragment):
    run = copy_run(finished_run, tmp_path / "run")
    path = os.path.join(run, "config.json")
    values = json.load(open(path))
    values.update(change)
    json.dump(values, open(path, "w"))
    for command, args in (("mnist.eval", ["--run_once"]), ("mnist.export", []),
                          ("mnist.train", ["--resume"])):
        result = helpers.run_cli(command, f"--train_dir={run}", *args)
        helpers.assert_one_clear_line(result, path, fragment)


def test_a_metrics_line_or_best_json_of_the_wrong_shape_is_one_line(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    eval_dir = os.path.join(run, "eval")
    os.makedirs(os.path.join(eval_dir, "best"))
    metrics = os.path.join(eval_dir, "metrics.jsonl")
    good = json.dumps({"step": 10, "precision_at_1": 0.5, "run_id": "x"}) + "\n"
    open(metrics, "w").write('["not", "a", "record"]\n' + good)
    result = helpers.run_cli("mnist.eval", f"--train_dir={run}", "--run_once")
    helpers.assert_one_clear_line(result, f"{metrics} line 1 is not an evaluation record",
                                  "move the file away")
    os.remove(metrics)
    # A best checkpoint whose record is not one.
    for name in os.listdir(run):
        if name.startswith("ckpt-20."):
            shutil.copy(os.path.join(run, name), os.path.join(eval_dir, "best", name))
    best = os.path.join(eval_dir, "best", "best.json")
    json.dump({"step": "twenty"}, open(best, "w"))
    for command in ("mnist.eval", "mnist.export"):
        result = helpers.run_cli(command, f"--train_dir={run}", "--run_once"
                                 if command == "mnist.eval" else f"--export_dir={tmp_path}/e")
        helpers.assert_one_clear_line(result, f"{best} is not a best-checkpoint record")


def test_a_torn_last_metrics_line_is_a_crash_not_an_error(tmp_path):
    from trainkit import evaluator
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 10, "precision_at_1": 0.5}) + '\n{"step": 2')
    assert [r["step"] for r in evaluator.read_records(str(path))] == [10]


def test_a_savedmodel_not_made_here_is_one_line(tmp_path, finished_run):
    module = tf.Module()
    module.f = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([None], tf.float32)])
    foreign = str(tmp_path / "foreign")
    tf.saved_model.save(module, foreign)
    image = write_png(str(tmp_path / "x.png"), np.zeros([28, 28, 1], np.uint8))
    for saved_model in (foreign, finished_run):
        result = helpers.run_cli("mnist.predict", f"--saved_model={saved_model}", image)
        helpers.assert_one_clear_line(result, f"{saved_model} is not a SavedModel exported by "
                                              "this toolkit")
    # An export of the other dataset.
    export_dir = str(tmp_path / "export")
    result = helpers.run_cli("mnist.export", f"--train_dir={finished_run}",
                             f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr
    result = helpers.run_cli("cifar10.predict", f"--saved_model={export_dir}", image)
    helpers.assert_one_clear_line(result, "was exported from a mnist run",
                                  "python -m mnist.predict")


# -- export and predict fall back from a truncated checkpoint ---------------------------------


def test_export_and_predict_fall_back_from_a_truncated_checkpoint(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    data = os.path.join(run, "ckpt-20.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    result = helpers.run_cli("mnist.export", f"--train_dir={run}")
    assert result.returncode == 0, result.stderr
    warning = [l for l in result.stderr.splitlines() if "is unreadable; using" in l]
    assert len(warning) == 1 and "ckpt-20" in warning[0] and f"{run}/ckpt-10" in warning[0]
    assert json.load(open(os.path.join(run, "export", "classifier.json")))["step"] == 10
    image = write_png(str(tmp_path / "x.png"), np.zeros([28, 28, 1], np.uint8))
    result = helpers.run_cli("mnist.predict", f"--train_dir={run}", image)
    assert result.returncode == 0, result.stderr
    assert "is unreadable; using" in result.stderr
    # Chosen explicitly, the truncated one is an error, not replaced by another.
    result = helpers.run_cli("mnist.export", f"--train_dir={run}",
                             f"--checkpoint={run}/ckpt-20", f"--export_dir={tmp_path / 'e2'}")
    helpers.assert_one_clear_line(result, f"cannot read checkpoint {run}/ckpt-20",
                                  "--checkpoint")


# -- archives ---------------------------------------------------------------------------------


def _tar(path, members):
    """``members``: (name, bytes) for a file, (name, None) for a folder."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            if payload is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def _records(count):
    images, labels = helpers.synthetic_cifar(count, seed=1)
    return helpers.cifar_records(images, labels)


@pytest.mark.parametrize("members, fragment", [
    ([("cifar-10-batches-bin", b"a file"), ("cifar-10-batches-bin/data_batch_1.bin", b"x")],
     "'cifar-10-batches-bin' is both a file and a folder"),
    ([("cifar-10-batches-bin/a.bin", b"x"), ("cifar-10-batches-bin/a.bin/b", b"y")],
     "'cifar-10-batches-bin/a.bin' is both a file and a folder"),
    ([("x/a.bin", b"1"), ("x/a.bin", b"2")], "'x/a.bin' appears twice"),
])
def test_an_archive_whose_names_clash_is_refused_and_leaves_nothing(tmp_path, members,
                                                                     fragment):
    archive = _tar(str(tmp_path / "a.tar.gz"), members)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(errors.UserError, match="refusing to extract"):
        try:
            data_lib.safe_extract(archive, str(dest))
        except errors.UserError as e:
            assert fragment in str(e), str(e)
            raise
    assert list(dest.iterdir()) == []


def test_an_archive_clashing_with_a_file_on_disk_is_refused_by_the_trainer(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _tar(str(data_dir / cifar10_input.ARCHIVE), [
        ("cifar-10-batches-bin/", None),
        *((f"cifar-10-batches-bin/{name}", _records(8)) for name in
          cifar10_input.TRAIN_FILES + cifar10_input.TEST_FILES)])
    (data_dir / "cifar-10-batches-bin").write_text("a file where the archive has a folder")
    result = helpers.run_cli("cifar10.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={data_dir}", "--max_steps=1", "--batch_size=4",
                             "--data_mirrors=http://127.0.0.1:9/")
    helpers.assert_one_clear_line(result, "refusing to extract", "is a folder, but")
    assert sorted(os.listdir(data_dir)) == sorted([cifar10_input.ARCHIVE, "cifar-10-batches-bin"])


def test_an_archive_larger_than_the_free_space_is_refused(tmp_path, monkeypatch):
    archive = _tar(str(tmp_path / "a.tar.gz"), [("d/big.bin", bytes(50_000))])
    dest = tmp_path / "dest"
    dest.mkdir()
    monkeypatch.setattr(data_lib.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 20_000, 20_000))
    with pytest.raises(errors.UserError, match=r"its files need 0.1 MB and .* has 0.0 MB free"):
        data_lib.safe_extract(archive, str(dest))
    assert list(dest.iterdir()) == []


def test_a_truncated_archive_leaves_nothing_behind(tmp_path):
    archive = _tar(str(tmp_path / "a.tar.gz"), [
        ("d/one.bin", os.urandom(200_000)), ("d/two.bin", os.urandom(200_000))])
    data = open(archive, "rb").read()
    open(archive, "wb").write(data[: len(data) * 3 // 4])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(errors.UserError, match="cannot extract"):
        data_lib.safe_extract(archive, str(dest))
    assert list(dest.iterdir()) == []


def test_an_interrupted_download_leaves_no_part_file(tmp_path):
    import http.server
    import threading

    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 -- the http.server name
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"only a little")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with pytest.raises(errors.UserError, match="ended after 13 of 100000 bytes"):
            data_lib.download_verified("x.bin", str(tmp_path), [url], lambda path: None)
    finally:
        server.shutdown()
        server.server_close()
    assert os.listdir(tmp_path) == []


# -- headers that lie ---------------------------------------------------------------------------


def test_an_idx_header_with_an_absurd_count_is_refused_from_the_header(tmp_path):
    data_dir = helpers.make_mnist_dir(str(tmp_path / "data"), num_train=300, num_test=20)
    path = os.path.join(data_dir, "train-images-idx3-ubyte.gz")
    with gzip.open(path, "wb") as f:  # 2 billion images of 28x28: 1.6 TB promised
        f.write(struct.pack(">IIII", 2051, 2_000_000_000, 28, 28) + bytes(784))
    result = helpers.run_cli("mnist.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={data_dir}", *FAST, "--max_steps=5")
    helpers.assert_one_clear_line(result, f"{path} says it holds 2,000,000,000 images",
                                  "not an MNIST IDX file")


def test_a_gzip_bomb_is_refused_without_unpacking_it(tmp_path):
    path = str(tmp_path / "train-labels-idx1-ubyte.gz")
    # 10 labels promised, then 200 MB of zeros (200 KB compressed).
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        f.write(compressor.compress(struct.pack(">II", 2049, 10) + bytes(10)))
        zeros = bytes(1 << 20)
        for _ in range(200):
            f.write(compressor.compress(zeros))
        f.write(compressor.flush())
    assert os.path.getsize(path) < 1_000_000
    with pytest.raises(errors.UserError, match="holds more than the 18 bytes its header gives"):
        mnist_input.read_idx(path)


# -- files that are not files -------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_a_fifo_as_a_data_file_is_refused_not_waited_on(tmp_path, dataset):
    if dataset == "mnist":
        data_dir = helpers.make_mnist_dir(str(tmp_path / "data"), num_train=300, num_test=20)
        path = os.path.join(data_dir, "train-images-idx3-ubyte.gz")
        extra = FAST
    else:
        data_dir = helpers.make_cifar_dir(str(tmp_path / "data"))
        path = os.path.join(data_dir, "data_batch_1.bin")
        extra = ["--batch_size=8", "--data_mirrors=http://127.0.0.1:9/"]
    os.remove(path)
    os.mkfifo(path)
    result = helpers.run_cli(f"{dataset}.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={data_dir}", *extra, "--max_steps=2")
    helpers.assert_one_clear_line(result, f"{path} is a FIFO (named pipe), not a regular file")


def test_a_fifo_as_the_cifar10_archive_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.mkfifo(data_dir / cifar10_input.ARCHIVE)
    result = helpers.run_cli("trainkit.prepare_data", "--dataset=cifar10",
                             f"--data_dir={data_dir}")
    helpers.assert_one_clear_line(result, "is a FIFO (named pipe), not a regular file")


# -- predict: each file on its own ----------------------------------------------------------------


def _png_header(width, height):
    """A PNG whose header says width x height; its pixel data is missing."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, 0)) + chunk(b"IEND", b""))


def test_predict_refuses_a_huge_image_or_a_fifo_alone_and_reads_gif_and_bmp(
        tmp_path, finished_run):
    from PIL import Image
    digit = np.zeros([40, 40], np.uint8)
    digit[8:32, 18:22] = 255  # a white stroke on black
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(20000, 20000))
    gif, bmp = str(tmp_path / "digit.gif"), str(tmp_path / "digit.bmp")
    Image.fromarray(digit).save(gif)
    Image.fromarray(np.stack([digit] * 3, -1)).save(bmp)
    fifo = str(tmp_path / "pipe.png")
    os.mkfifo(fifo)
    png = write_png(str(tmp_path / "digit.png"), digit[..., None])
    result = helpers.run_cli("mnist.predict", f"--train_dir={finished_run}", "--json",
                             str(huge), gif, fifo, bmp, png)
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(huge), gif, fifo, bmp, png]
    assert "20000x20000 pixels, over the limit of 50 megapixels" in lines[0]["error"]
    assert lines[2]["error"] == "not a regular file (a FIFO, device or folder)"
    # GIF and BMP decode for a one-channel dataset too, to what the PNG gives.
    assert lines[1]["probabilities"] == lines[4]["probabilities"] == lines[3]["probabilities"]
    from trainkit import predict
    for path in (gif, bmp):
        np.testing.assert_array_equal(predict.load_image(path, (28, 28, 1)),
                                      predict.load_image(png, (28, 28, 1)))


def test_a_transparent_image_is_laid_over_white(tmp_path):
    from trainkit import predict
    rgba = np.zeros([20, 20, 4], np.uint8)  # transparent everywhere...
    rgba[5:15, 9:11] = [0, 0, 0, 255]  # ...but a black stroke
    path = write_png(str(tmp_path / "t.png"), rgba)
    digit = predict.load_image(path, (28, 28, 1), light_on_dark=True)
    assert digit[0, 0, 0] == 0 and digit[14, 14, 0] > 200  # inverted from dark on white


# -- memory ----------------------------------------------------------------------------------------


def test_a_batch_beyond_memory_is_refused_before_anything_is_written(tmp_path, mnist_data):
    train_dir = tmp_path / "run"
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", *FAST, "--batch_size=1000000000")
    line = helpers.assert_one_clear_line(result, "--batch_size=1000000000 needs about",
                                         "GB of memory for --model=cnn", "use --batch_size=")
    fits = int(line.split("use --batch_size=")[1].split()[0])
    assert 1000 < fits < 1000000000
    assert not (train_dir / "config.json").exists()


def test_the_memory_estimate_counts_every_forward_tensor():
    from trainkit import loop
    config = helpers.train_config("mnist", "unused")
    # conv1 (28x28x16) and its relu, pool1, conv2 and relu, pool2, flatten, fc1 and relu,
    # logits, in float32: at least the layer outputs, and not wildly more.
    outputs = (28 * 28 * 16 + 14 * 14 * 16 + 14 * 14 * 36 + 7 * 7 * 36 * 2 + 128 + 10) * 4
    estimate = loop.activation_bytes(mnist_input.DATASET.build(config))
    assert outputs <= estimate <= 4 * outputs


def test_download_checksum_failure_still_leaves_no_part(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    (root / "f.bin").write_bytes(b"content")
    server = helpers.HttpServer(str(root))
    try:
        expected = hashlib.md5(b"other").hexdigest()
        with pytest.raises(errors.UserError, match="checksum"):
            data_lib.download_verified(
                "f.bin", str(tmp_path / "d"), [server.url],
                lambda p: None if data_lib.file_digest(p) == expected else "checksum mismatch")
    finally:
        server.close()
    assert os.listdir(tmp_path / "d") == []
