"""Seconds from each program's last line to its exit: the MNIST two-terminal pair.

    python benchmarks/exit_delay.py --train_dir=/tmp/exit_delay --data_dir=data/mnist

Starts the evaluator, then the trainer (the classic settings) on a new train dir,
timestamps every line each prints, and reports how long each process took to return
after its last line. The train dir must not exist yet (nothing is ever deleted).
"""

import argparse
import os
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(args, lines):
    """``python -m args``, its stderr lines collected with their arrival times."""
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def read():
        for line in process.stderr:
            lines.append((time.monotonic(), line.rstrip()))

    reader = threading.Thread(target=read)
    reader.start()
    return process, reader


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_dir", required=True)
    parser.add_argument("--data_dir", required=True)
    args = parser.parse_args()
    if os.path.exists(args.train_dir):
        sys.stderr.write(f"error: {args.train_dir} exists; give a new --train_dir (this "
                         "script starts a new run and deletes nothing)\n")
        return 2
    eval_lines, train_lines = [], []
    evaluator, eval_reader = start(["mnist.eval", f"--train_dir={args.train_dir}"], eval_lines)
    trainer, train_reader = start(["mnist.train", f"--train_dir={args.train_dir}",
                                   f"--data_dir={args.data_dir}"], train_lines)
    for name, process, reader, lines in (("trainer", trainer, train_reader, train_lines),
                                         ("evaluator", evaluator, eval_reader, eval_lines)):
        process.wait()
        ended = time.monotonic()
        reader.join()
        if process.returncode or not lines:
            print(f"{name}: exit code {process.returncode}", *(l for _, l in lines[-5:]),
                  sep="\n")
            return 1
        print(f"{name}: exited {ended - lines[-1][0]:.2f} s after its last line")
    return 0


if __name__ == "__main__":
    sys.exit(main())
