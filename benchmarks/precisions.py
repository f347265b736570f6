"""Each benched model in float32 and in bfloat16, as a fraction of that precision's peak.

    python benchmarks/bench.py --only=precisions --cifar10_data=data/cifar10 --mnist_data=data/mnist

For the models ``make bench`` times (the CIFAR-10 tutorial model, the MNIST
cnn): windows of ours with ``--precision=float32`` and ``--precision=bfloat16``
alternate in rotated order, each in a fresh process, and TensorFlow's matmul
peak is measured in each precision in the same run. A model's fraction of the
peak is its training FLOPs per second (``trainkit.flops``) over the peak of the
precision it ran in. On a CPU without native bfloat16 the bfloat16 figures are
what emulating it costs.
"""

import statistics

PRECISIONS = ("float32", "bfloat16")
MODELS = ("cifar10", "mnist")


def benchmark(run_task, data, workdir, log, rounds=3, seconds=30.0):
    """The part of bench/results.json: peaks, and per model and precision each window's
    examples/s. ``run_task`` is the bench's (a fresh process per window)."""
    part = {"rounds": rounds, "window_secs": seconds, "matmul_peak_gflops": {}, "models": {}}
    for precision in PRECISIONS:
        log(f"precisions: the {precision} matmul peak")
        part["matmul_peak_gflops"][precision] = run_task(
            "peak", workdir=workdir, dtype=precision)["matmul_peak_gflops"]
    for dataset in MODELS:
        runs = {precision: [] for precision in PRECISIONS}
        pace = {}  # steps per second of each precision, from its last window
        flops = None
        for round_ in range(rounds):
            for precision in PRECISIONS if round_ % 2 == 0 else PRECISIONS[::-1]:
                log(f"precisions, {dataset}: {precision} (round {round_ + 1} of {rounds})")
                result = run_task(
                    "train", dataset=dataset, data_dir=data[dataset], workdir=workdir,
                    label=f"{precision}-{round_}", warmup_steps=30,
                    steps=int(pace.get(precision, 0) * seconds), seconds=seconds,
                    save_secs=seconds / 3, jit=False, train_flags=f"--precision={precision}")
                runs[precision].append(result["ours_examples_per_sec"])
                pace[precision] = result["ours_examples_per_sec"] / result["batch_size"]
                flops = result["flops_per_example"]
        part["models"][dataset] = summarize(runs, flops, part["matmul_peak_gflops"])
    return part


def summarize(runs, flops_per_example, peaks):
    """Per precision: the windows, their median, and the median's fraction of that
    precision's peak; and bfloat16 over float32, the ratio of the medians."""
    entry = {"flops_per_example": flops_per_example}
    for precision, values in runs.items():
        median = statistics.median(values)
        entry[precision] = {"runs": values, "examples_per_sec": median,
                            "fraction_of_peak": median * flops_per_example / 1e9
                            / peaks[precision]}
    entry["bfloat16_over_float32"] = (entry["bfloat16"]["examples_per_sec"]
                                      / entry["float32"]["examples_per_sec"])
    return entry


def table(part):
    """The part as markdown: per model and precision, examples/s, the peak, the fraction."""
    rows = ["| model | precision | examples/s (each round) | matmul peak, GFLOP/s | fraction "
            "of it | bfloat16 / float32 |", "| --- | --- | --- | --- | --- | --- |"]
    names = {"cifar10": "cifar10 tutorial", "mnist": "mnist cnn"}
    for dataset, entry in part["models"].items():
        for precision in PRECISIONS:
            p = entry[precision]
            each = " / ".join(f"{v:,.0f}" for v in p["runs"])
            speedup = (f"{entry['bfloat16_over_float32']:.2f}x" if precision == "bfloat16"
                       else "")
            rows.append(f"| {names.get(dataset, dataset)} | {precision} | "
                        f"{p['examples_per_sec']:,.0f} ({each}) | "
                        f"{part['matmul_peak_gflops'][precision]:,.0f} | "
                        f"{p['fraction_of_peak']:.0%} | {speedup} |")
    return "\n".join(rows)
