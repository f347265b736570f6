"""File operations on the train, eval, data and export dirs, on any filesystem
TensorFlow has registered.

A path with a scheme (``gs://``, ``s3://``, ``hdfs://``, ``ram://``,
``file://``) goes through ``tf.io.gfile``; a plain local path goes through
Python's ``os``, which needs no TensorFlow (the entry points refuse a busy
dir before TensorFlow loads) and allows the checks only a local filesystem
has (``flock``, FIFOs, hard links). Both raise ``OSError`` subclasses
(``FileNotFoundError`` for a missing file), so callers handle one kind.

Atomic replace: ``write_atomic`` and ``replace`` rename a finished file over
the old one, which is atomic on a local filesystem and on HDFS. An object
store (``gs://``, ``s3://``) has no rename: a rename there is a copy and a
delete, but every object is written whole, so ``write_atomic`` writes the
object directly and a reader sees the old file or the new, never half.
A folder on such a store moves file by file (``move_tree``): a reader can
see it half moved, which is why the evaluator's best checkpoint is named by
``best.json``, written last.
"""

import contextlib
import errno
import io
import os
import shutil
import stat

OBJECT_STORES = ("gs://", "s3://")


def is_remote(path):
    """Whether ``path`` names a file through a TensorFlow filesystem scheme."""
    return "://" in str(path)


def local(path):
    """A ``file://`` URI as the local path it names, any other path as it is: the local disk
    has one spelling, so that one lock, one set of checks and ``flock`` meet every name of
    a dir. ValueError for a ``file://`` URI of another host."""
    if not isinstance(path, str) or not path.startswith("file://"):
        return path
    host, _, rest = path[len("file://"):].partition("/")
    if host not in ("", "localhost"):
        raise ValueError(f"{path} names a file on host {host!r}; a file:// path must be on "
                         "this machine (file:///PATH)")
    return "/" + rest


_plugins = []  # whether the filesystem plugins were looked for


def _gfile():
    import tensorflow as tf  # only paths with a scheme need it
    if not _plugins:
        _plugins.append(True)
        try:  # tensorflow-io, where installed, registers s3://, hdfs:// and more
            import tensorflow_io  # noqa: F401
        except (ImportError, OSError, NotImplementedError):
            pass
    return tf.io.gfile


class Unreachable(OSError):
    """A filesystem with a scheme failed: not registered here, unreachable, or refusing."""


def _errors():
    import tensorflow as tf
    return tf.errors


@contextlib.contextmanager
def _as_oserror(path):
    """Turns TensorFlow's filesystem errors into the matching ``OSError``."""
    tf_errors = _errors()
    try:
        yield
    except tf_errors.NotFoundError as e:
        raise FileNotFoundError(errno.ENOENT, _first_line(e), str(path)) from None
    except tf_errors.AlreadyExistsError as e:
        raise FileExistsError(errno.EEXIST, _first_line(e), str(path)) from None
    except tf_errors.PermissionDeniedError as e:
        raise PermissionError(errno.EACCES, _first_line(e), str(path)) from None
    except tf_errors.OpError as e:
        raise Unreachable(errno.EIO, _first_line(e), str(path)) from None


def _first_line(error):
    lines = str(error.message).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def join(*parts):
    return os.path.join(*parts)


def normpath(path):
    """``path`` without redundant separators (``os.path.normpath`` would turn ``gs://b``
    into ``gs:/b``)."""
    if is_remote(path):
        scheme, rest = path.split("://", 1)
        root = "/" if rest.startswith("/") else ""  # file:///tmp/x: no host, an absolute path
        return f"{scheme}://{root}" + "/".join(p for p in rest.split("/") if p not in ("", "."))
    return os.path.normpath(path)


def realpath(path):
    """A key naming ``path`` uniquely: the resolved local path, or the normalized URI."""
    return normpath(path) if is_remote(path) else os.path.realpath(path)


def exists(path):
    if is_remote(path):
        with _as_oserror(path):
            gfile = _gfile()
            path = path.rstrip("/")
            return gfile.exists(path) and (not gfile.isdir(path) or _listed(path))
    return os.path.exists(path)


def isdir(path):
    if is_remote(path):
        with _as_oserror(path):
            path = path.rstrip("/")
            gfile = _gfile()  # (exists, unlike isdir, raises where the filesystem fails)
            return gfile.exists(path) and gfile.isdir(path) and _listed(path)
    return os.path.isdir(path)


def _listed(path):
    """Whether folder ``path`` is listed in its parent. Some filesystems (``ram://``)
    call any prefix of a file's name a folder: ``x/a`` would exist beside ``x/a.gz``."""
    parent, name = path.rsplit("/", 1)
    if parent.endswith((":/", "://")):  # a bucket, or the root of the filesystem
        return True
    try:
        return name in {entry.rstrip("/") for entry in _gfile().listdir(parent)}
    except _errors().NotFoundError:
        return False


def isfile(path):
    if is_remote(path):
        with _as_oserror(path):
            gfile = _gfile()  # (a file is never a folder, even on ram://: no listing needed)
            return gfile.exists(path) and not gfile.isdir(path)
    return os.path.isfile(path)


def listdir(path):
    """Names in folder ``path``; FileNotFoundError if there is no such folder."""
    if is_remote(path):
        gfile = _gfile()
        with _as_oserror(path):
            if not gfile.isdir(path):
                raise FileNotFoundError(errno.ENOENT, "no such folder", path)
            return [name.rstrip("/") for name in gfile.listdir(path)]
    return os.listdir(path)


def makedirs(path):
    """Makes folder ``path`` and its parents; nothing if it is there."""
    if is_remote(path):
        with _as_oserror(path):
            _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def remove(path):
    """Deletes file ``path``; FileNotFoundError if it is not there."""
    if is_remote(path):
        with _as_oserror(path):
            _gfile().remove(path)
    else:
        os.remove(path)


def rmtree(path):
    """Deletes folder ``path`` and all it holds, quietly (nothing if it is not there)."""
    if is_remote(path):
        with contextlib.suppress(OSError), _as_oserror(path):
            if _gfile().exists(path):
                _gfile().rmtree(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace(source, target):
    """Renames file ``source`` to ``target``, replacing it (atomic where renames are)."""
    if is_remote(source) or is_remote(target):
        with _as_oserror(source):
            _gfile().rename(source, target, overwrite=True)
    else:
        os.replace(source, target)


def move_tree(source, target):
    """Moves folder ``source`` to ``target`` (which must not exist). One rename locally;
    file by file on a filesystem with a scheme (some, ``ram://`` among them, do not
    move a folder's files with the folder)."""
    if not (is_remote(source) or is_remote(target)):
        os.replace(source, target)
        return
    gfile = _gfile()
    with _as_oserror(source):
        for folder, _, names in list(gfile.walk(source)):
            relative = folder[len(source):].lstrip("/")
            destination = join(target, relative) if relative else target
            gfile.makedirs(destination)
            for name in names:
                gfile.rename(join(folder, name), join(destination, name), overwrite=True)
        gfile.rmtree(source)


def copy(source, target):
    """Copies file ``source`` to ``target``, replacing it."""
    if is_remote(source) or is_remote(target):
        with _as_oserror(source):
            _gfile().copy(source, target, overwrite=True)
    else:
        shutil.copyfile(source, target)


def getsize(path):
    if is_remote(path):
        with _as_oserror(path):
            return _gfile().stat(path).length
    return os.path.getsize(path)


def signature(path):
    """``(size, modification time)`` of file ``path``, to notice that it changed."""
    if is_remote(path):
        with _as_oserror(path):
            st = _gfile().stat(path)
        return st.length, st.mtime_nsec
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def open(path, mode="r"):  # noqa: A001 -- the module's open, as io.open
    """A file object for ``path`` (``GFile`` for a path with a scheme). Appending to an
    object store is not possible: use ``append``."""
    if is_remote(path):
        with _as_oserror(path):
            return _RemoteFile(_gfile().GFile(path, mode), path)
    return io.open(path, mode)


class _RemoteFile:
    """A ``GFile`` whose errors are ``OSError``s."""

    def __init__(self, file, path):
        self._file, self._path = file, path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        attribute = getattr(self._file, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            with _as_oserror(self._path):
                return attribute(*args, **kwargs)
        return call

    def __iter__(self):
        with _as_oserror(self._path):
            yield from self._file

    def close(self):
        with _as_oserror(self._path):
            self._file.close()


def open_regular(path, mode="r"):
    """Opens ``path`` for reading if it is a regular file; ``NotRegularFile`` if it is a
    FIFO, a device or a folder (which would hang or mislead a reader)."""
    if is_remote(path):
        if isdir(path):
            raise NotRegularFile(path, "a folder")
        return open(path, mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens without waiting
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise NotRegularFile(path, _kind(kind))
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


class NotRegularFile(Exception):
    """``path`` is a folder, a FIFO, a device or a socket where a file belongs."""

    def __init__(self, path, kind):
        super().__init__(f"{path} is {kind}, not a regular file; put the real file there")
        self.path, self.kind = path, kind


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


def read_bytes(path):
    with open_regular(path, "rb") as f:
        return f.read()


def write_atomic(path, data):
    """Writes ``data`` (str or bytes) to ``path`` so that a reader sees the old file or
    the new, never half (see the module docstring)."""
    mode = "wb" if isinstance(data, bytes) else "w"
    if path.startswith(OBJECT_STORES):
        with open(path, mode) as f:
            f.write(data)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            f.write(data)
        replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove(tmp)
        raise


def append(path, text):
    """Appends ``text`` to file ``path`` and makes it durable. On a filesystem with a
    scheme the whole file is rewritten (an object store cannot append)."""
    if is_remote(path):
        try:
            with open(path, "r") as f:
                old = f.read()
        except FileNotFoundError:
            old = ""
        write_atomic(path, old + text)
        return
    with io.open(path, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())

