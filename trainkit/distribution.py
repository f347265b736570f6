"""Which ``tf.distribute`` strategy trains (``--strategy``), and which process may write.

``--batch_size`` is the global batch, so a step is the one-device step; only
the chief writes the train dir (docs/code-tour.md, "Distribution").
"""

import dataclasses
import shutil
import tempfile

import tensorflow as tf
from absl import logging

from trainkit import cluster
from trainkit import config as config_lib
from trainkit import errors


@dataclasses.dataclass
class Distribution:
    """A strategy and this process's role in it."""

    strategy: tf.distribute.Strategy
    name: str = "default"
    is_chief: bool = True
    task: str = "the only worker"  # for messages: "worker 1 of 2"
    num_workers: int = 1
    scratch_dir: str = None  # where a non-chief's saves go

    @property
    def num_replicas(self):
        return self.strategy.num_replicas_in_sync

    def writable_dir(self, train_dir):
        """``train_dir`` on the chief; on other workers, a scratch directory."""
        return train_dir if self.is_chief else self.scratch_dir

    def describe(self, batch_size):
        """One log line: the strategy, its devices, the batch split and the learning-rate rule."""
        devices = ", ".join(self.strategy.extended.worker_devices)
        return (f"Strategy {self.name}: {self.num_replicas} replica(s) in sync "
                f"({self.task}; devices here: {devices}); global batch {batch_size} = "
                f"{self.num_replicas} x {batch_size // self.num_replicas} per replica; the "
                "loss is averaged over the global batch, so --learning_rate applies "
                "unscaled, as on one device")

    def close(self):
        if self.scratch_dir:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)


def default():
    """The one-device distribution (TensorFlow's default strategy)."""
    return Distribution(tf.distribute.get_strategy())


def configure(config):
    """Builds the ``Distribution`` that ``config`` asks for; call before any TensorFlow op.

    Also sets memory growth on every visible GPU, so an evaluator given
    ``--device=gpu:N`` on one of the trainer's cards does not find its memory
    all taken.
    """
    name = config.strategy
    if name not in config_lib.STRATEGIES:
        raise errors.UserError(
            f"--strategy={name}: choose one of {', '.join(config_lib.STRATEGIES)}")
    if config.num_gpus and name == "default":
        name = "mirrored"  # the tutorial's --num_gpus=N
    if config.cpu_replicas > 1 and name != "mirrored":
        raise errors.UserError(
            f"--cpu_replicas={config.cpu_replicas} splits the CPU for --strategy=mirrored; "
            f"it does nothing with --strategy={name}")
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        if config.cpu_replicas > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * config.cpu_replicas)
    except RuntimeError as e:  # TensorFlow already initialized its devices
        raise errors.UserError(f"cannot configure devices after TensorFlow started: {e}") from None

    if name == "default":
        distribution = default()
    elif name == "mirrored":
        distribution = Distribution(tf.distribute.MirroredStrategy(_mirrored_devices(config)),
                                    name="mirrored")
    else:
        distribution = _multi_worker()
    if config.batch_size % distribution.num_replicas:
        raise errors.UserError(
            f"--batch_size={config.batch_size} (the global batch) must be divisible by the "
            f"{distribution.num_replicas} replicas of --strategy={name}")
    return distribution


def _mirrored_devices(config):
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if config.num_gpus:
        if config.num_gpus > len(gpus):
            raise errors.UserError(
                f"--num_gpus={config.num_gpus}, but this machine has {len(gpus)} visible GPU(s); "
                "without GPUs, use --strategy=mirrored --cpu_replicas=N")
        return gpus[:config.num_gpus]
    if gpus:
        if config.cpu_replicas > 1:
            raise errors.UserError("--cpu_replicas is for machines without a GPU; this one has "
                                   f"{len(gpus)}: drop it (or use --num_gpus)")
        return gpus
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _multi_worker():
    task_type, task_id, num_workers, is_chief = cluster.task()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    scratch = None if is_chief else tempfile.mkdtemp(prefix=f"trainkit-{task_type}{task_id}-")
    task_name = f"{task_type} {task_id} of {num_workers} processes"
    if is_chief:
        task_name += ", the chief"
    logging.info("Multi-worker: this is %s", task_name)
    return Distribution(strategy, name="multi_worker", is_chief=is_chief, task=task_name,
                        num_workers=num_workers, scratch_dir=scratch)
