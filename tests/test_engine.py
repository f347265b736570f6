"""The shared engine in-process: EMA maths, checkpoints, resume, evaluator counts."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.test_mnist_input import make_config
from trainkit import checkpoints
from trainkit import config as config_lib
from trainkit import ema as ema_lib
from trainkit import errors
from trainkit import evaluator
from trainkit import lookahead as lookahead_lib
from trainkit import loop
from trainkit import registry
from trainkit.evaluator import read_records

MNIST = registry.load("mnist")


@pytest.mark.parametrize("setting,expected", [(None, True), ("0", False)])
def test_entry_points_turn_onednn_kernels_on_unless_the_user_said_otherwise(setting, expected):
    """trainkit sets TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow loads (README "Speed");
    a user's own setting wins."""
    from tests import helpers
    assert helpers.onednn_on(setting, first_import="cifar10.train") is expected


@pytest.mark.parametrize("module", ["mnist.train", "cifar10.eval"])
def test_a_kernel_setting_tensorflow_would_ignore_is_refused(module, tmp_path):
    """TensorFlow reads TF_ENABLE_ONEDNN_OPTS as 0/1/true/false and silently falls back
    to its own choice on anything else: the entry points say so in one line instead."""
    from tests import helpers
    last = "--max_steps=1" if module.endswith("train") else "--run_once"
    result = helpers.run_cli(module, f"--train_dir={tmp_path}/run", last,
                             env={"TF_ENABLE_ONEDNN_OPTS": "yes"})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = helpers.error_lines(result.stderr)
    assert len(lines) == 1 and "TF_ENABLE_ONEDNN_OPTS='yes'" in lines[0], result.stderr
    assert "0" in lines[0] and "1" in lines[0]
    assert not os.path.exists(tmp_path / "run")


def test_ema_matches_hand_computation():
    var = tf.Variable([1.0, -2.0])
    step = tf.Variable(0, dtype=tf.int64)

    class Wrapped:  # what a Keras 3 variable looks like to the EMA: .value is the tf.Variable
        value = var

    averages = ema_lib.MovingAverages({"w": Wrapped}, decay=0.9, step=step)
    shadow = np.array([1.0, -2.0])
    values = [[3.0, 0.0], [5.0, 4.0], [0.0, 1.0]] + [[2.0, 2.0], [-1.0, 3.0]] * 50
    for t, new_value in enumerate(values, start=1):
        var.assign(new_value)
        step.assign(t)
        averages.update()
        decay = min(0.9, (1.0 + t) / (10.0 + t))
        shadow = shadow - (1.0 - decay) * (shadow - np.array(new_value))
        np.testing.assert_allclose(averages.shadows["w"].numpy(), shadow, rtol=1e-5, atol=1e-6)
    # 103 updates cover both regimes: (1+t)/(10+t) early, the 0.9 cap after t = 81.


def test_ema_every_k_steps_uses_the_decay_to_that_power():
    var = tf.Variable([1.0, -2.0])
    step = tf.Variable(0, dtype=tf.int64)

    class Wrapped:
        value = var

    averages = ema_lib.MovingAverages({"w": Wrapped}, decay=0.9, step=step, every=3)
    update = tf.function(averages.update)
    shadow = np.array([1.0, -2.0])
    for t in range(1, 31):
        new_value = [np.sin(t), np.cos(t)]
        var.assign(new_value)
        step.assign(t)
        update()
        if t % 3 == 0:
            decay = min(0.9, (1.0 + t) / (10.0 + t)) ** 3
            shadow = shadow - (1.0 - decay) * (shadow - np.array(new_value))
        np.testing.assert_allclose(averages.shadows["w"].numpy(), shadow, rtol=1e-5, atol=1e-6)


def lookahead_by_hand(moves, decay, every, start, sync, total):
    """airbench94's Lookahead written out: the slow copy is made at the first pull
    after ``start``; the weights are set to it at every pull, every ``sync`` steps
    and at the end. Returns the weights and slow copy after each step."""
    slow, history = None, []
    for t, moved in enumerate(moves, start=1):
        weights = moved
        if t > start and t % every == 0:
            if slow is None:
                slow = weights.copy()
            else:
                keep = decay ** every * (t / total) ** 3
                slow = keep * slow + (1.0 - keep) * weights
            weights = slow
        if slow is not None and (t % sync == 0 or t == total):
            weights = slow
        history.append((weights, slow))
    return history


@pytest.mark.parametrize("start,sync", [(0, 0), (6, 10)])
def test_lookahead_pulls_copies_back_and_ends_on_the_slow_copy(start, sync):
    var = tf.Variable([1.0, -2.0])
    counter = tf.Variable(7, dtype=tf.int64)
    step = tf.Variable(0, dtype=tf.int64)

    class Weights:  # a Keras 3 variable as the Lookahead sees it
        value, dtype = var, "float32"

    class Seed:  # an integer state (the dropout's seed): no slow copy
        value, dtype = counter, "int64"

    lookahead = lookahead_lib.Lookahead({"w": Weights, "seed": Seed}, decay=0.9, every=4,
                                        step=step, max_steps=23, start=start, sync_every=sync)
    assert list(lookahead.slow) == ["w"]
    update = tf.function(lookahead.update)
    # What each training step leaves, added to the weights the previous step ended on.
    deltas = [np.array([np.sin(t), np.cos(t)]) * t for t in range(1, 24)]
    weights, moves = np.array([1.0, -2.0]), []
    expected = []
    for t in range(1, 24):
        moved = weights + deltas[t - 1]
        moves.append(moved)
        expected = lookahead_by_hand(moves, 0.9, 4, start, sync or 10 ** 6, 23)
        weights = expected[-1][0]
        var.assign(var + deltas[t - 1])
        step.assign(t)
        update()
        np.testing.assert_allclose(var.numpy(), weights, rtol=1e-5, atol=1e-5)
        if expected[-1][1] is not None:
            np.testing.assert_allclose(lookahead.slow["w"].numpy(), expected[-1][1],
                                       rtol=1e-5, atol=1e-5)
    # The run ends on the slow copy; steps 21-23 since the last pull are discarded.
    np.testing.assert_allclose(var.numpy(), expected[-1][1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(moves[-1], expected[-1][1])
    assert int(counter.numpy()) == 7


def _compiled_apply(optimizer, var):
    return tf.function(lambda gradient: optimizer.apply_gradients([(gradient, var)]))


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.85, True)])
def test_fused_sgd_equals_keras_sgd(momentum, nesterov):
    import keras

    from trainkit import optimizers
    rng = np.random.default_rng(0)
    start = rng.normal(size=[300, 7]).astype(np.float32)
    grads = [rng.normal(size=[300, 7]).astype(np.float32) for _ in range(5)]
    results = []
    for cls in (keras.optimizers.SGD, optimizers.FusedSGD):
        var = keras.Variable(start)
        opt = cls(0.05, momentum=momentum, nesterov=nesterov)
        opt.build([var])
        apply = _compiled_apply(opt, var)
        for g in grads:
            apply(tf.constant(g))
        results.append((var.numpy(), [v.numpy() for v in opt.variables]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    assert len(results[0][1]) == len(results[1][1])  # the same slots, so the same checkpoints
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def train_config(tmp_path, data_dir, **overrides):
    values = dict(train_dir=str(tmp_path / "run"), batch_size=20, max_steps=20,
                  optimizer="momentum", learning_rate=0.05, save_checkpoint_steps=10,
                  moving_average_decay=0.9)
    values.update(overrides)
    return make_config(data_dir, **values)


def eval_config(train_dir, batch_size=64):
    return config_lib.EvalConfig(train_dir=train_dir, eval_batch_size=batch_size,
                                 eval_interval_secs=0.0, device="auto")


def read_tensors(path, prefix):
    reader = tf.train.load_checkpoint(path)
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    # The object graph escapes "." in a dict key as "..".
    return {name[len(prefix) + 1:-len(suffix)].replace("..", "."): reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()
            if name.startswith(prefix + "/") and name.endswith(suffix)}


def test_learning_rate_schedule_staircase_and_continuous(mnist_data, tmp_path):
    config = train_config(tmp_path, mnist_data, learning_rate=0.1, learning_rate_decay=0.5,
                          num_epochs_per_decay=2.0)
    lr = loop.learning_rate_fn(config, steps_per_epoch=10)
    assert [round(float(lr(s)), 6) for s in (0, 19, 20, 45)] == [0.1, 0.1, 0.05, 0.025]
    config.staircase = False
    lr = loop.learning_rate_fn(config, steps_per_epoch=10)
    assert float(lr(10)) == pytest.approx(0.1 * 0.5 ** 0.5)


@pytest.mark.parametrize("model_name", ["cnn", "deep_cnn", "fc"])
def test_evaluator_restores_the_trainers_shadow_values(mnist_data, tmp_path, model_name):
    config = train_config(tmp_path, mnist_data, model=model_name, max_steps=12,
                          l2_regularization=5e-4)
    assert loop.train(config, MNIST) == 12
    path = checkpoints.latest(config.train_dir)
    assert checkpoints.step_of(path) == 12
    shadows = read_tensors(path, "ema")
    weights = read_tensors(path, "model")
    # A fresh model, as the evaluator process builds it, takes the shadow values.
    model = MNIST.build(config)
    checkpoints.restore_averaged(path, model)
    restored = checkpoints.model_variables(model, trainable_only=True)
    assert set(restored) == set(shadows) and shadows
    for key, var in restored.items():
        np.testing.assert_array_equal(var.numpy(), shadows[key])
    # ... which are not the raw weights: the averaging did something.
    assert any(not np.array_equal(shadows[k], weights[k]) for k in shadows)


def test_an_action_added_from_outside_sees_its_steps_and_may_stop_the_run(mnist_data,
                                                                          tmp_path):
    """The loop's one protocol (trainkit.actions): an action of the caller's own, given to
    loop.train, is called at its exact steps and ends the run, saved and DONE, like the
    trainer's early stopping."""
    from trainkit import actions, periodic

    class StopAtFourteen:
        def __init__(self):
            self.periodic = periodic.PeriodicAction(every_steps=7, start=0)
            self.seen = []

        def __call__(self, step, outputs):
            if self.periodic.should_fire(step):
                self.seen.append((step, float(outputs[0])))
            return actions.Stop("enough for this test") if step == 14 else None

    config = train_config(tmp_path, mnist_data, max_steps=40, steps_per_call=10)
    action = StopAtFourteen()
    assert loop.train(config, MNIST, actions=[action]) == 14
    assert [step for step, _ in action.seen] == [7, 14]
    assert all(np.isfinite(loss) for _, loss in action.seen)
    assert checkpoints.step_of(checkpoints.latest(config.train_dir)) == 14
    assert open(os.path.join(config.train_dir, "DONE")).read() == "14\n"


def test_resume_continues_step_weights_optimizer_and_shadows(mnist_data, tmp_path):
    config = train_config(tmp_path, mnist_data, max_steps=20)
    loop.train(config, MNIST)
    saved = tf.train.load_checkpoint(os.path.join(config.train_dir, "ckpt-20"))
    with pytest.raises(errors.UserError, match="already holds checkpoints .*ckpt-20.*--resume"):
        loop.Trainer(config, MNIST)

    config.resume, config.max_steps = True, 40
    trainer = loop.Trainer(config, MNIST)
    assert int(trainer.step) == 20
    restored = {v.path: v.numpy() for v in trainer.optimizer.variables}
    saved_names = saved.get_variable_to_shape_map()
    momenta = [v for v in trainer.optimizer.variables if "momentum" in v.path]
    assert momenta, "momentum slots exist"
    for var in momenta:
        assert np.any(restored[var.path] != 0), f"{var.path} restored as zeros"
    # Every optimizer slot equals the saved value.
    slot_tensors = {n: saved.get_tensor(n) for n in saved_names if n.startswith("optimizer/")}
    for var in momenta:
        assert any(np.array_equal(restored[var.path], t) for t in slot_tensors.values())
    saved_shadows = read_tensors(os.path.join(config.train_dir, "ckpt-20"), "ema")
    assert set(saved_shadows) == set(trainer.averages.shadows)
    for key, var in trainer.averages.shadows.items():
        np.testing.assert_array_equal(var.numpy(), saved_shadows[key])
    assert trainer.run() == 40
    assert checkpoints.step_of(checkpoints.latest(config.train_dir)) == 40


def test_a_trainer_run_again_continues_where_it_stopped(mnist_data, tmp_path):
    """``run()`` twice on one Trainer (the bench times its second call) is one run: the
    second call takes the batches after the first's last, as one longer call would, and
    its summaries go on in the same log."""
    weights = {}
    for name, stops in (("once", [20]), ("twice", [10, 20])):
        config = train_config(tmp_path / name, mnist_data, deterministic=True,
                              save_summaries_steps=5)
        trainer = loop.Trainer(config, MNIST)
        for stop in stops:
            config.max_steps = stop
            trainer.run()
        weights[name] = [v.numpy() for v in trainer.model.weights]
        trainer.close()
        logged = []
        for path in tf.io.gfile.glob(os.path.join(config.train_dir, "train", "events.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                logged += [event.step for v in event.summary.value if v.tag == "loss"]
        assert sorted(logged) == [5, 10, 15, 20], name
    for once, twice in zip(weights["once"], weights["twice"]):
        np.testing.assert_array_equal(once, twice)


def test_resume_with_no_checkpoint_is_refused(mnist_data, tmp_path):
    config = train_config(tmp_path, mnist_data, resume=True)
    with pytest.raises(errors.UserError, match="holds no checkpoint to resume"):
        loop.Trainer(config, MNIST)


def test_evaluator_counts_every_example_once(mnist_data, tmp_path):
    config = train_config(tmp_path, mnist_data, max_steps=10)
    loop.train(config, MNIST)
    ev = evaluator.Evaluator(eval_config(config.train_dir, batch_size=64), MNIST)
    ev.poll(sleep=lambda s: pytest.fail("trainer is DONE; the evaluator must not wait"))
    records = read_records(os.path.join(config.train_dir, "eval", "metrics.jsonl"))
    assert [r["step"] for r in records] == [10]
    assert records[0]["num_examples"] == 250  # 64 * 3 + 58: the remainder batch counts
    assert 0.0 <= records[0]["precision_at_1"] <= 1.0


def test_an_evaluator_action_added_from_outside_sees_every_scored_checkpoint(mnist_data,
                                                                             tmp_path):
    """The evaluator's actions (record, best, pictures, stop request) and one of the
    caller's, run after each checkpoint is scored, with no change to the evaluator."""
    config = train_config(tmp_path, mnist_data, max_steps=20, validation_size=100)
    loop.train(config, MNIST)
    seen, every = [], eval_config(config.train_dir)
    every.eval_policy = "all"
    ev = evaluator.Evaluator(every, MNIST, actions=[seen.append])
    try:
        ev.poll(sleep=lambda s: pytest.fail("trainer is DONE; the evaluator must not wait"))
    finally:
        ev.close()
    assert [scored.step for scored in seen] == [10, 20]
    assert seen[0].improved and set(seen[0].results) == {"validation", "test"}
    records = read_records(os.path.join(config.train_dir, "eval", "metrics.jsonl"))
    assert [scored.record for scored in seen] == records  # the record action ran before


def test_evaluator_restarted_does_not_repeat_work(mnist_data, tmp_path):
    config = train_config(tmp_path, mnist_data, max_steps=10)
    loop.train(config, MNIST)
    for _ in range(2):
        ev = evaluator.Evaluator(eval_config(config.train_dir), MNIST)
        ev.poll(sleep=lambda s: pytest.fail("must not wait"))
        ev.close()
    records = read_records(os.path.join(config.train_dir, "eval", "metrics.jsonl"))
    assert [r["step"] for r in records] == [10]


def test_train_summaries_and_config_written(mnist_data, tmp_path):
    config = train_config(tmp_path, mnist_data, max_steps=10, save_summaries_steps=5)
    loop.train(config, MNIST)
    saved = config_lib.read_train_config(config.train_dir)
    assert saved == config
    assert open(os.path.join(config.train_dir, "DONE")).read().strip() == "10"
    tags = set()
    train_events = os.path.join(config.train_dir, "train")
    for name in os.listdir(train_events):
        for record in tf.compat.v1.train.summary_iterator(os.path.join(train_events, name)):
            tags.update(v.tag for v in record.summary.value)
    assert {"loss", "total_loss", "learning_rate"} <= tags
    assert any(t.endswith("conv1/kernel") for t in tags)


def test_pipeline_epochs_are_permutations_and_resume_exactly():
    from trainkit import pipeline
    images = np.arange(10, dtype=np.int32)[:, None]  # each "image" is its own index
    labels = np.arange(10, dtype=np.int32)

    def preprocess(x, y, random):
        return x, y, random.uniform()

    full = [b for b in pipeline.train_batches(images, labels, 4, 3, 0, preprocess).take(10)]
    order = np.concatenate([b[1].numpy() for b in full])
    for epoch in range(4):
        assert sorted(order[epoch * 10:(epoch + 1) * 10]) == list(range(10))
    assert list(order[:10]) != list(order[10:20])  # a fresh order each epoch
    resumed = list(pipeline.train_batches(images, labels, 4, 3, 7, preprocess).take(3))
    for a, b in zip(full[7:], resumed):
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
        np.testing.assert_array_equal(a[2].numpy(), b[2].numpy())  # same augmentation seed
    other_seed = list(pipeline.train_batches(images, labels, 4, 4, 0, preprocess).take(3))
    assert not all(np.array_equal(a[1].numpy(), b[1].numpy()) for a, b in zip(full, other_seed))


def test_pipeline_alternating_mirror_inverts_every_epoch_and_resumes():
    """Each example's mirror bit is a coin in its first epoch, then alternates."""
    from trainkit import pipeline
    images = np.arange(10, dtype=np.int32)[:, None]
    labels = np.arange(10, dtype=np.int32)

    def preprocess(x, y, random):
        return y, random.alternating()

    def batches(start_step, steps, part=None):
        return [(ids.numpy(), alternate.numpy()) for ids, alternate in pipeline.train_batches(
            images, labels, 4, 3, start_step, preprocess, part).take(steps)]

    full = batches(0, 10)  # 4 epochs of 10 examples in batches of 4
    seen = {}
    for ids, alternate in full:
        for i, a in zip(ids, alternate):
            seen.setdefault(int(i), []).append(bool(a))
    for example, flips in seen.items():
        assert flips == [flips[0], not flips[0]] * 2, (example, flips)
    assert 0 < sum(f[0] for f in seen.values()) < 10  # the first epoch's coins differ
    # The coins are independent of the shuffle: an epoch's bits, in batch order, are
    # not all of one kind followed by all of the other.
    odd_epoch = list(np.concatenate([alternate for _, alternate in full])[10:20])
    assert odd_epoch not in (sorted(odd_epoch), sorted(odd_epoch, reverse=True))
    for (ids, alternate), (again_ids, again) in zip(full[7:], batches(7, 3)):  # resumed
        np.testing.assert_array_equal(ids, again_ids)
        np.testing.assert_array_equal(alternate, again)
    halves = [batches(0, 10, pipeline.Part(index, 2)) for index in range(2)]
    for step, (ids, alternate) in enumerate(full):
        np.testing.assert_array_equal(
            alternate, np.concatenate([halves[0][step][1], halves[1][step][1]]))


def test_pipeline_parts_make_the_same_global_batch():
    """2 workers x 2 replicas each see, together, exactly the batch of one pipeline."""
    from trainkit import pipeline
    images = np.arange(16, dtype=np.int32)[:, None]
    labels = np.arange(16, dtype=np.int32)

    def preprocess(x, y, random):
        return x, y, random.uniform()

    whole = list(pipeline.train_batches(images, labels, 8, 5, 3, preprocess).take(2))
    parts = [list(pipeline.train_batches(images, labels, 8, 5, 3, preprocess,
                                         pipeline.Part(index, 2, replicas=2)).take(4))
             for index in range(2)]
    for step in range(2):
        # Per step, each worker yields its 2 replica batches, one after the other.
        pieces = [parts[w][2 * step + r] for w in range(2) for r in range(2)]
        assert all(len(p[1]) == 2 for p in pieces)
        for k in (1, 2):
            np.testing.assert_array_equal(np.concatenate([p[k].numpy() for p in pieces]),
                                          whole[step][k].numpy())
    with pytest.raises(ValueError, match="not divisible by the 3 replicas"):
        pipeline.train_batches(images, labels, 8, 5, 0, preprocess, pipeline.Part(0, 1, 3))


def test_linear_one_cycle_schedule(mnist_data, tmp_path):
    config = train_config(tmp_path, mnist_data, learning_rate=0.4, lr_schedule="linear",
                          max_steps=100, warmup_steps=20)
    lr = loop.learning_rate_fn(config, steps_per_epoch=10)
    assert float(lr(0)) == pytest.approx(0.4 / 20)
    assert float(lr(19)) == pytest.approx(0.4)  # the peak, at the end of the warm-up
    assert float(lr(60)) == pytest.approx(0.4 * 0.5)  # half-way down from step 20 to 100
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-8)


def test_airbench94_triangle_from_0_2_to_1_to_0_07(mnist_data, tmp_path):
    # airbench94.py's triangle(476, start=0.2, end=0.07, peak=0.23): its peak at step
    # int(0.23 * 476) = 109, linear between the three points.
    config = train_config(tmp_path, mnist_data, learning_rate=1.5, lr_schedule="linear",
                          max_steps=476, warmup_steps=109, warmup_from=0.2, decay_to=0.07)
    lr = loop.learning_rate_fn(config, steps_per_epoch=48)
    for step, fraction in ((0, 0.2), (50, 0.2 + 0.8 * 50 / 109), (109, 1.0),
                           (300, 1.0 - 0.93 * (300 - 109) / (476 - 109)), (476, 0.07)):
        assert float(lr(step)) == pytest.approx(1.5 * fraction, rel=1e-6)


def test_decay_to_and_warmup_from_refuse_what_they_cannot_mean(mnist_data, tmp_path):
    with pytest.raises(errors.UserError, match="--decay_to=0.1 needs --lr_schedule=linear"):
        train_config(tmp_path, mnist_data, lr_schedule="cosine", decay_to=0.1).validate()
    with pytest.raises(errors.UserError, match="--warmup_from=0.2 needs --warmup_steps"):
        train_config(tmp_path, mnist_data, warmup_from=0.2).validate()


def test_cosine_schedule_with_warmup(mnist_data, tmp_path):
    config = train_config(tmp_path, mnist_data, learning_rate=0.1, lr_schedule="cosine",
                          max_steps=100, warmup_steps=10)
    lr = loop.learning_rate_fn(config, steps_per_epoch=10)
    assert float(lr(0)) == pytest.approx(0.1 * 0.1 * 0.5 * (1 + np.cos(0.0)))
    assert float(lr(9)) == pytest.approx(0.1 * 0.5 * (1 + np.cos(np.pi * 0.09)))
    assert float(lr(50)) == pytest.approx(0.05, abs=1e-7)
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-8)


def test_label_smoothing_matches_keras():
    import keras
    labels = tf.constant([0, 3, 1])
    logits = tf.constant(np.random.default_rng(1).normal(size=[3, 4]).astype(np.float32))
    for smoothing in (0.0, 0.2):
        expected = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=smoothing, reduction=None)(
            tf.one_hot(labels, 4), logits)
        np.testing.assert_allclose(loop.cross_entropy(labels, logits, smoothing).numpy(),
                                   expected.numpy(), rtol=1e-5)
