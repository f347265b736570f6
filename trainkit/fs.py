"""File operations on the train, eval, data and export dirs, on any filesystem
TensorFlow has registered.

Each path belongs to one ``Filesystem`` (``of(path)``: ``LOCAL``, ``SCHEME``
or ``OBJECT_STORE``), which declares what it can do; callers test a
capability, never the kind of path. Every one raises ``OSError`` subclasses.
"""

import contextlib
import errno
import io
import os
import shutil
import stat


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


class Unreachable(OSError):
    """A filesystem with a scheme failed: not registered here, unreachable, or refusing."""


class NotRegularFile(Exception):
    """``path`` is a folder, a FIFO, a device or a socket where a file belongs."""

    def __init__(self, path, kind):
        super().__init__(f"{path} is {kind}, not a regular file; put the real file there")
        self.path, self.kind = path, kind


class Filesystem:
    """What a filesystem can do; the subclasses implement the operations."""

    flock = False  # an exclusive lock the kernel drops when its holder ends (else a lease)
    atomic_rename = False  # a rename replaces a file at once (else objects are written whole)
    hard_links = False  # a file can have two names (else it is copied)
    append = False  # a file can grow in place (else it is rewritten whole)
    symlinks = False  # a folder can have an alias (else paths are taken as TensorFlow reads them)
    local = False  # Python's os, tarfile and numpy's memmap can use the path directly


class _Local(Filesystem):
    flock = atomic_rename = hard_links = append = symlinks = local = True

    exists, isdir, isfile, islink = (staticmethod(os.path.exists), staticmethod(os.path.isdir),
                                     staticmethod(os.path.isfile), staticmethod(os.path.islink))
    listdir, remove, link = staticmethod(os.listdir), staticmethod(os.remove), staticmethod(os.link)
    replace = move = staticmethod(os.replace)  # a folder moves with one rename
    copy = staticmethod(shutil.copyfile)
    normpath, realpath = staticmethod(os.path.normpath), staticmethod(os.path.realpath)
    abspath, getsize = staticmethod(os.path.abspath), staticmethod(os.path.getsize)

    def makedirs(self, path):
        os.makedirs(path, exist_ok=True)

    def rmtree(self, path):
        shutil.rmtree(path, ignore_errors=True)

    def relpath(self, path, root):
        return os.path.relpath(os.path.abspath(path), os.path.abspath(root))

    def signature(self, path):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns

    def open(self, path, mode="r"):
        return io.open(path, mode)

    def open_regular(self, path, mode="r"):
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

    def append_text(self, path, text):
        with io.open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


class _Scheme(Filesystem):
    """A filesystem TensorFlow registered (``tf.io.gfile``), its errors as ``OSError``s."""

    atomic_rename = True  # HDFS, ram://; object stores below

    def __init__(self):
        self._plugins_loaded = False

    def _gfile(self):
        import tensorflow as tf  # only paths with a scheme need it
        if not self._plugins_loaded:
            self._plugins_loaded = True
            try:  # tensorflow-io, where installed, registers s3://, hdfs:// and more
                import tensorflow_io  # noqa: F401
            except (ImportError, OSError, NotImplementedError):
                pass
        return tf.io.gfile

    def exists(self, path):
        with _as_oserror(path):
            path = path.rstrip("/")
            gfile = self._gfile()
            return gfile.exists(path) and (not gfile.isdir(path) or self._listed(path))

    def isdir(self, path):
        with _as_oserror(path):
            path = path.rstrip("/")
            gfile = self._gfile()  # (exists, unlike isdir, raises where the filesystem fails)
            return gfile.exists(path) and gfile.isdir(path) and self._listed(path)

    def _listed(self, path):
        """Whether folder ``path`` is listed in its parent. Some filesystems (``ram://``)
        call any prefix of a file's name a folder: ``x/a`` would exist beside ``x/a.gz``."""
        parent, name = path.rsplit("/", 1)
        if parent.endswith((":/", "://")):  # a bucket, or the root of the filesystem
            return True
        try:
            return name in {entry.rstrip("/") for entry in self._gfile().listdir(parent)}
        except _errors().NotFoundError:
            return False

    def isfile(self, path):
        with _as_oserror(path):
            gfile = self._gfile()  # (a file is never a folder, even on ram://: no listing needed)
            return gfile.exists(path) and not gfile.isdir(path)

    def islink(self, path):
        return False

    def listdir(self, path):
        gfile = self._gfile()
        with _as_oserror(path):
            if not gfile.isdir(path):
                raise FileNotFoundError(errno.ENOENT, "no such folder", path)
            return [name.rstrip("/") for name in gfile.listdir(path)]

    def makedirs(self, path):
        with _as_oserror(path):
            self._gfile().makedirs(path)

    def remove(self, path):
        with _as_oserror(path):
            self._gfile().remove(path)

    def rmtree(self, path):
        with contextlib.suppress(OSError), _as_oserror(path):
            if self._gfile().exists(path):
                self._gfile().rmtree(path)

    def replace(self, source, target):
        with _as_oserror(source):
            self._gfile().rename(source, target, overwrite=True)

    def move(self, source, target):
        """File by file for a folder: some filesystems (``ram://``) do not move a folder's
        files with the folder."""
        if not self.isdir(source):
            return self.replace(source, target)
        gfile = self._gfile()
        with _as_oserror(source):
            for folder, _, names in list(gfile.walk(source)):
                relative = folder[len(source):].lstrip("/")
                destination = join(target, relative) if relative else target
                gfile.makedirs(destination)
                for name in names:
                    gfile.rename(join(folder, name), join(destination, name), overwrite=True)
            gfile.rmtree(source)

    def copy(self, source, target):
        with _as_oserror(source):
            self._gfile().copy(source, target, overwrite=True)

    def link(self, source, target):
        raise OSError(errno.EOPNOTSUPP, "no hard links on this filesystem", source)

    def normpath(self, path):
        """Without redundant separators (``os.path.normpath`` would make ``gs://b`` ``gs:/b``)."""
        scheme, rest = path.split("://", 1)
        root = "/" if rest.startswith("/") else ""  # file:///tmp/x: no host, an absolute path
        return f"{scheme}://{root}" + "/".join(p for p in rest.split("/") if p not in ("", "."))

    realpath = abspath = normpath

    def relpath(self, path, root):
        prefix = normpath(root).rstrip("/") + "/"
        return path[len(prefix):] if normpath(path).startswith(prefix) else path

    def getsize(self, path):
        with _as_oserror(path):
            return self._gfile().stat(path).length

    def signature(self, path):
        with _as_oserror(path):
            st = self._gfile().stat(path)
        return st.length, st.mtime_nsec

    def open(self, path, mode="r"):
        with _as_oserror(path):
            return _RemoteFile(self._gfile().GFile(path, mode), path)

    def open_regular(self, path, mode="r"):
        if self.isdir(path):
            raise NotRegularFile(path, "a folder")
        return self.open(path, mode)


class _ObjectStore(_Scheme):
    atomic_rename = False


LOCAL, SCHEME, OBJECT_STORE = _Local(), _Scheme(), _ObjectStore()
OBJECT_STORES = ("gs://", "s3://")


def of(*paths):
    """The filesystem of ``paths`` (for two, the one that is not local, if either is not)."""
    for path in paths:
        path = str(path)
        if "://" in path:
            return OBJECT_STORE if path.startswith(OBJECT_STORES) else SCHEME
    return LOCAL


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


# -- the operations, on whichever filesystem holds the path ------------------------------
# fs.exists(path) is of(path).exists(path); with two paths (replace, move, copy, link,
# relpath), the filesystem that is not local, if either is not. Each as the same name in
# os, os.path or shutil does, but: makedirs is quiet if the folder is there, rmtree quiet
# if it is not; replace and move replace the target; copy copies one file; realpath is a
# key naming the path uniquely (a URI by its normalized form); relpath gives the path as
# it is where it cannot be relative; signature is (size, modification time), to notice a
# change; open_regular raises NotRegularFile for a folder, FIFO or device, which would
# hang or mislead a reader; islink is False and link raises OSError where there are none.


_TWO_PATHS = ("replace", "move", "copy", "link", "relpath")


def _on_path(name):
    paths = 2 if name in _TWO_PATHS else 1  # the rest are arguments (open's mode)

    def operation(*args):
        return getattr(of(*args[:paths]), name)(*args)
    operation.__name__ = operation.__qualname__ = name
    return operation


(exists, isdir, isfile, islink, listdir, makedirs, remove, rmtree, replace, move, copy, link,
 normpath, realpath, abspath, relpath, getsize, signature, open, open_regular) = map(  # noqa: A001
    _on_path, ("exists", "isdir", "isfile", "islink", "listdir", "makedirs", "remove",
               "rmtree", "replace", "move", "copy", "link", "normpath", "realpath", "abspath",
               "relpath", "getsize", "signature", "open", "open_regular"))


def join(*parts):
    return os.path.join(*parts)


def read_bytes(path):
    with open_regular(path, "rb") as f:
        return f.read()


def write_atomic(path, data):
    """Writes ``data`` (str or bytes) to ``path`` so that a reader sees the old file or
    the new, never half (see the module docstring)."""
    mode = "wb" if isinstance(data, bytes) else "w"
    if not of(path).atomic_rename:
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
    """Appends ``text`` to file ``path`` and makes it durable; rewrites the whole file where
    files cannot grow in place."""
    if of(path).append:
        return of(path).append_text(path, text)
    try:
        with open(path, "r") as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    write_atomic(path, old + text)
