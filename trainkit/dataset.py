"""The contracts between the engine and a dataset: ``DatasetSpec``, ``Dataset`` and ``Model``.

A dataset package gives ``SPEC`` (what the flags need, no TensorFlow) and
``DATASET`` (its data and networks), each checked when made; optional parts
are fields that may be None. docs/code-tour.md, "Adding a dataset".
"""

import dataclasses
from typing import Any, Callable, Optional

from trainkit import config as config_lib


@dataclasses.dataclass(frozen=True)
class Option:
    """A setting only some datasets take: a flag of its own, kept in
    ``TrainConfig.options``. Its type is its default's (int, float, bool or str);
    ``lower``/``upper`` bound a number."""

    default: Any
    help: str
    lower: Any = None
    upper: Any = None
    # The value of a run whose config.json predates the option (None: the default), so
    # that it resumes as it was trained.
    absent: Any = None


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset as the command line sees it; no TensorFlow needed.

    ``models`` are the names of its networks, the first the default;
    ``model_aliases`` maps former names to them (a config.json written under
    an old name still resumes). ``defaults`` are its flag defaults where they
    differ from ``config.TrainConfig``'s; ``presets`` map a ``--preset`` name
    to the flags it sets (the first is the default), ``preset_aliases``
    former preset names to current ones. ``options`` are the settings only
    it takes, name -> ``Option`` (a flag each, its value in
    ``TrainConfig.options``); ``renamed_options`` maps an option's former name
    in config.json to its name now.

    Every dataset holds out a validation split from its training data, on
    which the evaluator selects (``has_validation``): ``validation_option``
    names the option that sizes it (a fraction of each class), or, empty,
    the setting ``validation_size`` does (a count). ``downloads``: whether
    the data comes from the network when missing (``--data_mirrors``).
    """

    name: str
    models: tuple
    defaults: dict
    presets: dict = dataclasses.field(default_factory=dict)
    model_aliases: dict = dataclasses.field(default_factory=dict)
    preset_aliases: dict = dataclasses.field(default_factory=dict)
    eval_interval_secs: float = 300.0
    options: dict = dataclasses.field(default_factory=dict)
    renamed_options: dict = dataclasses.field(default_factory=dict)
    validation_option: str = ""
    downloads: bool = True

    def __post_init__(self):
        fields = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
        problems = []
        if not self.models:
            problems.append("no models")
        problems += [f"alias {old!r} names no model" for old, new in self.model_aliases.items()
                     if new not in self.models]
        problems += [f"preset alias {old!r} names no preset"
                     for old, new in self.preset_aliases.items() if new not in self.presets]
        unknown = set(self.defaults) - fields
        for values in self.presets.values():
            unknown |= set(values) - fields - set(self.options)
        problems += [f"{name!r} is not a setting (config.TrainConfig) or option"
                     for name in sorted(unknown)]
        problems += [f"option {name!r} is also a setting of every dataset"
                     for name in self.options if name in fields]
        problems += [f"option {name!r} is not an Option" for name, option in self.options.items()
                     if not isinstance(option, Option)]
        if self.defaults.get("model", self.models[0] if self.models else None) not in self.models:
            problems.append(f"default model {self.defaults.get('model')!r} is not in models")
        if self.validation_option and self.validation_option not in self.options:
            problems.append(f"validation_option {self.validation_option!r} is not an option")
        problems += [f"renamed option {old!r} names no option"
                     for old, new in self.renamed_options.items() if new not in self.options]
        if problems:
            raise TypeError(f"dataset {self.name!r} breaks the DatasetSpec contract: "
                            + "; ".join(problems))

    def canonical_model(self, name):
        """The current name of model ``name`` (a former name is mapped; others pass)."""
        return self.model_aliases.get(name, name)

    def canonical_preset(self, name):
        return self.preset_aliases.get(name, name)

    def complete(self, config):
        """Gives ``config`` (a ``TrainConfig``, changed in place and returned) the current
        names of its model and preset, and every option of this dataset (the default
        where it has none: a run from before the option existed)."""
        config.model = self.canonical_model(config.model)
        config.preset = self.canonical_preset(config.preset)
        options = dict(config.options)
        for old, new in self.renamed_options.items():
            if old in options and new not in options:
                options[new] = options.pop(old)
        config.options = {**{name: option.default if option.absent is None else option.absent
                             for name, option in self.options.items()}, **options}
        return config

    def has_validation(self, config):
        """Whether ``config``'s run holds out a validation split from its training data."""
        if self.validation_option:
            return bool(config.options.get(self.validation_option))
        return config.validation_size > 0

    def eval_splits(self, config):
        """The splits the evaluator scores for ``config``'s run: validation (if held out),
        on which it selects, and test, which it reports."""
        return ("validation", "test") if self.has_validation(config) else ("test",)

    def default(self, name):
        """The default of setting or option ``name`` for this dataset."""
        if name in self.options:
            return self.options[name].default
        if name in self.defaults:
            return self.defaults[name]
        if name == "model":
            return self.models[0]
        return getattr(config_lib.TrainConfig(), name)


@dataclasses.dataclass(frozen=True)
class Model:
    """One network and the data it takes.

    ``build(config, num_classes, raw_shape, name)``: a Keras model with
    explicitly named layers, called ``name``, mapping ``eval_preprocess``'s
    output to logits. ``train_preprocess(images, random, config)`` and
    ``eval_preprocess(images, config)`` turn a uint8 batch [N, H, W, C] of
    raw images into the model's input (``random``: a
    ``trainkit.pipeline.BatchRandom``); ``eval_preprocess`` also travels in
    every exported SavedModel. ``decayed_weights(keras_model)``: the
    variables the L2 penalty covers. Optional: ``eval_logits(keras_model,
    inputs, config)``, the logits the evaluator scores (test-time
    augmentation; default: the model's own); ``initialize(keras_model,
    images, config)``, a data-dependent initialization at the start of a new
    run from uint8 training images; ``trained_until(keras_model, config)``,
    ``[(variable, steps)]`` for weights that train in the first ``steps``
    steps only (0: throughout), then stay as they are. ``checkpoint_name``
    names the Keras model inside checkpoints (default: the model's name); it
    keeps checkpoints of a renamed model readable.
    """

    name: str
    build: Callable
    train_preprocess: Callable
    eval_preprocess: Callable
    decayed_weights: Callable
    eval_logits: Optional[Callable] = None
    initialize: Optional[Callable] = None
    trained_until: Optional[Callable] = None
    checkpoint_name: str = ""

    def __post_init__(self):
        required = ("build", "train_preprocess", "eval_preprocess", "decayed_weights")
        optional = ("eval_logits", "initialize", "trained_until")
        problems = [f"{name} is not callable" for name in required
                    if not callable(getattr(self, name))]
        problems += [f"{name} is neither None nor callable" for name in optional
                     if getattr(self, name) is not None and not callable(getattr(self, name))]
        if problems:
            raise TypeError(f"model {self.name!r} breaks the Model contract: "
                            + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset as the engine uses it (see the module docstring).

    ``arrays(config, split)``: ``(images uint8 [N, H, W, C], labels int32
    [N])`` of split ``train``, ``validation`` or ``test``, read
    (and downloaded, if missing) from ``config.data_dir``; UserError naming
    the file and the fix when the data is not right. ``class_names`` and
    ``raw_shape``: what its images are, as constants or, for a dataset whose
    classes and sizes are the user's, functions of the config. ``prepare(data_dir,
    mirrors)``: download and check everything, return one summary line.
    ``synthetic(path, scale)``: write learnable fake data in its real file
    format (``scale``: "small" for tests, "full" for the benchmark); returns
    the data dir. ``mirrors``: where downloads come from by default.
    ``light_on_dark``: its pictures are light figures on black (MNIST's digits),
    so predict inverts a picture on a light background.
    """

    spec: DatasetSpec
    models: dict
    arrays: Callable
    class_names: Any
    raw_shape: Any
    prepare: Callable
    synthetic: Callable
    mirrors: tuple = ()
    light_on_dark: bool = False

    def __post_init__(self):
        problems = [f"{name} is not callable" for name in ("arrays", "prepare", "synthetic")
                    if not callable(getattr(self, name))]
        problems += [f"{name} is neither a sequence nor callable"
                     for name in ("class_names", "raw_shape")
                     if not callable(getattr(self, name))
                     and not isinstance(getattr(self, name), (list, tuple))]
        if tuple(self.models) != tuple(self.spec.models):
            problems.append(f"models {tuple(self.models)} differ from the spec's "
                            f"{tuple(self.spec.models)}")
        problems += [f"models[{name!r}] is not a Model" for name, model in self.models.items()
                     if not isinstance(model, Model)]
        if problems:
            raise TypeError(f"dataset {self.spec.name!r} breaks the Dataset contract: "
                            + "; ".join(problems))

    @property
    def name(self):
        return self.spec.name

    def classes(self, config):
        """The class names of ``config``'s run, in label order."""
        return list(self.class_names(config) if callable(self.class_names)
                    else self.class_names)

    def shape(self, config):
        """The raw image shape (H, W, C) of ``config``'s run."""
        return tuple(self.raw_shape(config) if callable(self.raw_shape) else self.raw_shape)

    def model(self, config):
        """The ``Model`` that ``config.model`` names (a former name too)."""
        return self.models[self.spec.canonical_model(config.model)]

    def build(self, config):
        """The Keras model of ``config``, named for its checkpoint keys."""
        model = self.model(config)
        return model.build(config, len(self.classes(config)), self.shape(config),
                           f"{self.name}_{model.checkpoint_name or model.name}")
