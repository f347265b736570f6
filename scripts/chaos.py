#!/usr/bin/env python3
"""Chaos run: kill a trainer with SIGKILL at random moments, resume it, compare bitwise;
meanwhile try to mix another run into it.

    python scripts/chaos.py --data_dir=data/mnist --kills=20

1. Trains a reference run with --deterministic, uninterrupted, to --max_steps.
2. Trains the same run again, with an evaluator polling it all along, but
   kills the trainer with SIGKILL --kills times at a random moment
   (checkpoints are saved every few steps, so many kills land in the middle
   of a save), resuming with --resume after each kill. In every round,
   while the trainer lives, intruders are started against the live run: a
   second trainer (another seed and model, with and without --resume), the
   same dir spelled as a ``file://`` URI, a second evaluator, a trainer with
   its train dir inside the data dir, and an images trainer whose train dir
   is its data dir; every other round the ``checkpoint`` index is deleted;
   every third round the ``.lock`` is deleted and a second trainer resumes
   the run, which the first must notice and leave to it without writing.
3. Compares every tensor of the two final checkpoints (weights, optimizer
   slots, moving averages, step, dropout state) for bitwise equality, and
   checks that nothing was mixed or lost: every intruder refused (exit 2,
   naming the holder or the overlap) with nothing written, every trainer
   whose lock was deleted stopped saying so, config.json still the run's,
   every evaluation record the run's and each step scored once.

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


def intruders(train_dir, args, env, pictures):
    """Starts, against the live run, a second trainer (another seed and model, new and
    --resume), the same dir as a file:// URI, a second evaluator, a trainer whose train
    dir is inside the data dir, and an images trainer whose train dir is its data dir
    ``pictures``; returns (how many were refused as they should be, with nothing written
    into the data, how many were started)."""
    python = [sys.executable, "-m"]
    in_use = "is in use by another"
    attempts = [
        (python + [f"{args.dataset}.train", f"--train_dir={train_dir}",
                   f"--data_dir={args.data_dir}", "--model=fc", f"--seed={args.seed + 1}",
                   f"--max_steps={args.max_steps}"], in_use),
        (python + [f"{args.dataset}.train", f"--train_dir={train_dir}", "--resume",
                   "--model=fc", f"--seed={args.seed + 1}"], in_use),
        (python + [f"{args.dataset}.train", f"--train_dir=file://{os.path.abspath(train_dir)}",
                   "--resume"], in_use),
        (python + [f"{args.dataset}.eval", f"--train_dir={train_dir}", "--eval_policy=all",
                   "--eval_interval_secs=0.2", "--timeout_secs=5"], in_use),
        (python + [f"{args.dataset}.train", f"--train_dir={os.path.join(args.data_dir, 'run')}",
                   f"--data_dir={args.data_dir}"], "is inside the data dir"),
        (python + ["images.train", f"--train_dir={pictures}", f"--data_dir={pictures}",
                   "--test_split=0.2"], "is the data dir"),
    ]
    before = tree(args.data_dir), tree(pictures)
    refused = 0
    for command, said in attempts:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        refused += result.returncode == 2 and said in result.stderr
    refused -= (tree(args.data_dir), tree(pictures)) != before  # data written: not refused
    return refused, len(attempts)


def tree(folder):
    """{relative path: (size, mtime)} of every file under ``folder``."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            stat = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), folder)] = (stat.st_size,
                                                                        stat.st_mtime_ns)
    return found


def take_over(train_dir, args, env, process):
    """Deletes the live run's .lock and resumes it in a second trainer: the first must stop
    without writing (exit 2, naming the deleted lock) and leave the run to the second.
    Returns (the second trainer, whether the first stopped as it should)."""
    os.remove(os.path.join(train_dir, ".lock"))
    second = subprocess.Popen(trainer_args(train_dir, args, resume=True), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.communicate(timeout=300)[0]
    noticed = process.returncode == 2 and "was deleted or replaced" in output
    return second, noticed


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
    refused = attempted = index_deletions = lock_deletions = lock_noticed = 0
    evaluator = None
    sys.path.insert(0, REPO)
    from trainkit import registry
    pictures = registry.load("images").synthetic(os.path.join(args.workdir, "pictures"),
                                                "small")
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
            ok, tried = intruders(chaos, args, env, pictures)
            if process.poll() is None:  # else the run ended meanwhile: no live run to guard
                refused, attempted = refused + ok, attempted + tried
        if round_number % 3 == 2 and process.poll() is None:
            process, noticed = take_over(chaos, args, env, process)
            lock_deletions, lock_noticed = lock_deletions + 1, lock_noticed + noticed
            for line in process.stdout:  # the second trainer, under way
                if re.search(r"step [\d,]+/[\d,]+: loss", line):
                    break
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
    steps = [r["step"] for r in records if "skipped" not in r]
    mixed = (config["model"] != args.model or config["seed"] != args.seed
             or {k: v for k, v in config.items()
                 if k not in ("train_dir", "run_id", "resume", "history")}
             != {k: v for k, v in reference_config.items()
                 if k not in ("train_dir", "run_id", "resume", "history")}
             or any(r.get("run_id") != config["run_id"] for r in records)
             or len(steps) != len(set(steps)) or refused != attempted
             or lock_noticed != lock_deletions)
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
        "lock_deleted_and_run_taken_over": lock_deletions,
        "first_trainer_stopped_unwritten": lock_noticed,
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
