"""Training-step speed of several flag settings, alternated in one process.

    python benchmarks/step_ab.py --dataset=mnist --data_dir=data/mnist --rounds=30 \\
        --setting= --setting=--steps_per_call=50 --setting=--moving_average_every_steps=1

Builds one trainer per ``--setting`` (the first is the reference; an empty one is
the dataset's defaults), warms each up, then for ``--rounds`` rounds times ``--steps`` steps of
each in turn: the compiled training step and its per-call dispatch, chunked by
``--steps_per_call`` as the trainer chunks it, without the actions between calls
(log lines, summaries, checkpoints). Settings alternate within seconds, so a drift
of the machine's speed, which on a shared machine is larger than most differences
worth measuring, hits them all alike. Prints each setting's median examples/sec and
its per-round ratio to the reference: the median and the quartiles; "within noise"
when the quartiles hold 1. Nothing is written but a temporary dir.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parser(doc, rounds, steps_help):
    """The command line both in-process timing scripts share: the dataset, its data,
    the rounds, and the steps each timed loop runs."""
    result = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    result.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    result.add_argument("--data_dir", required=True)
    result.add_argument("--rounds", type=int, default=rounds)
    result.add_argument("--steps", type=int, default=50, help=steps_help)
    return result


def build(dataset, data_dir, train_dir, setting):
    """A trainer for ``dataset`` with its real defaults and ``setting``'s flags."""
    import bench
    from trainkit import loop
    config = bench.train_config(dataset, train_dir, data_dir,
                                 ["--validate_every_steps=0", *setting.split()])
    return loop.Trainer(config, bench.load_dataset(dataset))


def compare(times, reference=0):
    """Per setting: median examples/sec and the per-round ratio to ``reference``."""
    rows = []
    for speeds in times:
        ratios = [a / b for a, b in zip(speeds, times[reference])]
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        rows.append({"examples_per_sec": statistics.median(speeds),
                     "ratio_median": statistics.median(ratios),
                     "ratio_quartiles": [quartiles[0], quartiles[2]],
                     "within_noise": quartiles[0] <= 1.0 <= quartiles[2]})
    return rows


def main():
    command_line = parser(__doc__, rounds=30, steps_help="steps per setting and round")
    command_line.add_argument("--setting", action="append", dest="settings", required=True,
                              help="the trainer's flags, in one string; the first is the "
                              "reference")
    args = command_line.parse_args()
    sys.path[:0] = [REPO, os.path.join(REPO, "benchmarks")]
    import trainkit  # noqa: F401  (sets up TensorFlow before it loads)
    import tensorflow as tf
    from absl import flags

    from trainkit import errors
    workdir = tempfile.mkdtemp(prefix="step-ab-")
    try:
        runs = []
        for i, setting in enumerate(args.settings):
            try:
                trainer = build(args.dataset, args.data_dir, os.path.join(workdir, str(i)),
                                setting)
            except (flags.Error, errors.UserError) as e:
                # The trainer's own one-line message, as its command line would print it.
                sys.stderr.write(f"error: --setting={setting!r}: {e}\n")
                return 2
            runs.append((trainer, iter(trainer.dataset)))

        def time_steps(trainer, iterator, steps):
            per_call = trainer.config.steps_per_call
            start = time.perf_counter()
            while steps > 0:
                n = min(per_call, steps)
                outputs = trainer.train_steps(iterator, tf.constant(n, tf.int64))
                steps -= n
            float(outputs[0])  # the last call's work is done
            return time.perf_counter() - start

        for trainer, iterator in runs:
            time_steps(trainer, iterator, 2 * args.steps)  # compiles, fills the pipeline
        times = [[] for _ in runs]
        for _ in range(args.rounds):
            for i, (trainer, iterator) in enumerate(runs):
                seconds = time_steps(trainer, iterator, args.steps)
                times[i].append(args.steps * trainer.config.batch_size / seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = compare(times)
    for row, (trainer, _) in zip(rows, runs):
        row["batch_size"] = trainer.config.batch_size
    for setting, row in zip(args.settings, rows):
        low, high = row["ratio_quartiles"]
        print(f"{setting or '(defaults)':<40} {row['examples_per_sec']:>9,.0f} examples/s  "
              f"ratio {row['ratio_median']:.3f} (quartiles {low:.3f}-{high:.3f})"
              + ("  within noise" if row["within_noise"] and setting != args.settings[0]
                 else ""))
    print(json.dumps({"dataset": args.dataset, "rounds": args.rounds, "steps": args.steps,
                      "settings": args.settings, "results": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
