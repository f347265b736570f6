"""From a checkpoint to a prediction: export, the evaluator's best export, predict."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from cifar10 import input as cifar10_input
from mnist import input as mnist_input
from tests import helpers
from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import metrics
from trainkit import predict


def _write_png(path, image):
    tf.io.write_file(path, tf.io.encode_png(image))
    return path


def _evaluator_predictions(train_dir, checkpoint, images):
    """What the evaluator's scoring predicts for raw uint8 ``images`` (its own code)."""
    cifar10 = cifar10_input.DATASET
    train_config = config_lib.check_run(train_dir, cifar10.spec, "eval")
    network = cifar10.model(train_config)
    model = cifar10.build(train_config)
    checkpoints.restore_averaged(checkpoint, model)
    scorer = metrics.Scorer(model, 10, metrics.eval_logits_fn(network, train_config))
    inputs = network.eval_preprocess(tf.constant(images), train_config)
    labels = tf.zeros([len(images)], tf.int32)
    _, _, predictions, _ = scorer._step(inputs, labels)
    logits = network.eval_logits(model, inputs, train_config)
    return predictions.numpy(), tf.nn.softmax(logits).numpy()


def test_export_and_predict_round_trip_equals_the_evaluator(tmp_path, cifar_data):
    train_dir = str(tmp_path / "run")
    # The resnet: normalization and test-time augmentation must both travel in the export
    # (the narrower one: the export does not depend on the widths).
    result = helpers.run_cli("cifar10.train", f"--train_dir={train_dir}",
                             f"--data_dir={cifar_data}", "--preset=airbench", "--model=airbench94",
                             "--max_steps=6", "--validation_size=20",
                             "--batch_size=16", "--warmup_steps=2", "--save_checkpoint_secs=0",
                             "--save_checkpoint_steps=3")
    assert result.returncode == 0, result.stderr
    # The evaluator exports its best as it goes.
    result = helpers.run_cli("cifar10.eval", f"--train_dir={train_dir}", "--eval_policy=all",
                             "--timeout_secs=1", "--eval_interval_secs=0")
    assert result.returncode == 0, result.stderr
    best = json.load(open(os.path.join(train_dir, "eval", "best", "best.json")))
    best_export = os.path.join(train_dir, "eval", "best", "saved_model")
    info = json.load(open(os.path.join(best_export, "classifier.json")))
    assert info["step"] == best["step"] and info["class_names"][3] == "cat"

    # python -m cifar10.export: by default the evaluator's best checkpoint.
    result = helpers.run_cli("cifar10.export", f"--train_dir={train_dir}")
    assert result.returncode == 0, result.stderr
    exported = os.path.join(train_dir, "export")
    assert json.load(open(os.path.join(exported, "classifier.json")))["step"] == best["step"]

    # Test images as PNG files (lossless, already 32x32: predict changes no pixel).
    images = cifar10_input.arrays(config_lib.read_train_config(train_dir), "test")[0][:12]
    files = [_write_png(str(tmp_path / f"image{i}.png"), image) for i, image in enumerate(images)]
    expected, probabilities = _evaluator_predictions(
        train_dir, os.path.join(train_dir, "eval", "best", f"ckpt-{best['step']}"), images)
    # Standard serving runs both exports as they are: TensorFlow's saved_model_cli (a
    # session-based loader, as TensorFlow Serving's) finds every variable and answers
    # what the evaluator answers, class ids and names included.
    names = cifar10_input.CLASS_NAMES
    for export_dir in (exported, best_export):
        served = helpers.saved_model_cli_run(export_dir, images, str(tmp_path))
        assert list(served["classes"]) == list(expected)
        assert [n.decode() for n in served["class_names"]] == [names[i] for i in expected]
        np.testing.assert_allclose(served["probabilities"], probabilities, atol=1e-5)
        with open(os.path.join(export_dir, "assets", "class_names.txt")) as f:
            assert f.read().splitlines() == names
    for source in ([f"--saved_model={exported}"], [f"--saved_model={best_export}"],
                   [f"--train_dir={train_dir}"]):
        result = helpers.run_cli("cifar10.predict", *source, "--json", "--top_k=10", *files)
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [line["file"] for line in lines] == files
        assert [names.index(line["classes"][0]) for line in lines] == list(expected)
        for line, p in zip(lines, probabilities):
            got = dict(zip(line["classes"], line["probabilities"]))
            np.testing.assert_allclose([got[n] for n in names], p, atol=1e-5)
            assert line["probabilities"] == sorted(line["probabilities"], reverse=True)


def test_predict_reports_bad_files_and_still_predicts_the_rest(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", "--max_steps=4",
                             "--validation_size=100")
    assert result.returncode == 0, result.stderr
    good = _write_png(str(tmp_path / "seven.png"), np.full([40, 30, 1], 200, np.uint8))
    corrupt = str(tmp_path / "corrupt.png")
    with open(good, "rb") as f:
        open(corrupt, "wb").write(f.read()[:40])
    text = str(tmp_path / "notes.txt")
    open(text, "w").write("not an image\n")
    missing = str(tmp_path / "missing.jpg")
    result = helpers.run_cli("mnist.predict", f"--train_dir={train_dir}", "--top_k=2",
                             good, corrupt, text, missing)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{good}: ") and len(lines[0].split(",")) == 2
    assert lines[1] == f"{corrupt}: error: not a PNG, JPEG, GIF or BMP image, or a corrupt one"
    assert lines[2] == f"{text}: error: not a PNG, JPEG, GIF or BMP image, or a corrupt one"
    assert lines[3].startswith(f"{missing}: error: cannot read the file")
    result = helpers.run_cli("mnist.predict", f"--train_dir={train_dir}", "--json", good, text)
    assert result.returncode == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert set(first) == {"file", "classes", "probabilities"} and len(first["classes"]) == 3
    assert all(c in mnist_input.CLASS_NAMES for c in first["classes"])
    assert second == {"file": text, "error": "not a PNG, JPEG, GIF or BMP image, or a corrupt one"}
    # Only good files: exit 0.
    result = helpers.run_cli("mnist.predict", f"--train_dir={train_dir}", "--json",
                             "--top_k=10", good)
    assert result.returncode == 0, result.stderr
    predicted = json.loads(result.stdout)
    # The export in standard serving and in TensorFlow Lite answers as predict does.
    result = helpers.run_cli("mnist.export", f"--train_dir={train_dir}")
    assert result.returncode == 0, result.stderr
    export_dir = os.path.join(train_dir, "export")
    digit = predict.load_image(good, (28, 28, 1), light_on_dark=True)[None]
    want = dict(zip(predicted["classes"], predicted["probabilities"]))
    for served in (helpers.saved_model_cli_run(export_dir, digit, str(tmp_path)),
                   helpers.tflite_run(export_dir, digit)):
        assert [n.decode() for n in served["class_names"]] == [predicted["classes"][0]]
        assert mnist_input.CLASS_NAMES[served["classes"][0]] == predicted["classes"][0]
        np.testing.assert_allclose(served["probabilities"][0],
                                   [want[n] for n in mnist_input.CLASS_NAMES], atol=1e-5)
    shutil.rmtree(export_dir)
    # An unreadable --checkpoint to export: one line naming it, exit 2, nothing written.
    corrupt_checkpoint = str(tmp_path / "ckpt-9")
    open(corrupt_checkpoint + ".index", "wb").write(b"not a checkpoint index")
    result = helpers.run_cli("mnist.export", f"--train_dir={train_dir}",
                             f"--checkpoint={corrupt_checkpoint}")
    assert result.returncode == 2
    (line,) = helpers.error_lines(result.stderr)
    assert f"cannot read checkpoint {corrupt_checkpoint}" in line and "--checkpoint" in line
    assert not os.path.exists(os.path.join(train_dir, "export"))


@pytest.mark.parametrize("args,fragment", [
    ([], "no image files given"),
    (["--saved_model=/nonexistent/export", "x.png"], "cannot load a SavedModel"),
    (["--train_dir=/nonexistent/run", "x.png"], "does not exist"),
])
def test_predict_usage_errors_are_one_line(args, fragment):
    result = helpers.run_cli("mnist.predict", *args)
    assert result.returncode == 2
    assert len(helpers.error_lines(result.stderr)) == 1 and fragment in result.stderr


def test_images_are_center_cropped_resized_and_inverted_for_mnist(tmp_path):
    # A dark digit on white paper, 60 high and 90 wide: the central 60x60 is kept.
    paper = np.full([60, 90, 3], 255, np.uint8)
    paper[10:50, 40:50] = 0  # a vertical stroke in the middle
    paper[:, :15] = 0  # outside the central square: cropped away
    path = _write_png(str(tmp_path / "paper.png"), paper)
    digit = predict.load_image(path, (28, 28, 1), light_on_dark=True)
    assert digit.shape == (28, 28, 1) and digit.dtype == np.uint8
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # background now black
    # Only a dataset of light figures on black (MNIST's Dataset.light_on_dark) inverts.
    assert predict.load_image(path, (28, 28, 1))[0].min() == 255
    assert digit[14, 14, 0] == 255  # the stroke now white
    # CIFAR-10: colour kept, no inversion; a grey image gets three equal channels.
    photo = predict.load_image(path, (32, 32, 3))
    assert photo.shape == (32, 32, 3) and photo[0, 0, 0] == 255
    grey = _write_png(str(tmp_path / "grey.png"), np.full([8, 8, 1], 77, np.uint8))
    assert (predict.load_image(grey, (32, 32, 3)) == 77).all()


@pytest.mark.parametrize("subsampling", [0, 2])
def test_jpeg_pixels_are_those_pillow_decodes(tmp_path, subsampling):
    """JPEG decoded with libjpeg's accurate DCT: the pixels Pillow (and most tools) give, so
    a picture scores the same here as in a Pillow-based client."""
    from PIL import Image
    rng = np.random.default_rng(subsampling)
    picture = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    picture[8:24, 4:28] = [200, 30, 90]
    path = str(tmp_path / "photo.jpg")
    Image.fromarray(picture).save(path, quality=95, subsampling=subsampling)
    expected = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(predict.load_image(path, (32, 32, 3)), expected)
