"""The train dir and the eval dir as files: one writer each, checkpoints found by
their files, a run's identity, and paths taken literally.

Pure Python for a local dir (TensorFlow loads only for a path with a
scheme), so that an entry point can refuse a busy or foreign dir in a
fraction of a second, before TensorFlow loads.

* One writer per dir: ``hold(directory, role)`` returns the dir's ``Lock``,
  kept for the life of the process: a ``FlockLock``, an exclusive ``flock``
  on ``DIR/.lock`` that the kernel releases when the process ends in any way
  (``kill -9`` included), so a dir is never left locked; or, on a filesystem
  without ``flock`` (``gs://`` and the like), a ``LeaseLock``. The file
  holds who took it (role, pid, host, since when) for the message a second
  writer gets.
* Files go through ``trainkit.fs``: plain paths through ``os``, paths with
  a scheme through ``tf.io.gfile``.
* A run is recognised by its checkpoint files (``ckpt-N.index``), not only
  by the ``checkpoint`` index file, which a user can delete or garble.
* ``config.json`` carries a ``run_id``; everything that reads a train dir
  checks that what it finds (eval records, best checkpoints) belongs to it.
* An export replaces only an export: ``check_export_dir`` refuses a train
  dir, a data dir and any folder holding what an export does not.
* TensorFlow reads ``*``, ``?`` and ``[`` in a checkpoint or SavedModel path
  as a glob pattern. Everything here lists directories itself;
  ``glob_safe`` gives TensorFlow an alias of such a path that it reads
  literally (see ``trainkit.checkpoints.readable``); a path with a scheme
  and such characters is refused.
"""

import atexit
import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid

from trainkit import errors
from trainkit import fs

try:
    import fcntl
except ImportError:  # not a Unix: no locking
    fcntl = None

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
GLOB_CHARS = frozenset("*?[]\\")

EXPORT_INFO_FILE = "classifier.json"  # beside an export's saved_model.pb
EXPORT_FORMAT = "trainkit-classifier/1"  # in classifier.json: what wrote the folder
# What tf.saved_model.save writes, and classifier.json: all an export folder may hold.
EXPORT_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets", EXPORT_INFO_FILE}
EXPORT_ASSET = "class_names.txt"  # the one file of an export's assets/

# A lease (see Lease) lasts this long unless renewed; it is renewed every third of it.
LEASE_SECS = float(os.environ.get("TRAINKIT_LEASE_SECS", "60"))

_held = set()  # realpaths of the dirs this process holds


# -- one writer per dir ------------------------------------------------------------


def _describe(holder):
    try:
        return (f"another {holder['role']} (pid {holder['pid']} on {holder['host']}, "
                f"since {holder['since']})")
    except (KeyError, TypeError):
        return "another process (its details are not written yet)"


def _holder_text(path):
    try:
        with fs.open(path) as f:
            return _describe(json.load(f))
    except (OSError, ValueError):
        return _describe(None)


def _holder(role):
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return {"role": role, "pid": os.getpid(), "host": socket.gethostname(), "since": since}


def unwritable(directory, error, noun="train dir", what="--train_dir"):
    """The one line for a dir this toolkit cannot write to (``error``: an OSError or a
    reason), naming the dir, the cause and the flag that chooses another."""
    reason = error if isinstance(error, str) else getattr(error, "strerror", None) or error
    return errors.UserError(f"cannot write to {noun} {directory}: {reason}; choose a writable "
                            f"{what}")


def hold(directory, role, noun="train dir", what="--train_dir", create=True):
    """Makes ``directory`` if needed and locks it for this process; returns its ``Lock``
    (None if ``create`` is false and the directory does not exist): a ``FlockLock``
    where the filesystem has ``flock``, else a ``LeaseLock``.

    ``noun`` and ``what`` (the flag that names it) word the errors. Raises
    UserError naming the holder if another process holds it, or if the
    directory cannot be made. A process takes each lock once, in its entry
    point, and hands it to the engine: a second ``hold`` of a dir this
    process holds is a RuntimeError. A ``file://`` URI is the local dir it
    names (``fs.local``): every spelling meets one ``flock``.
    """
    directory = fs.local(directory)
    check_path(directory, what)
    try:
        if not create and not fs.isdir(directory):
            return None
        fs.makedirs(directory)
    except fs.Unreachable:
        raise  # its own line (trainkit.flags.run)
    except OSError as e:
        raise unwritable(directory, e, noun, what) from None
    key = fs.realpath(directory)
    if key in _held:
        raise RuntimeError(f"{directory} is already locked by this process: take a lock once "
                           "and hand it on")
    lock = (FlockLock if fs.of(directory).flock else LeaseLock)(directory, role, noun, what)
    _held.add(key)
    lock.key = key
    return lock


class Lock:
    """The one writer's lock on a dir, from ``hold`` to ``release``. ``check()`` before
    each write says whether the dir is still this process's."""

    def __init__(self, directory, role, noun, what):
        self.directory, self.role, self.noun, self.what = directory, role, noun, what
        self.path = fs.join(directory, LOCK_FILE)
        self.key, self._released = None, False

    def still_held(self):
        """Whether the dir's lock is still this one (not deleted, replaced or taken over)."""
        raise NotImplementedError

    def _close(self):
        raise NotImplementedError

    def check(self):
        """UserError when the dir's lock was deleted or replaced since it was taken (a
        ``.lock`` removed by hand, a lease taken over): another process may write there
        now, so the holder must stop before it writes anything."""
        if self._released or self.still_held():
            return
        now = _holder_text(self.path)
        raise errors.UserError(
            f"the lock of {self.noun} {self.directory} ({self.path}) was deleted or replaced "
            f"while this {self.role} held it" + (
                f" (it now names {now})" if "details are not written" not in now else "")
            + f": another process may write there now, so this {self.role} stopped without "
            "writing; once no other process uses the dir, start again"
            + (" with --resume (the steps since the last checkpoint are lost)"
               if self.role == "trainer" else ""))

    def release(self):
        if not self._released:
            self._released = True
            _held.discard(self.key)
            self._close()


class FlockLock(Lock):
    """An exclusive ``flock`` on ``DIR/.lock``, which the kernel drops when the process
    ends in any way."""

    def __init__(self, directory, role, noun, what):
        super().__init__(directory, role, noun, what)
        self.fd = _flock(self.path, directory, role, noun, what)

    def still_held(self):
        return _same_file(self.fd, self.path)

    def _close(self):
        os.close(self.fd)  # closing the descriptor unlocks


class LeaseLock(Lock):
    """A ``Lease`` on ``DIR/.lock``, for a filesystem without ``flock``."""

    def __init__(self, directory, role, noun, what):
        super().__init__(directory, role, noun, what)
        self.lease = Lease(self.path, _holder(role))
        try:
            self.lease.acquire()
        except LeaseTaken as e:
            raise errors.UserError(f"{noun} {directory} is in use by {_describe(e.holder)}; "
                                   + _lease_hint(e.holder, directory, what)) from None
        except fs.Unreachable:
            raise
        except OSError as e:
            raise unwritable(directory, e, noun, what) from None

    def still_held(self):
        current = self.lease.read()
        return current is not None and current.get("token") == self.lease.holder["token"]

    def _close(self):
        self.lease.release()


def _flock(path, directory, role, noun, what):
    """An open descriptor of ``path`` holding its exclusive ``flock``, with the holder written
    in it. The file is locked only once it is the one the path names (a ``.lock`` deleted
    or replaced in between is opened again)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise unwritable(directory, e, noun, what) from None
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
                print(f"warning: {directory} cannot be locked here ({e.strerror}); make sure "
                      f"no other {role} uses it", file=sys.stderr)
        if _same_file(fd, path):
            break
        os.close(fd)  # locked a file that was just deleted or replaced: lock the new one
    holder = json.dumps(_holder(role)) + "\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
    except OSError:
        pass  # the lock holds without its description
    return fd


def _same_file(fd, path):
    """Whether open descriptor ``fd`` is the file ``path`` names now."""
    try:
        now, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _lease_hint(holder, directory, what):
    """What to do about a lease another process holds: wait, or, for one renewed by a clock
    ahead of ours (which would never run out here), check that its holder is gone and
    release it."""
    try:
        ahead = float(holder["renewed"]) - time.time()
    except (KeyError, TypeError, ValueError):
        ahead = 0.0
    if ahead > LEASE_SECS:
        return (f"its last renewal is {ahead:.0f} s ahead of this host's clock (the hosts' "
                "clocks differ), so it will not run out here: if that holder is gone, release "
                f"the dir with 'python -m trainkit.rundir release {directory}' and start again")
    return (f"wait for it to end (a stopped holder's lease runs out {LEASE_SECS:.0f} s after "
            f"its last renewal) or stop it, or choose another {what}")


class LeaseTaken(Exception):
    """Another live process holds the lease."""

    def __init__(self, holder):
        super().__init__(_describe(holder))
        self.holder = holder


class Lease:
    """A lock by lease, for filesystems without ``flock`` (object stores, HDFS, ``ram://``).

    The lease file holds its holder, a random token and when it was last
    renewed; a thread renews it every third of ``LEASE_SECS``. Another
    process takes it over only once it has gone unrenewed for ``LEASE_SECS``
    by the taker's clock, or at once when its holder was a process of this
    host that is gone. A taker writes its claim, waits a moment and reads it
    back, so of two takers at once the later write wins and the other
    refuses. Limits: hosts' clocks must agree to well within the lease; the
    filesystem must show a write to every reader at once (Google Cloud
    Storage, HDFS and local files do); a holder stalled for longer than the
    lease loses it, and then ends at once rather than write beside the new one.
    """

    def __init__(self, path, holder, lease_secs=None, on_lost=None):
        self.path = path
        self.holder = dict(holder, token=uuid.uuid4().hex)
        self.lease_secs = lease_secs or LEASE_SECS
        self.on_lost = on_lost or _end_process
        self._stop = threading.Event()
        self._thread = None

    def read(self):
        """The lease as written, or None if there is none (or it is not one)."""
        try:
            with fs.open(self.path) as f:
                value = json.load(f)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def expired(self, current, now=None):
        now = time.time() if now is None else now
        if "renewed" not in current and "pid" in current:
            # A flock holder's record (the dir reached through a scheme here and as a
            # local path by its holder): taken over only if that process is gone.
            try:
                return (current["host"] == socket.gethostname()
                        and not _alive(int(current["pid"])))
            except (KeyError, TypeError, ValueError):
                return False
        try:
            if now > float(current["renewed"]) + float(current["lease_secs"]):
                return True
            if current["host"] == socket.gethostname() and current["pid"] != os.getpid():
                return not _alive(int(current["pid"]))
        except (KeyError, TypeError, ValueError):
            return True  # not a lease of ours: a torn write
        return False

    def _write(self):
        fs.write_atomic(self.path, json.dumps(dict(self.holder, renewed=time.time(),
                                                   lease_secs=self.lease_secs)) + "\n")

    def acquire(self):
        current = self.read()
        if current is not None and not self.expired(current):
            raise LeaseTaken(current)
        self._write()
        time.sleep(min(1.0, self.lease_secs / 20))
        current = self.read()
        if current is None or current.get("token") != self.holder["token"]:
            raise LeaseTaken(current)
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._thread.start()
        atexit.register(self.release)  # a process ending normally gives its lease back

    def _renew(self):
        last = time.time()
        while not self._stop.wait(self.lease_secs / 3):
            current = self.read()
            if current is not None and current.get("token") != self.holder["token"]:
                return self.on_lost(self, current)
            try:
                self._write()
                last = time.time()
            except OSError:
                if time.time() > last + self.lease_secs:
                    return self.on_lost(self, current)

    def release(self):
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = self.read()
        if current is not None and current.get("token") == self.holder["token"]:
            with contextlib.suppress(OSError):
                fs.remove(self.path)


def holder_gone(directory):
    """Whether the process that last locked ``directory`` was of this host and has ended
    (False when it runs, or when that cannot be told: another host, no lock file)."""
    try:
        with fs.open(fs.join(directory, LOCK_FILE)) as f:
            holder = json.load(f)
        if holder["host"] != socket.gethostname():
            return False
        return not _alive(int(holder["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def _end_process(lease, current):
    sys.stderr.write(f"error: lost the lease of {os.path.dirname(lease.path)} to "
                     f"{_describe(current)} (not renewed within {lease.lease_secs:.0f} s); "
                     "ending now so that two writers never share it\n")
    sys.stderr.flush()
    os._exit(75)


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


def release(directory):
    """Removes ``directory``'s lock file, for a holder that is gone but whose lease cannot
    run out here (its host's clock is ahead). A local dir whose ``flock`` a live process
    holds is refused. Returns what the lock file said."""
    directory = fs.local(directory)
    path = fs.join(directory, LOCK_FILE)
    if not fs.exists(path):
        raise errors.UserError(f"{directory} has no lock file ({LOCK_FILE}): nothing to release")
    said = _holder_text(path)
    if fs.of(directory).flock and fcntl is not None:
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise errors.UserError(f"{directory} is in use by {said}: it holds its lock; "
                                   "stop it instead") from None
        finally:
            os.close(fd)
    fs.remove(path)
    return said


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
            print(f"released {argv[2]}: its lock named {release(argv[2])}")
        else:
            print(dataset_of(argv[2]) or "")
    except errors.UserError as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
