"""Times a 3x3 convolution's three passes against the kernel gradient as matmuls.

    python benchmarks/conv_grad_bench.py                    # bfloat16, airbench95's shapes
    python benchmarks/conv_grad_bench.py --dtype=float32 --model=airbench94

For each layer shape of ``--model`` (airbench95 or airbench94) at batch 1,024: the forward
convolution, TensorFlow's input gradient and kernel gradient (oneDNN's
kernels where TensorFlow uses them), and ``cifar10.model.kernel_grad_by_shifts``
(nine matmuls over shifted inputs), in milliseconds per call, with the largest
difference between the two kernel gradients relative to the largest entry.
``cifar10.model.SHIFTED_GRAD_MAX_SIDE`` was chosen from this. A measurement
script for docs/speed.md, not part of the tests.
"""

import time

from absl import app, flags

import trainkit  # noqa: F401  (oneDNN on before TensorFlow loads, as the trainer has it)
import tensorflow as tf

from cifar10 import model as nets

flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float32"], "Arithmetic of the passes.")
flags.DEFINE_enum("model", "airbench95", ["airbench94", "airbench95"], "Whose layer shapes.")
flags.DEFINE_integer("batch_size", 1024, "Examples per call.")
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement, after one untimed.")
FLAGS = flags.FLAGS

# (side, channels in, channels out) of each network's convolutions after the whitening.
SHAPES = {"airbench95": ((31, 24, 128), (15, 128, 128), (15, 128, 384), (7, 384, 384),
                         (3, 384, 384)),
          "airbench94": ((31, 24, 64), (15, 64, 64), (15, 64, 256), (7, 256, 256),
                         (3, 256, 256))}


def _milliseconds(fn, *args):
    fn(*args)
    start = time.perf_counter()
    for _ in range(FLAGS.repeats):
        result = fn(*args)
    result.numpy()
    return (time.perf_counter() - start) / FLAGS.repeats * 1000


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # each shape traces its functions anew, as meant
    dtype = tf.as_dtype(FLAGS.dtype)
    print(f"{FLAGS.dtype}, batch {FLAGS.batch_size}: milliseconds per call")
    print("side  in  out  forward  input-grad  kernel-grad  by-shifts  difference")
    for side, channels_in, channels_out in SHAPES[FLAGS.model]:
        n = FLAGS.batch_size
        x = tf.cast(tf.random.stateless_normal((n, side, side, channels_in), [1, 2]), dtype)
        dy = tf.cast(tf.random.stateless_normal((n, side, side, channels_out), [3, 4]), dtype)
        kernel = tf.cast(tf.random.stateless_normal((3, 3, channels_in, channels_out), [5, 6]),
                         dtype)
        strides = [1, 1, 1, 1]
        forward = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
        input_grad = tf.function(lambda k, dy: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=k, out_backprop=dy, strides=strides, padding="SAME"))
        kernel_grad = tf.function(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=strides,
            padding="SAME"))
        by_shifts = tf.function(lambda x, dy: nets.kernel_grad_by_shifts(x, dy, (3, 3)))
        theirs = tf.cast(kernel_grad(x, dy), tf.float32)
        ours = tf.cast(by_shifts(x, dy), tf.float32)
        difference = float(tf.reduce_max(tf.abs(ours - theirs)) / tf.reduce_max(tf.abs(theirs)))
        times = (_milliseconds(forward, x, kernel), _milliseconds(input_grad, kernel, dy),
                 _milliseconds(kernel_grad, x, dy), _milliseconds(by_shifts, x, dy))
        print(f"{side:4d} {channels_in:4d} {channels_out:4d} {times[0]:8.0f} {times[1]:11.0f} "
              f"{times[2]:12.0f} {times[3]:10.0f} {difference:11.4f}")


if __name__ == "__main__":
    app.run(main)
