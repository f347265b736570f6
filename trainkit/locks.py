"""One writer per dir: the train dir's trainer, the eval dir's evaluator.

``hold(directory, role)`` returns the dir's ``Lock`` (a ``FlockLock``, or a
``LeaseLock`` where the filesystem has no flock), taken once by the entry
point and handed to the engine, which calls ``check()`` before each write.
"""

import atexit
import contextlib
import datetime
import errno
import json
import os
import socket
import sys
import threading
import time
import uuid

from trainkit import errors
from trainkit import fs
from trainkit.rundir import LOCK_FILE, check_path, unwritable

try:
    import fcntl
except ImportError:  # not a Unix: no locking
    fcntl = None

# A lease (see Lease) lasts this long unless renewed; it is renewed every third of it.
LEASE_SECS = float(os.environ.get("TRAINKIT_LEASE_SECS", "60"))

_held = set()  # realpaths of the dirs this process holds


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


def hold(directory, role, noun="train dir", what="--train_dir", create=True):
    """Makes ``directory`` if needed and locks it for this process; returns its ``Lock``
    (None if ``create`` is false and the directory does not exist): a ``FlockLock``
    where the filesystem has ``flock``, else a ``LeaseLock``.

    ``noun`` and ``what`` (the flag that names it) word the errors. UserError naming
    the holder if another process holds it, or if the directory cannot be made;
    RuntimeError for a dir this process holds already (a lock is taken once and handed
    on). Every spelling of a dir (``file://`` too: ``fs.local``) meets one lock.
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
    if fs.realpath(directory) in _held:
        raise RuntimeError(f"{directory} is already locked by this process: take a lock once "
                           "and hand it on")
    lock = (FlockLock if fs.of(directory).flock else LeaseLock)(directory, role, noun, what)
    _held.add(lock.key)
    return lock


class Lock:
    """The one writer's lock on a dir, from ``hold`` to ``release``. ``check()`` before
    each write says whether the dir is still this process's."""

    def __init__(self, directory, role, noun, what):
        self.directory, self.role, self.noun, self.what = directory, role, noun, what
        self.path = fs.join(directory, LOCK_FILE)
        self.key, self._released = fs.realpath(directory), False  # one key for every spelling

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
