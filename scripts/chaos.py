#!/usr/bin/env python3
"""Chaos run: kill a trainer with SIGKILL at random moments, resume it, compare bitwise;
meanwhile try to mix another run into it.

    python scripts/chaos.py --data_dir=data/mnist --kills=20

1. Trains a reference run with --deterministic, uninterrupted, to --max_steps.
2. Trains the same run again, with an evaluator polling it all along, but
   kills the trainer with SIGKILL --kills times at a random moment
   (checkpoints are saved every few steps, so many kills land in the middle
   of a save), resuming with --resume after each kill. In every round,
   while the trainer lives, a second trainer (another seed and model, with
   and without --resume) and a second evaluator are started against the
   live run, and every other round the ``checkpoint`` index is deleted.
3. Compares every tensor of the two final checkpoints (weights, optimizer
   slots, moving averages, step, dropout state) for bitwise equality, and
   checks that nothing was mixed: every intruder refused (exit 2, naming
   the holder), config.json still the run's, every evaluation record the
   run's and each step scored once.

Prints one JSON summary and exits 0 only if the runs are identical and unmixed.
"""

import argparse
import json
import os
import random
import re
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
    return os.path.isdir(train_dir) and any(
        name.startswith("ckpt-") and name.endswith(".index") for name in os.listdir(train_dir))


def newest_step(train_dir):
    return max(int(name[len("ckpt-"):-len(".index")]) for name in os.listdir(train_dir)
               if name.startswith("ckpt-") and name.endswith(".index"))


def wait_for_lock(directory, pid, timeout=120):
    """Waits until process ``pid`` holds ``directory`` (its lock file names it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(os.path.join(directory, ".lock")) as f:
                if json.load(f)["pid"] == pid:
                    return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"process {pid} did not take {directory}")


def intruders(train_dir, args, env):
    """Starts a second trainer (another seed and model, new and --resume) and a second
    evaluator against the live run; returns (how many were refused naming the holder,
    how many were started)."""
    attempts = [
        [sys.executable, "-m", f"{args.dataset}.train", f"--train_dir={train_dir}",
         f"--data_dir={args.data_dir}", "--model=fc", f"--seed={args.seed + 1}",
         f"--max_steps={args.max_steps}"],
        [sys.executable, "-m", f"{args.dataset}.train", f"--train_dir={train_dir}", "--resume",
         "--model=fc", f"--seed={args.seed + 1}"],
        [sys.executable, "-m", f"{args.dataset}.eval", f"--train_dir={train_dir}",
         "--eval_policy=all", "--eval_interval_secs=0.2", "--timeout_secs=5"],
    ]
    refused = 0
    for command in attempts:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        refused += result.returncode == 2 and "is in use by another" in result.stderr
    return refused, len(attempts)


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
    refused = attempted = index_deletions = 0
    evaluator = None
    for round_number in range(args.kills):
        process = subprocess.Popen(trainer_args(chaos, args, resume=has_checkpoint(chaos)),
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        output = []
        for line in process.stdout:  # wait until training is under way
            output.append(line)
            if "unreadable" in line:
                fallbacks += 1
            if re.search(r"step [\d,]+/[\d,]+: loss", line):
                break
        if evaluator is None:  # one evaluator for the whole run, from its first round
            evaluator = subprocess.Popen(
                [sys.executable, "-m", f"{args.dataset}.eval", f"--train_dir={chaos}",
                 "--eval_policy=all", "--eval_interval_secs=0.2", "--timeout_secs=3600"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            wait_for_lock(os.path.join(chaos, "eval"), evaluator.pid)
        if process.poll() is None:
            ok, tried = intruders(chaos, args, env)
            if process.poll() is None:  # else the run ended meanwhile: no live run to guard
                refused, attempted = refused + ok, attempted + tried
        if round_number % 2 and os.path.exists(os.path.join(chaos, "checkpoint")):
            os.remove(os.path.join(chaos, "checkpoint"))
            index_deletions += 1
        time.sleep(rng.uniform(0, args.max_kill_delay))
        if process.poll() is not None:
            break  # finished before the kill: nothing more to interrupt
        process.send_signal(signal.SIGKILL)
        process.communicate()
        kills.append(newest_step(chaos))
    final = subprocess.run(  # unless the last round's trainer finished the run already
        [sys.executable, "-c", "pass"] if os.path.exists(os.path.join(chaos, "DONE")) else
        trainer_args(chaos, args, resume=True), env=env, capture_output=True, text=True)
    fallbacks += final.stderr.count("unreadable")
    eval_err = evaluator.communicate(timeout=600)[1] if evaluator else ""

    with open(os.path.join(chaos, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(reference, "config.json")) as f:
        reference_config = json.load(f)
    records = []
    with open(os.path.join(chaos, "eval", "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    steps = [r["step"] for r in records]
    mixed = (config["model"] != args.model or config["seed"] != args.seed
             or {k: v for k, v in config.items() if k not in ("train_dir", "run_id", "resume")}
             != {k: v for k, v in reference_config.items()
                 if k not in ("train_dir", "run_id", "resume")}
             or any(r.get("run_id") != config["run_id"] for r in records)
             or len(steps) != len(set(steps)) or refused != attempted)
    expected = tensors(os.path.join(reference, f"ckpt-{args.max_steps}"))
    got = tensors(os.path.join(chaos, f"ckpt-{args.max_steps}"))
    different = sorted(name for name in expected
                       if name not in got or not np.array_equal(got[name], expected[name]))
    summary = {
        "kills": len(kills), "newest_checkpoint_step_after_each_kill": kills,
        "fallbacks_to_previous_checkpoint": fallbacks, "final_exit_code": final.returncode,
        "tensors_compared": len(expected), "tensors_different": different,
        "bitwise_equal": final.returncode == 0 and not different and set(got) == set(expected),
        "intruders_refused": refused, "intruders_started": attempted,
        "checkpoint_index_deleted": index_deletions,
        "evaluator_exit_code": evaluator.returncode if evaluator else None,
        "evaluator_tracebacks": eval_err.count("Traceback"),
        "steps_evaluated": len(steps), "steps_evaluated_twice": len(steps) - len(set(steps)),
        "runs_mixed": int(mixed),
        "reference_run_secs": round(reference_secs, 1),
        "total_secs": round(time.monotonic() - start, 1),
    }
    print(json.dumps(summary, indent=2))
    return 0 if summary["bitwise_equal"] and not mixed and evaluator.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
