#!/usr/bin/env python3
"""The images dataset against cifar10 on the same pictures: accuracy and speed in one run.

    python benchmarks/images_vs_cifar10.py --cifar10_data=DIR --images_data=DIR --workdir=DIR

``--cifar10_data`` holds CIFAR-10's binary files, ``--images_data`` the same
pictures as a tree of files (``train/CLASS/*.jpg``, ``test/CLASS/*.jpg``).
Both train the tutorial model with the same settings (cifar10's
``--preset=short``, the flags below) for ``--max_steps``, in alternating
segments of ``--segment`` steps (each resumed exactly where it stopped), so
that both see the same machine; then each final checkpoint's averaged
weights are scored on its test split. Prints JSON: each side's precision and
median logged examples/sec (the first log line of a segment, which holds the
step's compilation, left out), and images' speed over cifar10's.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ["--model=tutorial", "--batch_size=128", "--optimizer=momentum", "--momentum=0.9",
            "--learning_rate=0.02", "--lr_schedule=cosine", "--l2_regularization=0.004",
            "--moving_average_decay=0.9999", "--save_checkpoint_steps=0",
            "--save_checkpoint_secs=0", "--save_summaries_steps=1000", "--log_frequency=50"]


def run(command):
    result = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True,
                            cwd=REPO)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar10_data", required=True)
    parser.add_argument("--images_data", required=True)
    parser.add_argument("--workdir", required=True, help="a new folder for both runs")
    parser.add_argument("--max_steps", type=int, default=3910, help="10 epochs of 128")
    parser.add_argument("--segment", type=int, default=1000)
    args = parser.parse_args()
    os.makedirs(args.workdir)
    sides = {"cifar10": args.cifar10_data, "images": args.images_data}
    speeds = {name: [] for name in sides}
    for end in range(args.segment, args.max_steps + args.segment, args.segment):
        end = min(end, args.max_steps)
        for name, data_dir in sides.items():
            train_dir = os.path.join(args.workdir, name)
            first = end <= args.segment
            flags = ([f"--data_dir={data_dir}", *SETTINGS] if first else ["--resume"])
            log = run([f"{name}.train", f"--train_dir={train_dir}", f"--max_steps={end}",
                       *flags])
            speeds[name] += [float(x.replace(",", "")) for x in
                             re.findall(r"([\d,]+) examples/s,", log)[1:]]
    summary = {}
    for name in sides:
        run([f"{name}.eval", f"--train_dir={os.path.join(args.workdir, name)}", "--run_once"])
        with open(os.path.join(args.workdir, name, "eval", "metrics.jsonl")) as f:
            precision = [json.loads(line) for line in f][-1]["precision_at_1"]
        summary[name] = {"precision_at_1": precision,
                         "examples_per_sec_median": statistics.median(speeds[name]),
                         "examples_per_sec_range": [min(speeds[name]), max(speeds[name])]}
    summary["speed_images_over_cifar10"] = round(
        summary["images"]["examples_per_sec_median"]
        / summary["cifar10"]["examples_per_sec_median"], 3)
    summary["precision_images_minus_cifar10"] = round(
        summary["images"]["precision_at_1"] - summary["cifar10"]["precision_at_1"], 4)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
