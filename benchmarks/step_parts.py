"""Where a training step's time goes: the input, the model, and what the trainer adds.

    python benchmarks/step_parts.py --dataset=mnist --data_dir=data/mnist --rounds=20

Times five loops of ``--steps`` steps each, alternated for ``--rounds`` rounds in
one process, with the dataset's default trainer (as ``make bench`` runs it) or
the one ``--flags`` sets:

* ``input``: the next batch from the training pipeline, nothing else;
* ``forward``: that, and the model's forward pass and loss (penalty included);
* ``forward+gradients``: that, and the gradients of every trainable weight;
* ``full step``: the trainer's compiled step (the update, the moving averages,
  the loss averages and the finiteness check on top);
* ``Keras peer's step``: ``make bench``'s Keras peer (the same model, loss and
  pipeline, Keras's SGD), its compiled train function running ``--steps`` steps
  per call (``steps_per_execution``), as its ``fit`` does between callbacks.

Prints each part's median milliseconds per step and its share of the full step;
the ceiling the model puts on any trainer, ``full / (forward+gradients)`` (a
trainer that spent nothing beyond the model's forward pass and gradients would
be that much faster than ours); and ours's speed over the peer's, per round
(median and quartiles). Actions between calls (log lines, summaries,
checkpoints) are not timed: ``make bench`` times them.
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import step_ab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("input", "forward", "forward+gradients", "full step", "Keras peer's step")


def summarize(milliseconds):
    """Per part (a dict of per-round ms/step lists): the median and its share of the
    full step's median; the ceiling ``full / (forward+gradients)``; and ours's speed
    over the Keras peer's, each round's ratio (median and quartiles, as step_ab's)."""
    medians = {part: statistics.median(times) for part, times in milliseconds.items()}
    full = medians["full step"]
    ours, _ = step_ab.compare([[1 / ms for ms in milliseconds[part]]
                               for part in ("full step", "Keras peer's step")], reference=1)
    return {"parts": {part: {"ms_per_step": m, "share_of_full_step": m / full}
                      for part, m in medians.items()},
            "full_over_forward_and_gradients": full / medians["forward+gradients"],
            "ours_over_keras": {"median": ours["ratio_median"],
                                "quartiles": ours["ratio_quartiles"]}}


def part_functions(trainer, peer=None):
    """The parts as ``f(iterator, n) -> a scalar``, each running ``n`` steps (the
    peer's, ``peer``'s compiled Keras model, its ``steps_per_execution`` on its own
    pipeline); and ``gradients_of(images, labels) -> (loss, gradients)``, the model's
    part of ours's step."""
    import tensorflow as tf

    from trainkit import loop
    model, config, decayed = trainer.model, trainer.config, trainer.decayed_weights
    variables = model.trainable_variables

    def loss_of(images, labels):
        logits = model(images, training=True)
        return (tf.reduce_mean(loop.cross_entropy(labels, logits, config.label_smoothing))
                + loop.regularization_loss(decayed, config.l2_regularization))

    def gradients_of(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_of(images, labels)
        return loss, tape.gradient(loss, variables)

    def after(total, iterator):
        """The next batch once the step before is done: as in the trainer, whose
        next forward pass reads the weights its last update wrote, steps do not
        overlap."""
        with tf.control_dependencies([total]):
            return next(iterator)

    @tf.function
    def input_only(iterator, n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            images, _ = after(total, iterator)
            total += tf.cast(tf.reshape(images, [-1])[0], tf.float32)  # keeps the read
        return total

    @tf.function
    def forward(iterator, n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            total += loss_of(*after(total, iterator))
        return total

    @tf.function
    def forward_and_gradients(iterator, n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            loss, grads = gradients_of(*after(total, iterator))
            # One element of each gradient keeps every gradient computed.
            total += loss + tf.add_n([tf.reshape(g, [-1])[0] for g in grads])
        return total

    def full_step(iterator, n):
        return trainer.train_steps(iterator, n)[1]

    parts = [input_only, forward, forward_and_gradients, full_step]
    if peer is not None:
        peer_model, peer_iterator = peer[0], iter(peer[1])
        parts.append(lambda iterator, n: peer_model.train_function(peer_iterator)["loss"])
    return dict(zip(PARTS, parts)), gradients_of


def main():
    command_line = step_ab.parser(__doc__, rounds=20, steps_help="steps per part and round")
    command_line.add_argument("--flags", default="",
                              help="the trainer's flags, in one string (default: the dataset's)")
    args = command_line.parse_args()
    sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
    import trainkit  # noqa: F401  (sets up TensorFlow before it loads)
    import tensorflow as tf
    from absl import flags

    from trainkit import errors
    workdir = tempfile.mkdtemp(prefix="step-parts-")
    try:
        try:
            trainer = step_ab.build(args.dataset, args.data_dir, workdir, args.flags)
        except (flags.Error, errors.UserError) as e:
            sys.stderr.write(f"error: {e}\n")
            return 2
        import bench
        peer_model, peer_data = bench.keras_peer(args.dataset, trainer.config, args.steps)
        # Builds and compiles the peer's train function, as its fit does.
        peer_model.fit(peer_data, epochs=1, steps_per_epoch=args.steps, verbose=0)
        parts, _ = part_functions(trainer, (peer_model, peer_data))
        iterator = iter(trainer.dataset)
        steps = tf.constant(args.steps, tf.int64)

        def timed(f):
            start = time.perf_counter()
            float(f(iterator, steps))  # the loop's work is done
            return (time.perf_counter() - start) / args.steps * 1000

        for f in parts.values():  # compiles, fills the pipeline
            timed(f)
            timed(f)
        milliseconds = {part: [] for part in parts}
        for _ in range(args.rounds):
            for part, f in parts.items():
                milliseconds[part].append(timed(f))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = summarize(milliseconds)
    for part, row in report["parts"].items():
        print(f"{part:<18} {row['ms_per_step']:8.2f} ms/step  "
              f"{row['share_of_full_step']:6.1%} of the full step")
    print(f"full step / (forward+gradients): {report['full_over_forward_and_gradients']:.3f}")
    low, high = report["ours_over_keras"]["quartiles"]
    print(f"ours / the Keras peer, per round: {report['ours_over_keras']['median']:.3f} "
          f"(quartiles {low:.3f}-{high:.3f})")
    print(json.dumps({"dataset": args.dataset, "model": trainer.config.model,
                      "batch_size": trainer.config.batch_size, "rounds": args.rounds,
                      "steps": args.steps, **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
