"""What each ``--priority`` of the evaluator costs the trainer and how long a checkpoint waits
for its score, alone and beside a busy process.

    python benchmarks/evaluator_priority.py --data_dir=data/mnist [--rounds=2] [--out=FILE]

The MNIST quick start as the README prints it: the evaluator started first,
in a Unix session of its own (a terminal of its own), then ``python -m
mnist.train --preset=fast`` (2,400 steps, a checkpoint every 600). For each
``--priority`` (idle, low, normal) and without an evaluator, alone and with
one busy process per core at normal priority (``while True: pass``, a stand-in
for a compile or a notebook), in rounds of rotated order, it reads from the
run's files:

* the trainer's time from its ``config.json`` (written as training starts) to
  its ``DONE``, and its slowdown against the trainer without an evaluator in
  the same condition and round;
* for each checkpoint, the lag from its ``.index`` file's write to its line in
  ``metrics.jsonl``; how many were scored before ``DONE``; how many skipped.

An evaluator still working ``--grace`` seconds after the trainer's ``DONE`` is
stopped (SIGTERM) and its checkpoints not scored by then count as unscored.
``benchmarks/bench.py`` runs this as one of its parts; ``--table`` prints
docs/speed.md's table from a results file.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIORITIES = ("idle", "low", "normal")
CONDITIONS = ("alone", "busy")
TRAIN_FLAGS = ("--preset=fast", "--max_to_keep=100")
GRACE_SECS = 120.0


def _env():
    return dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="")


def _start(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def busy_processes(count):
    """``count`` processes that keep a core each busy at normal priority."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(count)]


def one_run(train_dir, data_dir, priority, grace=GRACE_SECS):
    """The quick start with the evaluator at ``priority`` (None: no evaluator); the
    measurements of ``measure``."""
    evaluator = None
    if priority:
        evaluator = _start(["mnist.eval", f"--train_dir={train_dir}", f"--priority={priority}"],
                           start_new_session=True)
    trainer = _start(["mnist.train", f"--train_dir={train_dir}", f"--data_dir={data_dir}",
                      *TRAIN_FLAGS])
    _, trainer_err = trainer.communicate()
    if trainer.returncode:
        raise RuntimeError(f"the trainer failed:\n{trainer_err[-2000:]}")
    finished = True
    if evaluator:
        try:
            evaluator.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            evaluator.terminate()
            evaluator.communicate()
            finished = False
    return dict(measure(train_dir), evaluator_finished=finished)


def measure(train_dir):
    """From a finished run's files: the trainer's seconds, and per checkpoint its lag to its
    score (None: never scored) and whether it was scored before DONE."""
    def mtime(name):
        return os.stat(os.path.join(train_dir, name)).st_mtime

    start, done = mtime("config.json"), mtime("DONE")
    steps = sorted(int(name[len("ckpt-"):-len(".index")]) for name in os.listdir(train_dir)
                   if name.startswith("ckpt-") and name.endswith(".index"))
    records = {}
    try:
        with open(os.path.join(train_dir, "eval", "metrics.jsonl")) as f:
            for line in f:
                record = json.loads(line)
                if "skipped" not in record:
                    records[record["step"]] = record["wall_time"]
                else:
                    records.setdefault(record["step"], None)
    except FileNotFoundError:
        pass
    lags = [round(records[step] - mtime(f"ckpt-{step}.index"), 2) if records.get(step)
            else None for step in steps]
    return {"trainer_secs": round(done - start, 2), "checkpoints": steps, "lag_secs": lags,
            "scored_before_done": sum(1 for step in steps
                                      if records.get(step) and records[step] <= done),
            "skipped": sum(1 for step in steps if step in records and records[step] is None)}


def benchmark(data_dir, rounds=2, workdir=None, log=print, grace=GRACE_SECS):
    """Every priority and the trainer alone, in each condition, ``rounds`` times."""
    workdir = workdir or tempfile.mkdtemp(prefix="evaluator-priority-")
    runs = {condition: {str(p): [] for p in (None, *PRIORITIES)} for condition in CONDITIONS}
    for round_ in range(rounds):
        for condition in CONDITIONS:
            spinners = busy_processes(os.cpu_count() or 1) if condition == "busy" else []
            try:
                order = [None, *PRIORITIES]
                order = order[round_ % len(order):] + order[:round_ % len(order)]
                for priority in order:
                    log(f"round {round_ + 1} of {rounds}, {condition}: "
                        + (f"--priority={priority}" if priority else "no evaluator"))
                    train_dir = os.path.join(workdir, f"{condition}-{priority}-{round_}")
                    runs[condition][str(priority)].append(
                        one_run(train_dir, data_dir, priority, grace))
                    shutil.rmtree(train_dir)
            finally:
                for spinner in spinners:
                    spinner.kill()
                    spinner.wait()
    return summarize(runs, rounds, grace)


def summarize(runs, rounds, grace=GRACE_SECS):
    """Per condition and priority: the runs, and their medians (slowdown per round against
    that round's trainer without an evaluator)."""
    out = {"rounds": rounds, "train_flags": " ".join(TRAIN_FLAGS), "grace_secs": grace,
           "conditions": {}}
    for condition, by_priority in runs.items():
        baseline = [run["trainer_secs"] for run in by_priority["None"]]
        entry = {"trainer_alone_secs": baseline}
        for priority in PRIORITIES:
            measured = by_priority[priority]
            lags = [lag for run in measured for lag in run["lag_secs"] if lag is not None]
            entry[priority] = {
                "runs": measured,
                "slowdown": statistics.median(run["trainer_secs"] / base - 1.0
                                              for run, base in zip(measured, baseline)),
                "median_lag_secs": statistics.median(lags) if lags else None,
                "max_lag_secs": max(lags) if lags else None,
                "scored_before_done": [run["scored_before_done"] for run in measured],
                "unscored": [sum(lag is None for lag in run["lag_secs"]) for run in measured],
                "checkpoints": len(measured[0]["checkpoints"]) if measured else 0}
        out["conditions"][condition] = entry
    return out


def table(result):
    """docs/speed.md's table of a ``benchmark`` result."""
    lines = ["| condition | --priority | trainer slowdown (median) | lag from save to score, "
             "median / max | scored before DONE, per round | not scored, per round |",
             "| --- | --- | --- | --- | --- | --- |"]
    for condition, entry in result["conditions"].items():
        for priority in PRIORITIES:
            e = entry[priority]
            lag = ("-" if e["median_lag_secs"] is None else
                   f"{e['median_lag_secs']:.1f} s / {e['max_lag_secs']:.1f} s")
            lines.append(
                f"| {condition} | {priority} | {100 * e['slowdown']:+.1f}% | {lag} | "
                + ", ".join(f"{n} of {e['checkpoints']}" for n in e["scored_before_done"])
                + " | " + ", ".join(str(n) for n in e["unscored"]) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", help="MNIST's files (as python -m mnist.train takes them)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--grace", type=float, default=GRACE_SECS,
                        help="seconds an evaluator may go on after the trainer's DONE")
    parser.add_argument("--out", help="write the result (JSON) here")
    parser.add_argument("--table", metavar="RESULT_JSON", help="print the table of a result")
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)))
        return 0
    if not args.data_dir:
        parser.error("--data_dir is required")
    result = benchmark(args.data_dir, args.rounds, grace=args.grace,
                       log=lambda m: sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {m}\n"))
    print(table(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
