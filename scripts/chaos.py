#!/usr/bin/env python3
"""Chaos run: kill a trainer with SIGKILL at random moments, resume it, compare bitwise.

    python scripts/chaos.py --data_dir=../shared/data/mnist --kills=20

1. Trains a reference run with --deterministic, uninterrupted, to --max_steps.
2. Trains the same run again, but kills it with SIGKILL --kills times at a
   random moment (checkpoints are saved every few steps, so many kills land
   in the middle of a save), resuming with --resume after each kill.
3. Compares every tensor of the two final checkpoints (weights, optimizer
   slots, moving averages, step, dropout state) for bitwise equality.

Prints one JSON summary and exits 0 only if the two runs are identical.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trainer_args(train_dir, args, resume):
    command = [sys.executable, "-m", f"{args.dataset}.train", f"--train_dir={train_dir}"]
    if resume:
        return command + ["--resume"]
    return command + [
        f"--data_dir={args.data_dir}", f"--model={args.model}", "--deterministic",
        f"--max_steps={args.max_steps}", f"--batch_size={args.batch_size}",
        f"--save_checkpoint_steps={args.save_every}", "--max_to_keep=3", "--log_frequency=1",
        "--save_summaries_steps=0", "--validate_every_steps=0", f"--seed={args.seed}"]


def has_checkpoint(train_dir):
    return os.path.exists(os.path.join(train_dir, "checkpoint"))


def tensors(path):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and not name.startswith("save_counter")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="dataset directory for the trainer")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "cifar10"])
    parser.add_argument("--model", default="deep_cnn", help="model (deep_cnn has dropout)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs before the final resume")
    parser.add_argument("--max_steps", type=int, default=400, help="length of both runs")
    parser.add_argument("--batch_size", type=int, default=32, help="examples per step")
    parser.add_argument("--save_every", type=int, default=5, help="steps between checkpoints")
    parser.add_argument("--max_kill_delay", type=float, default=1.5,
                        help="seconds after the first step line within which the kill lands")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run and of the kills")
    parser.add_argument("--workdir", default="runs/chaos", help="where both runs go (new)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    os.makedirs(args.workdir, exist_ok=False)
    reference = os.path.join(args.workdir, "reference")
    chaos = os.path.join(args.workdir, "chaos")

    start = time.monotonic()
    subprocess.run(trainer_args(reference, args, resume=False), env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference_secs = time.monotonic() - start

    kills = []
    fallbacks = 0
    for _ in range(args.kills):
        process = subprocess.Popen(trainer_args(chaos, args, resume=has_checkpoint(chaos)),
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        output = []
        for line in process.stdout:  # wait until training is under way
            output.append(line)
            if "unreadable" in line:
                fallbacks += 1
            if ", loss = " in line:
                break
        time.sleep(rng.uniform(0, args.max_kill_delay))
        if process.poll() is not None:
            break  # finished before the kill: nothing more to interrupt
        process.send_signal(signal.SIGKILL)
        process.communicate()
        latest = open(os.path.join(chaos, "checkpoint")).readline().strip()
        kills.append(latest.split("ckpt-")[-1].rstrip('"'))
    final = subprocess.run(trainer_args(chaos, args, resume=True), env=env,
                           capture_output=True, text=True)
    fallbacks += final.stderr.count("unreadable")

    expected = tensors(os.path.join(reference, f"ckpt-{args.max_steps}"))
    got = tensors(os.path.join(chaos, f"ckpt-{args.max_steps}"))
    different = sorted(name for name in expected
                       if name not in got or not np.array_equal(got[name], expected[name]))
    summary = {
        "kills": len(kills), "newest_checkpoint_step_after_each_kill": kills,
        "fallbacks_to_previous_checkpoint": fallbacks, "final_exit_code": final.returncode,
        "tensors_compared": len(expected), "tensors_different": different,
        "bitwise_equal": final.returncode == 0 and not different and set(got) == set(expected),
        "reference_run_secs": round(reference_secs, 1),
        "total_secs": round(time.monotonic() - start, 1),
    }
    print(json.dumps(summary, indent=2))
    return 0 if summary["bitwise_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
