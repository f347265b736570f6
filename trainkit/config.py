"""The settings of a run, as plain dataclasses.

Flags are read in each entry point's ``main`` only (see ``trainkit.flags``);
everything below takes one of these objects. The trainer writes its
``TrainConfig`` to ``TRAIN_DIR/config.json`` so that the evaluator rebuilds
the same model without the user repeating flags.
"""

import contextlib
import dataclasses
import json

from trainkit import errors
from trainkit import fs
from trainkit import locks
from trainkit import rundir

# Every choice a flag offers, once, here: the flags (and --help) are defined from
# these without loading TensorFlow, and the modules that act on them use the same.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "muon")
LR_SCHEDULES = ("exponential", "cosine", "linear")
EVAL_POLICIES = ("latest", "all")
PRIORITIES = ("idle", "low", "normal")  # the evaluator's CPU share (trainkit.priority)
PRECISIONS = ("float32", "bfloat16", "auto")
STRATEGIES = ("default", "mirrored", "multi_worker")
# A config.json must name at least these; every other setting has a default below.
REQUIRED = ("dataset", "train_dir", "data_dir", "model", "batch_size", "max_steps")
# Former names of settings in config.json -> their names now.
RENAMED = {"schedule": "preset"}
# Settings that were top-level in config.json and are dataset options now.
FORMER_TOP_LEVEL_OPTIONS = ("translate", "cutout")


# The --help groups of the trainer's settings, in the order --help lists them.
RUN, DATA, MODEL, SAVING, SPEED = ("the run", "data", "model and optimization",
                                   "checkpoints, logs and validation", "speed and devices")


def setting(default, help, group, lower=None, upper=None, choices=()):
    """A setting's one declaration: its default, and its flag's help, ``--help`` group,
    inclusive bounds and choices. The flags, ``--help`` and ``validate`` derive from it."""
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, lower=lower, upper=upper, choices=tuple(choices)))


def settings(cls):
    """The fields of ``cls`` that are settings (a flag each), in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


@dataclasses.dataclass
class TrainConfig:
    """Everything the trainer needs; each setting is a flag of the same name.

    The defaults here are every setting's default; a dataset overrides some
    in its ``DatasetSpec.defaults`` and presets (``trainkit.dataset``).
    """

    dataset: str = ""
    preset: str = setting("", "Named set of training settings (flags given explicitly "
                          "override it).", RUN)
    train_dir: str = setting("", "Directory for checkpoints, config.json, summaries and DONE. "
                             "A directory that already holds checkpoints needs --resume.", RUN)
    resume: bool = setting(False, "Continue the run in --train_dir from its latest checkpoint.",
                           RUN)
    seed: int = setting(0, "Random seed for weights and data order.", RUN)
    deterministic: bool = setting(
        False, "TensorFlow op determinism and fixed seeds: a run stopped and resumed ends "
        "bitwise equal to an uninterrupted one (slower on some ops).", RUN)
    data_dir: str = setting("", "Directory holding the dataset files; missing files are "
                            "downloaded there.", DATA)
    data_mirrors: tuple = setting((), "Comma-separated base URLs to download the dataset from "
                                  "when --data_dir lacks it (default: the official hosts).",
                                  DATA)
    validation_size: int = setting(
        0, "Training examples held out as the validation split (not trained on), on which the "
        "evaluator selects the best checkpoint; 0 = none: no best is chosen.", DATA, 0)
    model: str = setting("", "Network architecture.", MODEL)
    batch_size: int = setting(128, "Examples per training step.", MODEL, 1)
    max_steps: int = setting(10000, "Global step (batches) at which training ends.", MODEL, 1)
    optimizer: str = setting(
        "sgd", "Optimizer: plain SGD, SGD with --momentum (heavy ball or Nesterov's), Adam, or "
        "Muon (convolution kernels orthogonalized, see --muon_learning_rate; every other "
        "weight by Nesterov's SGD).", MODEL, choices=OPTIMIZERS)
    learning_rate: float = setting(0.1, "Initial learning rate.", MODEL, 0.0)
    lr_schedule: str = setting(
        "exponential", "exponential: x--learning_rate_decay every --num_epochs_per_decay "
        "epochs; cosine: half a cosine from --learning_rate to 0 at --max_steps; linear: "
        "straight down to --decay_to at --max_steps (with --warmup_steps, the one-cycle "
        "triangle).", MODEL, choices=LR_SCHEDULES)
    warmup_steps: int = setting(0, "Steps over which the learning rate ramps up linearly from "
                                "--warmup_from; 0 = no warm-up.", MODEL, 0)
    warmup_from: float = setting(
        0.0, "The warm-up's learning rate at step 0, as a fraction of the schedule's; 0 = "
        "from 1/--warmup_steps of it at the first step.", MODEL, 0.0, 1.0)
    decay_to: float = setting(0.0, "--lr_schedule=linear: the learning rate at --max_steps, as "
                              "a fraction of --learning_rate.", MODEL, 0.0, 1.0)
    learning_rate_decay: float = setting(
        1.0, "Factor the learning rate is multiplied by every --num_epochs_per_decay epochs "
        "(1.0 = constant).", MODEL, 0.0)
    num_epochs_per_decay: float = setting(1.0, "Epochs between learning-rate decays.", MODEL,
                                          0.0)
    staircase: bool = setting(True, "Decay the learning rate in steps (true) or continuously "
                              "(false).", MODEL)
    momentum: float = setting(0.9, "Momentum for --optimizer=momentum, nesterov and muon.",
                              MODEL, 0.0)
    muon_learning_rate: float = setting(
        0.24, "--optimizer=muon: the convolution kernels' learning rate, on the same schedule "
        "as --learning_rate (which the other weights take).", MODEL, 0.0)
    muon_momentum: float = setting(0.6, "--optimizer=muon: the convolution kernels' Nesterov "
                                   "momentum (the other weights take --momentum).", MODEL, 0.0,
                                   1.0)
    l2_regularization: float = setting(
        0.0, "Weight of the L2 penalty (sum of squares / 2) on the model's regularized "
        "weights, added to the loss; 0 turns it off.", MODEL, 0.0)
    label_smoothing: float = setting(0.0, "Train on targets (1 - e) * one_hot + e / classes; "
                                     "0 = plain labels.", MODEL, 0.0, 1.0)
    moving_average_decay: float = setting(0.999, "Decay of the weights' exponential moving "
                                          "average that the evaluator scores.", MODEL, 0.0, 1.0)
    moving_average_every_steps: int = setting(
        10, "Steps between moving-average updates, each with the decay raised to this power "
        "(the same time constant, less memory traffic); 1 = every step, the tutorial's rule.",
        MODEL, 1)
    lookahead_every_steps: int = setting(
        0, "Lookahead (airbench94's): every N steps the weights are pulled to a slow copy "
        "that keeps --lookahead_decay**N x (step / --max_steps)**3 of itself; the run ends on "
        "the slow weights. 0 = off.", MODEL, 0)
    lookahead_decay: float = setting(0.95, "Per-step decay of the Lookahead pull at the end of "
                                     "the run (see --lookahead_every_steps).", MODEL, 0.0, 1.0)
    lookahead_start_steps: int = setting(0, "Lookahead pulls only after this step (airbench94: "
                                         "3 epochs).", MODEL, 0)
    lookahead_sync_steps: int = setting(
        0, "Every N steps the weights are also set to Lookahead's slow copy (airbench94: at "
        "each epoch's end); 0 = only at --max_steps.", MODEL, 0)
    save_checkpoint_steps: int = setting(1000, "Steps between checkpoints; 0 = by time only.",
                                         SAVING, 0)
    save_checkpoint_secs: float = setting(0.0, "Seconds between checkpoints; 0 = by steps "
                                          "only. The last step is always saved.", SAVING, 0.0)
    max_to_keep: int = setting(5, "Checkpoints to keep; older ones are deleted.", SAVING, 1)
    log_frequency: int = setting(10, "Steps between log lines (step, loss, examples/sec).",
                                 SAVING, 1)
    save_summaries_steps: int = setting(100, "Steps between TensorBoard summaries; 0 = never.",
                                        SAVING, 0)
    validate_every_steps: int = setting(
        0, "Steps between scoring the averaged weights on the validation split; a new best is "
        "saved in TRAIN_DIR/best_validation. 0 = never.", SAVING, 0)
    early_stopping_steps: int = setting(
        0, "Stop when validation precision has not improved for this many steps (the classic "
        "tutorials' require_improvement); 0 = never.", SAVING, 0)
    precision: str = setting(
        "float32", "Arithmetic of the training step: float32; bfloat16 (convolutions and "
        "matmuls on bfloat16, weights, slots, averages and checkpoints float32; fast only on "
        "hardware with native bfloat16: AVX-512 BF16 or AMX CPUs, GPUs of compute capability "
        "8.0+); auto: bfloat16 exactly there. The evaluator always scores in float32.", SPEED,
        choices=PRECISIONS)
    steps_per_call: int = setting(
        10, "Training steps per call of the compiled step function (saves the per-call "
        "dispatch; log lines, summaries, validation and step-based saves still land on their "
        "exact steps). Signals and timed saves are handled between calls.", SPEED, 1)
    jit_compile: bool = setting(False, "Compile the training step with XLA (tf.function("
                                "jit_compile=True)). docs/speed.md has what it does on a CPU.",
                                SPEED)
    strategy: str = setting(
        "default", "default: one device; mirrored: tf.distribute.MirroredStrategy over the "
        "visible GPUs (or --cpu_replicas logical CPUs); multi_worker: "
        "MultiWorkerMirroredStrategy across the processes named in TF_CONFIG (see "
        "scripts/multi_worker.py). --batch_size stays the global batch.", SPEED,
        choices=STRATEGIES)
    num_gpus: int = setting(0, "The tutorial's multi-GPU switch: N > 0 means "
                            "--strategy=mirrored over the first N GPUs; 0 = all visible GPUs "
                            "with --strategy=mirrored.", SPEED, 0)
    cpu_replicas: int = setting(
        0, "With --strategy=mirrored on a machine without GPUs: split the CPU into N logical "
        "devices, one replica each (for trying and testing multi-device training anywhere); "
        "0 = no split.", SPEED, 0)
    # The settings only some datasets take, by name (``DatasetSpec.options``: the
    # airbench networks' translate and cutout, the images dataset's image_size...).
    options: dict = dataclasses.field(default_factory=dict)
    # The classes, in label order, as the trainer found them (``Dataset.class_names``):
    # what the evaluator, export and predict name them by, without the data.
    class_names: tuple = ()
    # The run's identity (rundir.new_run_id), kept across --resume; "" for runs that
    # predate it. Whatever reads the train dir checks its records belong to this run.
    run_id: str = ""
    # Each --resume that changed settings: {"resumed_at_step", "time", "changed": {name:
    # [before, after]}}, oldest first.
    history: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        # JSON and absl give lists; a tuple keeps the config hashable-looking and comparable.
        self.data_mirrors = tuple(self.data_mirrors or ())
        self.class_names = tuple(self.class_names or ())

    def validate(self):
        """Raises UserError for a setting out of its declared bounds or choices, or for
        settings that contradict each other."""
        check_bounds(self)
        if self.learning_rate <= 0:
            raise errors.UserError(f"--learning_rate must be positive, got {self.learning_rate}")
        if self.moving_average_decay >= 1.0:
            raise errors.UserError(
                f"--moving_average_decay must be in [0, 1), got {self.moving_average_decay}")
        if self.decay_to and self.lr_schedule != "linear":
            raise errors.UserError(f"--decay_to={self.decay_to:g} needs --lr_schedule=linear "
                                   f"(got {self.lr_schedule}); drop it or change the schedule")
        if self.warmup_from and not self.warmup_steps:
            raise errors.UserError(f"--warmup_from={self.warmup_from:g} needs --warmup_steps; "
                                   "set the warm-up's length or drop --warmup_from")
        return self

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from config.json's values; TypeError names a value that is missing
        or of the wrong type (unknown names are ignored: a newer version's settings)."""
        if not isinstance(values, dict):
            raise TypeError(f"expected a JSON object, got {type(values).__name__}")
        values = {RENAMED.get(name, name): value for name, value in values.items()}
        if isinstance(values.get("options", {}), dict):  # else the type check names it
            options = dict(values.get("options", {}))
            for name in FORMER_TOP_LEVEL_OPTIONS:
                if name in values:
                    options.setdefault(name, values.pop(name))
            values["options"] = options
        missing = [name for name in REQUIRED if name not in values]
        if missing:
            raise TypeError(f"missing {', '.join(missing)}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in values.items():
            if name in fields and not _has_type(value, fields[name].type):
                raise TypeError(f"{name} is {json.dumps(value)}, expected "
                                f"{_TYPE_NAMES[fields[name].type]}")
        return cls(**{k: v for k, v in values.items() if k in fields})


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               tuple: "a list of strings", dict: "an object of settings",
               list: "a list of objects"}


def _has_type(value, kind):
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is tuple:
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if kind is dict:
        return isinstance(value, dict) and all(
            isinstance(v, (int, float, str, bool)) for v in value.values())
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    return isinstance(value, kind)


def check_bounds(config):
    """UserError naming the first setting of ``config`` outside its declared bounds or
    choices (a flag checks its own; config.json and code-built configs meet this)."""
    for field in settings(type(config)):
        value, meta = getattr(config, field.name), field.metadata
        lower, upper = meta["lower"], meta["upper"]
        if meta["choices"] and value not in meta["choices"]:
            raise errors.UserError(f"--{field.name}={value} is not one of "
                                   f"{', '.join(meta['choices'])}")
        if (lower is not None and value < lower) or (upper is not None and value > upper):
            span = (f"at least {lower}" if upper is None else
                    f"at most {upper}" if lower is None else f"between {lower} and {upper}")
            raise errors.UserError(f"--{field.name} must be {span}, got {value}")


# The --help groups of the evaluator's settings.
WHAT, WHEN, DEVICES = "what to evaluate", "when", "devices and priority"


@dataclasses.dataclass
class EvalConfig:
    """Everything the evaluator needs beyond the trainer's config.json; each setting is a
    flag of the same name (``eval_interval_secs``'s default is the dataset's)."""

    train_dir: str = setting("", "The trainer's --train_dir: the evaluator reads config.json "
                             "and checkpoints from it.", WHAT)
    eval_dir: str = setting("", "Where metrics.jsonl, best/ and the validation/ and test/ "
                            "summaries go (default: TRAIN_DIR/eval; TRAIN_DIR/eval_plain with "
                            "--notest_time_augmentation).", WHAT)
    data_dir: str = setting("", "Dataset directory (default: the trainer's --data_dir from "
                            "config.json).", WHAT)
    num_examples: int = setting(0, "Score only the first N examples of each split; 0 = all of "
                                "them.", WHAT, 0)
    eval_batch_size: int = setting(1000, "Examples per evaluation batch (the last batch may be "
                                   "smaller; every example counts once).", WHAT, 1)
    test_time_augmentation: bool = setting(
        True, "Score with the model's test-time augmentation where it has one (the airbench "
        "networks: flips and one-pixel shifts); false scores its plain logits, by default into "
        "TRAIN_DIR/eval_plain.", WHAT)
    eval_interval_secs: float = setting(300.0, "Seconds between polls of the train dir for a "
                                        "new checkpoint; 0 = without pausing.", WHEN, 0.0)
    eval_policy: str = setting(
        "latest", "latest: the newest checkpoint at each poll, as the tutorial (any older one "
        "not yet scored is named as skipped); all: every checkpoint still on disk, in step "
        "order.", WHEN, choices=EVAL_POLICIES)
    run_once: bool = setting(False, "Score the newest checkpoint once, write the pictures, and "
                             "exit.", WHEN)
    timeout_secs: float = setting(0.0, "Exit when no new checkpoint has come for this many "
                                  "seconds; 0 = wait until the trainer writes DONE.", WHEN, 0.0)
    early_stopping_evals: int = setting(
        0, "Ask the trainer to stop after this many evaluations without a new best validation "
        "precision; 0 = never. Needs a validation split.", WHEN, 0)
    export_best: bool = setting(True, "Export each new best checkpoint (by validation "
                                "precision) as a SavedModel that takes raw images, in "
                                "EVAL_DIR/best/saved_model.", WHEN)
    device: str = setting("cpu", "cpu (default: off every GPU), gpu:N (only GPU N, memory "
                          "grown as needed) or auto (TensorFlow's choice).", DEVICES)
    num_threads: int = setting(0, "Cap on TensorFlow's intra/inter-op threads; 0 = "
                               "TensorFlow's default.", DEVICES, 0)
    priority: str = setting(
        "normal", "The evaluator's CPU share beside other work. normal: an equal share, so "
        "that it keeps up (a trainer on the same cores gives up a few percent); low: nice 19, a "
        "small share; idle: only cores nothing else wants (Linux SCHED_IDLE and nice 19): a "
        "trainer beside keeps its speed, but the evaluator falls behind, and any busy process "
        "starves it. docs/speed.md has what each costs.", DEVICES, choices=PRIORITIES)

    def __post_init__(self):
        if not self.eval_dir:
            self.eval_dir = fs.join(self.train_dir, rundir.EVAL_DIR if self.test_time_augmentation
                                    else rundir.EVAL_PLAIN_DIR)


CHECKPOINT_HELP = ("Checkpoint path prefix (default: the evaluator's best, TRAIN_DIR/eval/best, "
                   "else the newest checkpoint in TRAIN_DIR).")


@dataclasses.dataclass
class ExportConfig:
    """``python -m DATASET.export``'s settings; each is a flag of the same name."""

    train_dir: str = setting("", "The run to export from.", "export")
    checkpoint: str = setting("", CHECKPOINT_HELP, "export")
    export_dir: str = setting("", "Where the SavedModel goes (default: TRAIN_DIR/export); a "
                              "previous export there is replaced once the new one is "
                              "complete.", "export")


@dataclasses.dataclass
class PredictConfig:
    """``python -m DATASET.predict IMAGE...``'s settings; each is a flag of the same name."""

    train_dir: str = setting("", "The run whose checkpoint classifies the images (see "
                             "--checkpoint).", "predict")
    checkpoint: str = setting("", CHECKPOINT_HELP, "predict")
    saved_model: str = setting("", "A SavedModel from python -m DATASET.export to use "
                               "instead of --train_dir.", "predict")
    top_k: int = setting(3, "Classes shown per image, best first.", "predict", 1, 10)
    json: bool = setting(False, 'One JSON object per image: {"file", "classes", '
                         '"probabilities"}, or {"file", "error"}.', "predict")


def write_train_config(config):
    """Writes config.json atomically (a reader never sees half a file)."""
    fs.write_atomic(fs.join(config.train_dir, rundir.CONFIG_FILE), config.to_json() + "\n")


def read_train_config(train_dir):
    """Reads the trainer's config.json, or raises UserError saying why not."""
    path = fs.join(train_dir, rundir.CONFIG_FILE)
    if not fs.isdir(train_dir):
        raise errors.UserError(
            f"train dir {train_dir} does not exist; start the trainer first or check --train_dir")
    values = rundir.read_config_values(train_dir)
    if values is None:
        raise errors.UserError(
            f"{path} not found: {train_dir} is not a train dir written by this toolkit's "
            "trainer (start the trainer first or check --train_dir)")
    try:
        return TrainConfig.from_dict(values)
    except TypeError as e:
        raise errors.UserError(f"{path} is incomplete or not this toolkit's ({e})") from None


def check_run(train_dir, spec, command):
    """The run in ``train_dir`` as a TrainConfig, checked to be one that ``python -m
    DATASET.COMMAND`` can use: of dataset ``spec`` (a ``DatasetSpec``) and with one of
    its models. Former model and preset names come back as their current ones."""
    config = read_train_config(train_dir)
    if config.dataset != spec.name:
        raise errors.UserError(
            f"{train_dir} holds a {config.dataset} run, not a {spec.name} one: use python -m "
            f"{config.dataset}.{command}")
    model = spec.canonical_model(config.model)
    if model not in spec.models:
        raise errors.UserError(
            f"{fs.join(train_dir, rundir.CONFIG_FILE)} names model {config.model!r}, which "
            f"{spec.name} does not have ({', '.join(spec.models)}): not a config.json this "
            "toolkit wrote")
    return spec.complete(config)


def claim_train_dir(config, spec, is_chief=True, hold=None):
    """Checks the train dir against ``--resume`` and, on the chief, locks it and clears
    stale DONE and STOP markers (so that no evaluator takes the run for finished).
    Returns ``(checkpoint to resume or None, the lock or None)``; reads only files, so
    an entry point calls it before TensorFlow loads and hands the lock on (``hold``:
    the lock, taken; else it is taken here). Never deletes a checkpoint.
    """
    rundir.check_apart(config.train_dir, config.data_dir)  # before a .lock is written
    if not is_chief:
        return _check_train_dir(config, spec), None
    # A live run's trainer is named first; a new dir is made only once all is checked.
    hold = hold or locks.hold(config.train_dir, "trainer", create=False)
    try:
        latest = _check_train_dir(config, spec)
        if hold is None:
            hold = locks.hold(config.train_dir, "trainer")
            latest = _check_train_dir(config, spec)  # under the lock this time
        for marker in (rundir.DONE_FILE, rundir.STOP_FILE):
            with contextlib.suppress(FileNotFoundError):
                fs.remove(fs.join(config.train_dir, marker))
        return latest, hold
    except BaseException as e:
        if hold:
            hold.release()
        if isinstance(e, OSError) and not isinstance(e, fs.Unreachable):
            raise rundir.unwritable(config.train_dir, e) from None
        raise


def claim_eval_dir(config, spec, hold=None):
    """The run the evaluator of ``config`` (an ``EvalConfig``) scores (``check_run``; its
    data dir ``--data_dir`` when given) and the eval dir's lock (``hold``: the lock,
    taken; else it is taken here), the eval dir kept apart from the data."""
    run = check_run(config.train_dir, spec, "eval")
    run.data_dir = config.data_dir or run.data_dir
    rundir.check_apart(config.eval_dir, run.data_dir, "--eval_dir")
    return run, hold or locks.hold(config.eval_dir, "evaluator", "eval dir", "--eval_dir")


def _check_train_dir(config, spec):
    """The newest checkpoint of the train dir (None for a new run), found by its files.

    A dir holding any checkpoint is a run: refused without ``--resume``, and
    resumed only as the same dataset and model (``spec``). Sets
    ``config.run_id``: the resumed run's own, or a new one.
    """
    train_dir = config.train_dir
    spec.complete(config)
    rundir.check_path(train_dir, "--train_dir")
    if fs.exists(train_dir) and not fs.isdir(train_dir):
        raise rundir.unwritable(train_dir, "it is a file, not a folder")
    latest = rundir.latest_checkpoint(train_dir)
    if latest and not config.resume:
        raise errors.UserError(
            f"{train_dir} already holds checkpoints (latest: {latest}); " + errors.said(
                "pass --resume to continue that run, or choose a new --train_dir",
                f"continue it with 'make resume TRAIN_DIR={train_dir}', or choose another "
                "TRAIN_DIR"))
    if config.resume and not latest:
        raise errors.UserError(
            f"{train_dir} holds no checkpoint to resume; " + errors.said(
                "drop --resume to start a new run there",
                f"start one with 'make train TRAIN_DIR={train_dir}'"))
    if latest:
        previous = check_run(train_dir, spec, "train")
        if previous.model != spec.canonical_model(config.model):
            raise errors.UserError(
                f"{train_dir} holds a {previous.dataset} --model={previous.model} run; "
                f"cannot resume it as {config.dataset} --model={config.model}")
        config.run_id = previous.run_id
        reached = rundir.checkpoint_steps(train_dir)[-1]
        if reached >= config.max_steps:
            raise errors.UserError(
                f"the run in {train_dir} is complete: it reached step {reached} of "
                f"--max_steps={config.max_steps}; to train it further, " + errors.said(
                    f"resume with a larger --max_steps (--resume --max_steps={2 * reached})",
                    f"'make resume TRAIN_DIR={train_dir} ARGS=--max_steps={2 * reached}'"))
    elif not config.run_id:
        config.run_id = rundir.new_run_id()
    return latest
