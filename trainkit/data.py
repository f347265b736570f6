"""Downloading dataset files: mirrors tried in order, atomic writes, checksums,
and archive extraction that cannot write outside its target folder.
"""

import contextlib
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib

from absl import logging

from trainkit import errors
from trainkit import fs
from trainkit import rundir

DOWNLOAD_TIMEOUT_SECS = 30
_CHUNK = 1 << 20


def file_digest(path, algorithm="md5", opener=open):
    """Hex digest of a file's bytes (``opener=gzip.open`` digests the content)."""
    digest = hashlib.new(algorithm)
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def present(path):
    """Whether data file ``path`` is there; UserError for a symbolic link that leads nowhere
    (a loop, or a target that is gone), which would otherwise read as a missing file."""
    if fs.exists(path):
        return True
    if fs.islink(path):
        raise errors.UserError(
            f"{path} is a symbolic link that leads nowhere (a loop, or its target is gone); "
            "point it at the file, or remove it (a missing file is downloaded again)")
    return False


def available_memory():
    """Bytes of memory a new allocation can get (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def gigabytes(size):
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def progress_bar(done, total, seconds, width=30):
    """``[#########.....]  45%  73.2 of 162.2 MB, 12.3 MB/s`` (no bar if the size is unknown)."""
    rate = f"{done / 1e6 / max(seconds, 1e-9):.1f} MB/s"
    if not total:
        return f"{done / 1e6:.1f} MB, {rate}"
    filled = min(width, width * done // total)
    return (f"[{'#' * filled}{'.' * (width - filled)}] {100 * done / total:3.0f}%  "
            f"{done / 1e6:.1f} of {total / 1e6:.1f} MB, {rate}")


def fetch(url, dest, stream=None):
    """Downloads ``url`` to ``dest`` with a progress bar; raises OSError.

    On a terminal the bar is redrawn in place; otherwise (a log file) it is
    logged once a second. The finished bar is always shown.
    """
    stream = stream or sys.stderr
    interactive = stream.isatty()
    name = os.path.basename(dest)
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECS) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        last_report = start
        with open(dest, "wb") as f:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                f.write(chunk)
                done += len(chunk)
                now = time.monotonic()
                if now - last_report >= (0.2 if interactive else 1.0):
                    last_report = now
                    bar = progress_bar(done, total, now - start)
                    if interactive:
                        stream.write(f"\r  {name} {bar}")
                        stream.flush()
                    else:
                        logging.info("  %s %s", name, bar)
    if total and done != total:
        if interactive:
            stream.write("\n")
        raise OSError(f"{url} ended after {done} of {total} bytes")
    bar = progress_bar(done, total, time.monotonic() - start)
    if interactive:
        stream.write(f"\r  {name} {bar}\n")
        stream.flush()
    logging.info("Downloaded %s: %s", url, bar)


def download_verified(name, dest_dir, mirrors, verify):
    """Downloads file ``name`` from the first mirror that serves a valid copy.

    ``verify(path)`` returns None if the file is good, else a reason. The
    file is fetched to ``NAME.part`` and renamed to ``NAME`` only once
    verified; a bad copy is deleted. Raises UserError naming every mirror tried.
    """
    if not fs.of(dest_dir).local:
        local = tempfile.mkdtemp(prefix="trainkit-download-")
        try:
            path = download_verified(name, local, mirrors, verify)
            return _upload(path, dest_dir)
        finally:
            shutil.rmtree(local, ignore_errors=True)
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, name)
    part = dest + ".part"
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        logging.info("Downloading %s", url)
        try:
            fetch(url, part)
            problem = verify(part)
        except (OSError, EOFError, urllib.error.URLError, ValueError) as e:
            problem = getattr(e, "reason", None) or e
        except BaseException:  # Ctrl-C, or a failure no mirror can mend: leave no .part
            _remove(part)
            raise
        if problem is None:
            os.replace(part, dest)
            return dest
        _remove(part)
        failures.append(f"{url}: {problem}")
    raise errors.UserError(f"downloading {name} failed (" + "; ".join(failures) + ")")


def _upload(path, dest_dir):
    """Copies local file ``path`` into ``dest_dir`` (through ``NAME.part``, so that an
    interrupted copy never looks like data); returns its new path."""
    dest = fs.join(dest_dir, os.path.basename(path))
    try:
        fs.makedirs(dest_dir)
        fs.copy(path, dest + ".part")
        fs.replace(dest + ".part", dest)
    except OSError as e:
        with contextlib.suppress(OSError):
            fs.remove(dest + ".part")
        raise rundir.unwritable(dest_dir, e, "data dir", "--data_dir") from None
    return dest


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def safe_extract(archive, dest_dir):
    """Extracts a tar archive so that nothing can land outside ``dest_dir``.

    Every member must be a regular file or a directory with a relative path
    free of ``..``, no name may be both a file and a folder (in the archive
    or on disk), and the files must fit in the free space: otherwise the
    whole archive is refused (UserError) before anything is written. The
    files are written into a hidden folder in ``dest_dir`` and moved into
    place; if anything fails, what was written is removed.
    """
    if not fs.of(archive, dest_dir).local:
        return _extract_staged(archive, dest_dir)
    rundir.check_regular(archive)
    dest_root = os.path.realpath(dest_dir)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            files, folders = _check_members(archive, members, dest_root, dest_dir)
            staging = tempfile.mkdtemp(prefix=".extracting-", dir=dest_root)
            try:
                for member in files.values():
                    target = os.path.join(staging, member.name)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with tar.extractfile(member) as source, open(target, "wb") as out:
                        for chunk in iter(lambda: source.read(_CHUNK), b""):
                            out.write(chunk)
                _move_into_place(staging, dest_root, files, folders)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise errors.UserError(
            f"cannot extract {archive}: {e}; delete it and download it again") from None
    except OSError as e:
        raise errors.UserError(f"cannot extract {archive} into {dest_dir}: {e.strerror or e}; "
                               "nothing of it was left there") from None
    logging.info("Extracted %s into %s", archive, dest_dir)


def _extract_staged(archive, dest_dir):
    """``safe_extract`` into a data dir with a scheme: extracted locally, then uploaded."""
    local = tempfile.mkdtemp(prefix="trainkit-extract-")
    try:
        copy = os.path.join(local, os.path.basename(archive))
        try:
            fs.copy(archive, copy)
        except OSError as e:
            raise errors.UserError(f"cannot read {archive}: {e.strerror or e}") from None
        tree = os.path.join(local, "tree")
        os.mkdir(tree)
        safe_extract(copy, tree)
        for folder, _, names in os.walk(tree):
            relative = os.path.relpath(folder, tree)
            target = dest_dir if relative == "." else fs.join(dest_dir, relative)
            for name in sorted(names):
                _upload(os.path.join(folder, name), target)
    finally:
        shutil.rmtree(local, ignore_errors=True)
    logging.info("Extracted %s into %s", archive, dest_dir)


def _check_members(archive, members, dest_root, dest_dir):
    """The archive's files and folders ({name: member}, {names}); UserError naming the
    first member that could do harm or could not be written."""

    def refuse(name, why):
        raise errors.UserError(f"refusing to extract {archive}: member {name!r} {why}; "
                               "delete the archive and download it again")

    files, folders = {}, set()
    for member in members:
        name = member.name
        if not (member.isfile() or member.isdir()):
            refuse(name, "is a link or special file")
        target = os.path.realpath(os.path.join(dest_root, name))
        if target == dest_root and member.isdir() and not os.path.isabs(name):
            continue  # "." of an archive made with tar -C DIR .
        if (os.path.isabs(name) or ".." in name.replace("\\", "/").split("/")
                or os.path.commonpath([dest_root, target]) != dest_root or target == dest_root):
            refuse(name, f"would land outside {dest_dir}")
        relative = os.path.relpath(target, dest_root)
        parts = relative.split(os.sep)
        folders.update(os.path.join(*parts[:i]) for i in range(1, len(parts)))
        if member.isdir():
            folders.add(relative)
        elif relative in files:
            refuse(name, "appears twice")
        else:
            member.name = relative
            files[relative] = member
    for name in sorted(set(files) & folders):
        refuse(name, "is both a file and a folder")
    for name in sorted(folders):
        path = os.path.join(dest_root, name)
        if os.path.lexists(path) and not os.path.isdir(path):
            refuse(name, f"is a folder, but {path} is a file")
    for name in sorted(files):
        path = os.path.join(dest_root, name)
        if os.path.lexists(path) and not os.path.isfile(path):
            refuse(name, f"is a file, but {path} is a folder or special file")
    needed = sum(member.size for member in files.values())
    free = shutil.disk_usage(dest_root).free
    if needed > free:
        raise errors.UserError(
            f"cannot extract {archive}: its files need {gigabytes(needed)} and {dest_dir} has "
            f"{gigabytes(free)} free; free space or choose another --data_dir")
    return files, folders


def _move_into_place(staging, dest_root, files, folders):
    """Moves the extracted files into ``dest_root``; on failure takes back what it added."""
    made, placed = [], []
    try:
        for name in sorted(folders):
            path = os.path.join(dest_root, name)
            if not os.path.isdir(path):
                os.mkdir(path)
                made.append(path)
        for name in files:
            path = os.path.join(dest_root, name)
            existed = os.path.exists(path)
            os.replace(os.path.join(staging, name), path)
            if not existed:
                placed.append(path)
    except BaseException:
        for path in placed:
            _remove(path)
        for path in reversed(made):
            try:
                os.rmdir(path)
            except OSError:
                pass
        raise
