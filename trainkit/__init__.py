"""trainkit: the engine that the cifar10/ and mnist/ packages share.

A dataset package supplies two modules with the same function names:

* ``input``: ``train_dataset(config, start_step, part=None)`` returning
  ``(tf.data.Dataset of (images, labels) batches from that global step on,
  num_examples)`` (see ``trainkit.pipeline``; ``part`` is the share of each
  global batch one worker's pipeline makes), ``eval_dataset(config, split,
  batch_size)`` likewise with every example exactly once, ``CLASS_NAMES``,
  ``MIRRORS`` and ``prepare(data_dir, mirrors)``.
* ``model``: ``build_model(config)`` returning a Keras model with explicitly
  named layers, and ``regularization_loss(model, config)``.

The engine does the rest: the training loop with moving averages and
checkpoints (``loop``), and the polling evaluator (``evaluator``).
"""

import logging
import os

# TensorFlow's C++ start-up chatter (CPU features, oneDNN) buries the run's
# own log lines; errors still show. Set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN kernels (convolutions, matmuls, pooling and their
# gradients, fused with their activations). TensorFlow turns them on by
# default only on CPUs with AVX-512 VNNI/BF16 or AMX; on this project's
# 2-core AVX2 machine they made a training step 1.4-2x as fast (README,
# "Speed"). Read once, when TensorFlow is imported; set
# TF_ENABLE_ONEDNN_OPTS=0 to run TensorFlow's own (Eigen) kernels instead.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's Python INFO lines (collective set-up, checkpoint sharding
# timings) likewise; its warnings still show.
logging.getLogger("tensorflow").setLevel(logging.WARNING)
