"""The train dir and the eval dir as files: one writer each, checkpoints found by
their files, a run's identity, and paths taken literally.

Pure Python (no TensorFlow), so that an entry point can refuse a busy or
foreign dir in a fraction of a second, before TensorFlow loads.

* One writer per dir: ``hold(directory, role)`` takes an exclusive
  ``flock`` on ``DIR/.lock`` and keeps it for the life of the process. The
  kernel releases it when the process ends in any way (``kill -9``
  included), so a dir is never left locked. The file holds who took it
  (role, pid, host, since when) for the message a second writer gets.
* A run is recognised by its checkpoint files (``ckpt-N.index``), not only
  by the ``checkpoint`` index file, which a user can delete or garble.
* ``config.json`` carries a ``run_id``; everything that reads a train dir
  checks that what it finds (eval records, best checkpoints) belongs to it.
* An export replaces only an export: ``check_export_dir`` refuses a train
  dir, a data dir and any folder holding what an export does not.
* TensorFlow reads ``*``, ``?`` and ``[`` in a checkpoint or SavedModel path
  as a glob pattern. Everything here lists directories with ``os.listdir``;
  ``glob_safe`` gives TensorFlow an alias of such a path that it reads
  literally (see ``trainkit.checkpoints.readable``).
"""

import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import uuid

from trainkit import errors

try:
    import fcntl
except ImportError:  # not a Unix: no locking
    fcntl = None

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
CHECKPOINT_PREFIX = "ckpt"
PREVIOUS_RUN_PREFIX = "previous-run-"  # see move_previous_run
BEST_FILE = "best.json"  # the record of a best checkpoint, beside it
INDEX_FILE = "checkpoint"  # the CheckpointManager-format list of checkpoints
_INDEX_RE = re.compile(r"^ckpt-(\d+)\.index$")
_FILE_RE = re.compile(r"^ckpt-(\d+)\.(index|data-\d+-of-\d+)$")
GLOB_CHARS = frozenset("*?[]\\")

EXPORT_INFO_FILE = "classifier.json"  # beside an export's saved_model.pb
EXPORT_FORMAT = "trainkit-classifier/1"  # in classifier.json: what wrote the folder
# What tf.saved_model.save writes, and classifier.json: all an export folder may hold.
EXPORT_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets", EXPORT_INFO_FILE}

_held = {}  # realpath of a locked dir -> [file descriptor, holds]


# -- one writer per dir ------------------------------------------------------------


def _holder_text(path):
    try:
        with open(path) as f:
            holder = json.load(f)
        return (f"another {holder['role']} (pid {holder['pid']} on {holder['host']}, "
                f"since {holder['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its details are not written yet)"


def hold(directory, role, noun="train dir", what="--train_dir", create=True):
    """Makes ``directory`` if needed and locks it for this process; returns a ``Hold``
    (None if ``create`` is false and the directory does not exist).

    ``noun`` and ``what`` (the flag that names it) word the errors.

    Raises UserError naming the holder if another process holds it, or if
    the directory cannot be made. Holding the same dir again in this process
    only counts (``release`` the same number of times).
    """
    if not create and not os.path.isdir(directory):
        return None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise errors.UserError(f"cannot write to {noun} {directory}: {e.strerror or e}; "
                               f"choose a writable {what}") from None
    key = os.path.realpath(directory)
    if key in _held:
        _held[key][1] += 1
        return Hold(key)
    path = os.path.join(directory, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise errors.UserError(f"cannot write to {noun} {directory}: {e.strerror or e}; "
                               f"choose a writable {what}") from None
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise errors.UserError(
                f"{noun} {directory} is in use by {_holder_text(path)}; wait for it to end "
                f"or stop it, or choose another {what}") from None
        except OSError as e:  # a file system without flock
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            print(f"warning: {directory} cannot be locked here ({e.strerror}); make sure no "
                  f"other {role} uses it", file=sys.stderr)
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    holder = json.dumps({"role": role, "pid": os.getpid(), "host": socket.gethostname(),
                         "since": since}) + "\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
    except OSError:
        pass  # the lock holds without its description
    _held[key] = [fd, 1]
    return Hold(key)


class Hold:
    """A lock taken by ``hold``; ``release()`` gives it back (the last release unlocks)."""

    def __init__(self, key):
        self._key = key
        self._released = False

    def release(self):
        if self._released or self._key not in _held:
            return
        self._released = True
        entry = _held[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[self._key]
            os.close(entry[0])  # closing the descriptor unlocks


# -- checkpoints found by their files -------------------------------------------------


def checkpoint_steps(directory):
    """Steps of the checkpoints in ``directory`` (those with a ``ckpt-N.index`` file), ascending."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    steps = []
    for name in names:
        match = _INDEX_RE.match(name)
        if match and os.path.isfile(os.path.join(directory, name)):
            steps.append(int(match.group(1)))
    return sorted(steps)


def step_of_file(name):
    """The step of a checkpoint file name (``ckpt-N.index`` or ``ckpt-N.data-...``), or None."""
    match = _FILE_RE.match(name)
    return int(match.group(1)) if match else None


def checkpoint_path(directory, step):
    return os.path.join(directory, f"{CHECKPOINT_PREFIX}-{step}")


def checkpoint_files(prefix):
    """The files of checkpoint ``prefix``: its ``.index`` and ``.data-*`` (listed literally)."""
    directory, base = os.path.split(prefix)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    return sorted(os.path.join(directory, name) for name in names
                  if name == base + ".index" or name.startswith(base + ".data-"))


def latest_checkpoint(directory):
    """The newest checkpoint in ``directory`` by its files, or None."""
    steps = checkpoint_steps(directory)
    return checkpoint_path(directory, steps[-1]) if steps else None


def write_index(directory, paths):
    """Writes the ``checkpoint`` index naming ``paths`` (the last is the latest), atomically.

    The format TensorFlow's CheckpointManager writes, with names relative to
    ``directory`` so the folder can be moved.
    """
    names = [os.path.basename(p) for p in paths]
    text = f'model_checkpoint_path: "{names[-1]}"\n' + "".join(
        f'all_model_checkpoint_paths: "{name}"\n' for name in names)
    write_atomic(os.path.join(directory, INDEX_FILE), text)


def remove_checkpoint(prefix):
    """Deletes the files of checkpoint ``prefix``, the index first (so that a reader
    never finds an index without its data)."""
    for path in sorted(checkpoint_files(prefix), key=lambda p: not p.endswith(".index")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# -- small atomic files and strict reads -------------------------------------------------


def write_atomic(path, text):
    """Writes ``text`` to ``path`` so that a reader sees the old file or the new, never half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json(path, values):
    write_atomic(path, json.dumps(values, indent=2, sort_keys=True) + "\n")


def open_regular(path, mode="r"):
    """Opens ``path`` for reading if it is a regular file; UserError if it is a FIFO, a
    device or a folder (which would hang or mislead a reader). FileNotFoundError as usual."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise errors.UserError(
                f"{path} is {_kind(kind)}, not a regular file; put the real file there")
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


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
    path = os.path.join(train_dir, CONFIG_FILE)
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
        raise errors.UserError(f"{os.path.join(train_dir, CONFIG_FILE)} names no dataset: it "
                               "is not a config.json written by this toolkit")
    return dataset


# -- export folders ----------------------------------------------------------------------


def is_export(directory):
    """Whether ``directory`` is a SavedModel folder written by ``trainkit.export.save``:
    classifier.json of this toolkit beside saved_model.pb, and nothing an export does
    not hold."""
    try:
        names = set(os.listdir(directory))
        with open_regular(os.path.join(directory, EXPORT_INFO_FILE)) as f:
            info = json.load(f)
    except (OSError, ValueError, errors.UserError):
        return False
    # Exports made before EXPORT_FORMAT was written carry these fields.
    ours = isinstance(info, dict) and (info.get("format") == EXPORT_FORMAT or {
        "class_names", "input", "checkpoint", "step"} <= set(info))
    return ours and "saved_model.pb" in names and names <= EXPORT_ENTRIES


def check_export_dir(export_dir, train_dir, data_dir):
    """UserError unless ``export_dir`` may receive an export: absent, empty, or a
    previous export. Never a train dir, a data dir, nor a folder holding either."""
    target = os.path.realpath(export_dir)
    for name, other in (("train dir", train_dir), ("data dir", data_dir)):
        other = os.path.realpath(other) if other else None
        if other and (target == other or other.startswith(target.rstrip(os.sep) + os.sep)):
            where = "is the run's " + name if target == other else f"holds the run's {name} {other}"
            raise errors.UserError(
                f"--export_dir={export_dir} {where}; an export there would replace it: choose "
                "a new folder (the default is TRAIN_DIR/export)")
    if not os.path.exists(export_dir):
        return
    if not os.path.isdir(export_dir):
        raise errors.UserError(f"--export_dir={export_dir} is a file; choose a folder")
    names = sorted(os.listdir(export_dir))
    if not names or is_export(export_dir):
        return
    if CONFIG_FILE in names or checkpoint_steps(export_dir):
        what = "a train dir (config.json, checkpoints)"
    else:
        what = "not an export of this toolkit (it holds " + ", ".join(names[:3]) + (
            ", ..." if len(names) > 3 else "") + ")"
    raise errors.UserError(f"--export_dir={export_dir} is {what}; an export there would "
                           "replace it: choose an empty or new folder")


def check_saved_model(directory, dataset):
    """UserError unless ``directory`` is an export of this toolkit made from a run of
    ``dataset`` (None: any) (``python -m DATASET.predict --saved_model=...``)."""
    how = "export one with python -m DATASET.export"
    if not os.path.isdir(directory):
        raise errors.UserError(f"cannot load a SavedModel from {directory}: no such folder; "
                               + how)
    if not is_export(directory):
        raise errors.UserError(
            f"{directory} is not a SavedModel exported by this toolkit (no {EXPORT_INFO_FILE} "
            f"of ours beside saved_model.pb); {how}")
    exported_from = read_json(os.path.join(directory, EXPORT_INFO_FILE), how).get("dataset")
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
    if not has_glob_chars(path):
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
    target, suffix = os.path.join(directory, name), 1
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(directory, f"{name}-{suffix}")
    os.makedirs(target)
    for entry in os.listdir(directory):
        if entry == LOCK_FILE or entry in keep or entry.startswith(PREVIOUS_RUN_PREFIX):
            continue
        os.replace(os.path.join(directory, entry), os.path.join(target, entry))
    return target


def main(argv):
    """``python -m trainkit.rundir dataset DIR``: prints the dataset of the run in DIR
    (nothing if there is none); the Makefile's way to find it without TensorFlow."""
    if len(argv) != 3 or argv[1] != "dataset":
        sys.stderr.write("usage: python -m trainkit.rundir dataset TRAIN_DIR\n")
        return 2
    try:
        print(dataset_of(argv[2]) or "")
    except errors.UserError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
