"""--precision: bfloat16 compute on float32 weights, and auto's choice."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from trainkit import checkpoints
from trainkit import errors
from trainkit import precision
from trainkit import registry
from trainkit.evaluator import read_records

FLAGS_LINE = ("flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep avx avx2 fma "
              "avx512f avx512dq avx512bw avx512vl{}\n")


def cpuinfo(tmp_path, extra):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Some CPU\n" + FLAGS_LINE.format(extra))
    return str(path)


def test_auto_picks_bfloat16_only_on_a_cpu_with_native_bfloat16(tmp_path):
    assert not tf.config.list_physical_devices("GPU")  # the tests run on the CPU
    with_bf16 = cpuinfo(tmp_path, " avx512_vnni avx512_bf16")
    name, reason = precision.resolve("auto", cpuinfo=with_bf16)
    assert name == "bfloat16" and "natively" in reason
    # avx512f alone (or "avx512_bf16" inside another word) is no native bfloat16.
    for flags in ("", " avx512_vnni", " xavx512_bf16x"):
        assert precision.resolve("auto", cpuinfo=cpuinfo(tmp_path, flags))[0] == "float32"
    assert precision.resolve("auto", cpuinfo=str(tmp_path / "missing"))[0] == "float32"
    # An explicit choice is taken as is, whatever the CPU.
    assert precision.resolve("bfloat16", cpuinfo=cpuinfo(tmp_path, ""))[0] == "bfloat16"
    assert precision.resolve("float32", cpuinfo=with_bf16)[0] == "float32"
    with pytest.raises(errors.UserError, match="--precision=fp16"):
        precision.resolve("fp16")


@pytest.mark.parametrize("dataset,model_name", [
    ("cifar10", "airbench94"), ("cifar10", "tutorial"), ("mnist", "cnn")])
def test_bfloat16_model_computes_in_bfloat16_on_float32_weights(dataset, model_name):
    data = registry.load(dataset)
    config = helpers.train_config(dataset, "unused", model=model_name)
    reference = data.build(config)
    with precision.policy("bfloat16"):
        model = data.build(config)
    assert keras.config.dtype_policy().name == "float32"  # restored after the build
    assert {v.dtype for v in model.variables} <= {"float32", "int64", "uint32"}
    for source, target in zip(reference.variables, model.variables):
        target.assign(source)
    size = {"airbench94": 32, "tutorial": 24, "cnn": 28}[model_name]
    channels = 1 if dataset == "mnist" else 3
    images = tf.random.stateless_normal([8, size, size, channels], [1, 2])
    logits = model(images, training=False)
    assert logits.dtype == tf.bfloat16
    # The same function as the float32 model, to bfloat16's 8 bits of mantissa.
    expected = reference(images, training=False).numpy()
    got = tf.cast(logits, tf.float32).numpy()
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() < 0.05 * scale, (got, expected)
    if model_name == "airbench94":
        # Training moves the batch-norm statistics, which stay float32 and finite.
        norm = model.get_layer("group1").norm1
        before = norm.moving_mean.numpy().copy()
        model(images, training=True)
        after = norm.moving_mean.numpy()
        assert norm.moving_mean.dtype == "float32" and np.isfinite(after).all()
        assert not np.array_equal(before, after)


def test_bfloat16_run_saves_float32_checkpoints_that_the_evaluator_scores(tmp_path, cifar_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli(
        "cifar10.train", f"--train_dir={train_dir}", f"--data_dir={cifar_data}",
        # The narrower resnet, at a small batch: bfloat16 is emulated, and slow, on CPUs
        # without it (AVX2), and the path under test is the same for both widths.
        "--preset=airbench", "--model=airbench94", "--precision=bfloat16", "--max_steps=4",
        "--batch_size=8", "--warmup_steps=2", "--save_checkpoint_secs=0",
        "--save_summaries_steps=2", "--log_frequency=2")
    assert result.returncode == 0, result.stderr
    assert "Precision: bfloat16 compute, float32 weights (as asked)" in result.stderr
    assert "loss = nan" not in result.stderr
    path = checkpoints.latest(train_dir)
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    floats = {name for name in dtypes if name.startswith(("model/", "ema/", "optimizer/"))
              and dtypes[name].is_floating}
    assert floats and {dtypes[name] for name in floats} == {tf.float32}
    assert all(np.isfinite(reader.get_tensor(name)).all() for name in floats)
    result = helpers.run_cli("cifar10.eval", f"--train_dir={train_dir}", "--run_once")
    assert result.returncode == 0, result.stderr
    (record,) = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert record["step"] == 4 and np.isfinite(record["loss"])
