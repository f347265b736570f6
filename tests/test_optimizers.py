"""Muon (--optimizer=muon) against cases small enough to work out by hand."""

import numpy as np
import tensorflow as tf

from tests import helpers
from trainkit import optimizers

A, B, C = optimizers.NEWTON_SCHULZ


def newton_schulz_on_a_singular_value(s, steps=optimizers.NEWTON_SCHULZ_STEPS):
    """What the iteration does to one singular value of a matrix of Frobenius norm 1."""
    for _ in range(steps):
        s = A * s + B * s ** 3 + C * s ** 5
    return s


def test_three_newton_schulz_steps_take_a_unit_singular_value_to_0_7207():
    # By hand: 1 -> a + b + c = 0.701 -> 1.11362 -> 0.72071.
    assert abs(newton_schulz_on_a_singular_value(1.0) - 0.72071) < 1e-5


def test_orthogonalize_maps_each_singular_value_and_keeps_the_singular_vectors():
    # diag(3, 4) scaled to norm 1 has singular values 0.6 and 0.8; rotations on both sides
    # must carry through unchanged, on the wide and on the tall side alike.
    def rotation(angle):
        return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    u, v = rotation(0.3), rotation(1.1)
    matrix = u @ np.diag([3.0, 4.0]) @ v.T
    expected = u @ np.diag([newton_schulz_on_a_singular_value(0.6),
                            newton_schulz_on_a_singular_value(0.8)]) @ v.T
    got = optimizers.orthogonalize(tf.constant(matrix, tf.float32)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    tall = np.concatenate([matrix, np.zeros([1, 2])])  # 3 x 2: the same singular values
    got = optimizers.orthogonalize(tf.constant(tall, tf.float32)).numpy()
    np.testing.assert_allclose(got[:2], expected, atol=1e-5)
    np.testing.assert_allclose(got[2], 0.0, atol=1e-6)


def test_a_muon_step_on_a_kernel_and_a_bias():
    import keras
    kernel = keras.Variable(np.array([3.0, 4.0], np.float32).reshape([1, 1, 1, 2]))
    bias = keras.Variable(np.array([1.0, 2.0], np.float32))
    optimizer = optimizers.Muon(0.1, momentum=0.5, muon_scale=2.0, muon_momentum=0.6)
    kernel_gradient = np.array([0.3, 0.4], np.float32).reshape([1, 1, 1, 2])
    bias_gradient = np.array([1.0, -1.0], np.float32)
    tf.function(lambda: optimizer.apply_gradients(
        [(tf.constant(kernel_gradient), kernel), (tf.constant(bias_gradient), bias)]))()
    # The kernel: its norm 5 scaled to sqrt(2 outputs); the Nesterov direction 1.6 g is a
    # 1 x 2 matrix of singular value 1 along (0.6, 0.8), which Newton-Schulz takes to
    # 0.72071; the step is 0.1 x 2.0 times that.
    expected = np.array([3.0, 4.0]) * np.sqrt(2) / 5 - 0.2 * 0.72071 * np.array([0.6, 0.8])
    np.testing.assert_allclose(kernel.numpy().reshape(2), expected, atol=1e-5)
    # The bias: Keras's Nesterov SGD, m = -0.1 g, w += 0.5 m - 0.1 g = w - 0.15 g.
    np.testing.assert_allclose(bias.numpy(), [1.0 - 0.15, 2.0 + 0.15], atol=1e-6)


def test_the_trainer_runs_muon(mnist_data, tmp_path):
    result = helpers.run_cli("mnist.train", f"--train_dir={tmp_path / 'run'}",
                             f"--data_dir={mnist_data}", "--optimizer=muon", "--max_steps=20",
                             "--batch_size=20", "--validation_size=100", "--log_frequency=10",
                             "--learning_rate=0.05", "--muon_learning_rate=0.1",
                             "--data_mirrors=http://127.0.0.1:9/", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Training finished at step 20" in result.stderr


def test_train_only_until_holds_a_weight_still_after_its_steps():
    import keras
    held = keras.Variable(np.array([1.0, 2.0], np.float32))
    free = keras.Variable(np.array([1.0, 2.0], np.float32))
    optimizer = optimizers.FusedSGD(0.1, momentum=0.9, nesterov=True)
    optimizer.build([held, free])
    optimizer.train_only_until([(held, 2)])
    gradient = tf.constant([1.0, -1.0])
    apply = tf.function(lambda: optimizer.apply_gradients([(gradient, held), (gradient, free)]))
    # Keras's Nesterov SGD by hand: m = 0.9 m - 0.1 g; w += 0.9 m - 0.1 g.
    m, w, after = np.zeros(2), np.array([1.0, 2.0]), []
    for _ in range(4):
        m = 0.9 * m - 0.1 * np.array([1.0, -1.0])
        w = w + 0.9 * m - 0.1 * np.array([1.0, -1.0])
        after.append(w)
        apply()
        np.testing.assert_allclose(free.numpy(), w, rtol=1e-6)
    # Steps 1 and 2 moved it as any weight; the momentum left then does not move it on.
    np.testing.assert_allclose(held.numpy(), after[1], rtol=1e-6)


def test_muon_kernels_take_no_l2_penalty_and_other_optimizers_keep_it():
    import keras
    from trainkit import config as config_lib
    kernel = keras.Variable(np.ones([3, 3, 2, 4], np.float32))
    bias = keras.Variable(np.ones([4], np.float32))
    muon = config_lib.TrainConfig(optimizer="muon")
    assert optimizers.penalized(muon, [kernel, bias]) == [bias]
    nesterov = config_lib.TrainConfig(optimizer="nesterov")
    assert optimizers.penalized(nesterov, [kernel, bias]) == [kernel, bias]
