"""Every dataset's command line: the flags of train, eval, export and predict, and their mains.

A dataset's ``train.py`` calls ``define_train_flags(SPEC)`` then ``run_trainer(SPEC)``
(likewise eval, export and predict); each ``main`` turns the flags into a config, and
nothing below it reads flags. Defining and parsing them loads no TensorFlow: ``--help``,
a mistyped flag and a busy or foreign dir answer at once, and the engine and the dataset
load (``trainkit.registry.load``) only once those checks pass.
"""

import dataclasses
import datetime
import os
import sys
import textwrap

from absl import app
from absl import flags
from absl import logging

from trainkit import cluster
from trainkit import config as config_lib
from trainkit import errors
from trainkit import fs
from trainkit import priority
from trainkit import quiet
from trainkit import registry
from trainkit import rundir

def define_train_flags(spec):
    """Defines the trainer's flags for dataset ``spec`` (a ``DatasetSpec``), one per
    setting of ``config.TrainConfig`` with the dataset's defaults, models and presets
    (flags given on the command line still win over a preset), then one per option
    the dataset takes (``spec.options``)."""
    per_dataset = {  # what a flag says that depends on the dataset (None: not offered)
        "preset": dict(default=next(iter(spec.presets), ""),
                       choices=list(spec.presets) + list(spec.preset_aliases),
                       help="Named set of training settings: " + "; ".join(
                           f"{name}: " + (", ".join(f"--{k}={v}" for k, v in values.items())
                                          or "the defaults")
                           for name, values in spec.presets.items())
                       + ". Flags given explicitly override it."
                       + _former_names(spec.preset_aliases)) if spec.presets else None,
        "train_dir": dict(default=spec.default("train_dir") or f"runs/{spec.name}"),
        "data_dir": dict(default=spec.default("data_dir") or f"data/{spec.name}", **(
            {} if spec.downloads else dict(help="Folder holding your data, as the lines "
                                           "above say."))),
        "data_mirrors": {} if spec.downloads else None,
        "validation_size": None if spec.validation_option else {},
        "model": dict(choices=list(spec.models) + list(spec.model_aliases),
                      help="Network architecture." + _former_names(spec.model_aliases)),
    }
    groups = _define(config_lib.TrainConfig, spec.default, per_dataset)
    if spec.presets:
        flags.DEFINE_alias("schedule", "preset")  # its former name, not listed in --help
    for name, option in spec.options.items():
        _define_one(name, type(option.default), option.default, option.help, option.lower,
                    option.upper)
    groups[config_lib.DATA] += list(spec.options)
    _group(f"{spec.name}.train", groups.items())


def _define(cls, default, changes):
    """A flag for each setting of config class ``cls``, its default ``default(name)``;
    ``changes[name]`` replaces parts of its declaration (default, help, choices), or is
    None to leave it out. Returns {group: names} in declaration order."""
    groups = {}
    for field in config_lib.settings(cls):
        declared = dict(field.metadata, default=default(field.name))
        if field.name in changes and changes[field.name] is None:
            continue
        declared.update(changes.get(field.name, {}))
        _define_one(field.name, field.type, declared["default"], declared["help"],
                    declared["lower"], declared["upper"], declared["choices"])
        groups.setdefault(declared["group"], []).append(field.name)
    return groups


def _define_one(name, kind, default, help, lower=None, upper=None, choices=()):
    """One absl flag for a setting of type ``kind`` (bool, int, float, str or tuple)."""
    if choices:
        flags.DEFINE_enum(name, default, list(choices), help)
    elif kind is bool:
        flags.DEFINE_boolean(name, default, help)
    elif kind is tuple:
        flags.DEFINE_list(name, list(default) or None, help)
    elif kind is str:
        flags.DEFINE_string(name, default or None, help)
    else:
        define = flags.DEFINE_integer if kind is int else flags.DEFINE_float
        define(name, default, help, lower_bound=lower, upper_bound=upper)


def _former_names(aliases):
    if not aliases:
        return ""
    return " Former names, still taken: " + ", ".join(
        f"{old} (now {new})" for old, new in aliases.items()) + "."


_groups = []  # (heading, flag names) of the command being run, for --help


def _group(command, groups):
    """Files this module's flags under "COMMAND: GROUP" for --helpfull (absl lists flags
    by the module that defined them, which would put all of them in one heap) and
    remembers the groups for --help."""
    flags.FLAGS.flags_by_module_dict().pop(__name__, None)
    _groups[:] = [(f"{command}: {heading}", list(names)) for heading, names in groups]
    for heading, names in _groups:
        for name in names:
            flags.FLAGS.register_flag_by_module(heading, flags.FLAGS[name])


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
            if flag.default not in (None, ""):
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

    def pick(name, kept):  # the command line, else the run's kept value, else the preset
        flag = f[name]
        return (flag.value if flag.present or name not in {**kept, **preset}
                else kept[name] if name in kept else preset[name])

    values = {field.name: pick(field.name, saved)
              for field in dataclasses.fields(config_lib.TrainConfig) if field.name in f}
    options = {name: pick(name, saved.get("options", {})) for name in spec.options}
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
    """The evaluator's flags (``config.EvalConfig``); the poll interval is the dataset's."""
    _define_command(config_lib.EvalConfig, spec, "eval",
                    eval_interval_secs=spec.eval_interval_secs)


def define_export_flags(spec):
    """The flags of ``python -m DATASET.export`` (``config.ExportConfig``)."""
    _define_command(config_lib.ExportConfig, spec, "export")


def define_predict_flags(spec):
    """The flags of ``python -m DATASET.predict IMAGE...`` (``config.PredictConfig``)."""
    _define_command(config_lib.PredictConfig, spec, "predict")


def _define_command(cls, spec, command, **defaults):
    """A flag for each setting of ``cls``, its default the declared one but for the train
    dir (``runs/DATASET``) and ``defaults``."""
    declared = {f.name: f.default for f in dataclasses.fields(cls)}
    declared.update(train_dir=f"runs/{spec.name}", **defaults)
    _group(f"{spec.name}.{command}", _define(cls, declared.get, {}).items())


def parsed(cls):
    """The parsed flags as a ``cls`` (``EvalConfig``, ``ExportConfig``, ``PredictConfig``)."""
    f = flags.FLAGS
    return cls(**{field.name: f[field.name].value for field in dataclasses.fields(cls)
                  if field.name in f and f[field.name].value is not None})


def run_trainer(spec):
    """The whole ``python -m DATASET.train``: parse flags, train, bad input as one line.

    The train dir is checked and locked before TensorFlow loads, so a second
    trainer, or a run that is not to be started, is refused at once. Under a
    ``TF_CONFIG`` whose task type is ``evaluator`` it runs the evaluator of
    the same train dir instead (``cluster.role``).
    """

    def main(argv):
        del argv
        config = train_config(spec).validate()
        if config.validate_every_steps and not spec.has_validation(config):
            raise errors.UserError(
                "--validate_every_steps needs a validation split: set --"
                f"{spec.validation_option or 'validation_size'} (held out of the training data)")
        if cluster.role() == "evaluate":
            return evaluate(spec, cluster_eval_config(config))
        cluster.check(config)
        _, held = config_lib.claim_train_dir(config, spec, cluster.is_chief(config))
        load_tensorflow()  # here, after the checks
        from trainkit import distribution, loop
        dataset = registry.load(spec.name)
        # Devices and the strategy before any other TensorFlow op; the lock, taken once
        # here, goes to the engine.
        loop.train(config, dataset, distribution.configure(config), hold=held)

    run(main)


def run_evaluator(spec):
    """The whole ``python -m DATASET.eval`` (``evaluate``), Ctrl-C saying how to go on."""

    def main(argv):
        del argv
        evaluate(spec, parsed(config_lib.EvalConfig))

    run(main, on_interrupt=lambda: (
        "stopped; the scores so far are kept, and the next start goes on after them: "
        + errors.eval_command(spec.name, flags.FLAGS.train_dir)))


def cluster_eval_config(config):
    """The evaluator's settings for the ``evaluator`` task of a cluster, whose command line
    is the trainers': their train dir and data dir, the rest the evaluator's defaults."""
    return config_lib.EvalConfig(
        train_dir=config.train_dir, data_dir=config.data_dir,
        eval_interval_secs=registry.spec(config.dataset).eval_interval_secs)


def evaluate(spec, config):
    """The evaluator of ``config`` (an ``EvalConfig``): checks the run and locks the eval
    dir (before TensorFlow loads when the run is there; while waiting for it, TensorFlow
    loads meanwhile), takes its CPU share, pins the device, then polls or runs once."""
    ready = config.run_once or fs.exists(fs.join(config.train_dir, rundir.CONFIG_FILE))
    # The eval dir's lock, taken once here and handed to the evaluator.
    hold = config_lib.claim_eval_dir(config, spec)[1] if ready else None
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
            evaluator.wait_for_trainer(config)
            hold = config_lib.claim_eval_dir(config, spec)[1]
        devices.configure(config.device, config.num_threads)
        evaluator.run(config, registry.load(spec.name), watch, hold=hold)
    finally:
        watch.stop()


def run_export(spec):
    """The whole ``python -m DATASET.export``."""

    def main(argv):
        del argv
        f = parsed(config_lib.ExportConfig)
        run_config = config_lib.check_run(f.train_dir, spec, "export")
        export_dir = f.export_dir or fs.join(f.train_dir, rundir.EXPORT_DIR)
        rundir.check_export_dir(export_dir, f.train_dir, run_config.data_dir)
        load_tensorflow()  # here, after the checks
        from trainkit import export as export_lib
        export_lib.export(f.train_dir, registry.load(spec.name), f.checkpoint or None,
                          export_dir)

    run(main)


def run_predict(spec):
    """The whole ``python -m DATASET.predict IMAGE...``; exit 1 if any image failed."""

    def main(argv):
        f = parsed(config_lib.PredictConfig)
        if len(argv) < 2:
            raise errors.UserError("no image files given: python -m DATASET.predict "
                                   "--train_dir=DIR IMAGE...")
        if f.saved_model:
            rundir.check_saved_model(f.saved_model, spec.name)
        else:
            config_lib.check_run(f.train_dir, spec, "predict")
        load_tensorflow()  # here, after the checks
        from trainkit import predict as predict_lib
        return predict_lib.run(argv[1:], registry.load(spec.name), train_dir=f.train_dir,
                               saved_model=f.saved_model, checkpoint=f.checkpoint or None,
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
        except (errors.UserError, fs.Unreachable) as e:
            logging.flush()
            sys.stderr.write("error: " + (str(e) if isinstance(e, errors.UserError) else (
                f"cannot use {e.filename} ({e.strerror}); check the path, the network and your "
                "credentials for it (s3:// and hdfs:// need tensorflow-io installed)")) + "\n")
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
