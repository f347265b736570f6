"""Training speed of two commits of this repository, interleaved on one machine.

    python benchmarks/ab_commits.py --old=95b7b1d --new=HEAD --rounds=5 \\
        --mnist_data=data/mnist --cifar10_data=data/cifar10

Checks both commits out into temporary worktrees and, round after round, runs each
commit's trainer on the MNIST cnn (3,000 steps, no validation) and the CIFAR-10 tutorial
model (600 steps, no timed checkpoints), in fresh processes, the order of the commits
swapped every round. A run's speed is the median of its logged examples/sec (the first
line, which holds the compilation, left out). Prints each run and, per model, both
medians, their ratio and the range the rounds allow (new slowest over old fastest, and
the reverse): "within noise" when that range holds 1.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = {"mnist": ["--max_steps=3000", "--validate_every_steps=0", "--log_frequency=100"],
        "cifar10": ["--max_steps=600", "--save_checkpoint_secs=0", "--log_frequency=50"]}


def speed(worktree, dataset, data_dir, train_dir):
    """The median examples/sec that one run of ``dataset``'s trainer logs."""
    result = subprocess.run([sys.executable, "-m", f"{dataset}.train", f"--train_dir={train_dir}",
                             f"--data_dir={data_dir}", *RUNS[dataset]], cwd=worktree,
                            capture_output=True, text=True)
    values = [float(v.replace(",", "")) for v in re.findall(r"([\d,]+) examples/s,",
                                                             result.stderr)][1:]
    if result.returncode or not values:
        raise SystemExit(f"error: {dataset}.train at {worktree} failed:\n{result.stderr[-2000:]}")
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mnist_data", required=True)
    parser.add_argument("--cifar10_data", required=True)
    args = parser.parse_args()
    data = {"mnist": os.path.abspath(args.mnist_data),
            "cifar10": os.path.abspath(args.cifar10_data)}
    workdir = tempfile.mkdtemp(prefix="ab-")
    trees = {}
    try:
        for side in ("old", "new"):
            trees[side] = os.path.join(workdir, side)
            subprocess.run(["git", "worktree", "add", "--detach", trees[side],
                            getattr(args, side)], cwd=REPO, check=True, capture_output=True)
        runs = {(side, d): [] for side in trees for d in data}
        for round_ in range(args.rounds):
            for side in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
                for dataset in data:
                    value = speed(trees[side], dataset, data[dataset],
                                  os.path.join(workdir, f"run-{side}-{dataset}-{round_}"))
                    runs[side, dataset].append(value)
                    print(f"round {round_ + 1} {side} {dataset}: {value:,.0f} examples/sec",
                          flush=True)
        for dataset in data:
            old, new = runs["old", dataset], runs["new", dataset]
            low, high = min(new) / max(old), max(new) / min(old)
            print(f"{dataset}: old {statistics.median(old):,.0f}, new "
                  f"{statistics.median(new):,.0f} examples/sec (medians); new / old "
                  f"{statistics.median(new) / statistics.median(old):.2f}, range "
                  f"{low:.2f}-{high:.2f}: "
                  + ("within noise" if low <= 1.0 <= high else
                     "new faster" if low > 1.0 else "new slower"))
    finally:
        for tree in trees.values():
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=REPO,
                           capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
