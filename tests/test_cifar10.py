"""cifar10/ and the networks it offers (cifar10.model, cifar10.augment): binary records,
distortions, safe extraction, download, the models, the CLIs."""

import hashlib
import io
import os
import tarfile
import uuid

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar10 import augment
from cifar10 import input as cifar10_input
from cifar10 import model as nets
from tests import helpers
from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import data as data_lib
from trainkit import errors
from trainkit import fs
from trainkit import loop
from trainkit import pipeline
from trainkit.evaluator import read_records

CIFAR10 = cifar10_input.DATASET


def make_config(data_dir, **overrides):
    return helpers.train_config("cifar10", data_dir, **{"l2_regularization": 0.004, **overrides})


def penalty(model, config):
    """The L2 penalty the trainer adds for ``config``'s network."""
    weights = CIFAR10.model(config).decayed_weights(model)
    return float(loop.regularization_loss(weights, config.l2_regularization))


def train_batches(config, start_step=0):
    images, labels = CIFAR10.arrays(config, "train")
    return pipeline.train_dataset(CIFAR10, config, images, labels, start_step), len(labels)


def test_records_decode_to_the_exact_labels_and_pixels(tmp_path):
    images, labels = helpers.synthetic_cifar(7, seed=5)
    records = helpers.cifar_records(images, labels)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(records)
    got_images, got_labels = cifar10_input.decode(path.read_bytes())
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    # Depth-major: the second byte of a record is the red value of pixel (0, 0).
    assert records[1] == images[0, 0, 0, 0] and records[1 + 1024] == images[0, 0, 0, 1]


def test_eval_pipeline_counts_every_record_once_with_central_crop(cifar_data):
    dataset, count = pipeline.eval_dataset(CIFAR10, make_config(cifar_data), "test",
                                           batch_size=16)
    sizes = [int(labels.shape[0]) for _, labels in dataset]
    assert count == 50 and sizes == [16, 16, 16, 2]
    images, _ = next(iter(dataset))
    assert images.shape == (16, 24, 24, 3)
    per_image = images.numpy().reshape(16, -1)
    np.testing.assert_allclose(per_image.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(per_image.std(axis=1), 1.0, atol=1e-3)
    # The central crop of the raw image, standardized.
    raw, _ = helpers.synthetic_cifar(50, seed=0)
    expected = tf.image.per_image_standardization(raw[0, 4:28, 4:28].astype(np.float32))
    np.testing.assert_allclose(images[0].numpy(), expected.numpy(), atol=1e-5)


def test_train_pipeline_distorts_crops_and_standardizes(cifar_data):
    dataset, count = train_batches(make_config(cifar_data, batch_size=32))
    assert count == 200
    batches = list(dataset.take(3))
    for images, labels in batches:
        assert images.shape == (32, 24, 24, 3) and labels.shape == (32,)
        flat = images.numpy().reshape(32, -1)
        np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-3)
        np.testing.assert_allclose(flat.std(axis=1), 1.0, atol=1e-2)


def test_distortions_crop_flip_and_vary_per_image():
    images = tf.cast(tf.reshape(tf.range(2 * 32 * 32 * 3) % 251, [2, 32, 32, 3]), tf.float32)
    images = tf.concat([images] * 32, axis=0)  # 64 copies of two images
    crops = augment.random_crop(
        images, pipeline.BatchRandom(tf.constant([1, 2], tf.int64), 64), 24)
    assert crops.shape == (64, 24, 24, 3)
    # Each crop is a window of its source image.
    source = images.numpy()
    for i in range(8):
        crop = crops[i].numpy()
        assert any(np.array_equal(crop, source[i, r:r + 24, c:c + 24])
                   for r in range(9) for c in range(9))
    seed = tf.constant([3, 4], tf.int64)
    out = augment.distort(images, pipeline.BatchRandom(seed, 64), 24).numpy()
    assert len({out[i].tobytes() for i in range(0, 64, 2)}) > 20  # not one shared choice
    # Same seed, same batch: identical (the randomness is keyed on the seed).
    again = augment.distort(images, pipeline.BatchRandom(seed, 64), 24).numpy()
    np.testing.assert_array_equal(out, again)
    # The second half of the batch, distorted as its own part, is that half of the whole.
    half = augment.distort(
        images[32:], pipeline.BatchRandom(seed, 64, start=32, size=32), 24).numpy()
    np.testing.assert_allclose(half, out[32:], rtol=1e-5, atol=1e-5)


def test_crop_mirrors_in_its_gather_and_distort_takes_uint8_as_float():
    images = tf.cast(tf.reshape(tf.range(8 * 32 * 32 * 3) % 251, [8, 32, 32, 3]), tf.uint8)
    seed = tf.constant([5, 6], tf.int64)
    mirror = tf.constant([True, False] * 4)
    plain = augment.random_crop(images, pipeline.BatchRandom(seed, 8), 24).numpy()
    mirrored = augment.random_crop(images, pipeline.BatchRandom(seed, 8), 24,
                                   mirror=mirror).numpy()
    assert mirrored.dtype == np.uint8
    # The same windows; the chosen ones read right to left.
    np.testing.assert_array_equal(mirrored[0::2], plain[0::2, :, ::-1])
    np.testing.assert_array_equal(mirrored[1::2], plain[1::2])
    # The pipeline hands distort uint8 images: cast after the crop, the same result.
    as_uint8 = augment.distort(images, pipeline.BatchRandom(seed, 8), 24).numpy()
    as_float = augment.distort(tf.cast(images, tf.float32),
                               pipeline.BatchRandom(seed, 8), 24).numpy()
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-6)


def test_truncated_and_missing_files_name_file_and_sizes(tmp_path):
    folder = helpers.make_cifar_dir(str(tmp_path))
    path = os.path.join(folder, "data_batch_3.bin")
    with open(path, "r+b") as f:
        f.truncate(40 * 3073 - 5)
    with pytest.raises(errors.UserError) as info:
        cifar10_input.files_for(make_config(str(tmp_path)), "train")
    assert f"{path} is 122,915 bytes, expected 30,730,000" in str(info.value)
    os.remove(os.path.join(folder, "test_batch.bin"))
    with pytest.raises(errors.UserError, match=r"test_batch.bin is missing"):
        cifar10_input.files_for(make_config(str(tmp_path)), "test")


def test_model_is_the_tutorials_with_1068298_parameters():
    model = CIFAR10.build(make_config("unused"))
    assert model.count_params() == 1068298
    assert [layer.name for layer in model.layers] == [
        "conv1", "pool1", "norm1", "conv2", "norm2", "pool2", "flatten", "local3", "local4",
        "softmax_linear"]
    config = make_config("unused", l2_regularization=0.004)
    expected = 0.004 * sum(float(tf.nn.l2_loss(model.get_layer(n).kernel.value))
                           for n in ("local3", "local4"))
    assert penalty(model, config) == pytest.approx(expected)


def test_banded_lrn_equals_tensorflows_lrn_and_its_gradient():
    x = tf.nn.relu(tf.random.stateless_normal([8, 12, 12, 64], [1, 2])) * 3.0
    for beta in (0.75, 0.6):  # the rsqrt path and the general one
        layer = nets.LocalResponseNormalization(beta=beta)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours = layer(x)
            reference = tf.nn.local_response_normalization(
                x, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=beta)
            weights = tf.random.stateless_normal(x.shape, [3, 4])
            ours_loss, reference_loss = (tf.reduce_sum(y * weights) for y in (ours, reference))
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(tape.gradient(ours_loss, x), tape.gradient(reference_loss, x),
                                   rtol=1e-4, atol=1e-5)


def test_airbench94_shapes_keys_weight_decay_whitening_and_test_time_augmentation():
    config = make_config("unused", model="airbench94", l2_regularization=5e-4)
    model = CIFAR10.build(config)
    images = tf.random.stateless_normal([4, 32, 32, 3], [5, 6])
    logits = model(images, training=False)
    assert logits.shape == (4, 10)
    keys = checkpoints.model_variables(model)  # raises if two variables share a key
    assert any(key.endswith("moving_mean") for key in keys)
    assert any(key.startswith("cifar10_resnet.group3.conv2.") for key in keys)
    # Every trained variable is decayed; the whitening filters are not trained.
    trained = model.trainable_variables
    assert "kernel" not in [v.name for v in model.get_layer("whiten").trainable_variables]
    expected = 5e-4 * sum(float(tf.nn.l2_loss(v.value)) for v in trained)
    assert penalty(model, config) == pytest.approx(expected, rel=1e-5)
    # A fresh conv passes its input through on its first filters (dirac initialization).
    kernel = model.get_layer("group2").conv2.kernel.numpy()
    np.testing.assert_array_equal(kernel[:, :, :, :256], np.pad(
        np.eye(256)[None, None], [(1, 1), (1, 1), (0, 0), (0, 0)]))

    # Whitening: the filters decorrelate 2x2 patches of the images they are made from
    # (uint8 training images, normalized as the network sees them), about zero as
    # airbench does it (its covariance is not centred; these images are brighter than
    # CIFAR-10's mean, so centring would leave the mean's direction correlated).
    rng = np.random.default_rng(3)
    base = rng.normal(170, 30, size=[64, 32, 32, 1])
    raw = np.clip(base + rng.normal(0, 12, size=[64, 32, 32, 3]), 0, 255).astype(np.uint8)
    whiten = model.get_layer("whiten")
    sample = augment.normalize(raw)
    CIFAR10.model(config).initialize(model, raw, config)
    out = tf.reshape(tf.nn.conv2d(sample, whiten.kernel.value, 1, "VALID"), [-1, 24]).numpy()
    moments = out[:, :12].T @ out[:, :12] / len(out)
    np.testing.assert_allclose(moments, np.diag(np.diag(moments)), atol=0.02)
    assert np.diag(moments).min() > 0.5  # each direction scaled to about unit size
    np.testing.assert_allclose(out[:, 12:], -out[:, :12], atol=1e-5)

    # Test-time augmentation: flips of the image (1/2) and of two one-pixel shifts (1/4 each).
    def flip_mean(x):
        return (model(x, training=False) + model(x[:, :, ::-1], training=False)) / 2
    padded = np.pad(images.numpy(), [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    expected = (flip_mean(images) / 2 + flip_mean(padded[:, :32, :32]) / 4
                + flip_mean(padded[:, 2:, 2:]) / 4)
    np.testing.assert_allclose(CIFAR10.model(config).eval_logits(model, images, config),
                               expected, rtol=1e-5, atol=1e-5)
    # The tutorial's network is scored as it is: it has no test-time augmentation.
    assert CIFAR10.model(make_config("unused")).eval_logits is None


def test_airbench95_is_the_same_network_with_wider_groups():
    config = make_config("unused", model="airbench95")
    model = CIFAR10.build(config)
    assert [model.get_layer(f"group{i}").filters for i in (1, 2, 3)] == [128, 384, 384]
    assert model(tf.zeros([2, 32, 32, 3]), training=False).shape == (2, 10)
    assert all(key.startswith("cifar10_resnet_wide.")
               for key in checkpoints.model_variables(model))
    # Whole images normalized per channel, not the tutorial's crops.
    raw = tf.constant(helpers.synthetic_cifar(3, seed=1)[0])
    np.testing.assert_array_equal(CIFAR10.model(config).eval_preprocess(raw, config),
                                  augment.normalize(raw))
    # --model offers exactly the networks the dataset has (the contract checks it).
    import cifar10
    assert tuple(CIFAR10.models) == cifar10.SPEC.models == ("tutorial", "airbench94",
                                                            "airbench95")


def test_kernel_gradient_by_shifted_matmuls_equals_tensorflows():
    x = tf.random.stateless_normal([4, 5, 5, 6], [3, 4])
    kernel = tf.random.stateless_normal([3, 3, 6, 7], [5, 6])
    dy = tf.random.stateless_normal([4, 5, 5, 7], [7, 8])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = tf.reduce_sum(nets.conv_same_shifted_grad(x, kernel) * dy)
        theirs = tf.reduce_sum(tf.nn.conv2d(x, kernel, 1, "SAME") * dy)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    for ours_grad, their_grad in zip(tape.gradient(ours, [x, kernel]),
                                     tape.gradient(theirs, [x, kernel])):
        np.testing.assert_allclose(ours_grad, their_grad, rtol=1e-4, atol=1e-4)


def test_bfloat16_conv_on_a_small_map_takes_the_shifted_gradient():
    """Only in bfloat16 and at most SHIFTED_GRAD_MAX_SIDE on a side; the gradient
    it gives is TensorFlow's to bfloat16's precision."""
    def kernel_grad(side, dtype):
        layer = nets.Conv(8, 3, padding="same", use_bias=False, dtype=dtype)
        x = tf.random.stateless_normal([2, side, side, 8], [1, 2])
        layer.build(x.shape)

        @tf.function
        def grad():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.cast(layer(x), tf.float32) * tf.range(8.0))
            return tape.gradient(loss, layer.kernel.value)

        ops = {op.type for op in grad.get_concrete_function().graph.get_operations()}
        shifted = "Conv2DBackpropFilter" not in ops
        kernel = tf.cast(layer.kernel, tf.float32)
        reference = tf.GradientTape()
        with reference:
            reference.watch(kernel)
            ref_loss = tf.reduce_sum(tf.nn.conv2d(x, kernel, 1, "SAME") * tf.range(8.0))
        return grad(), reference.gradient(ref_loss, kernel), shifted

    ours, theirs, shifted = kernel_grad(nets.SHIFTED_GRAD_MAX_SIDE, "mixed_bfloat16")
    assert shifted
    np.testing.assert_allclose(ours, theirs, rtol=0.05, atol=0.05 * float(tf.reduce_max(theirs)))
    assert not kernel_grad(nets.SHIFTED_GRAD_MAX_SIDE + 1, "mixed_bfloat16")[2]
    assert not kernel_grad(nets.SHIFTED_GRAD_MAX_SIDE, "float32")[2]


def test_airbench_initialization_follows_the_seed():
    """--seed decides the initial weights, in every process alike (an initializer made
    when nets is imported would draw its seed then, from an unseeded generator)."""
    def initial_weights(seed):
        keras.utils.set_random_seed(seed)
        model = nets.airbench_network(nets.AIRBENCH_WIDTHS["airbench94"], 10, (32, 32, 3), "n")
        model(tf.zeros([1, 32, 32, 3]))
        return {v.path: v.numpy() for v in model.variables}

    first, again, other = initial_weights(0), initial_weights(0), initial_weights(1)
    for path, value in first.items():
        np.testing.assert_array_equal(value, again[path])
    for kernel in ("n/group2/conv1/kernel", "n/logits/kernel"):
        assert not np.array_equal(first[kernel], other[kernel])


def test_fused_gelu_is_tensorflows_exact_gelu_in_value_and_gradient():
    """In float32 to float32 rounding; in bfloat16 to one bfloat16 rounding of those.
    The layer takes it when training only: evaluation and exports keep tf.nn.gelu."""
    x = tf.random.stateless_normal([4096], [1, 2]) * 3.0
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = nets.fused_gelu(x), tf.nn.gelu(x, approximate=False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(ours, x), tape.gradient(theirs, x),
                               rtol=1e-5, atol=1e-6)
    x16 = tf.cast(x, tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(x16)
        ours = nets.fused_gelu(x16)
    assert ours.dtype == tf.bfloat16
    exact = tf.nn.gelu(tf.cast(x16, tf.float32), approximate=False)
    np.testing.assert_allclose(tf.cast(ours, tf.float32), exact, rtol=2 ** -8, atol=1e-6)
    grad = tape.gradient(ours, x16, output_gradients=tf.ones_like(x16))
    with tf.GradientTape() as tape:
        x32 = tf.cast(x16, tf.float32)
        tape.watch(x32)
        exact = tf.nn.gelu(x32, approximate=False)
    np.testing.assert_allclose(tf.cast(grad, tf.float32), tape.gradient(exact, x32),
                               rtol=2 ** -8, atol=1e-6)
    layer = nets.GELU()
    np.testing.assert_array_equal(layer(x, training=False), tf.nn.gelu(x, approximate=False))
    np.testing.assert_allclose(layer(x, training=True), theirs, rtol=1e-5, atol=1e-6)


def test_batch_norm_offset_learns_64_times_faster_and_tracks_statistics():
    layer = nets.BatchNorm()
    x = tf.random.stateless_normal([8, 4, 4, 3], [1, 2]) * 3.0 + 1.0
    with tf.GradientTape() as tape:
        y = layer(x, training=True)
        loss = tf.reduce_sum(y[..., 0])
    (grad,) = tape.gradient(loss, [layer.offset.value])
    # d loss / d offset is 128 (elements of channel 0); the stored value sees 8x that,
    # so an SGD step moves the offset 8 * 8 = 64 times as far.
    np.testing.assert_allclose(grad.numpy(), [8 * 128, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), 0, atol=1e-5)
    mean = tf.reduce_mean(x, [0, 1, 2]).numpy()
    # Each update keeps 0.6 of the old statistic (airbench94's batchnorm_momentum).
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.4 * mean, rtol=1e-5)


def test_batch_norm_epsilon_is_airbench_1e_12():
    # A channel of variance 1e-6 comes out with unit variance; an epsilon of 1e-5 (the
    # usual default) would leave it at 1e-6 / (1e-6 + 1e-5), about 0.09.
    x = tf.random.stateless_normal([16, 4, 4, 2], [3, 4]) * [1e-3, 1.0]
    y = nets.BatchNorm()(x, training=True)
    np.testing.assert_allclose(tf.math.reduce_variance(y, [0, 1, 2]), [1.0, 1.0], rtol=1e-3)


def test_conv_group_is_airbench_block_with_no_shortcut():
    """conv, 2x2 max-pool, batch norm, GELU, conv, batch norm, GELU, computed by hand
    from the layer's own weights (the block has no residual branch: airbench94's)."""
    group = nets.ConvGroup(6, name="g")
    images = tf.random.stateless_normal([3, 8, 8, 4], [1, 2])
    group(images, training=True)  # builds, and moves the running statistics off 0/1
    for norm in (group.norm1, group.norm2):
        norm.offset.assign(tf.random.stateless_normal([6], [3, 4]) * 0.1)

    def conv(x, layer):
        return tf.nn.conv2d(x, layer.kernel, 1, "SAME")

    def norm(x, layer):
        return ((x - layer.moving_mean) / tf.sqrt(layer.moving_variance + layer.epsilon)
                + layer.BIAS_SCALE * layer.offset)

    x = tf.nn.max_pool2d(conv(images, group.conv1), 2, 2, "VALID")
    x = tf.nn.gelu(norm(x, group.norm1))
    expected = tf.nn.gelu(norm(conv(x, group.conv2), group.norm2))
    outputs = group(images, training=False)
    assert outputs.shape == (3, 4, 4, 6)
    np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-5)


def test_flip_translate_shifts_each_image_by_at_most_two_pixels():
    images = tf.cast(tf.reshape(tf.range(16 * 32 * 32 * 3) % 251, [16, 32, 32, 3]), tf.float32)
    out = augment.flip_translate(
        images, pipeline.BatchRandom(tf.constant([7, 8], tf.int64), 16)).numpy()
    source = images.numpy()
    moves = set()
    for i in range(16):
        center = out[i, 2:30, 2:30]
        found = [(flip, dr, dc) for flip, image in ((0, source[i]), (1, source[i, :, ::-1]))
                 for dr in range(-2, 3) for dc in range(-2, 3)
                 if np.array_equal(center, image[2 + dr:30 + dr, 2 + dc:30 + dc])]
        assert found, i
        moves.add(found[0])
    assert len(moves) > 4  # each image its own shift and flip


def test_flip_translate_shifts_by_at_most_translate_pixels():
    images = tf.cast(tf.reshape(tf.range(16 * 32 * 32 * 3) % 251, [16, 32, 32, 3]), tf.float32)
    out = augment.flip_translate(
        images, pipeline.BatchRandom(tf.constant([7, 8], tf.int64), 16), translate=4).numpy()
    source = np.pad(images.numpy(), [[0, 0], [4, 4], [4, 4], [0, 0]], mode="reflect")
    shifts = set()
    for i in range(16):
        found = [(flip, dr, dc) for flip, image in ((0, source[i]), (1, source[i, :, ::-1]))
                 for dr in range(9) for dc in range(9)
                 if np.array_equal(out[i], image[dr:dr + 32, dc:dc + 32])]
        assert found, i
        shifts.add(found[0][1:])
    assert any(max(abs(dr - 4), abs(dc - 4)) > 2 for dr, dc in shifts)  # beyond 2 pixels


def test_cutout_zeroes_one_square_of_each_image_inside_it():
    images = tf.ones([64, 32, 32, 3])
    out = augment.cutout(
        images, pipeline.BatchRandom(tf.constant([3, 4], tf.int64), 64), size=12).numpy()
    corners = set()
    for i in range(64):
        rows, cols = np.nonzero(out[i, :, :, 0] == 0)
        assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (12, 12), i
        assert len(rows) == 144 and (out[i] == 0).sum() == 144 * 3
        corners.add((rows.min(), cols.min()))
    assert len(corners) > 32  # each image its own square
    untouched = augment.cutout(
        images, pipeline.BatchRandom(tf.constant([3, 4], tf.int64), 64), size=0)
    np.testing.assert_array_equal(untouched.numpy(), images.numpy())


def test_airbench_pipeline_takes_translate_and_cutout_from_the_config(cifar_data):
    def first_batch(**overrides):
        config = make_config(cifar_data, model="airbench94", batch_size=32, options=overrides)
        return next(iter(train_batches(config)[0]))[0].numpy()

    # Normalized pixels are never exactly 0 (the channel means are not integers):
    # zeros are Cutout's.
    plain = first_batch(translate=2, cutout=0)
    assert (plain == 0).sum() == 0
    cut = first_batch(translate=2, cutout=12)
    assert ((cut == 0).reshape(32, -1).sum(axis=1) == 12 * 12 * 3).all()
    assert not np.array_equal(first_batch(translate=4, cutout=0), plain)


def test_airbench_trains_with_cutout_and_a_wider_translate(tmp_path, cifar_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("cifar10.train", f"--train_dir={train_dir}",
                             f"--data_dir={cifar_data}", "--preset=airbench", "--model=airbench94",
                             "--max_steps=2", "--batch_size=16", "--warmup_steps=1",
                             "--save_checkpoint_secs=0", "--cutout=12", "--translate=4")
    assert result.returncode == 0, result.stderr
    saved = config_lib.read_train_config(train_dir)
    assert saved.options == {"cutout": 12, "translate": 4, "whiten_bias_steps": 0}
    bad = helpers.run_cli("cifar10.train", f"--train_dir={tmp_path / 'bad'}",
                          f"--data_dir={cifar_data}", "--preset=airbench", "--cutout=33")
    assert bad.returncode != 0
    assert "--cutout" in bad.stderr


def test_airbench_preset_trains_and_evaluates(tmp_path, cifar_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("cifar10.train", f"--train_dir={train_dir}",
                             f"--data_dir={cifar_data}", "--preset=airbench", "--max_steps=2",
                             "--batch_size=8", "--warmup_steps=1", "--save_checkpoint_secs=0")
    assert result.returncode == 0, result.stderr
    saved = config_lib.read_train_config(train_dir)
    assert (saved.model, saved.lr_schedule, saved.label_smoothing, saved.optimizer,
            saved.options) == ("airbench95", "linear", 0.2, "nesterov",
                               {"translate": 4, "cutout": 12, "whiten_bias_steps": 0})
    # The trainer set the (untrained) whitening filters from the first training images.
    reader = tf.train.load_checkpoint(checkpoints.latest(train_dir))
    (key,) = [k for k, _ in tf.train.list_variables(checkpoints.latest(train_dir))
              if k.startswith("model/") and "whiten..kernel" in k]
    model = CIFAR10.build(saved)
    CIFAR10.model(saved).initialize(model, CIFAR10.arrays(saved, "train")[0], saved)
    np.testing.assert_allclose(reader.get_tensor(key), model.get_layer("whiten").kernel.numpy(),
                               rtol=1e-5, atol=1e-6)
    result = helpers.run_cli("cifar10.eval", f"--train_dir={train_dir}", "--run_once")
    assert result.returncode == 0, result.stderr
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert [(r["step"], r["num_examples"]) for r in records] == [(2, 50)]


# --- archives and downloads ---------------------------------------------------------

def _tar(path, members):
    """members: list of (TarInfo-configuring callable, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)


def _file(name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    return info, payload


def _archive_of(folder, path):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")


def test_airbench94_preset_trains_the_whitening_bias_for_its_first_steps_only(
        tmp_path, cifar_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("cifar10.train", f"--train_dir={train_dir}",
                             f"--data_dir={cifar_data}", "--preset=airbench94", "--max_steps=4",
                             "--batch_size=8", "--warmup_steps=1", "--whiten_bias_steps=2",
                             "--save_checkpoint_steps=1", "--save_checkpoint_secs=0")
    assert result.returncode == 0, result.stderr
    # 4 steps end before Lookahead's start at 144: the log says the run has none.
    assert "Lookahead starts after step 144" in result.stderr
    saved = config_lib.read_train_config(train_dir)
    assert (saved.model, saved.learning_rate, saved.warmup_from, saved.decay_to,
            saved.lookahead_start_steps, saved.lookahead_sync_steps, saved.options) == (
        "airbench94", 1.5, 0.2, 0.07, 144, 48,
        {"translate": 2, "cutout": 0, "whiten_bias_steps": 2})

    def whiten_bias(step):
        reader = tf.train.load_checkpoint(os.path.join(train_dir, f"ckpt-{step}"))
        (key,) = [k for k in reader.get_variable_to_shape_map()
                  if k.startswith("model/") and "whiten..bias" in k]
        return reader.get_tensor(key)
    # It moved in steps 1 and 2 (momentum and all), and not at all in steps 3 and 4.
    assert not np.array_equal(whiten_bias(1), whiten_bias(2))
    np.testing.assert_array_equal(whiten_bias(2), whiten_bias(4))
    # A resumed run knows how far it is: the bias stays held.
    result = helpers.run_cli("cifar10.train", f"--train_dir={train_dir}", "--resume",
                             "--max_steps=6")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(whiten_bias(2), whiten_bias(6))
    # Scored with and without test-time augmentation, each into its own eval dir: the
    # same checkpoint, different logits, so different losses.
    losses = []
    for flag, folder in (("--test_time_augmentation", "eval"),
                         ("--notest_time_augmentation", "eval_plain")):
        result = helpers.run_cli("cifar10.eval", f"--train_dir={train_dir}", "--run_once", flag)
        assert result.returncode == 0, result.stderr
        records = read_records(os.path.join(train_dir, folder, "metrics.jsonl"))
        assert [r["step"] for r in records] == [6]
        losses.append(records[0]["loss"])
    assert losses[0] != pytest.approx(losses[1], rel=1e-6)
    # An optimizer that cannot hold a weight still is refused in one line.
    result = helpers.run_cli("cifar10.train", f"--train_dir={tmp_path / 'adam'}",
                             f"--data_dir={cifar_data}", "--preset=airbench94", "--max_steps=2",
                             "--batch_size=8", "--optimizer=adam")
    assert result.returncode != 0
    assert "--optimizer=adam cannot stop training some weights part-way" in result.stderr
    assert not os.path.exists(os.path.join(tmp_path, "adam", "checkpoint"))


def test_airbench94_muon_is_airbench94_with_muon():
    import cifar10
    spec = cifar10.SPEC
    muon = dict(spec.presets["airbench94_muon"])
    assert muon.pop("optimizer") == "muon"
    assert spec.presets["airbench94"]["optimizer"] == "nesterov"
    assert muon == {k: v for k, v in spec.presets["airbench94"].items() if k != "optimizer"}


@pytest.mark.parametrize("member", ["../escape.bin", "/tmp/abs_escape.bin",
                                    "cifar-10-batches-bin/../../escape.bin", "link", "hardlink"])
def test_safe_extract_refuses_malicious_archives(tmp_path, member):
    archive = str(tmp_path / "evil.tar.gz")
    if member == "link":
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        members = [(info, None)]
    elif member == "hardlink":
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.type, info.linkname = tarfile.LNKTYPE, "../../outside"
        members = [(info, None)]
    else:
        members = [_file("cifar-10-batches-bin/ok.bin", b"x" * 3073), _file(member, b"evil")]
    _tar(archive, members)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(errors.UserError, match="refusing to extract"):
        data_lib.safe_extract(archive, str(dest))
    # Nothing at all was written, not even the good member before the bad one.
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escape.bin").exists() and not os.path.exists("/tmp/abs_escape.bin")


def test_data_dir_with_only_the_archive_is_extracted(tmp_path, cifar_data):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    _archive_of(cifar_data, str(data_dir / cifar10_input.ARCHIVE))
    _, count = cifar10_input.files_for(make_config(str(data_dir)), "test")
    assert count == 50
    assert (data_dir / "cifar-10-batches-bin" / "test_batch.bin").exists()


@pytest.fixture
def mirror(tmp_path, cifar_data):
    root = tmp_path / "mirror"
    root.mkdir()
    _archive_of(cifar_data, str(root / cifar10_input.ARCHIVE))
    server = helpers.HttpServer(str(root))
    yield server, root
    server.close()


def test_download_verifies_checksum_and_extracts(mirror, tmp_path, monkeypatch):
    server, root = mirror
    digest = hashlib.md5((root / cifar10_input.ARCHIVE).read_bytes()).hexdigest()
    monkeypatch.setattr(cifar10_input, "ARCHIVE_MD5", digest)
    data_dir = str(tmp_path / "fresh")
    _, count = cifar10_input.files_for(make_config(data_dir, data_mirrors=(server.url,)), "train")
    assert count == 200


def test_download_with_wrong_checksum_is_refused(mirror, tmp_path):
    server, _ = mirror  # the real published MD5 does not match the test's archive
    data_dir = tmp_path / "fresh"
    with pytest.raises(errors.UserError, match="checksum mismatch .*expected c32a1d4ab5"):
        cifar10_input.files_for(make_config(str(data_dir), data_mirrors=(server.url,)), "test")
    assert not any(data_dir.iterdir())


def test_malicious_download_is_not_extracted(tmp_path, monkeypatch):
    root = tmp_path / "mirror"
    root.mkdir()
    _tar(str(root / cifar10_input.ARCHIVE), [_file("../../pwned.bin", b"evil")])
    digest = hashlib.md5((root / cifar10_input.ARCHIVE).read_bytes()).hexdigest()
    monkeypatch.setattr(cifar10_input, "ARCHIVE_MD5", digest)
    server = helpers.HttpServer(str(root))
    try:
        data_dir = tmp_path / "a" / "b"
        with pytest.raises(errors.UserError, match="would land outside"):
            cifar10_input.files_for(make_config(str(data_dir), data_mirrors=(server.url,)),
                                    "test")
    finally:
        server.close()
    assert not (tmp_path / "pwned.bin").exists() and not (tmp_path / "a" / "pwned.bin").exists()


# --- the two processes --------------------------------------------------------------

def test_cifar10_trainer_and_evaluator_end_to_end(tmp_path, cifar_data):
    train_dir = str(tmp_path / "run")
    _, eval_out = helpers.run_pair(
        # Every retained checkpoint, so that a slow start of the evaluator (loading
        # TensorFlow at idle priority beside the trainer) cannot leave it only the last.
        "cifar10", train_dir, ["--eval_interval_secs=0.2", "--eval_batch_size=16",
                               "--eval_policy=all"],
        [f"--data_dir={cifar_data}", "--preset=short", "--validation_size=20",
         "--max_steps=240", "--batch_size=16",
         "--save_checkpoint_steps=30", "--save_checkpoint_secs=0", "--max_to_keep=10",
         "--log_frequency=30", "--save_summaries_steps=60", "--moving_average_decay=0.99"])
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    steps = [r["step"] for r in records]
    assert len(steps) > 1 and steps == sorted(set(steps)) and steps[-1] == 240, eval_out
    assert all(r["num_examples"] == 50 for r in records)
    saved = config_lib.read_train_config(train_dir)
    assert (saved.preset, saved.optimizer, saved.lr_schedule, saved.precision) == (
        "short", "momentum", "cosine", "auto")
    # The tutorial's summaries are in the trainer's event files, the evaluator's in its
    # own: the two runs TensorBoard shows side by side (make tensorboard).
    def tags(folder):
        found = set()
        for name in os.listdir(os.path.join(train_dir, folder)):
            path = os.path.join(train_dir, folder, name)
            if name.startswith("events."):
                for event in tf.compat.v1.train.summary_iterator(path):
                    found.update(v.tag for v in event.summary.value)
        return found

    assert {"loss", "total_loss", "loss_average", "learning_rate", "input_images",
            "activations/conv1", "sparsity/local3"} <= tags("train")
    assert {"precision_at_1", "loss"} <= tags("eval/validation")
    assert {"precision_at_1", "loss", "confusion_matrix"} <= tags("eval/test")


def test_cifar10_eval_num_examples_and_run_once(tmp_path, cifar_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("cifar10.train", f"--train_dir={train_dir}",
                             f"--data_dir={cifar_data}", "--max_steps=3", "--batch_size=8",
                             "--validation_size=20")
    assert result.returncode == 0, result.stderr
    # Decoding the records logs no oneDNN error line (a uint8 transpose would, on CPUs
    # without AVX-512, such as this project's; elsewhere the check passes either way).
    assert "oneDNN supports DT_UINT8" not in result.stderr
    result = helpers.run_cli("cifar10.eval", f"--train_dir={train_dir}", "--run_once",
                             "--num_examples=37", "--eval_batch_size=10")
    assert result.returncode == 0, result.stderr
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert [(r["step"], r["num_examples"]) for r in records] == [(3, 37)]


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_prepare_data_verifies_without_training(dataset, cifar_data, mnist_data):
    data_dir = cifar_data if dataset == "cifar10" else mnist_data
    result = helpers.run_cli("trainkit.prepare_data", f"--dataset={dataset}",
                             f"--data_dir={data_dir}")
    assert result.returncode == 0, result.stderr
    assert "all files" in result.stderr and "training and" in result.stderr


def test_prepare_data_without_data_or_network_is_one_line(tmp_path):
    result = helpers.run_cli("trainkit.prepare_data", "--dataset=cifar10",
                             f"--data_dir={tmp_path / 'none'}",
                             "--data_mirrors=http://127.0.0.1:9/")
    assert result.returncode == 2
    lines = helpers.error_lines(result.stderr)
    assert len(lines) == 1 and "CIFAR-10 not found in" in lines[0], result.stderr
    assert "cifar-10-binary.tar.gz" in lines[0] and "127.0.0.1:9" in lines[0]


def test_train_batches_resume_exactly_at_any_step(cifar_data):
    """Batch s of a pipeline started at step s equals batch s of one started at 0, pixels too."""
    config = make_config(cifar_data, batch_size=32)
    full = list(train_batches(config, start_step=0)[0].take(9))
    resumed = list(train_batches(config, start_step=6)[0].take(3))
    for (a_images, a_labels), (b_images, b_labels) in zip(full[6:], resumed):
        np.testing.assert_array_equal(a_labels.numpy(), b_labels.numpy())
        np.testing.assert_array_equal(a_images.numpy(), b_images.numpy())


def test_validation_split_holds_out_the_last_training_records(cifar_data):
    config = make_config(cifar_data, validation_size=30)
    _, train_count = train_batches(config)
    dataset, count = pipeline.eval_dataset(CIFAR10, config, "validation", batch_size=7)
    labels = np.concatenate([l.numpy() for _, l in dataset])
    _, last_labels = helpers.synthetic_cifar(40, seed=5)  # data_batch_5's records
    assert (train_count, count) == (170, 30)
    np.testing.assert_array_equal(labels, last_labels[-30:])
    with pytest.raises(errors.UserError, match="--validation_size=0 must be between 1"):
        pipeline.eval_dataset(CIFAR10, make_config(cifar_data), "validation", batch_size=7)


def test_download_into_a_data_dir_with_a_scheme_is_staged_locally(mirror, cifar_data,
                                                                  monkeypatch):
    server, root = mirror
    digest = hashlib.md5((root / cifar10_input.ARCHIVE).read_bytes()).hexdigest()
    monkeypatch.setattr(cifar10_input, "ARCHIVE_MD5", digest)
    data_dir = f"ram://cifar{uuid.uuid4().hex[:8]}/data"
    _, count = cifar10_input.files_for(make_config(data_dir, data_mirrors=(server.url,)), "train")
    assert count == 200
    assert sorted(fs.listdir(data_dir)) == ["cifar-10-batches-bin", cifar10_input.ARCHIVE]
    batches = fs.join(data_dir, "cifar-10-batches-bin")
    assert sorted(fs.listdir(batches)) == sorted(
        cifar10_input.TRAIN_FILES + cifar10_input.TEST_FILES)
    local = cifar10_input.maybe_download(cifar_data)
    for name in cifar10_input.TRAIN_FILES + cifar10_input.TEST_FILES:
        with open(os.path.join(local, name), "rb") as f:
            assert fs.read_bytes(fs.join(batches, name)) == f.read(), name
