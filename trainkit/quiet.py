"""The program's own lines, not TensorFlow's chatter (``--verbosity=1`` shows it all)."""

import logging
import os
import re
import sys
import tempfile
import time

# Lines TensorFlow prints as it loads and first lists devices; anything else passes.
START_UP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called|"
    r"^[IW]0000 .*\] |cuda_platform\.cc:\d+\] failed call to cuInit|"
    r"This TensorFlow binary is optimized to use available CPU instructions|"
    r"^To enable the following instructions:")
_LIBRARIES = (os.sep + "tensorflow" + os.sep, os.sep + "keras" + os.sep)


def load_tensorflow(verbose=False):
    """Imports TensorFlow and lists its devices, keeping its start-up lines off stderr
    unless ``verbose``; returns the module."""
    if verbose:
        import tensorflow as tf
        tf.config.list_physical_devices()
        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
            tf.config.list_physical_devices()  # where CUDA's start-up lines come
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines()
                    if line.strip() and not START_UP_NOISE.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
    return tf


def drop_library_info(record):
    """A logging filter: False for TensorFlow's and Keras's own INFO records (and below)."""
    return record.levelno > 20 or not any(part in record.pathname for part in _LIBRARIES)


class Short(logging.Formatter):
    """"12:03:04 message"; a warning or an error says so ("12:03:04 warning: ...")."""

    def format(self, record):
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        text = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {level}" \
            + record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text
