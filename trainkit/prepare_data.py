"""Downloads and verifies a dataset without training: ``make data DATASET=cifar10``.

``python -m trainkit.prepare_data --dataset=mnist --data_dir=data/mnist``
"""

from absl import flags
from absl import logging

from trainkit import flags as tk_flags
from trainkit import registry

flags.DEFINE_enum("dataset", "cifar10", list(registry.DATASETS),
                  "Dataset to download and check.")
flags.DEFINE_string("data_dir", None, "Where the dataset goes (default: data/DATASET).")
flags.DEFINE_list("data_mirrors", None,
                  "Comma-separated base URLs to download from (default: the official hosts).")


def main(argv):
    del argv
    f = flags.FLAGS
    tk_flags.load_tensorflow()
    dataset = registry.load(f.dataset)
    mirrors = tuple(f.data_mirrors or dataset.mirrors)
    logging.info(dataset.prepare(f.data_dir or f"data/{f.dataset}", mirrors))


if __name__ == "__main__":
    tk_flags.run(main)
