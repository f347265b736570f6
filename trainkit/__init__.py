"""trainkit: the engine that the dataset packages (cifar10/, mnist/, images/) share.

A dataset meets the engine through the contracts in ``trainkit.dataset``
(its ``DatasetSpec``, ``Dataset`` and one ``Model`` per network), listed in
``trainkit.registry``. The engine does the rest: the training loop with
moving averages and checkpoints (``loop``), the polling evaluator
(``evaluator``), export and predict.
"""

import logging
import os

# TensorFlow's C++ start-up chatter (CPU features, oneDNN) buries the run's
# own log lines; errors still show. Set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN kernels (convolutions, matmuls, pooling and their
# gradients, fused with their activations). TensorFlow turns them on by
# default only on CPUs with AVX-512 VNNI/BF16 or AMX; elsewhere they made a
# training step faster (docs/speed.md). Read once, when TensorFlow is
# imported; set TF_ENABLE_ONEDNN_OPTS=0 to run TensorFlow's own (Eigen) kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's Python INFO lines (collective set-up, checkpoint sharding
# timings) likewise; its warnings still show.
logging.getLogger("tensorflow").setLevel(logging.WARNING)
