"""Command-line flags shared by every dataset's train, eval, export and predict entry points.

Each dataset's ``train.py`` calls ``define_train_flags(SPEC)`` with its
``DatasetSpec`` (its defaults, models and ``--preset`` presets; see
``trainkit.dataset``), then ``run_trainer``; ``eval.py`` likewise with
``define_eval_flags`` and ``run_evaluator``, ``export.py`` and
``predict.py`` with theirs. Their ``main`` turns the parsed flags into a
config object (``train_config`` / ``eval_config``); nothing below it reads
flags.

Defining and parsing the flags loads no TensorFlow (several seconds on a
small CPU): ``--help``, a mistyped flag and a dir that is busy or holds
another dataset's run answer at once. Each ``main`` loads the engine and
the dataset (``trainkit.registry.load``) only once those checks pass.
"""

import dataclasses
import datetime
import os
import sys
import textwrap

from absl import app
from absl import flags
from absl import logging

from trainkit import config as config_lib
from trainkit import errors
from trainkit import fs
from trainkit import priority
from trainkit import quiet
from trainkit import registry
from trainkit import rundir

def define_train_flags(spec):
    """Defines the trainer's flags for dataset ``spec`` (a ``DatasetSpec``): its
    defaults, models and ``--preset`` presets (flags given on the command line still
    win over a preset); its options (``config.DATASET_OPTIONS``) only if it takes them."""
    d = spec.default
    dataset = spec.name
    if spec.presets:
        flags.DEFINE_enum("preset", next(iter(spec.presets)),
                          list(spec.presets) + list(spec.preset_aliases),
                          "Named set of training settings: "
                          + "; ".join(f"{name}: " + (", ".join(
                              f"--{k}={v}" for k, v in values.items()) or "the defaults")
                              for name, values in spec.presets.items())
                          + ". Flags given explicitly override it."
                          + _former_names(spec.preset_aliases))
        flags.DEFINE_alias("schedule", "preset")  # its former name (FORMER_NAMES)
    flags.DEFINE_string("train_dir", d("train_dir") or f"runs/{dataset}",
                        "Directory for checkpoints, config.json, summaries and DONE. "
                        "A directory that already holds checkpoints needs --resume.")
    if spec.downloads:
        flags.DEFINE_string("data_dir", d("data_dir") or f"data/{dataset}",
                            "Directory holding the dataset files; missing files are downloaded "
                            "there.")
        flags.DEFINE_list("data_mirrors", list(d("data_mirrors")) or None,
                          "Comma-separated base URLs to download the dataset from when "
                          "--data_dir lacks it (default: the official hosts).")
    else:
        flags.DEFINE_string("data_dir", d("data_dir") or f"data/{dataset}",
                            "Folder holding your data, as the lines above say.")
    flags.DEFINE_enum("model", d("model"), list(spec.models) + list(spec.model_aliases),
                      "Network architecture." + _former_names(spec.model_aliases))
    flags.DEFINE_integer("batch_size", d("batch_size"), "Examples per training step.",
                         lower_bound=1)
    flags.DEFINE_integer("max_steps", d("max_steps"),
                         "Global step (batches) at which training ends.", lower_bound=1)
    flags.DEFINE_enum("optimizer", d("optimizer"), list(config_lib.OPTIMIZERS),
                      "Optimizer: plain SGD, SGD with --momentum (heavy ball or Nesterov's), "
                      "Adam, or Muon (convolution kernels orthogonalized, see "
                      "--muon_learning_rate; every other weight by Nesterov's SGD).")
    flags.DEFINE_float("learning_rate", d("learning_rate"), "Initial learning rate.",
                       lower_bound=0.0)
    flags.DEFINE_float("learning_rate_decay", d("learning_rate_decay"),
                       "Factor the learning rate is multiplied by every "
                       "--num_epochs_per_decay epochs (1.0 = constant).", lower_bound=0.0)
    flags.DEFINE_float("num_epochs_per_decay", d("num_epochs_per_decay"),
                       "Epochs between learning-rate decays.", lower_bound=0.0)
    flags.DEFINE_enum("lr_schedule", d("lr_schedule"), list(config_lib.LR_SCHEDULES),
                      "exponential: x--learning_rate_decay every --num_epochs_per_decay "
                      "epochs; cosine: half a cosine from --learning_rate to 0 at --max_steps; "
                      "linear: straight down to --decay_to at --max_steps (with "
                      "--warmup_steps, the one-cycle triangle).")
    flags.DEFINE_float("label_smoothing", d("label_smoothing"),
                       "Train on targets (1 - e) * one_hot + e / classes; 0 = plain labels.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("warmup_steps", d("warmup_steps"),
                         "Steps over which the learning rate ramps up linearly from "
                         "--warmup_from; 0 = no warm-up.", lower_bound=0)
    flags.DEFINE_float("warmup_from", d("warmup_from"),
                       "The warm-up's learning rate at step 0, as a fraction of the "
                       "schedule's; 0 = from 1/--warmup_steps of it at the first step.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("decay_to", d("decay_to"),
                       "--lr_schedule=linear: the learning rate at --max_steps, as a fraction "
                       "of --learning_rate.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_boolean("staircase", d("staircase"),
                         "Decay the learning rate in steps (true) or continuously (false).")
    flags.DEFINE_float("momentum", d("momentum"),
                       "Momentum for --optimizer=momentum, nesterov and muon.", lower_bound=0.0)
    flags.DEFINE_float("muon_learning_rate", d("muon_learning_rate"),
                       "--optimizer=muon: the convolution kernels' learning rate, on the same "
                       "schedule as --learning_rate (which the other weights take).",
                       lower_bound=0.0)
    flags.DEFINE_float("muon_momentum", d("muon_momentum"),
                       "--optimizer=muon: the convolution kernels' Nesterov momentum (the "
                       "other weights take --momentum).", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("l2_regularization", d("l2_regularization"),
                       "Weight of the L2 penalty (sum of squares / 2) on the model's "
                       "regularized weights, added to the loss; 0 turns it off.", lower_bound=0.0)
    flags.DEFINE_float("moving_average_decay", d("moving_average_decay"),
                       "Decay of the weights' exponential moving average that the "
                       "evaluator scores.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("moving_average_every_steps", d("moving_average_every_steps"),
                         "Steps between moving-average updates, each with the decay raised "
                         "to this power (the same time constant, less memory traffic); "
                         "1 = every step, the tutorial's rule.", lower_bound=1)
    flags.DEFINE_integer("lookahead_every_steps", d("lookahead_every_steps"),
                         "Lookahead (airbench94's): every N steps the weights are pulled to a "
                         "slow copy that keeps --lookahead_decay**N x (step / --max_steps)**3 "
                         "of itself; the run ends on the slow weights. 0 = off.", lower_bound=0)
    flags.DEFINE_float("lookahead_decay", d("lookahead_decay"),
                       "Per-step decay of the Lookahead pull at the end of the run (see "
                       "--lookahead_every_steps).", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("lookahead_start_steps", d("lookahead_start_steps"),
                         "Lookahead pulls only after this step (airbench94: 3 epochs).",
                         lower_bound=0)
    flags.DEFINE_integer("lookahead_sync_steps", d("lookahead_sync_steps"),
                         "Every N steps the weights are also set to Lookahead's slow copy "
                         "(airbench94: at each epoch's end); 0 = only at --max_steps.",
                         lower_bound=0)
    flags.DEFINE_integer("log_frequency", d("log_frequency"),
                         "Steps between log lines (step, loss, examples/sec).", lower_bound=1)
    flags.DEFINE_integer("save_summaries_steps", d("save_summaries_steps"),
                         "Steps between TensorBoard summaries; 0 = never.", lower_bound=0)
    flags.DEFINE_integer("save_checkpoint_steps", d("save_checkpoint_steps"),
                         "Steps between checkpoints; 0 = by time only.", lower_bound=0)
    flags.DEFINE_float("save_checkpoint_secs", d("save_checkpoint_secs"),
                       "Seconds between checkpoints; 0 = by steps only. The last step is "
                       "always saved.", lower_bound=0.0)
    flags.DEFINE_integer("max_to_keep", d("max_to_keep"),
                         "Checkpoints to keep; older ones are deleted.", lower_bound=1)
    flags.DEFINE_integer("seed", d("seed"), "Random seed for weights and data order.")
    flags.DEFINE_boolean("deterministic", d("deterministic"),
                         "TensorFlow op determinism and fixed seeds: a run stopped and resumed "
                         "ends bitwise equal to an uninterrupted one (slower on some ops).")
    flags.DEFINE_boolean("resume", d("resume"),
                         "Continue the run in --train_dir from its latest checkpoint.")
    _define_options(spec)
    if not spec.validation_option:
        flags.DEFINE_integer("validation_size", d("validation_size"),
                             "Training examples held out as the validation split (not trained "
                             "on), on which the evaluator selects the best checkpoint; 0 = "
                             "none: no best is chosen.", lower_bound=0)
    flags.DEFINE_integer("validate_every_steps", d("validate_every_steps"),
                         "Steps between scoring the averaged weights on the validation split; "
                         "a new best is saved in TRAIN_DIR/best_validation. 0 = never.",
                         lower_bound=0)
    flags.DEFINE_integer("early_stopping_steps", d("early_stopping_steps"),
                         "Stop when validation precision has not improved for this many steps "
                         "(the classic tutorials' require_improvement); 0 = never.",
                         lower_bound=0)
    flags.DEFINE_boolean("jit_compile", d("jit_compile"),
                         "Compile the training step with XLA (tf.function(jit_compile=True)). "
                         "docs/speed.md has what it does on a CPU.")
    flags.DEFINE_integer("steps_per_call", d("steps_per_call"),
                         "Training steps per call of the compiled step function (saves the "
                         "per-call dispatch; log lines, summaries, validation and step-based "
                         "saves still land on their exact steps). Signals and timed saves are "
                         "handled between calls.", lower_bound=1)
    flags.DEFINE_enum("precision", d("precision"), list(config_lib.PRECISIONS),
                      "Arithmetic of the training step: float32; bfloat16 (convolutions and "
                      "matmuls on bfloat16, weights, slots, averages and checkpoints float32; "
                      "fast only on hardware with native bfloat16: AVX-512 BF16 or AMX CPUs, "
                      "GPUs of compute capability 8.0+); auto: bfloat16 exactly there. The "
                      "evaluator always scores in float32.")
    flags.DEFINE_enum("strategy", d("strategy"), list(config_lib.STRATEGIES),
                      "default: one device; mirrored: tf.distribute.MirroredStrategy over the "
                      "visible GPUs (or --cpu_replicas logical CPUs); multi_worker: "
                      "MultiWorkerMirroredStrategy across the processes named in TF_CONFIG "
                      "(see scripts/multi_worker.py). --batch_size stays the global batch.")
    flags.DEFINE_integer("num_gpus", d("num_gpus"),
                         "The tutorial's multi-GPU switch: N > 0 means --strategy=mirrored over "
                         "the first N GPUs; 0 = all visible GPUs with --strategy=mirrored.",
                         lower_bound=0)
    flags.DEFINE_integer("cpu_replicas", d("cpu_replicas"),
                         "With --strategy=mirrored on a machine without GPUs: split the CPU into "
                         "N logical devices, one replica each (for trying and testing "
                         "multi-device training anywhere); 0 = no split.", lower_bound=0)
    _group(f"{dataset}.train", train_groups(spec))


def _former_names(aliases):
    if not aliases:
        return ""
    return " Former names, still taken: " + ", ".join(
        f"{old} (now {new})" for old, new in aliases.items()) + "."


def _define_options(spec):
    """A flag for each setting only this dataset takes (``spec.options``)."""
    define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
              float: flags.DEFINE_float, str: flags.DEFINE_string}
    for name, option in spec.options.items():
        bounds = {} if type(option.default) in (bool, str) else dict(
            lower_bound=option.lower, upper_bound=option.upper)
        define[type(option.default)](name, option.default, option.help, **bounds)


def train_groups(spec):
    """``TRAIN_GROUPS`` with ``spec``'s own options among the data flags."""
    return tuple((heading, names + list(spec.options) if heading == "data" else names)
                 for heading, names in TRAIN_GROUPS)


FORMER_NAMES = ("schedule",)  # flags kept as aliases of renamed ones, not listed in --help
TRAIN_GROUPS = (
    ("the run", ["preset", "train_dir", "resume", "seed", "deterministic"]),
    ("data", ["data_dir", "data_mirrors", "validation_size"]),
    ("model and optimization", [
        "model", "batch_size", "max_steps", "optimizer", "learning_rate", "lr_schedule",
        "warmup_steps", "warmup_from", "decay_to", "learning_rate_decay",
        "num_epochs_per_decay", "staircase", "momentum",
        "muon_learning_rate", "muon_momentum", "l2_regularization", "label_smoothing",
        "moving_average_decay",
        "moving_average_every_steps", "lookahead_every_steps", "lookahead_decay",
        "lookahead_start_steps", "lookahead_sync_steps"]),
    ("checkpoints, logs and validation", [
        "save_checkpoint_steps", "save_checkpoint_secs", "max_to_keep", "log_frequency",
        "save_summaries_steps", "validate_every_steps", "early_stopping_steps"]),
    ("speed and devices", ["precision", "steps_per_call", "jit_compile", "strategy", "num_gpus",
                           "cpu_replicas"]),
)
EVAL_GROUPS = (
    ("what to evaluate", ["train_dir", "eval_dir", "data_dir", "num_examples",
                          "eval_batch_size", "test_time_augmentation"]),
    ("when", ["eval_interval_secs", "eval_policy", "run_once", "timeout_secs",
              "early_stopping_evals", "export_best"]),
    ("devices and priority", ["device", "num_threads", "priority"]),
)
EXPORT_GROUPS = (("export", ["train_dir", "checkpoint", "export_dir"]),)
PREDICT_GROUPS = (("predict", ["train_dir", "checkpoint", "saved_model", "top_k", "json"]),)
_groups = []  # (heading, flag names) of the command being run, for --help


def _group(command, groups):
    """Files this module's flags under "COMMAND: GROUP" for --helpfull (absl lists flags
    by the module that defined them, which would put all of them in one heap) and
    remembers the groups for --help."""
    by_module = flags.FLAGS.flags_by_module_dict()
    ours = [flag for flag in by_module.pop(__name__, []) if flag.name not in FORMER_NAMES]
    grouped = {name for _, names in groups for name in names}
    for heading, names in groups:
        for name in names:
            if name in flags.FLAGS:
                flags.FLAGS.register_flag_by_module(f"{command}: {heading}", flags.FLAGS[name])
    rest = [flag for flag in ours if flag.name not in grouped]
    for flag in rest:
        flags.FLAGS.register_flag_by_module(f"{command}: other", flag)
    _groups[:] = [(f"{command}: {heading}", names) for heading, names in groups]
    if rest:
        _groups.append((f"{command}: other", sorted({flag.name for flag in rest})))


def _print_help(stream=sys.stdout):
    """--help: the command's docstring, then its flags by group with help and default."""
    main = sys.modules.get("__main__")
    doc = (getattr(main, "__doc__", None) or "").strip()
    lines = [doc, "", "Flags (--helpfull lists TensorFlow's and absl's too):"] if doc else []
    for heading, names in _groups:
        lines += ["", f"{heading}:"]
        for name in names:
            if name not in flags.FLAGS:
                continue
            flag = flags.FLAGS[name]
            prefix = f"--[no]{name}" if isinstance(flag, flags.BooleanFlag) else f"--{name}"
            lines += textwrap.wrap(f"{prefix}: {flag.help}", 88, initial_indent="  ",
                                   subsequent_indent="    ")
            if flag.default is not None:
                lines.append(f"    (default: {flag.default_as_str})")
    stream.write("\n".join(lines) + "\n")


def train_config(spec):
    """The parsed trainer flags as a ``TrainConfig`` of dataset ``spec``.

    Each setting comes from, in order: the command line; with ``--resume``,
    the run's config.json (so ``--resume`` alone continues the same run and
    ``--resume --max_steps=N`` extends it); the ``--preset``; the flag's
    default. Former model and preset names become their current ones.
    """
    f = flags.FLAGS
    saved = _resumed_values(f.train_dir, spec) if f.resume else {}
    preset_name = f.preset if "preset" in f else ""
    if saved and "preset" in f and not f["preset"].present:
        preset_name = saved.get("preset") or preset_name
    preset_name = spec.canonical_preset(preset_name)
    preset = spec.presets.get(preset_name, {})
    values = {}
    for field in dataclasses.fields(config_lib.TrainConfig):
        if field.name not in f:
            continue
        if f[field.name].present:
            values[field.name] = f[field.name].value
        elif field.name in saved:
            values[field.name] = saved[field.name]
        elif field.name in preset:
            values[field.name] = preset[field.name]
        else:
            values[field.name] = f[field.name].value
    saved_options = saved.get("options", {})
    options = {}
    for name in spec.options:
        if f[name].present:
            options[name] = f[name].value
        elif name in saved_options:
            options[name] = saved_options[name]
        elif name in preset:
            options[name] = preset[name]
        else:
            options[name] = f[name].value
    values.update(preset=preset_name, dataset=spec.name, resume=f.resume, options=options,
                  model=spec.canonical_model(values["model"]))
    if saved:
        values["history"] = _resume_history(f.train_dir, saved, values)
    return config_lib.TrainConfig(**values)


# What a resume may differ in without it being a change of the run's settings.
NOT_SETTINGS = ("resume", "history", "run_id", "class_names")


def _resume_history(train_dir, saved, values):
    """The run's history of resumes (config.json's ``history``) with this one appended when
    it changes settings; each change said in one line."""
    def differ(a, b):
        plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        return plain(a) != plain(b)

    changed = {name: [saved[name], value] for name, value in values.items()
               if name in saved and name not in NOT_SETTINGS and name != "options"
               and differ(value, saved[name])}
    old_options = saved.get("options", {})
    changed.update({name: [old_options.get(name), value]
                    for name, value in values["options"].items()
                    if name in old_options and differ(value, old_options[name])})
    history = list(saved.get("history") or [])
    if not changed:
        return history
    steps = rundir.checkpoint_steps(train_dir)
    for name, (old, new) in sorted(changed.items()):
        logging.info("Resuming with --%s=%s (the run had %s)", name, _flag_value(new),
                     _flag_value(old))
    return history + [{"resumed_at_step": steps[-1] if steps else 0,
                       "time": datetime.datetime.now().astimezone().isoformat(
                           timespec="seconds"),
                       "changed": changed}]


def _flag_value(value):
    return ",".join(value) if isinstance(value, (list, tuple)) else str(value)


def define_eval_flags(spec):
    """Defines the evaluator's flags for dataset ``spec``; their defaults are
    ``config.EvalConfig``'s (the poll interval: the dataset's)."""
    d = {f.name: f.default for f in dataclasses.fields(config_lib.EvalConfig)}
    flags.DEFINE_string("train_dir", f"runs/{spec.name}",
                        "The trainer's --train_dir: the evaluator reads config.json and "
                        "checkpoints from it.")
    flags.DEFINE_string("eval_dir", None,
                        "Where metrics.jsonl, best/ and the validation/ and test/ summaries go "
                        "(default: TRAIN_DIR/eval; TRAIN_DIR/eval_plain with "
                        "--notest_time_augmentation).")
    flags.DEFINE_string("data_dir", None,
                        "Dataset directory (default: the trainer's --data_dir from config.json).")
    flags.DEFINE_integer("eval_batch_size", d["eval_batch_size"],
                         "Examples per evaluation batch (the last batch may be smaller; "
                         "every example counts once).", lower_bound=1)
    flags.DEFINE_float("eval_interval_secs", spec.eval_interval_secs,
                       "Seconds between polls of the train dir for a new checkpoint.",
                       lower_bound=0.0)
    flags.DEFINE_integer("num_examples", d["num_examples"],
                         "Score only the first N examples of each split; 0 = all of them.",
                         lower_bound=0)
    flags.DEFINE_boolean("run_once", d["run_once"],
                         "Score the newest checkpoint once, write the pictures, and exit.")
    flags.DEFINE_enum("eval_policy", d["eval_policy"], list(config_lib.EVAL_POLICIES),
                      "latest: the newest checkpoint at each poll, as the tutorial (any older "
                      "one not yet scored is named as skipped); all: every checkpoint still on "
                      "disk, in step order.")
    flags.DEFINE_float("timeout_secs", d["timeout_secs"],
                       "Exit when no new checkpoint has come for this many seconds; 0 = wait "
                       "until the trainer writes DONE.", lower_bound=0.0)
    flags.DEFINE_integer("early_stopping_evals", d["early_stopping_evals"],
                         "Ask the trainer to stop after this many evaluations without a new "
                         "best validation precision; 0 = never. Needs a validation split.",
                         lower_bound=0)
    flags.DEFINE_string("device", d["device"],
                        "cpu (default: off every GPU), gpu:N (only GPU N, memory grown as "
                        "needed) or auto (TensorFlow's choice).")
    flags.DEFINE_integer("num_threads", d["num_threads"],
                         "Cap on TensorFlow's intra/inter-op threads; 0 = TensorFlow's default.",
                         lower_bound=0)
    flags.DEFINE_enum("priority", d["priority"], list(config_lib.PRIORITIES),
                      "The evaluator's CPU share beside other work. normal: an equal share, so "
                      "that it keeps up (a trainer on the same cores gives up a few percent); "
                      "low: nice 19, a small share; idle: only cores nothing else wants (Linux "
                      "SCHED_IDLE and nice 19): a trainer beside keeps its speed, but the "
                      "evaluator falls behind, and any busy process starves it. docs/speed.md "
                      "has what each costs.")
    flags.DEFINE_boolean("test_time_augmentation", d["test_time_augmentation"],
                         "Score with the model's test-time augmentation where it has one (the "
                         "airbench networks: flips and one-pixel shifts); false scores its "
                         "plain logits, by default into TRAIN_DIR/eval_plain.")
    flags.DEFINE_boolean("export_best", d["export_best"],
                         "Export each new best checkpoint (by validation precision) as a "
                         "SavedModel that takes raw images, in EVAL_DIR/best/saved_model.")
    _group(f"{spec.name}.eval", EVAL_GROUPS)


def eval_config():
    """The parsed evaluator flags as an ``EvalConfig``."""
    f = flags.FLAGS
    return config_lib.EvalConfig(**{field.name: f[field.name].value
                                    for field in dataclasses.fields(config_lib.EvalConfig)
                                    if field.name in f and f[field.name].value is not None})


def check_run(train_dir, spec, command):
    """``train_dir``'s run, checked to be one of dataset ``spec`` (``config.check_run``)."""
    return config_lib.check_run(train_dir, spec, command)


def run_trainer(spec):
    """The whole ``python -m DATASET.train``: parse flags, train, bad input as one line.

    The train dir is checked and locked before TensorFlow loads, so a second
    trainer, or a run that is not to be started, is refused at once. Under a
    ``TF_CONFIG`` whose task type is ``evaluator`` it runs the evaluator of
    the same train dir instead (``config.cluster_role``).
    """

    def main(argv):
        del argv
        config = train_config(spec).validate()
        if config.validate_every_steps and not spec.has_validation(config):
            raise errors.UserError(
                "--validate_every_steps needs a validation split: set --"
                f"{spec.validation_option or 'validation_size'} (held out of the training data)")
        if config_lib.cluster_role() == "evaluate":
            return evaluate(spec, cluster_eval_config(config))
        config_lib.check_cluster(config)
        rundir.check_apart(config.train_dir, config.data_dir)  # before a .lock is written
        chief = config_lib.is_chief(config)
        # A live run's trainer is named first; a new dir is made only once all is checked.
        held = chief and rundir.hold(config.train_dir, "trainer", create=False)
        if config.resume and rundir.latest_checkpoint(config.train_dir):
            check_run(config.train_dir, spec, "train")
        config_lib.check_train_dir(config, spec)
        if chief and not held:
            rundir.hold(config.train_dir, "trainer")
        load_tensorflow()  # here, after the checks
        from trainkit import distribution, loop
        dataset = registry.load(spec.name)
        # Devices and the strategy before any other TensorFlow op.
        loop.train(config, dataset, distribution.configure(config))

    run(main)


def run_evaluator(spec):
    """The whole ``python -m DATASET.eval``: check the run and lock the eval dir (before
    TensorFlow loads when the run is there; while waiting for it, TensorFlow loads
    meanwhile), pin the device, then poll or run once."""

    def main(argv):
        del argv
        evaluate(spec, eval_config())

    run(main, on_interrupt=lambda: (
        "stopped; the scores so far are kept, and the next start goes on after them: "
        + continue_eval_hint(flags.FLAGS.train_dir, spec.name)))


def cluster_eval_config(config):
    """The evaluator's settings for the ``evaluator`` task of a cluster, whose command line
    is the trainers': their train dir and data dir, the evaluator's defaults, and a normal
    CPU share (the task has its machine to itself)."""
    return config_lib.EvalConfig(
        train_dir=config.train_dir, data_dir=config.data_dir,
        eval_interval_secs=registry.spec(config.dataset).eval_interval_secs, priority="normal")


def evaluate(spec, config):
    """The evaluator of ``config`` (an ``EvalConfig``): checks the run and locks the eval
    dir (before TensorFlow loads when the run is there; while waiting for it, TensorFlow
    loads meanwhile), takes its CPU share, pins the device, then polls or runs once."""
    ready = config.run_once or fs.exists(fs.join(config.train_dir, config_lib.CONFIG_FILE))
    if ready:
        run_config = check_run(config.train_dir, spec, "eval")
        rundir.check_apart(config.eval_dir, config.data_dir or run_config.data_dir,
                           "--eval_dir")
        rundir.hold(config.eval_dir, "evaluator", "eval dir", "--eval_dir")
    load_tensorflow()
    from trainkit import devices, evaluator
    # The watch speaks when the evaluator gets no CPU; it keeps its own priority to do so.
    watch = priority.CpuWatch(lambda secs, share: logging.warning(
        "The evaluator had %.0f%% of a core in the last %.0f s while it had work: %s",
        100 * share, secs, priority.why_starved(config.priority)))
    # Before any TensorFlow op: the thread pools it then starts inherit the priority.
    priority.lower_priority(config.priority, exclude={watch.start()})
    try:
        if not ready:
            config_lib.wait_for_trainer(config)
            check_run(config.train_dir, spec, "eval")
            rundir.hold(config.eval_dir, "evaluator", "eval dir", "--eval_dir")
        devices.configure(config.device, config.num_threads)
        evaluator.run(config, registry.load(spec.name), watch)
    finally:
        watch.stop()


def continue_eval_hint(train_dir, dataset):
    """How to start the evaluator of ``train_dir`` again, in the words of the command the
    user ran."""
    quoted = config_lib.shell_quote(train_dir)
    return config_lib.said(f"python -m {dataset}.eval --train_dir={quoted}",
                           f"make eval TRAIN_DIR={quoted}")


def define_export_flags(spec):
    """Flags of ``python -m DATASET.export``."""
    dataset = spec.name
    flags.DEFINE_string("train_dir", f"runs/{dataset}", "The run to export from.")
    flags.DEFINE_string("checkpoint", None,
                        "Checkpoint path prefix to export (default: the evaluator's best, "
                        "TRAIN_DIR/eval/best, else the newest checkpoint in TRAIN_DIR).")
    flags.DEFINE_string("export_dir", None,
                        "Where the SavedModel goes (default: TRAIN_DIR/export); a previous "
                        "export there is replaced once the new one is complete.")
    _group(f"{dataset}.export", EXPORT_GROUPS)


def define_predict_flags(spec):
    """Flags of ``python -m DATASET.predict IMAGE...``."""
    dataset = spec.name
    flags.DEFINE_string("train_dir", f"runs/{dataset}",
                        "The run whose checkpoint classifies the images (see --checkpoint).")
    flags.DEFINE_string("checkpoint", None,
                        "Checkpoint path prefix (default: the evaluator's best, "
                        "TRAIN_DIR/eval/best, else the newest checkpoint in TRAIN_DIR).")
    flags.DEFINE_string("saved_model", None,
                        "A SavedModel from python -m DATASET.export to use instead of "
                        "--train_dir.")
    flags.DEFINE_integer("top_k", 3, "Classes shown per image, best first.",
                         lower_bound=1, upper_bound=10)
    flags.DEFINE_boolean("json", False,
                         "One JSON object per image: {\"file\", \"classes\", "
                         "\"probabilities\"}, or {\"file\", \"error\"}.")
    _group(f"{dataset}.predict", PREDICT_GROUPS)


def run_export(spec):
    """The whole ``python -m DATASET.export``."""

    def main(argv):
        del argv
        f = flags.FLAGS
        run_config = check_run(f.train_dir, spec, "export")
        export_dir = f.export_dir or fs.join(f.train_dir, "export")
        rundir.check_export_dir(export_dir, f.train_dir, run_config.data_dir)
        load_tensorflow()  # here, after the checks
        from trainkit import export as export_lib
        export_lib.export(f.train_dir, registry.load(spec.name), f.checkpoint, export_dir)

    run(main)


def run_predict(spec):
    """The whole ``python -m DATASET.predict IMAGE...``; exit 1 if any image failed."""

    def main(argv):
        f = flags.FLAGS
        if len(argv) < 2:
            raise errors.UserError("no image files given: python -m DATASET.predict "
                                   "--train_dir=DIR IMAGE...")
        if f.saved_model:
            rundir.check_saved_model(f.saved_model, spec.name)
        else:
            check_run(f.train_dir, spec, "predict")
        load_tensorflow()  # here, after the checks
        from trainkit import predict as predict_lib
        return predict_lib.run(argv[1:], registry.load(spec.name), train_dir=f.train_dir,
                               saved_model=f.saved_model, checkpoint=f.checkpoint,
                               top_k=f.top_k, as_json=f.json)

    run(main, positional=True)


def load_tensorflow():
    """Loads TensorFlow without its start-up chatter, unless ``--verbosity`` is raised."""
    quiet.load_tensorflow(verbose=flags.FLAGS.verbosity > 0)


def run(main, positional=False, on_interrupt=None):
    """``absl.app.run(main)`` where bad user input (a wrong flag included) ends in one line
    and exit code 2.

    Arguments that are not flags are refused unless ``positional`` (predict's files).
    ``on_interrupt()``: the line for a Ctrl-C that ends the command at once (default: the
    trainer's).
    """

    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in sys.argv[1:]):
        _print_help()
        sys.exit(0)

    def guarded(argv):
        if flags.FLAGS.verbosity <= 0:  # TensorFlow's own INFO lines only when asked for
            handler = logging.get_absl_handler()
            handler.addFilter(quiet.drop_library_info)
            if not flags.FLAGS.log_dir:  # a terminal's lines; log files keep absl's prefix
                handler.python_handler.setFormatter(quiet.Short())
        if len(argv) > 1 and not positional:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        try:
            _check_kernel_setting()
            return main(argv)
        except errors.UserError as e:
            logging.flush()
            sys.stderr.write(f"error: {e}\n")
            sys.exit(2)
        except fs.Unreachable as e:
            logging.flush()
            sys.stderr.write(f"error: cannot use {e.filename} ({e.strerror}); check the path, "
                             "the network and your credentials for it (s3:// and hdfs:// need "
                             "tensorflow-io installed)\n")
            sys.exit(2)
        except errors.Interrupted as e:
            logging.info("%s", e)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            sys.stderr.write((on_interrupt() if on_interrupt else
                              "aborted at once; every checkpoint already on disk is intact: "
                              "continue with --resume") + "\n")
            sys.exit(130)

    app.run(guarded, flags_parser=_parse_flags)


# Flags that name a file or folder: a file:// URI in them is taken as the local path.
PATH_FLAGS = ("train_dir", "data_dir", "eval_dir", "export_dir", "saved_model", "checkpoint")


def _parse_flags(argv):
    """absl's flag parsing, with a wrong flag or value as one line and exit code 2; a
    ``file://`` path becomes the local path it names (``fs.local``)."""
    try:
        rest = flags.FLAGS(argv)
        for name in PATH_FLAGS:
            if name in flags.FLAGS and isinstance(flags.FLAGS[name].value, str):
                setattr(flags.FLAGS, name, fs.local(flags.FLAGS[name].value))
        return rest
    except (flags.Error, ValueError) as e:
        sys.stderr.write(f"error: {e}; --help lists the flags\n")
        sys.exit(2)


def _check_kernel_setting():
    """TensorFlow reads TF_ENABLE_ONEDNN_OPTS as 0/1/true/false (any case) and, without a
    word, uses its own choice for anything else: refuse what it would ignore."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")
    if value.lower() not in ("0", "1", "false", "true"):
        raise errors.UserError(
            f"TF_ENABLE_ONEDNN_OPTS={value!r} is not a setting TensorFlow understands (it "
            "would ignore it): set it to 1 for oneDNN kernels (the default), 0 for "
            "TensorFlow's own, or unset it")


def _resumed_values(train_dir, spec):
    """The settings saved in ``train_dir``'s config.json (options under their names now),
    or {} if there are none."""
    try:
        return dataclasses.asdict(spec.complete(config_lib.read_train_config(train_dir)))
    except errors.UserError:
        return {}
