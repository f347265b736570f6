"""The airbench94 preset's training step against a PyTorch peer, in float32 and bfloat16.

    python benchmarks/bench.py --only=airbench94_peers --cifar10_data=data/cifar10

Ours is ``python -m cifar10.train --preset=airbench94`` as the bench's
``train`` task runs it (its input pipeline, log lines and summaries on, one
checkpoint at the window's end), with Lookahead from the first step so that
both sides do the same work in the window; the peer is
``benchmarks/torch_peer.py`` (the same network, batch, optimizer and
augmentation in PyTorch). Each window runs in a fresh process, and the
rounds alternate ours and the peer in rotated order, per precision. Skipped,
with a line saying so, where PyTorch is not installed: it is not a
dependency of the toolkit. ``--table`` prints what a results file holds.
"""

import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISIONS = ("float32", "bfloat16")
OURS_FLAGS = "--preset=airbench94 --model=airbench94 --lookahead_start_steps=0"


def torch_version():
    """The installed PyTorch's version, or None; asked of a fresh interpreter, so that
    the bench's own process never loads it."""
    result = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def run_torch(data_dir, precision, warmup_steps, steps):
    """One window of the PyTorch peer in a fresh process: its examples/s."""
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "torch_peer.py"),
         f"--data_dir={data_dir}", f"--precision={precision}",
         f"--warmup_steps={warmup_steps}", f"--steps={steps}"],
        capture_output=True, text=True, cwd=REPO)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise RuntimeError(f"the PyTorch peer ({precision}) failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def benchmark(run_task, data_dir, workdir, log, rounds=3, warmup_steps=5, steps=15):
    """Interleaved rounds of ours and the PyTorch peer per precision. ``run_task`` is the
    bench's (a fresh process per window). Returns the part of bench/results.json."""
    version = torch_version()
    if version is None:
        log("airbench94 against PyTorch: skipped, PyTorch is not installed "
            "(pip install torch to measure it; the toolkit does not need it)")
        return {"skipped": "PyTorch is not installed"}
    part = {"torch_version": version, "rounds": rounds, "warmup_steps": warmup_steps,
            "steps": steps, "batch_size": 1024, "ours_flags": OURS_FLAGS, "precisions": {},
            "matmul_peak_gflops": {}}
    for precision in PRECISIONS:
        # This machine's matmul peak in each precision, in the same run (TensorFlow's).
        log(f"airbench94: the {precision} matmul peak")
        part["matmul_peak_gflops"][precision] = run_task(
            "peak", workdir=workdir, dtype=precision)["matmul_peak_gflops"]
    for precision in PRECISIONS:
        runs = {"ours": [], "torch": []}
        for round_ in range(rounds):
            for side in (("ours", "torch") if round_ % 2 == 0 else ("torch", "ours")):
                log(f"airbench94, {precision}: {side} (round {round_ + 1} of {rounds})")
                if side == "torch":
                    value = run_torch(data_dir, precision, warmup_steps, steps)
                    runs["torch"].append(value["torch_examples_per_sec"])
                else:
                    value = run_task("train", dataset="cifar10", data_dir=data_dir,
                                     workdir=workdir, label=f"a94-{precision}-{round_}",
                                     warmup_steps=warmup_steps, steps=steps, seconds=0,
                                     save_secs=0, jit=False,
                                     train_flags=f"{OURS_FLAGS} --precision={precision}")
                    runs["ours"].append(value["ours_examples_per_sec"])
                    part["flops_per_example"] = value["flops_per_example"]
        part["precisions"][precision] = summarize(runs["ours"], runs["torch"])
    return part


def summarize(ours, peer):
    """Both sides' windows, their medians, and ours / the peer: the ratio of the medians and
    the range the rounds allow (slowest of ours over fastest of the peer, and the reverse)."""
    return {"ours_runs": ours, "torch_runs": peer,
            "ours_examples_per_sec": statistics.median(ours),
            "torch_examples_per_sec": statistics.median(peer),
            "ratio": statistics.median(ours) / statistics.median(peer),
            "low": min(ours) / max(peer), "high": max(ours) / min(peer)}


def table(part):
    """The part as markdown: per precision, both sides' examples/s, the ratio, and the
    fraction of the same precision's matmul peak (measured in the same run) ours reaches."""
    if "skipped" in part:
        return f"airbench94 against PyTorch: not measured ({part['skipped']})."
    rows = ["| precision | ours, examples/s (each round) | PyTorch peer, examples/s (each "
            "round) | ours / peer (range the rounds allow) | matmul peak, GFLOP/s | ours, "
            "fraction of it |", "| --- | --- | --- | --- | --- | --- |"]
    for precision, p in part["precisions"].items():
        each = lambda runs: " / ".join(f"{v:,.0f}" for v in runs)  # noqa: E731
        peak = part["matmul_peak_gflops"][precision]
        fraction = p["ours_examples_per_sec"] * part["flops_per_example"] / 1e9 / peak
        rows.append(f"| {precision} | {p['ours_examples_per_sec']:,.0f} "
                    f"({each(p['ours_runs'])}) | {p['torch_examples_per_sec']:,.0f} "
                    f"({each(p['torch_runs'])}) | {p['ratio']:.2f} ({p['low']:.2f}-"
                    f"{p['high']:.2f}) | {peak:,.0f} | {fraction:.0%} |")
    return "\n".join(rows)
