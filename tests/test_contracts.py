"""The dataset and model contracts, former names, and images/ (your own pictures) end to end."""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from trainkit import checkpoints
from trainkit import dataset as dataset_lib
from trainkit import predict
from trainkit import registry
from trainkit.evaluator import read_records


# -- the contracts are checked when a dataset is made ---------------------------------------


def test_a_spec_that_breaks_the_contract_is_refused_when_made():
    good = dict(name="toy", models=("net",), defaults={"batch_size": 8})
    dataset_lib.DatasetSpec(**good)
    for change, fragment in [
            ({"models": ()}, "no models"),
            ({"defaults": {"batch_sise": 8}}, "'batch_sise' is not a setting"),
            ({"presets": {"p": {"max_stpes": 1}}}, "'max_stpes' is not a setting"),
            ({"model_aliases": {"old": "gone"}}, "alias 'old' names no model"),
            ({"defaults": {"model": "other"}}, "default model 'other' is not in models"),
            ({"options": {"batch_size": dataset_lib.Option(1, "x")}}, "also a setting"),
            ({"validation_option": "fraction"}, "validation_option 'fraction' is not an option"),
            ({"renamed_options": {"old": "new"}}, "renamed option 'old' names no option")]:
        with pytest.raises(TypeError, match=fragment):
            dataset_lib.DatasetSpec(**{**good, **change})


def test_a_dataset_or_model_missing_a_part_is_refused_when_made():
    spec = dataset_lib.DatasetSpec(name="toy", models=("net",), defaults={})
    model = dataset_lib.Model(name="net", build=print, train_preprocess=print,
                              eval_preprocess=print, decayed_weights=print)
    with pytest.raises(TypeError, match="eval_logits is neither None nor callable"):
        dataclasses.replace(model, eval_logits="tta")
    parts = dict(spec=spec, models={"net": model}, arrays=print, class_names=print,
                 raw_shape=print, prepare=print, synthetic=print)
    dataset_lib.Dataset(**parts)
    with pytest.raises(TypeError, match="prepare is not callable"):
        dataset_lib.Dataset(**{**parts, "prepare": None})
    with pytest.raises(TypeError, match="differ from the spec"):
        dataset_lib.Dataset(**{**parts, "models": {"other": model}})


@pytest.mark.parametrize("name", registry.DATASETS)
def test_every_registered_dataset_keeps_the_contract(name):
    data = registry.load(name)  # its checks ran when its modules loaded
    assert data.spec is registry.spec(name) and tuple(data.models) == data.spec.models
    for model_name in data.spec.models:
        config = helpers.train_config(name, "unused", model=model_name)
        if name == "images":
            config.class_names = ("a", "b")  # a run's own, from its config.json
        model = data.build(config)
        raw = tf.zeros([2, *data.shape(config)], tf.uint8)
        inputs = data.model(config).eval_preprocess(raw, config)
        assert model(inputs, training=False).shape == (2, len(data.classes(config)))


# -- former names ------------------------------------------------------------------------------

# Digests of the checkpoint keys and shapes of the CIFAR-10 networks as they were built
# before their renaming (resnet, resnet_wide): the renamed ones must write the same keys,
# or the checkpoints of earlier runs could not be restored.
FORMER_KEYS = {"resnet": "f8ab75987ceb5bb9", "resnet_wide": "d8a8febdc3dde926",
               "tutorial": "33c9dd301ee94bef"}


@pytest.mark.parametrize("former", sorted(FORMER_KEYS))
def test_renamed_networks_keep_their_checkpoint_keys(former):
    cifar10 = registry.load("cifar10")
    config = cifar10.spec.complete(helpers.train_config("cifar10", "unused", model=former))
    assert config.model == {"resnet": "airbench94", "resnet_wide": "airbench95"}.get(
        former, former)
    keys = {key: tuple(var.shape)
            for key, var in checkpoints.model_variables(cifar10.build(config)).items()}
    digest = hashlib.sha256(json.dumps(sorted(keys.items())).encode()).hexdigest()[:16]
    assert digest == FORMER_KEYS[former]


def test_a_run_with_a_config_json_of_former_names_resumes_evaluates_and_exports(
        tmp_path, cifar_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("cifar10.train", f"--train_dir={train_dir}",
                             f"--data_dir={cifar_data}", "--schedule=resnet", "--model=resnet",
                             "--max_steps=2", "--batch_size=8", "--warmup_steps=1",
                             "--save_checkpoint_secs=0", "--translate=3")
    assert result.returncode == 0, result.stderr
    # config.json as the code before the renaming wrote it: schedule, the resnet name,
    # translate and cutout at the top level, no class names, no run id.
    path = os.path.join(train_dir, "config.json")
    values = json.load(open(path))
    assert (values["model"], values["preset"]) == ("airbench94", "airbench")
    options = values.pop("options")
    values.update(model="resnet", schedule="resnet", **options)
    for name in ("preset", "class_names", "run_id"):
        del values[name]
    json.dump(values, open(path, "w"), indent=2, sort_keys=True)
    result = helpers.run_cli("cifar10.train", f"--train_dir={train_dir}", "--resume",
                             "--max_steps=3")
    assert result.returncode == 0, result.stderr
    resumed = json.load(open(path))
    assert (resumed["model"], resumed["preset"], resumed["options"]) == (
        "airbench94", "airbench", {"translate": 3, "cutout": 12, "whiten_bias_steps": 0})
    result = helpers.run_cli("cifar10.eval", f"--train_dir={train_dir}", "--run_once")
    assert result.returncode == 0, result.stderr
    result = helpers.run_cli("cifar10.export", f"--train_dir={train_dir}")
    assert result.returncode == 0, result.stderr
    info = json.load(open(os.path.join(train_dir, "export", "classifier.json")))
    assert (info["step"], info["model"]) == (3, "airbench94")


# -- images/: your own pictures -----------------------------------------------------------------


def _picture_tree(root, per_class=(12, 4), corrupt=False):
    """train/ and test/ folders of three classes, as PNG, JPEG, GIF and BMP files of
    different sizes; the class is the colour of a square."""
    from PIL import Image
    rng = np.random.default_rng(0)
    formats = ["png", "jpg", "gif", "bmp"]
    for split, count in zip(("train", "test"), per_class):
        for label, name in enumerate(("red", "green", "blue")):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                side = (32, 48, 40, 64)[i % 4]
                picture = rng.integers(0, 60, (side, side + 8 * (i % 2), 3), dtype=np.uint8)
                picture[side // 4:3 * side // 4, side // 4:3 * side // 4, label] = 230
                Image.fromarray(picture).save(
                    os.path.join(folder, f"{i:03d}.{formats[i % 4]}"))
    if corrupt:
        with open(os.path.join(root, "train", "green", "broken.jpg"), "wb") as f:
            f.write(b"\xff\xd8 not really a jpeg")
    return str(root)


def test_images_trains_evaluates_exports_and_predicts_your_pictures(tmp_path):
    data_dir = _picture_tree(tmp_path / "pictures")
    train_dir = str(tmp_path / "run")
    train_out, eval_out = helpers.run_pair(
        "images", train_dir, ["--eval_interval_secs=0.2", "--eval_policy=all"],
        [f"--data_dir={data_dir}", "--model=airbench94", "--max_steps=20", "--batch_size=12",
         "--save_checkpoint_secs=0", "--save_checkpoint_steps=10", "--learning_rate=0.05",
         "--image_size=24", "--log_frequency=10"])
    config = json.load(open(os.path.join(train_dir, "config.json")))
    assert config["class_names"] == ["blue", "green", "red"]
    assert config["options"]["image_size"] == 24
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert [r["step"] for r in records] == [10, 20]
    # 12 test pictures; 1 of each class's 12 training pictures held out for validation.
    assert all(r["num_examples"] == 12 and r["validation"]["num_examples"] == 3
               for r in records)
    assert set(records[-1]["per_class_recall"]) == {"blue", "green", "red"}
    # The trainer said what it learns from and where the decoded pictures are kept.
    assert (f"Data in {data_dir}: 33 training, 3 validation and 12 test images of 3 classes "
            "(blue, green, red)") in train_out
    assert f"into {os.path.join(data_dir, '.trainkit-cache')}" in train_out
    # Decoded once: the cache of each split is there for the next run.
    assert sorted(name.split("-")[:2] for name in os.listdir(
        os.path.join(data_dir, ".trainkit-cache"))) == [["test", "24"], ["train", "24"],
                                                        ["validation", "24"]]
    result = helpers.run_cli("images.export", f"--train_dir={train_dir}")
    assert result.returncode == 0, result.stderr
    info = json.load(open(os.path.join(train_dir, "export", "classifier.json")))
    assert info["input"]["shape"] == [None, 24, 24, 3]
    picture = os.path.join(data_dir, "test", "red", "001.jpg")
    for source in ([f"--train_dir={train_dir}"],
                   [f"--saved_model={os.path.join(train_dir, 'export')}"]):
        result = helpers.run_cli("images.predict", *source, "--json", "--top_k=3", picture)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert sorted(answer["classes"]) == ["blue", "green", "red"]
    # Standard serving answers as predict does, with the run's own class names.
    served = helpers.saved_model_cli_run(os.path.join(train_dir, "export"),
                                         predict.load_image(picture, (24, 24, 3))[None],
                                         str(tmp_path))
    assert served["class_names"][0].decode() == answer["classes"][0]
    np.testing.assert_allclose(max(served["probabilities"][0]), answer["probabilities"][0],
                               atol=1e-5)


def test_images_holds_out_a_split_reads_the_cache_and_names_bad_files(tmp_path):
    images_input = registry.load("images")
    root = tmp_path / "flat"
    _picture_tree(tmp_path / "tree")
    os.rename(tmp_path / "tree" / "train", root)  # class folders right in the data dir
    config = images_input.spec.complete(helpers.train_config(
        "images", str(root), options={"test_split": 0.25, "validation_split": 0.0}))
    train_images, train_labels = images_input.arrays(config, "train")
    test_images, test_labels = images_input.arrays(config, "test")
    assert (len(train_labels), len(test_labels)) == (27, 9)  # the last 3 of 12 per class
    assert train_images.shape[1:] == (32, 32, 3) and train_images.dtype == np.uint8
    assert list(np.bincount(test_labels)) == [3, 3, 3]
    # The second read comes from the cache, not from the files.
    (cached,) = [n for n in os.listdir(root / ".trainkit-cache") if n.startswith("train-")]
    np.savez(root / ".trainkit-cache" / cached, images=train_images * 0, labels=train_labels)
    assert images_input.arrays(config, "train")[0].max() == 0
    # A new file makes a new cache, in place of the old.
    (root / "red" / "999.png").write_bytes((root / "red" / "000.png").read_bytes())
    assert len(images_input.arrays(config, "train")[1]) == 28
    assert len([n for n in os.listdir(root / ".trainkit-cache") if n.startswith("train-")]) == 1
    # --validation_split holds out the last quarter of what is not test: 2 of green's and
    # blue's 9, and of red's 10 (with the new file; Python rounds 2.5 to even).
    held_out = dict(config.options, validation_split=0.25)
    split = {name: images_input.arrays(dataclasses.replace(config, options=held_out), name)[1]
             for name in ("train", "validation", "test")}
    assert [len(split[name]) for name in ("train", "validation", "test")] == [22, 6, 9]
    assert list(np.bincount(split["validation"])) == [2, 2, 2]
    # Without test/ nor --test_split there is no test split: one line says what to do, and
    # the trainer says it before it trains.
    config.options["test_split"] = 0.0
    from trainkit import errors
    with pytest.raises(errors.UserError, match="no test/ folder: pass --test_split"):
        images_input.arrays(config, "test")
    result = helpers.run_cli("images.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={root}", "--max_steps=2", "--batch_size=4")
    helpers.assert_one_clear_line(result, "has no test/ folder: pass --test_split=0.1")
    assert not os.path.exists(tmp_path / "run" / "config.json")
    assert not any(name.startswith("ckpt-") for name in os.listdir(tmp_path / "run"))


def test_a_run_that_named_its_test_split_validation_split_resumes_as_it_was(tmp_path):
    """Runs written before --test_split held their test fraction in "validation_split": they
    resume, evaluate and export with that test split and no validation split."""
    images_spec = registry.spec("images")
    old = helpers.train_config("images", "unused", options={"validation_split": 0.2,
                                                            "image_size": 24})
    config = images_spec.complete(old)
    assert (config.options["test_split"], config.options["validation_split"]) == (0.2, 0.0)
    assert images_spec.eval_splits(config) == ("test",)
    new = images_spec.complete(helpers.train_config("images", "unused"))
    assert (new.options["test_split"], new.options["validation_split"]) == (0.0, 0.1)
    assert images_spec.eval_splits(new) == ("validation", "test")


def test_images_help_says_nothing_of_downloads():
    result = helpers.run_cli("images.train", "--help")
    assert result.returncode == 0, result.stderr
    assert "download" not in result.stdout.lower() and "--data_mirrors" not in result.stdout
    assert "--validation_split" in result.stdout and "--test_split" in result.stdout


def test_images_reports_a_picture_it_cannot_read_by_name(tmp_path):
    data_dir = _picture_tree(tmp_path / "pictures", per_class=(4, 1), corrupt=True)
    result = helpers.run_cli("images.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={data_dir}", "--max_steps=2", "--batch_size=4",
                             "--validation_split=0")
    helpers.assert_one_clear_line(
        result, "1 of the train split's 13 pictures cannot be read",
        f"{os.path.join(data_dir, 'train', 'green', 'broken.jpg')}: not a PNG, JPEG",
        "fix or remove them")
    assert not os.path.exists(tmp_path / "run" / "config.json")


def test_a_settings_declared_bounds_and_choices_hold_for_configs_not_from_flags(tmp_path):
    """config.json and code build configs without flags: validate() applies each setting's
    one declaration (its bounds and choices) to them too."""
    from trainkit import config as config_lib
    from trainkit import errors
    base = dict(dataset="mnist", train_dir=str(tmp_path), data_dir=str(tmp_path), model="cnn")
    config_lib.TrainConfig(**base).validate()
    for change, words in [(dict(batch_size=0), "--batch_size must be at least 1, got 0"),
                          (dict(label_smoothing=1.5), "--label_smoothing must be between"),
                          (dict(optimizer="adagrad"), "--optimizer=adagrad is not one of"),
                          (dict(learning_rate=0.0), "--learning_rate must be positive")]:
        with pytest.raises(errors.UserError, match=words):
            config_lib.TrainConfig(**base, **change).validate()
    assert all(f.metadata["help"] and f.metadata["group"]
               for f in config_lib.settings(config_lib.TrainConfig))
