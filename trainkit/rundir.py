"""The train dir and the eval dir as files: the name of everything in them, checkpoints
found by their files, a run's identity, and paths taken literally.

Pure Python for a local dir, so that an entry point can refuse a busy or
foreign dir before TensorFlow loads.
"""

import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import sys
import tempfile
import uuid

from trainkit import errors
from trainkit import fs

# Every file and folder of a train dir, by name; nothing else in the toolkit spells them.
LOCK_FILE = ".lock"  # the one writer's flock (or lease)
CONFIG_FILE = "config.json"  # the run's settings (trainkit.config)
CHECKPOINT_PREFIX = "ckpt"  # ckpt-N.index, ckpt-N.data-*
INDEX_FILE = "checkpoint"  # the CheckpointManager-format list of checkpoints
DONE_FILE = "DONE"  # the trainer finished for good: its final step
STOP_FILE = "STOP"  # a stop request, written by the evaluator's --early_stopping_evals
TRAIN_RUN = "train"  # the trainer's TensorBoard events
VALIDATION_RUN = "validation"  # its in-run validation's events (and the evaluator's run name)
BEST_VALIDATION_DIR = "best_validation"  # the trainer's best checkpoint on validation
EXPORT_DIR = "export"  # python -m DATASET.export's default
EVAL_DIR = "eval"  # the evaluator's default eval dir; "eval_plain" without test-time augmentation
EVAL_PLAIN_DIR = "eval_plain"
# ... and of an eval dir:
METRICS_FILE = "metrics.jsonl"  # one record per checkpoint, scored or skipped
BEST_DIR = "best"  # the best checkpoint on validation, and its export
STAGING_DIR = ".staging"  # a checkpoint copied before it is scored
SAVED_MODEL_DIR = "saved_model"  # the best checkpoint's export, under best/
BEST_FILE = "best.json"  # the record of a best checkpoint, beside it
PREVIOUS_RUN_PREFIX = "previous-run-"  # another run's records, moved aside (move_previous_run)
_INDEX_RE = re.compile(r"^ckpt-(\d+)\.index$")
_FILE_RE = re.compile(r"^ckpt-(\d+)\.(index|data-\d+-of-\d+)$")
_UNFINISHED_RE = re.compile(r"^ckpt-\d+_temp$")
GLOB_CHARS = frozenset("*?[]\\")

EXPORT_INFO_FILE = "classifier.json"  # beside an export's saved_model.pb
EXPORT_FORMAT = "trainkit-classifier/1"  # in classifier.json: what wrote the folder
# What tf.saved_model.save writes, and classifier.json: all an export folder may hold.
EXPORT_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets", EXPORT_INFO_FILE}
EXPORT_ASSET = "class_names.txt"  # the one file of an export's assets/


FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # what freeing space mends


def unwritable(directory, error, noun="train dir", what="--train_dir"):
    """The one line for a dir this toolkit cannot write to (``error``: the failure, or a
    reason), naming the dir, the cause and the fix: space freed, or another ``what``."""
    reason = error if isinstance(error, str) else (
        getattr(error, "strerror", None) or errors.first_line(error))
    full = [os.strerror(n) for n in FULL_DISK if os.strerror(n) in reason]  # also in an OpError
    fix = ("free space there, or " if full else "") + f"choose a writable {what}"
    return errors.UserError(f"cannot write to {noun} {directory}: {(full or [reason])[0]}; {fix}")


def check_path(path, what):
    """UserError for a path with a scheme that TensorFlow would read as a pattern."""
    if not fs.of(path).symlinks and has_glob_chars(path.split("://", 1)[-1]):
        raise errors.UserError(f"{what}={path}: a path with a scheme cannot hold * ? [ ] or "
                               "\\ (TensorFlow reads them as a pattern); choose another name")


# -- checkpoints found by their files -------------------------------------------------


def checkpoint_steps(directory):
    """Steps of the checkpoints in ``directory`` (those with a ``ckpt-N.index`` file), ascending."""
    try:
        names = fs.listdir(directory)
    except OSError:
        return []
    steps = []
    for name in names:
        match = _INDEX_RE.match(name)
        if match and fs.isfile(fs.join(directory, name)):
            steps.append(int(match.group(1)))
    return sorted(steps)


def step_of_file(name):
    """The step of a checkpoint file name (``ckpt-N.index`` or ``ckpt-N.data-...``), or None."""
    match = _FILE_RE.match(name)
    return int(match.group(1)) if match else None


def checkpoint_path(directory, step):
    return fs.join(directory, f"{CHECKPOINT_PREFIX}-{step}")


def checkpoint_files(prefix):
    """The files of checkpoint ``prefix``: its ``.index`` and ``.data-*`` (listed literally)."""
    directory, base = os.path.split(prefix)
    try:
        names = fs.listdir(directory or ".")
    except OSError:
        return []
    return sorted(fs.join(directory, name) for name in names
                  if name == base + ".index" or name.startswith(base + ".data-"))


def latest_checkpoint(directory):
    """The newest checkpoint in ``directory`` by its files, or None."""
    steps = checkpoint_steps(directory)
    return checkpoint_path(directory, steps[-1]) if steps else None


def unfinished_saves(directory):
    """The ``ckpt-N_temp`` folders of saves killed half-way: TensorFlow writes a checkpoint
    there and renames it into place only when complete, so they are litter, never one."""
    return [fs.join(directory, name) for name in fs.listdir(directory)
            if _UNFINISHED_RE.match(name)]


def write_index(directory, paths):
    """Writes the ``checkpoint`` index naming ``paths`` (the last is the latest), atomically.

    The format TensorFlow's CheckpointManager writes, with names relative to
    ``directory`` so the folder can be moved.
    """
    names = [os.path.basename(p) for p in paths]
    text = f'model_checkpoint_path: "{names[-1]}"\n' + "".join(
        f'all_model_checkpoint_paths: "{name}"\n' for name in names)
    fs.write_atomic(fs.join(directory, INDEX_FILE), text)


def remove_checkpoint(prefix):
    """Deletes the files of checkpoint ``prefix``, the index first (so that a reader
    never finds an index without its data)."""
    for path in sorted(checkpoint_files(prefix), key=lambda p: not p.endswith(".index")):
        with contextlib.suppress(FileNotFoundError):
            fs.remove(path)


# -- small atomic files and strict reads -------------------------------------------------


def write_json(path, values):
    fs.write_atomic(path, json.dumps(values, indent=2, sort_keys=True) + "\n")


def open_regular(path, mode="r"):
    """Opens ``path`` for reading if it is a regular file; UserError if it is a FIFO, a
    device or a folder (which would hang or mislead a reader). FileNotFoundError as usual."""
    try:
        return fs.open_regular(path, mode)
    except fs.NotRegularFile as e:
        raise errors.UserError(str(e)) from None


def check_regular(path):
    """UserError unless ``path`` (which exists) is a regular file."""
    with open_regular(path, "rb"):
        pass


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path, fix):
    """The JSON value in file ``path``, or None if there is no such file; UserError if it
    cannot be read or parsed, ending with ``fix`` (what the user can do)."""
    try:
        with open_regular(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise errors.UserError(
            f"cannot read {path} ({getattr(e, 'strerror', None) or e}); {fix}") from None


def read_best(path):
    """A ``best.json`` (the record of a best checkpoint) or None if there is none;
    UserError if it is not one this toolkit wrote."""
    fix = "move it away to start a fresh record"
    best = read_json(path, fix)
    if best is not None and not (isinstance(best, dict) and is_int(best.get("step"))
                                 and is_number(best.get("precision_at_1"))):
        raise errors.UserError(
            f"{path} is not a best-checkpoint record of this toolkit (a JSON object with an "
            f"integer step and a precision_at_1); {fix}")
    return best


# -- which run ------------------------------------------------------------------------


def new_run_id():
    """A new run's identity: when it started and a random part, e.g. ``20261203-091502-3f2a9c``."""
    now = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{now}-{uuid.uuid4().hex[:6]}"


def read_config_values(train_dir):
    """The raw values of ``train_dir``'s config.json, or None if there is none.

    UserError if it cannot be read or is not a JSON object.
    """
    path = fs.join(train_dir, CONFIG_FILE)
    values = read_json(path, "it is not a config.json written by this toolkit")
    if values is not None and not isinstance(values, dict):
        raise errors.UserError(f"{path} is not a JSON object: not a config.json written by "
                               "this toolkit")
    return values


def dataset_of(train_dir):
    """The dataset named in ``train_dir``'s config.json, or None if there is no run there."""
    values = read_config_values(train_dir)
    if values is None:
        return None
    dataset = values.get("dataset")
    if not isinstance(dataset, str):
        raise errors.UserError(f"{fs.join(train_dir, CONFIG_FILE)} names no dataset: it "
                               "is not a config.json written by this toolkit")
    return dataset


# -- export folders ----------------------------------------------------------------------


def is_export(directory):
    """Whether ``directory`` is a SavedModel folder written by ``trainkit.export.save``:
    classifier.json of this toolkit beside saved_model.pb, and, at any depth, nothing an
    export does not write (``export_strays``)."""
    try:
        names = set(fs.listdir(directory))
        with open_regular(fs.join(directory, EXPORT_INFO_FILE)) as f:
            info = json.load(f)
    except (OSError, ValueError, errors.UserError):
        return False
    # Exports made before EXPORT_FORMAT was written carry these fields.
    ours = isinstance(info, dict) and (info.get("format") == EXPORT_FORMAT or {
        "class_names", "input", "checkpoint", "step"} <= set(info))
    return ours and "saved_model.pb" in names and not export_strays(directory)


_EXPORT_VARIABLES_RE = re.compile(r"^variables\.(index|data-\d+-of-\d+)$")


def export_strays(directory):
    """The files and folders in ``directory`` (relative paths, at any depth) that an export
    does not write: what replacing it would delete."""
    strays = []
    for name in sorted(fs.listdir(directory)):
        path = fs.join(directory, name)
        if name not in EXPORT_ENTRIES:
            strays.append(name)
        elif name in ("variables", "assets"):
            if not fs.isdir(path):
                strays.append(name)
                continue
            for inner in sorted(fs.listdir(path)):
                expected = (_EXPORT_VARIABLES_RE.match(inner) if name == "variables"
                            else inner == EXPORT_ASSET)
                if not expected or fs.isdir(fs.join(path, inner)):
                    strays.append(f"{name}/{inner}")
        elif fs.isdir(path):
            strays.append(name)
    return strays


def within(path, folder):
    """Whether ``path`` is ``folder`` or inside it, by resolved paths (symbolic links and
    relative spellings followed; a path with a scheme by its normalized form)."""
    path, folder = fs.realpath(path).rstrip("/"), fs.realpath(folder).rstrip("/")
    return path == folder or path.startswith(folder + "/")


def check_apart(train_dir, data_dir, what="--train_dir"):
    """UserError when a run's dir and its data dir overlap: one equal to, inside, or holding
    the other. The run's files (checkpoints, train/, eval/) would mix with the data, and a
    dataset that reads folders (images' class folders, train/ and test/) would take them
    for data."""
    if not data_dir:
        return
    if within(train_dir, data_dir):
        how = "is" if fs.realpath(train_dir) == fs.realpath(data_dir) else "is inside"
    elif within(data_dir, train_dir):
        how = "holds"
    else:
        return
    raise errors.UserError(
        f"{what}={train_dir} {how} the data dir {data_dir}: the run's files would mix with "
        f"the data; choose a {what} outside the data dir")


def check_export_dir(export_dir, train_dir, data_dir):
    """UserError unless ``export_dir`` may receive an export: absent, empty, or a
    previous export. Never a train dir, a data dir, nor a folder holding either."""
    target = fs.realpath(export_dir)
    for name, other in (("train dir", train_dir), ("data dir", data_dir)):
        other = fs.realpath(other) if other else None
        if other and (target == other or other.startswith(target.rstrip("/") + "/")):
            where = "is the run's " + name if target == other else f"holds the run's {name} {other}"
            raise errors.UserError(
                f"--export_dir={export_dir} {where}; an export there would replace it: choose "
                "a new folder (the default is TRAIN_DIR/export)")
    if data_dir and within(export_dir, data_dir):
        raise errors.UserError(
            f"--export_dir={export_dir} is inside the run's data dir {data_dir}; an export "
            "there would mix with the data: choose a folder outside it (the default is "
            "TRAIN_DIR/export)")
    check_path(export_dir, "--export_dir")
    if not fs.exists(export_dir):
        return
    if not fs.isdir(export_dir):
        raise errors.UserError(f"--export_dir={export_dir} is a file; choose a folder")
    names = sorted(fs.listdir(export_dir))
    if not names or is_export(export_dir):
        return
    strays = export_strays(export_dir)
    if CONFIG_FILE in names or checkpoint_steps(export_dir):
        what = "a train dir (config.json, checkpoints)"
    elif EXPORT_INFO_FILE in names and "saved_model.pb" in names:
        what = ("an earlier export holding files an export does not write (" + ", ".join(
            strays[:3]) + (", ..." if len(strays) > 3 else "") + "), which replacing it "
                "would delete; move them out first, or")
        raise errors.UserError(f"--export_dir={export_dir} is {what} choose another folder")
    else:
        what = "not an export of this toolkit (it holds " + ", ".join(names[:3]) + (
            ", ..." if len(names) > 3 else "") + ")"
    raise errors.UserError(f"--export_dir={export_dir} is {what}; an export there would "
                           "replace it: choose an empty or new folder")


def check_saved_model(directory, dataset):
    """UserError unless ``directory`` is an export of this toolkit made from a run of
    ``dataset`` (None: any) (``python -m DATASET.predict --saved_model=...``)."""
    how = "export one with python -m DATASET.export"
    check_path(directory, "--saved_model")
    if not fs.isdir(directory):
        raise errors.UserError(f"cannot load a SavedModel from {directory}: no such folder; "
                               + how)
    if not is_export(directory):
        raise errors.UserError(
            f"{directory} is not a SavedModel exported by this toolkit (no {EXPORT_INFO_FILE} "
            f"of ours beside saved_model.pb); {how}")
    exported_from = read_json(fs.join(directory, EXPORT_INFO_FILE), how).get("dataset")
    if dataset and exported_from and exported_from != dataset:
        raise errors.UserError(f"{directory} was exported from a {exported_from} run: use "
                               f"python -m {exported_from}.predict")


# -- paths TensorFlow would read as patterns --------------------------------------------------


def has_glob_chars(path):
    return any(c in GLOB_CHARS for c in path)


@contextlib.contextmanager
def glob_safe(path, parent=False):
    """An alias of ``path`` with no glob characters, valid inside the ``with``.

    ``parent=True`` aliases the folder of ``path`` (for a checkpoint prefix,
    whose own name ``ckpt-N`` is safe); otherwise ``path`` itself (a
    SavedModel folder). A path that is already safe is returned as it is.
    """
    if not fs.of(path).symlinks or not has_glob_chars(path):  # (see check_path)
        yield path
        return
    target = os.path.dirname(os.path.abspath(path)) if parent else os.path.abspath(path)
    alias_dir = tempfile.mkdtemp(prefix="trainkit-path-")
    try:
        alias = os.path.join(alias_dir, "d")
        os.symlink(target, alias)
        yield os.path.join(alias, os.path.basename(path)) if parent else alias
    finally:
        shutil.rmtree(alias_dir, ignore_errors=True)  # the link only, not what it points to


def move_previous_run(directory, other, keep=()):
    """Moves what ``directory`` holds of another run (id ``other``) into
    ``directory/previous-run-ID/``, out of the current run's way; returns that folder.

    Everything moves but the lock, the names in ``keep`` and earlier such
    folders. Nothing is deleted.
    """
    name = f"{PREVIOUS_RUN_PREFIX}{other or 'unknown'}"
    target, suffix = fs.join(directory, name), 1
    while fs.exists(target):
        suffix += 1
        target = fs.join(directory, f"{name}-{suffix}")
    fs.makedirs(target)
    for entry in fs.listdir(directory):
        if entry == LOCK_FILE or entry in keep or entry.startswith(PREVIOUS_RUN_PREFIX):
            continue
        source = fs.join(directory, entry)
        fs.move(source, fs.join(target, entry))
    return target


def main(argv):
    """``python -m trainkit.rundir dataset DIR``: prints the dataset of the run in DIR
    (nothing if there is none); the Makefile's way to find it without TensorFlow.
    ``python -m trainkit.rundir release DIR``: removes the lock of a dir whose holder is
    gone (check that first) but whose lease cannot run out here."""
    if len(argv) != 3 or argv[1] not in ("dataset", "release"):
        sys.stderr.write("usage: python -m trainkit.rundir dataset TRAIN_DIR\n"
                         "       python -m trainkit.rundir release DIR\n")
        return 2
    try:
        if argv[1] == "release":
            from trainkit import locks  # (which imports this module)
            print(f"released {argv[2]}: its lock named {locks.release(argv[2])}")
        else:
            print(dataset_of(argv[2]) or "")
    except errors.UserError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
