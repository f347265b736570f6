"""Device and thread placement, done before TensorFlow touches a device."""

import tensorflow as tf

from trainkit import errors


def configure(device, num_threads=0):
    """Pins this process to ``device`` (``cpu``, ``gpu:N`` or ``auto``) and caps its threads.

    ``cpu`` hides every GPU, so an evaluator never takes memory on the
    trainer's card; ``gpu:N`` shows only GPU N and lets its memory grow as
    needed instead of grabbing it all. ``num_threads`` > 0 caps TensorFlow's
    intra- and inter-op thread pools, so an evaluator does not starve a
    trainer on the same cores. Must run before the first TensorFlow op.
    """
    if device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    elif device.startswith("gpu:"):
        try:
            index = int(device[len("gpu:"):])
        except ValueError:
            raise errors.UserError(f"--device={device}: expected cpu, auto or gpu:N") from None
        gpus = tf.config.list_physical_devices("GPU")
        if not 0 <= index < len(gpus):
            raise errors.UserError(
                f"--device={device}: this machine has {len(gpus)} visible GPU(s); "
                "use --device=cpu or a GPU index below that")
        tf.config.set_visible_devices([gpus[index]], "GPU")
        tf.config.experimental.set_memory_growth(gpus[index], True)
    elif device != "auto":
        raise errors.UserError(f"--device={device}: expected cpu, auto or gpu:N")
    if num_threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(num_threads)
