"""tf.distribute: mirrored on logical CPU devices, multi-worker on 127.0.0.1, and their resume.

No GPU and no second host are needed: ``--cpu_replicas=2`` splits the CPU
into two logical devices for ``mirrored``, and ``scripts/multi_worker.py``
runs the workers as local processes on free 127.0.0.1 ports.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from trainkit import checkpoints
from trainkit.evaluator import read_records

BASE = ["--batch_size=32", "--validation_size=100", "--log_frequency=1",
        "--save_summaries_steps=0", "--data_mirrors=http://127.0.0.1:9/",
        "--validate_every_steps=0"]
MIRRORED = ["--strategy=mirrored", "--cpu_replicas=2"]
# After 10 steps, mirrored and one-device weights differ only by float rounding
# (measured: at most 1.7e-7 on the real MNIST with TensorFlow's own kernels); chaotic
# growth makes longer runs drift further. The oneDNN kernels (on by default) pick
# different algorithms for 16- and 32-example batches, so their sums round
# differently: 1.4e-5 measured on the synthetic data, hence the looser bound there.
WEIGHT_TOLERANCE = {"0": 1e-5, "1": 1e-4}


def weights(path):
    """Every float tensor of a checkpoint's model, optimizer and moving averages."""
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model/", "ema/", "optimizer/", "lookahead/", "step"))}


def train(*args, env=None):
    result = helpers.run_cli("mnist.train", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_mirrored_on_two_cpu_devices_matches_one_device(tmp_path, mnist_data, onednn):
    # Moving averages every 5 steps and Lookahead every 3: the conditional updates run
    # under the strategy too, each device's copies following that device's weights.
    # In float32 (the classic preset's auto would pick bfloat16 on some CPUs, whose
    # rounding differs with the split of the batch more than these bounds).
    common = [f"--data_dir={mnist_data}", *BASE, "--max_steps=10", "--seed=4",
              "--moving_average_every_steps=5", "--lookahead_every_steps=3",
              "--precision=float32"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    env = {"TF_ENABLE_ONEDNN_OPTS": onednn}
    train(f"--train_dir={one}", *common, env=env)
    log = train(f"--train_dir={two}", *common, *MIRRORED, env=env)
    assert "Strategy mirrored: 2 replica(s) in sync" in log
    assert "global batch 32 = 2 x 16 per replica" in log
    expected, got = weights(os.path.join(one, "ckpt-10")), weights(os.path.join(two, "ckpt-10"))
    assert set(got) == set(expected)
    assert any(name.startswith("ema/") for name in got)
    assert any(name.startswith("lookahead/") for name in got)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=0,
                                   atol=WEIGHT_TOLERANCE[onednn], err_msg=name)


def test_resumed_mirrored_run_continues_exactly(tmp_path, mnist_data):
    common = [f"--data_dir={mnist_data}", *BASE, *MIRRORED, "--deterministic",
              "--max_steps=40", "--save_checkpoint_steps=0", "--seed=5"]
    reference = str(tmp_path / "reference")
    train(f"--train_dir={reference}", *common)

    stopped = str(tmp_path / "stopped")
    trainer = helpers.start_cli("mnist.train", f"--train_dir={stopped}", *common)
    lines = []
    for line in trainer.stdout:
        lines.append(line)
        if "step 15/" in line:
            break
    trainer.send_signal(signal.SIGTERM)
    out = "".join(lines) + trainer.communicate(timeout=60)[0]
    assert trainer.returncode == 0, out
    step = checkpoints.step_of(checkpoints.latest(stopped))
    assert 15 <= step < 40 and f"Stopped by SIGTERM at step {step}" in out

    log = train(f"--train_dir={stopped}", "--resume")  # strategy and all from config.json
    assert f"at step {step}" in log and "Strategy mirrored" in log
    expected = weights(os.path.join(reference, "ckpt-40"))
    got = weights(os.path.join(stopped, "ckpt-40"))
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def launcher(tmp_path, *args):
    env = helpers.cli_env()
    env["TMPDIR"] = str(tmp_path / "tmp")  # where non-chief workers keep their scratch saves
    os.makedirs(env["TMPDIR"], exist_ok=True)
    return subprocess.Popen([sys.executable, os.path.join(helpers.REPO, "scripts",
                                                          "multi_worker.py"), *args],
                            env=env, cwd=helpers.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_two_workers_train_the_chief_checkpoints_and_the_evaluator_scores(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    process = launcher(tmp_path, "--dataset=mnist", "--workers=2", "--eval",
                       "--eval_flags=--eval_interval_secs=0.2 --eval_policy=all",
                       "--", f"--train_dir={train_dir}", f"--data_dir={mnist_data}", *BASE,
                       "--max_steps=20", "--save_checkpoint_steps=10", "--seed=6")
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    assert "Exit codes: " in out and "worker 0: 0" in out and "worker 1: 0" in out
    assert "worker 0 of 2 processes, the chief" in out
    # Both workers took every step, in lockstep, with the same loss.
    for step in (10, 20):
        losses = {line.split("] ")[0]: line.split("loss ")[1].split(",")[0]
                  for line in out.splitlines() if f" step {step}/20: loss" in line}
        assert set(losses) == {"[worker 0", "[worker 1"} and len(set(losses.values())) == 1
    # Only the chief wrote into the train dir, each checkpoint once.
    files = sorted(f for f in os.listdir(train_dir) if f.startswith("ckpt-"))
    assert [f.split(".")[0] for f in files] == ["ckpt-10", "ckpt-10", "ckpt-20", "ckpt-20"]
    assert os.path.exists(os.path.join(train_dir, "DONE"))
    assert os.listdir(tmp_path / "tmp") == []  # worker 1's scratch saves are gone
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert [r["step"] for r in records] == [10, 20]
    assert all(r["num_examples"] == 250 for r in records)


def test_sigterm_stops_every_worker_at_one_step_and_resume_finishes(tmp_path, mnist_data):
    train_dir = str(tmp_path / "run")
    flags = [f"--train_dir={train_dir}", f"--data_dir={mnist_data}", *BASE, "--seed=7",
             "--save_checkpoint_steps=0"]
    process = launcher(tmp_path, "--dataset=mnist", "--workers=2", "--",
                       *flags, "--max_steps=100000")
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "[worker 1]" in line and "step 10/" in line:
            break
    try:
        # The chief holds the train dir: another trainer is refused while the workers run.
        intruder = helpers.run_cli("mnist.train", f"--train_dir={train_dir}", "--resume",
                                   "--strategy=default")
        assert intruder.returncode == 2 and "is in use by another trainer" in intruder.stderr
        holder = json.load(open(os.path.join(train_dir, ".lock")))
        assert holder["role"] == "trainer" and holder["pid"] != process.pid
    finally:
        process.send_signal(signal.SIGTERM)
    out = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 0, out
    stops = [line.split("Stopped by SIGTERM at step ")[1].split(";")[0]
             for line in out.splitlines() if "Stopped by SIGTERM at step" in line]
    assert len(stops) == 2 and stops[0] == stops[1], out  # the same step on both workers
    step = int(stops[0])
    assert checkpoints.latest(train_dir).endswith(f"ckpt-{step}")
    assert not os.path.exists(os.path.join(train_dir, "DONE"))

    process = launcher(tmp_path, "--dataset=mnist", "--workers=2", "--",
                       f"--train_dir={train_dir}", "--resume", f"--max_steps={step + 5}")
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    assert out.count(f"Resuming {train_dir} from {train_dir}/ckpt-{step} at step {step}") == 2
    assert checkpoints.latest(train_dir).endswith(f"ckpt-{step + 5}")
    assert os.path.exists(os.path.join(train_dir, "DONE"))


def test_bad_strategy_settings_are_one_line_each(tmp_path, mnist_data):
    common = [f"--train_dir={tmp_path / 'run'}", f"--data_dir={mnist_data}", *BASE]
    cases = [
        (["--cpu_replicas=2"], "--cpu_replicas=2 splits the CPU for --strategy=mirrored"),
        (["--strategy=multi_worker"], "needs the TF_CONFIG environment variable"),
        ([*MIRRORED, "--batch_size=33"], "must be divisible by the 2 replicas"),
        (["--num_gpus=1"], "this machine has 0 visible GPU(s)"),
    ]
    for args, message in cases:
        result = helpers.run_cli("mnist.train", *common, *args)
        assert result.returncode == 2, result.stderr
        lines = helpers.error_lines(result.stderr)
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert not os.path.exists(tmp_path / "run" / "config.json")


def _cluster_process(tmp_path, cluster, task_type, args):
    """``python -m mnist.train ARGS`` as a cluster manager starts a replica: the same
    command line everywhere, the task in TF_CONFIG."""
    env = helpers.cli_env()
    env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": task_type, "index": 0}})
    env["TMPDIR"] = str(tmp_path / "tmp")
    os.makedirs(env["TMPDIR"], exist_ok=True)
    return subprocess.Popen(helpers.cli("mnist.train", *args), env=env, cwd=helpers.REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_tf_config_chief_worker_and_evaluator_from_one_command_line(tmp_path, mnist_data):
    sys.path.insert(0, os.path.join(helpers.REPO, "scripts"))
    import multi_worker
    ports = multi_worker.free_ports(3)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"], "worker": [f"127.0.0.1:{ports[1]}"],
               "evaluator": [f"127.0.0.1:{ports[2]}"]}
    train_dir = str(tmp_path / "run")
    args = ["--strategy=multi_worker", f"--train_dir={train_dir}", f"--data_dir={mnist_data}",
            *BASE, "--max_steps=20", "--save_checkpoint_steps=10", "--seed=6"]
    # The evaluator first: it waits for the chief's config.json, then polls until DONE.
    replicas = {task: _cluster_process(tmp_path, cluster, task, args)
                for task in ("evaluator", "chief", "worker")}
    outputs = {}
    for task, process in replicas.items():
        outputs[task], _ = process.communicate(timeout=600)
    for task, process in replicas.items():
        assert process.returncode == 0, f"{task}:\n{outputs[task][-3000:]}"
    assert "chief 0 of 2 processes, the chief" in outputs["chief"]
    assert "worker 0 of 2 processes" in outputs["worker"]
    assert "The trainer is done and its last checkpoint is evaluated" in outputs["evaluator"]
    assert os.path.exists(os.path.join(train_dir, "DONE"))
    records = read_records(os.path.join(train_dir, "eval", "metrics.jsonl"))
    assert records[-1]["step"] == 20 and records[-1]["num_examples"] == 250


def test_tf_config_task_types_that_cannot_train_here_are_one_line_each(tmp_path, mnist_data):
    common = [f"--train_dir={tmp_path / 'run'}", f"--data_dir={mnist_data}", *BASE]
    two = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    cases = [
        ({"cluster": dict(two, ps=["127.0.0.1:3"]), "task": {"type": "ps", "index": 0}},
         ["--strategy=multi_worker"], "ps (parameter server)"),
        ({"cluster": dict(two, ps=["127.0.0.1:3"]), "task": {"type": "worker", "index": 0}},
         ["--strategy=multi_worker"], "has ps (parameter server) tasks"),
        ({"cluster": two, "task": {"type": "worker", "index": 1}}, [],
         "pass --strategy=multi_worker to every replica"),
        ({"cluster": two, "task": {"type": "master", "index": 0}}, [],
         "expected chief, worker or evaluator"),
    ]
    for tf_config, args, message in cases:
        result = helpers.run_cli("mnist.train", *common, *args,
                                 env={"TF_CONFIG": json.dumps(tf_config)})
        assert result.returncode == 2, result.stderr
        lines = helpers.error_lines(result.stderr)
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert not os.path.exists(tmp_path / "run")
