"""Training FLOPs from the forward graph (trainkit.flops) and FLOPs to an accuracy."""

import json
import os
import subprocess
import sys

from tests import helpers
from trainkit import config as config_lib
from trainkit import flops
from trainkit import registry


def build(dataset, model):
    config = config_lib.TrainConfig(dataset=dataset, model=model, train_dir="unused",
                                    data_dir="unused", batch_size=1, max_steps=1)
    network = registry.load(dataset).build(config)
    return network, network.inputs[0].shape[1:]


def conv(side, k, cin, cout):
    return 2 * side * side * k * k * cin * cout


def test_airbench94_counts_every_conv_of_its_nested_groups():
    # Whitening 2x2 (3 -> 24, valid: 31x31); each group's first conv before its 2x2 pool
    # (31 -> 15 -> 7 -> 3), its second after; the classifier 256 -> 10.
    forward = (conv(31, 2, 3, 24) + conv(31, 3, 24, 64) + conv(15, 3, 64, 64)
               + conv(15, 3, 64, 256) + conv(7, 3, 256, 256)
               + conv(7, 3, 256, 256) + conv(3, 3, 256, 256) + 2 * 256 * 10)
    assert flops.training_flops_per_example(*build("cifar10", "airbench94")) == 3 * forward


def test_the_tutorial_counts_convs_and_dense_layers_not_its_lrn_band():
    # conv1 5x5x3x64 and conv2 5x5x64x64 at 24x24 and 12x12; local3 2304 -> 384 (6x6x64
    # after the second pool), local4 384 -> 192, softmax_linear 192 -> 10.
    forward = (conv(24, 5, 3, 64) + conv(12, 5, 64, 64)
               + 2 * (2304 * 384 + 384 * 192 + 192 * 10))
    assert flops.training_flops_per_example(*build("cifar10", "tutorial")) == 3 * forward


def test_flops_to_accuracy_reads_the_evaluators_record(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    result = helpers.run_cli("mnist.train", f"--train_dir={train_dir}",
                             f"--data_dir={mnist_data}", "--max_steps=20",
                             "--save_checkpoint_steps=10", "--batch_size=20",
                             "--validation_size=100", "--data_mirrors=http://127.0.0.1:9/")
    assert result.returncode == 0, result.stderr
    result = helpers.run_cli("mnist.eval", f"--train_dir={train_dir}", "--eval_policy=all",
                             "--eval_interval_secs=0")
    assert result.returncode == 0, result.stderr
    script = os.path.join(helpers.REPO, "scripts", "flops_to_accuracy.py")

    def run(*args):
        return subprocess.run([sys.executable, script, f"--train_dir={train_dir}", *args],
                              capture_output=True, text=True, timeout=300,
                              env=helpers.cli_env(), cwd=helpers.REPO)

    out = run("--target=0")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    # The cnn: 3 x 2 x (conv1, conv2, dense layers) per example, as the bench counts.
    forward = conv(28, 5, 1, 16) + conv(14, 5, 16, 36) + 2 * (1764 * 128 + 128 * 10)
    assert report["training_flops_per_example"] == 3 * forward
    assert report["reached"] == {"step": 10, "precision_at_1": report["reached"][
        "precision_at_1"], "examples": 200, "pflop": 200 * 3 * forward / 1e15}
    out = run("--target=1.01")
    assert out.returncode == 0 and json.loads(out.stdout)["reached"] is None
    assert json.loads(out.stdout)["best"]["step"] in (10, 20)
    missing = run(f"--eval_dir={tmp_path / 'nowhere'}")
    helpers.assert_one_clear_line(missing, "metrics.jsonl does not exist", "--eval_policy=all")
