"""The settings of a run, as plain dataclasses.

Flags are read in each entry point's ``main`` only (see ``trainkit.flags``);
everything below takes one of these objects. The trainer writes its
``TrainConfig`` to ``TRAIN_DIR/config.json`` so that the evaluator rebuilds
the same model without the user repeating flags.
"""

import dataclasses
import json
import os

from trainkit import errors

CONFIG_FILE = "config.json"
# The choices of --precision and --strategy (trainkit.precision, trainkit.distribution),
# here so that the flags, and --help, are defined without loading TensorFlow.
PRECISIONS = ("float32", "bfloat16", "auto")
STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclasses.dataclass
class TrainConfig:
    """Everything the trainer needs; each field is a flag of the same name."""

    dataset: str
    train_dir: str
    data_dir: str
    model: str
    batch_size: int
    max_steps: int
    optimizer: str
    learning_rate: float
    learning_rate_decay: float
    num_epochs_per_decay: float
    staircase: bool
    momentum: float
    l2_regularization: float
    moving_average_decay: float
    log_frequency: int
    save_summaries_steps: int
    save_checkpoint_steps: int
    save_checkpoint_secs: float
    max_to_keep: int
    seed: int
    resume: bool = False
    validation_size: int = 0
    data_mirrors: tuple = ()
    lr_schedule: str = "exponential"
    schedule: str = ""
    validate_every_steps: int = 0
    early_stopping_steps: int = 0
    deterministic: bool = False
    warmup_steps: int = 0
    strategy: str = "default"
    num_gpus: int = 0
    cpu_replicas: int = 0
    jit_compile: bool = False
    steps_per_call: int = 10
    label_smoothing: float = 0.0
    moving_average_every_steps: int = 10
    lookahead_every_steps: int = 0
    lookahead_decay: float = 0.95
    precision: str = "float32"
    translate: int = 2
    cutout: int = 0

    def __post_init__(self):
        # JSON and absl give lists; a tuple keeps the config hashable-looking and comparable.
        self.data_mirrors = tuple(self.data_mirrors or ())

    def validate(self):
        """Raises UserError for settings that no flag bound can express."""
        if self.batch_size <= 0:
            raise errors.UserError(f"--batch_size must be positive, got {self.batch_size}")
        if self.max_steps <= 0:
            raise errors.UserError(f"--max_steps must be positive, got {self.max_steps}")
        if self.learning_rate <= 0:
            raise errors.UserError(f"--learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.moving_average_decay < 1.0:
            raise errors.UserError(
                f"--moving_average_decay must be in [0, 1), got {self.moving_average_decay}")
        if not 0.0 <= self.lookahead_decay <= 1.0:
            raise errors.UserError(
                f"--lookahead_decay must be in [0, 1], got {self.lookahead_decay}")
        if self.max_to_keep < 1:
            raise errors.UserError(f"--max_to_keep must be at least 1, got {self.max_to_keep}")
        return self

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from config.json's values; raises TypeError if some are missing."""
        if not isinstance(values, dict):
            raise TypeError(f"expected a JSON object, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclasses.dataclass
class EvalConfig:
    """Everything the evaluator needs beyond the trainer's config.json."""

    train_dir: str
    eval_dir: str
    data_dir: str
    eval_data: str
    eval_batch_size: int
    eval_interval_secs: float
    run_once: bool
    device: str
    num_threads: int
    num_examples: int = 0
    eval_policy: str = "latest"
    timeout_secs: float = 0.0
    early_stopping_evals: int = 0
    nice: int = 19
    export_best: bool = True
    idle_priority: bool = True


def write_train_config(config):
    """Writes config.json atomically (a reader never sees half a file)."""
    path = os.path.join(config.train_dir, CONFIG_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json() + "\n")
    os.replace(tmp, path)


def read_train_config(train_dir):
    """Reads the trainer's config.json, or raises UserError saying why not."""
    path = os.path.join(train_dir, CONFIG_FILE)
    if not os.path.isdir(train_dir):
        raise errors.UserError(
            f"train dir {train_dir} does not exist; start the trainer first or check --train_dir")
    try:
        with open(path) as f:
            values = json.load(f)
    except FileNotFoundError:
        raise errors.UserError(
            f"{path} not found: {train_dir} is not a train dir written by this toolkit's "
            "trainer (start the trainer first or check --train_dir)") from None
    except (OSError, ValueError) as e:
        raise errors.UserError(f"cannot read {path}: {e}") from None
    try:
        return TrainConfig.from_dict(values)
    except TypeError as e:
        raise errors.UserError(f"{path} is incomplete or not this toolkit's ({e})") from None
