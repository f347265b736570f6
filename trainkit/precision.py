"""The trainer's arithmetic: float32, or bfloat16 compute on float32 weights.

bfloat16 pays only where the hardware multiplies it natively (AVX-512 BF16
or AMX CPUs, GPUs of compute capability 8.0+); ``auto`` chooses it exactly
there. Checkpoints are float32 whichever precision wrote them.
"""

import contextlib

import keras
import tensorflow as tf
from absl import logging

from trainkit import config as config_lib
from trainkit import errors

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
CPU_FLAGS_FILE = "/proc/cpuinfo"
# The instruction sets with native bfloat16 dot products (Linux's names for them).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo=CPU_FLAGS_FILE):
    """True if the CPU's flags name a native bfloat16 dot product (Linux only)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in BF16_CPU_FLAGS)
    except OSError:
        pass
    return False


def _gpus_have_bf16(gpus):
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if not capability or tuple(capability) < (8, 0):
            return False
    return True


def resolve(name, cpuinfo=CPU_FLAGS_FILE):
    """``float32`` or ``bfloat16`` for ``--precision=name``, with the reason."""
    if name not in config_lib.PRECISIONS:
        raise errors.UserError(
            f"unknown --precision={name}; choose one of {', '.join(config_lib.PRECISIONS)}")
    if name != "auto":
        return name, "as asked"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if _gpus_have_bf16(gpus):
            return "bfloat16", "auto: every GPU has compute capability 8.0 or later"
        return "float32", "auto: a GPU without native bfloat16 (compute capability < 8.0)"
    if cpu_has_bf16(cpuinfo):
        return "bfloat16", "auto: this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX)"
    return "float32", "auto: this CPU has no native bfloat16 (no AVX-512 BF16 or AMX)"


@contextlib.contextmanager
def policy(name):
    """Layers built inside compute in ``name`` (``float32`` or ``bfloat16``)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[name])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def describe(name, reason):
    line = ("bfloat16 compute, float32 weights" if name == "bfloat16" else "float32")
    logging.info("Precision: %s (%s)", line, reason)
