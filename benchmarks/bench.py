"""The benchmark: our trainer against keras.Model.fit, in one run, on this machine.

    python benchmarks/bench.py                      # full: writes bench/results.json (~70 min)
    python benchmarks/bench.py --quick              # smoke check, under 3 minutes, nothing written
    python benchmarks/bench.py --table bench/results.json   # docs/speed.md's table from a results file

For the CIFAR-10 tutorial model and the MNIST cnn it measures, each in a
fresh process so that no run inherits another's threads or compiled code:

1. our trainer's examples/sec on its real input pipeline (augmentation,
   moving averages, log lines, summaries, checkpoints every
   ``--save_secs`` all on) against ``keras.Model.fit`` on the same model,
   loss, pipeline and batch with Keras's own SGD, configured as a
   knowledgeable Keras user would: the kernels ours runs, and the fastest of
   ``steps_per_execution`` 1, 10 and 50, each with and without XLA
   (``jit_compile``), one window each; Keras as it comes (TensorFlow's
   default kernels, one step per call) is measured beside them. Then
   interleaved rounds of ours and that peer: the ratio of the medians, the
   range the rounds allow, and "not resolved" where the spreads overlap;
2. the input pipeline alone: its examples/sec over the trainer's (headroom);
3. one full evaluation pass (every test image, shadow weights) in seconds,
   and the trainer's examples/sec with an evaluator polling beside it in a
   Unix session of its own, as from a second terminal (``EVALUATOR_FLAGS``),
   against without (slowdown), alternated A/B/A/B, then once with each of
   ``EVALUATOR_ALTERNATIVES`` (lesser priorities);
4. the training step's FLOP rate against a measured fp32 matmul peak;
5. what XLA (``--jit_compile``), bfloat16 compute (``--precision=bfloat16``),
   TensorFlow's thread-pool sizes, moving averages updated at every step and
   TensorFlow's oneDNN kernels do.

oneDNN: our trainer turns TensorFlow's oneDNN kernels on (``trainkit``
sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the user set it); TensorFlow
itself turns them on only on CPUs with AVX-512 VNNI/BF16 or AMX. The Keras
peer runs with the same setting; one run of ours with oneDNN off shows what
the setting does. The matmul peak is the better of the two kernels' peaks.
Every task reports whether oneDNN was on.

Data: ``--cifar10_data``/``--mnist_data`` if given, else synthetic files in
the real formats (the pipeline's cost does not depend on the pixels).
Timings are never asserted anywhere; they are noisy on a shared machine,
which is why every comparison is a ratio of runs made in the same command.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"cifar10": "tutorial", "mnist": "cnn"}
# The evaluator's flags in the slowdown measurement: the share that leaves a trainer its speed.
EVALUATOR_FLAGS = "--num_threads=1 --priority=idle"
# Lesser priorities, each measured once for comparison.
EVALUATOR_ALTERNATIVES = ("--num_threads=1 --priority=low", "--num_threads=1 --priority=normal")
# The speed targets the results are checked against (docs/speed.md).
TARGETS = {"ratio_cifar10": 1.10, "ratio_mnist": 1.10, "fraction_of_peak_cifar10": 0.60,
           "fraction_of_peak_mnist": 0.60, "headroom": 10.0, "evaluator_slowdown": 0.05}
# The Keras peer's candidate settings: each steps_per_execution, with and without XLA.
PEER_STEPS_PER_EXECUTION = (1, 10, 50)


def peer_label(config):
    """A Keras configuration in words: "steps_per_execution=10, XLA, oneDNN as ours"."""
    kernels = "TensorFlow's default kernels" if config["onednn"] == "tf_default" \
        else "oneDNN as ours"
    return (f"steps_per_execution={config['spe']}, " + ("XLA" if config["jit"] else "no XLA")
            + f", {kernels}")


def select_peer(tried):
    """The fastest configuration that runs the kernels ours runs (Keras as it comes, with
    TensorFlow's default kernels, is measured for information, not chosen)."""
    fair = [t for t in tried if t["onednn"] != "tf_default"]
    best = max(fair, key=lambda t: t["examples_per_sec"])
    return {k: best[k] for k in ("spe", "jit", "onednn", "label")}


def compare(ours, peer):
    """Ours over the peer from their rounds: the ratio of the medians, the range the rounds
    allow (slowest of ours over fastest of the peer, and the reverse) and which side is
    faster: "not resolved" when the two sides' spreads overlap."""
    low, high = min(ours) / max(peer), max(ours) / min(peer)
    faster = "ours" if low > 1.0 else "peer" if high < 1.0 else "not resolved"
    return {"median": statistics.median(ours) / statistics.median(peer), "low": low,
            "high": high, "faster": faster}


def verdict(low, high, target):
    """A ratio's range against ``target`` (at least): met only if all of it is above it."""
    if low >= target:
        return "met"
    if high < target:
        return "not met"
    return "not resolved"


# ---------------------------------------------------------------- in a worker process

def train_config(dataset, train_dir, data_dir, extra=()):
    """The dataset's real trainer defaults (its flags module), with ``extra`` flags."""
    import importlib

    from absl import flags

    from trainkit import flags as tk_flags
    from trainkit import registry
    importlib.import_module(f"{dataset}.train")  # defines its flags
    flags.FLAGS.unparse_flags()  # from the defaults, not from an earlier call's flags
    flags.FLAGS([dataset, f"--train_dir={train_dir}", f"--data_dir={data_dir}", *extra])
    return tk_flags.train_config(registry.spec(dataset))


def load_dataset(name):
    from trainkit import registry
    return registry.load(name)


def flops_per_example(model):
    """Training FLOPs per example (``trainkit.flops``: 3x the forward convolution and
    weight-matmul FLOPs, nested layers included)."""
    from trainkit import flops
    return flops.training_flops_per_example(model, model.inputs[0].shape[1:])


def _onednn_on():
    """Whether TensorFlow's oneDNN kernels are on in this process."""
    from tensorflow.python.util import _pywrap_util_port
    return bool(_pywrap_util_port.IsMklEnabled())


def task_peak(args):
    """Matmul GFLOP/s (float32, or ``--dtype=bfloat16``), best of several timed repetitions."""
    import tensorflow as tf
    # Quick: 1024 on a side (a chain of 2048s takes 2.5 s a call on a slow CPU).
    n = args.matmul_size or (1024 if args.quick else 2048)
    dtype = tf.as_dtype(args.dtype or "float32")
    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([n, n]), dtype)

    @tf.function
    def chain(a, b):
        for _ in range(10):
            a = tf.matmul(a, b) * (1.0 / n)
        return a

    chain(a, b).numpy()
    best = 0.0
    for _ in range(3 if args.quick else 6):
        start = time.perf_counter()
        chain(a, b).numpy()
        best = max(best, 10 * 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return {"matmul_peak_gflops": best, "matmul_size": n, "onednn": _onednn_on()}


def _cpu_secs(pid):
    """CPU seconds (user + system, all threads) that process ``pid`` has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def task_pipeline(args):
    """The training input pipeline alone, in a process of its own: examples/sec."""
    from trainkit import pipeline
    data = load_dataset(args.dataset)
    config = train_config(args.dataset, os.path.join(args.workdir, "pipeline"), args.data_dir,
                           [f"--model={MODELS[args.dataset]}", *args.train_flags.split()])
    dataset = pipeline.train_dataset(data, config, *data.arrays(config, "train"))
    iterator = iter(dataset)
    for _ in range(20):
        next(iterator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        next(iterator)
        count += 1
    return {"pipeline_examples_per_sec":
            count * config.batch_size / (time.perf_counter() - start)}


def task_train(args):
    """Our trainer (optionally with an evaluator beside it): examples/sec and CPU use."""
    import tensorflow as tf
    if args.threads:
        intra, inter = (int(x) for x in args.threads.split(","))
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    from trainkit import loop
    from trainkit import rundir
    train_dir = os.path.join(args.workdir, f"{args.dataset}-{args.label}")
    # float32 as the Keras peer computes, unless the window's flags say otherwise (a
    # preset's --precision=auto would take bfloat16 on some CPUs).
    extra = [f"--model={MODELS[args.dataset]}", "--validate_every_steps=0",
             f"--save_checkpoint_secs={args.save_secs}", "--save_checkpoint_steps=0",
             f"--jit_compile={bool(args.jit)}", "--precision=float32", *args.train_flags.split()]
    config = train_config(args.dataset, train_dir, args.data_dir, extra)
    result = {}
    config.max_steps = args.warmup_steps
    trainer = loop.Trainer(config, load_dataset(args.dataset))
    trainer.run()  # compiles the step, fills the pipeline
    if not args.steps:
        # No pace known yet (the first window on a machine): a few untimed steps measure
        # it, so that the window lasts ``seconds`` on a slow CPU as on a fast one.
        calibration = max(1, args.warmup_steps // 2)
        config.max_steps = args.warmup_steps + calibration
        start = time.perf_counter()
        trainer.run()
        args.steps = max(1, round(calibration * args.seconds / (time.perf_counter() - start)))
        args.warmup_steps += calibration
    evaluator = None
    if args.with_evaluator:
        # The warm-up run ended with DONE; left there, it would tell the evaluator the
        # trainer has finished, and it would exit after its first evaluation.
        done = os.path.join(train_dir, rundir.DONE_FILE)
        if os.path.exists(done):
            os.remove(done)
        evaluator = subprocess.Popen(
            [sys.executable, "-m", f"{args.dataset}.eval", f"--train_dir={train_dir}",
             f"--eval_interval_secs={args.eval_interval}",
             "--eval_policy=latest", *args.eval_flags.split()], cwd=REPO,
            # A Unix session of its own, as in a terminal of its own (the two-terminal workflow).
            start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        # Its start-up (imports at normal priority, the first restore and compile) is not
        # what we measure: the window opens once it has scored the warm-up's checkpoint.
        metrics = os.path.join(train_dir, "eval", "metrics.jsonl")
        deadline = time.monotonic() + 120
        while not os.path.exists(metrics):
            code = evaluator.poll()
            if code is not None or time.monotonic() > deadline:
                evaluator.kill()
                evaluator.wait()
                why = f"exited with code {code}" if code is not None else "ran 120 s"
                raise RuntimeError(f"the evaluator beside the trainer {why} without "
                                   f"evaluating {train_dir}")
            time.sleep(0.5)
    # Timed: enough steps for ``seconds`` at the pace measured before.
    config.max_steps = args.warmup_steps + args.steps
    evaluator_cpu = _cpu_secs(evaluator.pid) if evaluator else None
    start, cpu = time.perf_counter(), time.process_time()
    trainer.run()
    elapsed = time.perf_counter() - start
    # CPU seconds per wall second: 2.0 = both cores busy all the window.
    result["trainer_cores_used"] = (time.process_time() - cpu) / elapsed
    if evaluator:
        if evaluator_cpu is not None:
            result["evaluator_cores_used"] = (_cpu_secs(evaluator.pid) - evaluator_cpu) / elapsed
        # Beside the trainer all along: still polling at the window's end, or gone only
        # after scoring the window's last checkpoint (the trainer's DONE, written as the
        # window closes, may send it away before we look).
        still_polling = evaluator.poll() is None
        evaluator.terminate()
        evaluator.wait()
        from trainkit.evaluator import read_records
        evaluated = read_records(metrics)
        result["evaluator_polling_at_end"] = (still_polling
                                              or evaluated[-1]["step"] == config.max_steps)
        # Those made in the window (the first one scored the warm-up's checkpoint).
        result["evaluations"] = max(0, len(evaluated) - 1)
    result["ours_examples_per_sec"] = args.steps * config.batch_size / elapsed
    result["precision"] = config.precision
    result["flops_per_example"] = flops_per_example(trainer.model)
    result["batch_size"] = config.batch_size
    result["steps"] = args.steps
    result["onednn"] = _onednn_on()
    return result


def keras_peer(dataset_name, config, steps_per_execution=1, jit_compile=False, use_ema=False):
    """The peer: ``keras.Model.fit``'s compiled model on our model, loss and pipeline,
    with Keras's own SGD (``use_ema``: keeping Keras's moving average of the weights, at
    the run's decay, as ours always does). Returns the compiled model and the dataset."""
    import keras
    import tensorflow as tf

    from trainkit import loop
    from trainkit import pipeline
    data = load_dataset(dataset_name)
    images, labels = data.arrays(config, "train")
    dataset, num_examples = pipeline.train_dataset(data, config, images, labels), len(labels)
    model = data.build(config)
    decayed = data.model(config).decayed_weights(model)
    learning_rate = loop.learning_rate_fn(config, num_examples / config.batch_size)
    # Keras's own optimizer, as a Keras user would have it (ours fuses its update).
    optimizer = keras.optimizers.SGD(
        lambda: learning_rate(optimizer.iterations),
        momentum=config.momentum if config.optimizer == "momentum" else 0.0,
        use_ema=use_ema, ema_momentum=config.moving_average_decay)

    def loss(labels, logits):
        return (tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.int32), logits=logits))
            + loop.regularization_loss(decayed, config.l2_regularization))

    model.compile(optimizer=optimizer, loss=loss, steps_per_execution=steps_per_execution,
                  jit_compile=jit_compile)
    return model, dataset


def task_keras(args):
    """keras.Model.fit with Keras's defaults on the same model, optimizer, loss and pipeline."""
    import keras

    config = train_config(args.dataset, os.path.join(args.workdir, "keras"), args.data_dir,
                           [f"--model={MODELS[args.dataset]}", *args.train_flags.split()])
    model, dataset = keras_peer(args.dataset, config, args.spe or 1, bool(args.jit),
                                args.use_ema)
    model.fit(dataset, epochs=1, steps_per_epoch=args.warmup_steps, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)
    elapsed = time.perf_counter() - start
    return {"keras_fit_examples_per_sec": args.steps * config.batch_size / elapsed,
            "keras_jit_compile": bool(model.jit_compile), "keras_version": keras.__version__,
            "steps_per_execution": args.spe or 1, "use_ema": args.use_ema,
            "onednn": _onednn_on()}


TASKS = {"peak": task_peak, "pipeline": task_pipeline, "train": task_train,
         "keras": task_keras}


# ---------------------------------------------------------------- the driver

def run_task(task, **options):
    """Runs one task in a fresh process; returns its JSON result."""
    command = [sys.executable, os.path.abspath(__file__), f"--task={task}"]
    for key, value in options.items():
        if isinstance(value, bool):
            command.append(f"--{key}" if value else "")
        else:
            command.append(f"--{key}={value}")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([c for c in command if c], capture_output=True, text=True,
                            cwd=REPO, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise RuntimeError(f"benchmark task {task} {options} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def eval_pass_secs(dataset, train_dir):
    """One evaluator pass (``--run_once``) over the run's validation and test splits, as its
    record says."""
    env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-m", f"{dataset}.eval", f"--train_dir={train_dir}",
                             "--run_once"], capture_output=True, text=True, cwd=REPO, env=env)
    if result.returncode:
        raise RuntimeError(f"evaluator failed:\n{result.stderr[-2000:]}")
    with open(os.path.join(train_dir, "eval", "metrics.jsonl")) as f:
        return [json.loads(line) for line in f][-1]["eval_secs"]


def prepare_data(args, workdir):
    """The data dirs: as given, or each dataset's synthetic files of the real size (its
    ``Dataset.synthetic``) in ``workdir``."""
    from trainkit import registry
    dirs = {"cifar10": args.cifar10_data, "mnist": args.mnist_data}
    for name in MODELS:
        if not dirs[name]:
            dirs[name] = registry.load(name).synthetic(os.path.join(workdir, name), "full")
    return dirs


def machine():
    """The CPU by its specification: model name, family and model, and whether it multiplies
    bfloat16 natively (AVX-512 BF16, AMX)."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines()
                        if ":" in line)
        info = {key.strip(): value.strip() for key, value in info.items()}
        flags = set(info.get("flags", "").split())
        native = [name for flag, name in (("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX"))
                  if flag in flags]
        cpu = (f"{info.get('model name', cpu)} (family {info.get('cpu family', '?')}, model "
               f"{info.get('model', '?')}; " + (", ".join(native) if native else
                                                "no native bfloat16") + ")")
    except (OSError, ValueError):
        pass
    import tensorflow as tf
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "tensorflow": tf.__version__}


def benchmark(args):
    quick = args.quick
    # Each comparison is ``rounds`` alternated pairs of ``seconds``-long windows, each run in
    # a fresh process; the median of each side is reported (and every run kept).
    seconds, rounds = (6, 1) if quick else (30, 5)
    workdir = tempfile.mkdtemp(prefix="bench-")
    data = prepare_data(args, workdir)
    log = lambda message: sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")  # noqa
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "mode": "quick" if quick else "full", "machine": machine(), "commit": commit(),
               "data": {k: ("synthetic" if workdir in v else v) for k, v in data.items()},
               "window_secs": seconds, "rounds": rounds, "models": {}}
    # The machine's peak: the better of TensorFlow's two matmul kernels (quick: ours only).
    results["matmul_peaks_gflops"] = {}
    for onednn in ("1",) if quick else ("0", "1"):
        log(f"matmul peak, TF_ENABLE_ONEDNN_OPTS={onednn}")
        peak = run_task("peak", quick=quick, workdir=workdir, onednn=onednn)
        results["matmul_peaks_gflops"]["onednn" if peak["onednn"] else "eigen"] = \
            peak["matmul_peak_gflops"]
        results["matmul_size"] = peak["matmul_size"]
    results["matmul_peak_gflops"] = max(results["matmul_peaks_gflops"].values())
    # Steps per second of each model on this machine, from each measurement of ours (the
    # first one measures it before its window: this CPU may be 3x slower or faster than
    # the last). Each model starts with a window of ours, so every Keras window has a pace.
    pace = {}
    last_ours = {}  # each dataset's last run of ours
    for dataset in ("cifar10", "mnist"):
        common = dict(dataset=dataset, data_dir=data[dataset], workdir=workdir,
                      warmup_steps=(10 if quick else 30) if dataset == "cifar10"
                      else (50 if quick else 100))
        log(f"{dataset}: the input pipeline alone")
        entry = run_task("pipeline", seconds=seconds / 2, dataset=dataset,
                         data_dir=data[dataset], workdir=workdir)
        runs = {"ours": [], "peer": []}
        onednn = {}

        def run_ours(round_):
            steps = int(pace[dataset] * seconds) if dataset in pace else 0
            log(f"{dataset}: ours (round {round_ + 1} of {rounds})")
            result = run_task("train", label=f"ours{round_}", steps=steps, seconds=seconds,
                              save_secs=seconds / 3, jit=False, **common)
            runs["ours"].append(result["ours_examples_per_sec"])
            pace[dataset] = result["ours_examples_per_sec"] / result["batch_size"]
            onednn["ours"] = result["onednn"]
            return result

        def run_keras(config, label, use_ema=False):
            log(f"{dataset}: keras.Model.fit, {label}")
            return run_task("keras", steps=int(pace[dataset] * seconds), spe=config["spe"],
                            jit=config["jit"], onednn=config["onednn"], use_ema=use_ema,
                            **common)

        ours = run_ours(0)
        # The peer as a knowledgeable Keras user configures it: the kernels ours runs with
        # and the best steps_per_execution and jit_compile of one window each. Keras as it
        # comes (TensorFlow's default kernels, one step per call) is measured alongside.
        candidates = [dict(spe=spe, jit=jit, onednn="") for jit in (False, True)
                      for spe in PEER_STEPS_PER_EXECUTION] if not quick else \
            [dict(spe=spe, jit=False, onednn="") for spe in (1, 10)]
        candidates.append(dict(spe=1, jit=False, onednn="tf_default"))
        tried = []
        for config in candidates:
            result = run_keras(config, peer_label(config))
            tried.append(dict(config, label=peer_label(config),
                              examples_per_sec=result["keras_fit_examples_per_sec"],
                              onednn_on=result["onednn"], keras_version=result["keras_version"]))
        peer = select_peer(tried)
        entry.update(keras_configs=tried, peer=peer)
        # The peer keeping Keras's own moving average of the weights, as ours always does.
        entry["peer_use_ema_examples_per_sec"] = run_keras(
            peer, f"the peer with use_ema ({peer['label']})",
            use_ema=True)["keras_fit_examples_per_sec"]
        # Interleaved rounds, in rotated order so that a drift of the machine's speed hits
        # both sides; round 1's ours is the window above.
        for round_ in range(rounds):
            sides = ("peer", "ours") if round_ % 2 == 0 else ("ours", "peer")
            for side in sides:
                if side == "ours" and round_ > 0:
                    ours = run_ours(round_)
                elif side == "peer":
                    result = run_keras(peer, f"the peer ({peer['label']}; round {round_ + 1} "
                                             f"of {rounds})")
                    runs["peer"].append(result["keras_fit_examples_per_sec"])
                    onednn["peer"] = result["onednn"]
        entry.update(ours)
        last_ours[dataset] = ours
        entry.update(ours_runs=runs["ours"], peer_runs=runs["peer"], onednn=onednn,
                     ours_examples_per_sec=statistics.median(runs["ours"]),
                     peer_examples_per_sec=statistics.median(runs["peer"]))
        entry["ratio_ours_over_peer"] = compare(runs["ours"], runs["peer"])
        entry["pipeline_headroom"] = (entry["pipeline_examples_per_sec"]
                                      / entry["ours_examples_per_sec"])
        entry["gflops_per_example"] = ours["flops_per_example"] / 1e9
        entry["fraction_of_peak"] = (entry["ours_examples_per_sec"] * ours["flops_per_example"]
                                     / 1e9 / results["matmul_peak_gflops"])
        steps = int(pace[dataset] * seconds)
        log(f"{dataset}: one evaluation pass")
        entry["eval_pass_secs"] = eval_pass_secs(
            dataset, os.path.join(workdir, f"{dataset}-ours{rounds - 1}"))
        if not quick:
            log(f"{dataset}: ours with oneDNN off")
            entry["onednn_off_ours_examples_per_sec"] = run_task(
                "train", label="onednn0", steps=steps, seconds=seconds, save_secs=seconds / 3,
                jit=False, onednn="0", **common)["ours_examples_per_sec"]
            log(f"{dataset}: XLA")
            entry["xla_ours_examples_per_sec"] = run_task(
                "train", label="xla", steps=steps, seconds=seconds, save_secs=seconds / 3,
                jit=True, **common)["ours_examples_per_sec"]
            log(f"{dataset}: bfloat16 compute (--precision=bfloat16)")
            entry["bfloat16_ours_examples_per_sec"] = run_task(
                "train", label="bf16", steps=steps, seconds=seconds, save_secs=seconds / 3,
                jit=False, train_flags="--precision=bfloat16",
                **common)["ours_examples_per_sec"]
            log(f"{dataset}: moving averages updated every step")
            entry["ema_every_step_ours_examples_per_sec"] = run_task(
                "train", label="ema1", steps=steps, seconds=seconds, save_secs=seconds / 3,
                jit=False, train_flags="--moving_average_every_steps=1",
                **common)["ours_examples_per_sec"]
            entry["threads"] = {}
            for threads in ("1,1", "2,1", "1,2"):
                log(f"{dataset}: threads intra,inter = {threads}")
                entry["threads"][threads] = run_task(
                    "train", label=f"threads{threads.replace(',', '-')}", steps=steps,
                    seconds=seconds, save_secs=seconds / 3, jit=False, threads=threads,
                    **common)["ours_examples_per_sec"]
        results["models"][dataset] = entry

    # The evaluator beside the trainer: alone / beside, twice, on the CIFAR-10 tutorial
    # model; then once with the alternative priority, for comparison. Quick: one window
    # beside, with the settings of the windows of ours above, which stand for "alone".
    # At its default priority the evaluator runs only in the trainer's gaps: on a slow
    # 2-core machine (2026-12-02) a pass took longer than a 120-s window, which then
    # measured an evaluator that never evaluated; 300 s leaves room for a few passes.
    dataset = "cifar10"
    window = seconds if quick else 300
    interval = 10 if quick else 30
    steps = int(pace[dataset] * window)

    def trainer_run(label, eval_flags=None):
        log(f"{dataset}: trainer {'with an evaluator ' + eval_flags if eval_flags else 'alone'}")
        result = run_task("train", label=label, steps=steps, seconds=window,
                          save_secs=interval, jit=False, with_evaluator=eval_flags is not None,
                          eval_interval=interval, eval_flags=eval_flags or "", dataset=dataset,
                          data_dir=data[dataset], workdir=workdir,
                          warmup_steps=10 if quick else 30)
        if eval_flags is not None and not result["evaluator_polling_at_end"]:
            raise RuntimeError(f"the evaluator ({eval_flags}) stopped before the end of the "
                               f"window {label}: that window measured no evaluator beside")
        return result

    alone, beside, evaluations, cores = [], [], [], {"trainer_alone": [], "trainer_beside": [],
                                                     "evaluator": []}
    for round_ in range(1 if quick else 2):
        result = last_ours[dataset] if quick else trainer_run(f"alone{round_}")
        alone.append(result["ours_examples_per_sec"])
        cores["trainer_alone"].append(result["trainer_cores_used"])
        result = trainer_run(f"beside{round_}", EVALUATOR_FLAGS)
        beside.append(result["ours_examples_per_sec"])
        evaluations.append(result["evaluations"])
        cores["trainer_beside"].append(result["trainer_cores_used"])
        cores["evaluator"].append(result.get("evaluator_cores_used"))
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    results["evaluator_beside"] = {
        "dataset": dataset, "eval_interval_secs": interval, "window_secs": window,
        "evaluator_flags": f"{EVALUATOR_FLAGS} --eval_interval_secs={interval:g}",
        "alone_examples_per_sec": alone, "beside_examples_per_sec": beside,
        "evaluations_per_window": evaluations, "cores_used": cores,
        "slowdown": 1.0 - mean(beside) / mean(alone)}
    if not quick:
        results["evaluator_beside"]["alternatives"] = []
        for i, flags in enumerate(EVALUATOR_ALTERNATIVES):
            result = trainer_run(f"beside_alt{i}", flags)
            results["evaluator_beside"]["alternatives"].append({
                "evaluator_flags": f"{flags} --eval_interval_secs={interval:g}",
                "beside_examples_per_sec": result["ours_examples_per_sec"],
                "evaluations_per_window": result["evaluations"],
                "trainer_cores_used": result["trainer_cores_used"],
                "evaluator_cores_used": result.get("evaluator_cores_used"),
                "slowdown": 1.0 - result["ours_examples_per_sec"] / mean(alone)})
    if quick:
        log("the evaluator's priorities and airbench94 against PyTorch: left out of --quick "
            "(about 12 and 15 minutes)")
    else:
        results["evaluator_priority"] = priority_part(data["mnist"], workdir, log)
        sys.path.insert(0, REPO)
        from benchmarks import airbench94_peers
        results["airbench94_peers"] = airbench94_peers.benchmark(run_task, data["cifar10"],
                                                                 workdir, log)
    results["targets"] = check_targets(results)
    shutil.rmtree(workdir, ignore_errors=True)
    return results


def priority_part(mnist_data, workdir, log):
    """benchmarks/evaluator_priority.py: each --priority's cost to the trainer and lag."""
    sys.path.insert(0, REPO)
    from benchmarks import evaluator_priority
    return evaluator_priority.benchmark(mnist_data, rounds=2,
                                        workdir=os.path.join(workdir, "priority"), log=log)


def check_targets(results):
    """Each target with its measured value and ``met``: "met", "not met" or, for a ratio
    whose rounds allow values on both sides of its goal, "not resolved". An evaluator that
    made no evaluation in its windows slowed nothing down, and says nothing about the cost
    of evaluating beside the trainer: not met."""
    models = results["models"]
    targets = []
    for dataset, model in (("cifar10", "tutorial"), ("mnist", "cnn")):
        ratio = models[dataset]["ratio_ours_over_peer"]
        goal = TARGETS[f"ratio_{dataset}"]
        targets.append({"name": f"trainer / best Keras, {dataset} {model}", "target": goal,
                        "op": ">=", "measured": ratio["median"], "low": ratio["low"],
                        "high": ratio["high"],
                        "met": verdict(ratio["low"], ratio["high"], goal)})
    for dataset, model in (("cifar10", "tutorial"), ("mnist", "cnn")):
        goal, measured = TARGETS[f"fraction_of_peak_{dataset}"], models[dataset][
            "fraction_of_peak"]
        targets.append({"name": f"{dataset} {model} step, fraction of matmul peak",
                        "target": goal, "op": ">=", "measured": measured,
                        "met": "met" if measured >= goal else "not met"})
    for dataset in ("cifar10", "mnist"):
        measured = models[dataset]["pipeline_headroom"]
        targets.append({"name": f"input pipeline headroom, {dataset}",
                        "target": TARGETS["headroom"], "op": ">=", "measured": measured,
                        "met": "met" if measured >= TARGETS["headroom"] else "not met"})
    measured = results["evaluator_beside"]["slowdown"]
    targets.append({"name": "slowdown with an evaluator beside",
                    "target": TARGETS["evaluator_slowdown"], "op": "<=", "measured": measured,
                    "met": "met" if measured <= TARGETS["evaluator_slowdown"] else "not met"})
    if not all(results["evaluator_beside"].get("evaluations_per_window", [1])):
        targets[-1].update(met="not met", why="a window with no evaluation in it")
    return targets


def _onednn_note(models):
    """Which kernels each side ran with, as the tasks reported it."""
    onednn = models["cifar10"].get("onednn")
    if not onednn:
        return ""
    said = lambda side: "on" if onednn[side] else "off"  # noqa: E731
    return f" oneDNN: ours {said('ours')}, the Keras peer {said('peer')}."


def _ratio(r):
    return (f"{r['median']:.2f} ({r['low']:.2f}-{r['high']:.2f}; faster: "
            + ("**not resolved**" if r["faster"] == "not resolved" else r["faster"]) + ")")


def table(results):
    """docs/speed.md's tables (markdown) from a results dict."""
    m = results["models"]
    if "peer" not in m["cifar10"]:
        raise SystemExit("error: these results were written by an earlier benchmark, before "
                         "the Keras peer was chosen from its settings: run make bench again")
    windows = (f" Ours and the Keras peer: {results['rounds']} interleaved rounds of "
               f"{results['window_secs']:g}-s windows, each in a fresh process; medians, and "
               "the range the rounds allow.")
    out = [f"Measured {results['date']} ({results['mode']} mode) on {results['machine']['cpu']}, "
           f"{results['machine']['cores']} cores, TensorFlow {results['machine']['tensorflow']}; "
           f"fp32 matmul peak {results['matmul_peak_gflops']:.0f} GFLOP/s"
           + (" (" + ", ".join(f"{k} {v:.0f}" for k, v in results["matmul_peaks_gflops"].items())
              + ")" if "matmul_peaks_gflops" in results else "")
           + f".{windows}" + _onednn_note(m), ""]
    out += ["The Keras peer's settings, one window each (the fastest with ours's kernels is "
            "the peer):", "", "| keras.Model.fit | cifar10 tutorial, examples/s | "
            "mnist cnn, examples/s |", "| --- | --- | --- |"]
    labels = [t["label"] for t in m["cifar10"]["keras_configs"]]
    for label in labels:
        cells = []
        for d in ("cifar10", "mnist"):
            (t,) = [t for t in m[d]["keras_configs"] if t["label"] == label] or [None]
            chosen = t is not None and m[d]["peer"]["label"] == label
            cells.append("-" if t is None else f"{t['examples_per_sec']:,.0f}"
                         + (" (the peer)" if chosen else ""))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "| | cifar10 tutorial | mnist cnn |", "| --- | --- | --- |"]

    def row(label, key, fmt):
        out.append(f"| {label} | " + " | ".join(
            fmt(m[d][key]) if key in m[d] else "-" for d in ("cifar10", "mnist")) + " |")

    runs = lambda values: " / ".join(f"{v:,.0f}" for v in values)  # noqa: E731
    row("our trainer, examples/s (median)", "ours_examples_per_sec", lambda v: f"{v:,.0f}")
    row("the Keras peer, examples/s (median)", "peer_examples_per_sec", lambda v: f"{v:,.0f}")
    row("the Keras peer with use_ema (its weights' moving average), one window, examples/s",
        "peer_use_ema_examples_per_sec", lambda v: f"{v:,.0f}")
    row("our trainer, each round", "ours_runs", runs)
    row("the Keras peer, each round", "peer_runs", runs)
    row("ours / the Keras peer", "ratio_ours_over_peer", _ratio)
    row("ours with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0), examples/s",
        "onednn_off_ours_examples_per_sec", lambda v: f"{v:,.0f}")
    row("input pipeline alone, examples/s", "pipeline_examples_per_sec", lambda v: f"{v:,.0f}")
    row("pipeline headroom", "pipeline_headroom", lambda v: f"{v:.1f}x")
    row("training GFLOP per example", "gflops_per_example", lambda v: f"{v:.4f}")
    row("fraction of matmul peak", "fraction_of_peak", lambda v: f"{100 * v:.0f}%")
    row("one evaluation pass (10,000 images), s", "eval_pass_secs", lambda v: f"{v:.1f}")
    row("ours with XLA (--jit_compile), examples/s", "xla_ours_examples_per_sec",
        lambda v: f"{v:,.0f}")
    row("ours with --precision=bfloat16, examples/s", "bfloat16_ours_examples_per_sec",
        lambda v: f"{v:,.0f}")
    row("ours, moving averages every step, examples/s", "ema_every_step_ours_examples_per_sec",
        lambda v: f"{v:,.0f}")
    for threads in ("1,1", "2,1", "1,2"):
        out.append(f"| threads intra,inter={threads}, examples/s | " + " | ".join(
            f"{m[d]['threads'][threads]:,.0f}" if "threads" in m[d] else "-"
            for d in ("cifar10", "mnist")) + " |")
    e = results["evaluator_beside"]
    out += ["", f"Evaluator beside the trainer ({e['dataset']}, evaluator flags "
            f"{e.get('evaluator_flags', '--num_threads=1')}, "
            f"{e['window_secs']:.0f}-s windows alternated): "
            f"alone {', '.join(f'{v:,.0f}' for v in e['alone_examples_per_sec'])} examples/s, "
            f"beside {', '.join(f'{v:,.0f}' for v in e['beside_examples_per_sec'])}: "
            f"slowdown {100 * e['slowdown']:.1f}%"
            + (f", with {', '.join(str(n) for n in e['evaluations_per_window'])} evaluations "
               "per window" if "evaluations_per_window" in e else "") + "."]
    if "cores_used" in e:
        c = e["cores_used"]
        shown = lambda values: ", ".join("-" if v is None else f"{v:.2f}"  # noqa: E731
                                         for v in values)
        out += ["", f"Cores used in those windows (CPU seconds per second): trainer alone "
                f"{shown(c['trainer_alone'])}; trainer beside {shown(c['trainer_beside'])}; "
                f"evaluator {shown(c['evaluator'])}."]
    alternatives = e.get("alternatives") or ([e["alternative"]] if "alternative" in e else [])
    for a in alternatives:
        cores = (f"; cores used: trainer {a['trainer_cores_used']:.2f}, evaluator "
                 f"{a['evaluator_cores_used']:.2f}" if a.get("evaluator_cores_used") is not None
                 else "")
        out += ["", f"With {a['evaluator_flags']} instead: {a['beside_examples_per_sec']:,.0f} "
                f"examples/s, slowdown {100 * a['slowdown']:.1f}%, "
                f"{a['evaluations_per_window']} evaluations per window{cores}."]
    if "airbench94_peers" in results:
        sys.path.insert(0, REPO)
        from benchmarks import airbench94_peers
        out += ["", "The airbench94 preset against a PyTorch peer of its step "
                "(benchmarks/airbench94_peers.py):", "",
                airbench94_peers.table(results["airbench94_peers"])]
    if "precisions" in results:
        sys.path.insert(0, REPO)
        from benchmarks import precisions
        out += ["", "Each model in float32 and bfloat16, as a fraction of that precision's "
                "matmul peak (benchmarks/precisions.py):", "",
                precisions.table(results["precisions"])]
    if "evaluator_priority" in results:
        sys.path.insert(0, REPO)
        from benchmarks import evaluator_priority
        p = results["evaluator_priority"]
        out += ["", f"The evaluator's priorities (benchmarks/evaluator_priority.py): the MNIST "
                f"quick start ({p['train_flags']}), {p['rounds']} rounds:", "",
                evaluator_priority.table(p)]
    return "\n".join(out)


def only_part(args):
    """``--only=PART``: that part alone (the evaluator's priorities, airbench94 against
    PyTorch, or each model in both precisions), written into ``--out``'s results in place
    of its earlier measurement (the other parts stay as they were measured)."""
    from trainkit import registry
    workdir = tempfile.mkdtemp(prefix="bench-")
    log = lambda message: sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")  # noqa
    sys.path.insert(0, REPO)
    from benchmarks import airbench94_peers, evaluator_priority, precisions
    if args.only == "precisions":
        data = {name: getattr(args, f"{name}_data") or registry.load(name).synthetic(
            os.path.join(workdir, name), "full") for name in precisions.MODELS}
        part = precisions.benchmark(run_task, data, workdir, log)
    elif args.only == "evaluator_priority":
        data = args.mnist_data or registry.load("mnist").synthetic(
            os.path.join(workdir, "mnist"), "full")
        part = priority_part(data, workdir, log)
    else:
        data = args.cifar10_data or registry.load("cifar10").synthetic(
            os.path.join(workdir, "cifar10"), "full")
        part = airbench94_peers.benchmark(run_task, data, workdir, log)
    synthetic = lambda path: "synthetic" if workdir in path else path  # noqa: E731
    part.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                machine=machine(), commit=commit(),
                data={k: synthetic(v) for k, v in data.items()} if isinstance(data, dict)
                else synthetic(data))
    shutil.rmtree(workdir, ignore_errors=True)
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    results[args.only] = part
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    sys.stderr.write(f"wrote {args.only} into {args.out}\n")
    print({"evaluator_priority": evaluator_priority.table, "precisions": precisions.table,
           "airbench94_peers": airbench94_peers.table}[args.only](part))
    return 0


def commit():
    """The code measured: git's HEAD, with "+changes" if the work tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              cwd=REPO).stdout.strip()
    head = git("rev-parse", "--short", "HEAD")
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke check: < 3 min, no file")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results.json"))
    parser.add_argument("--table", metavar="RESULTS_JSON", help="print the table of a results file")
    parser.add_argument("--cifar10_data", default=None)
    parser.add_argument("--mnist_data", default=None)
    # Worker-process options (--task=...), set by the driver.
    parser.add_argument("--task", choices=sorted(TASKS), help=argparse.SUPPRESS)
    for name in ("dataset", "data_dir", "workdir", "label", "threads", "train_flags",
                 "eval_flags", "dtype"):
        parser.add_argument(f"--{name}", default="", help=argparse.SUPPRESS)
    for name, kind in (("steps", int), ("warmup_steps", int), ("spe", int), ("seconds", float),
                       ("save_secs", float), ("eval_interval", float)):
        parser.add_argument(f"--{name}", type=kind, default=0, help=argparse.SUPPRESS)
    # The peak's square matrices, 0: the mode's own (the tests take small ones: they time
    # nothing).
    parser.add_argument("--matmul_size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--jit", action="store_true", help=argparse.SUPPRESS)
    # TF_ENABLE_ONEDNN_OPTS for the task: "0", "1", or "tf_default" (TensorFlow's own
    # choice for this CPU, before trainkit sets ours); empty: as our entry points run.
    parser.add_argument("--onednn", default="", help=argparse.SUPPRESS)
    parser.add_argument("--with_evaluator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--use_ema", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["evaluator_priority", "airbench94_peers", "precisions"],
                        help="measure only this part and put it into --out's results")
    args = parser.parse_args()
    if args.task:
        # Before anything imports TensorFlow, which reads the setting once.
        if args.onednn == "tf_default":
            os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
            import tensorflow  # noqa: F401  (decides before trainkit would set ours)
        elif args.onednn:
            os.environ["TF_ENABLE_ONEDNN_OPTS"] = args.onednn
        sys.path.insert(0, REPO)
        # Empty: trainkit's choice, as the entry points make it, whatever the driver's
        # environment says (a task imports TensorFlow before it imports trainkit).
        import trainkit  # noqa: F401
        print(json.dumps(TASKS[args.task](args)))
        return 0
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)))
        return 0
    if args.only:
        return only_part(args)
    results = benchmark(args)
    print(table(results))
    if not args.quick:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
        sys.stderr.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
