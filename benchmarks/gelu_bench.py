"""Times the airbench networks' GELUs: TensorFlow's ``tf.nn.gelu`` against ``nets.fused_gelu``.

    python benchmarks/gelu_bench.py                     # bfloat16 and float32, airbench94

For every GELU of one training step of ``--model`` at batch 1,024 (after the
whitening and after each batch norm: seven; inputs drawn from a unit normal, as
batch norm leaves them), the forward pass and the gradient
together, in milliseconds per step; rounds alternate the two, and the table
gives each one's fastest round, with the largest difference of values and
gradients relative to the largest value. A measurement script for
docs/speed.md, not part of the tests.
"""

import time

from absl import app, flags

import trainkit  # noqa: F401  (oneDNN on before TensorFlow loads, as the trainer has it)
import tensorflow as tf

from cifar10 import model as nets

flags.DEFINE_enum("model", "airbench94", ["airbench94", "airbench95"], "Whose activations.")
flags.DEFINE_integer("batch_size", 1024, "Examples per step.")
flags.DEFINE_integer("rounds", 10, "Alternated rounds, after one untimed call of each.")
FLAGS = flags.FLAGS


def activation_shapes(widths):
    """(side, channels, GELUs of that shape per step): the whitening's, then two per group."""
    return [(31, 24, 1), (15, widths[0], 2), (7, widths[1], 2), (3, widths[2], 2)]


def step_of(gelu, inputs):
    """A compiled function: ``gelu``'s forward pass and gradient on every input; returns
    them (``full``) or one element of each, which the whole tensors are computed for."""
    @tf.function
    def step(full=False):
        results = []
        for x, count in inputs:
            for _ in range(count):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = gelu(x)
                pair = (y, tape.gradient(y, x, output_gradients=tf.ones_like(y)))
                results.append(pair if full else [t[0, 0, 0, 0] for t in pair])
        return results
    return step


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # each precision traces the steps anew, as meant
    widths = nets.AIRBENCH_WIDTHS[FLAGS.model]
    print(f"{FLAGS.model}, batch {FLAGS.batch_size}: the step's GELUs, forward and gradient")
    print("precision  tf.nn.gelu ms  fused_gelu ms  speed-up  largest relative difference")
    for dtype in (tf.bfloat16, tf.float32):
        inputs = [(tf.cast(tf.random.stateless_normal((FLAGS.batch_size, side, side, c),
                                                          [side, c]), dtype), count)
                  for side, c, count in activation_shapes(widths)]
        steps = {"tf": step_of(lambda x: tf.nn.gelu(x, approximate=False), inputs),
                 "fused": step_of(nets.fused_gelu, inputs)}
        results = {name: step(full=True) for name, step in steps.items()}
        difference = max(
            float(tf.reduce_max(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))
                  / tf.reduce_max(tf.abs(tf.cast(a, tf.float32))))
            for pair_a, pair_b in zip(results["tf"], results["fused"])
            for a, b in zip(pair_a, pair_b))
        times = {name: [] for name in steps}
        for step in steps.values():
            step()
        for _ in range(FLAGS.rounds):
            for name, step in steps.items():
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), step())
                times[name].append((time.perf_counter() - start) * 1000)
        theirs, ours = min(times["tf"]), min(times["fused"])
        print(f"{dtype.name:9s} {theirs:14.0f} {ours:14.0f} {theirs / ours:9.1f}x "
              f"{difference:28.1e}")


if __name__ == "__main__":
    app.run(main)
