"""Downloading dataset files: mirrors tried in order, atomic writes, checksums,
and archive extraction that cannot write outside its target folder.

A download goes to ``NAME.part`` and is renamed only once complete and
verified, so an interrupted or corrupted download never looks like data.
"""

import hashlib
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib

from absl import logging

from trainkit import errors

DOWNLOAD_TIMEOUT_SECS = 30
_CHUNK = 1 << 20


def file_digest(path, algorithm="md5", opener=open):
    """Hex digest of a file's bytes (``opener=gzip.open`` digests the content)."""
    digest = hashlib.new(algorithm)
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        if problem is None:
            os.replace(part, dest)
            return dest
        if os.path.exists(part):
            os.remove(part)
        failures.append(f"{url}: {problem}")
    raise errors.UserError(f"downloading {name} failed (" + "; ".join(failures) + ")")


def safe_extract(archive, dest_dir):
    """Extracts a tar archive so that nothing can land outside ``dest_dir``.

    Every member must be a regular file or a directory with a relative path
    free of ``..``; a link, device, absolute path or escaping path makes the
    whole archive refused (UserError) before anything is written.
    """
    dest_root = os.path.realpath(dest_dir)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                name = member.name
                if not (member.isfile() or member.isdir()):
                    raise errors.UserError(
                        f"refusing to extract {archive}: member {name!r} is a link or special "
                        "file; delete the archive and download it again")
                target = os.path.realpath(os.path.join(dest_root, name))
                if (os.path.isabs(name) or ".." in name.replace("\\", "/").split("/")
                        or os.path.commonpath([dest_root, target]) != dest_root):
                    raise errors.UserError(
                        f"refusing to extract {archive}: member {name!r} would land outside "
                        f"{dest_dir}; delete the archive and download it again")
            for member in members:
                target = os.path.join(dest_root, member.name)
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                part = target + ".part"
                with source, open(part, "wb") as out:
                    for chunk in iter(lambda: source.read(_CHUNK), b""):
                        out.write(chunk)
                os.replace(part, target)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise errors.UserError(
            f"cannot extract {archive}: {e}; delete it and download it again") from None
    logging.info("Extracted %s into %s", archive, dest_dir)
