"""Downloading dataset files: mirrors tried in order, atomic writes, checksums.

A download goes to ``NAME.part`` and is renamed only once complete and
verified, so an interrupted or corrupted download never looks like data.
"""

import hashlib
import os
import time
import urllib.error
import urllib.request

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


def fetch(url, dest):
    """Downloads ``url`` to ``dest`` atomically, logging progress; raises OSError."""
    part = dest + ".part"
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECS) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        last_report = start
        with open(part, "wb") as f:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                f.write(chunk)
                done += len(chunk)
                now = time.monotonic()
                if now - last_report >= 1.0:
                    last_report = now
                    rate = done / max(now - start, 1e-9)
                    logging.info("  %s: %.1f of %s MB (%.1f MB/s)", os.path.basename(dest),
                                 done / 1e6, f"{total / 1e6:.1f}" if total else "?", rate / 1e6)
    if total and done != total:
        os.remove(part)
        raise OSError(f"{url} ended after {done} of {total} bytes")
    os.replace(part, dest)
    logging.info("Downloaded %s (%.1f MB in %.1f s)", url, done / 1e6, time.monotonic() - start)


def download_verified(name, dest_dir, mirrors, verify):
    """Downloads file ``name`` from the first mirror that serves a valid copy.

    ``verify(path)`` returns None if the file is good, else a reason. A bad
    copy is deleted. Raises UserError naming every mirror tried.
    """
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, name)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        logging.info("Downloading %s", url)
        try:
            fetch(url, dest)
        except (OSError, urllib.error.URLError, ValueError) as e:
            failures.append(f"{url}: {getattr(e, 'reason', None) or e}")
            continue
        problem = verify(dest)
        if problem is None:
            return dest
        os.remove(dest)
        failures.append(f"{url}: {problem}")
    raise errors.UserError(
        f"{name} is not in {dest_dir} and could not be downloaded ("
        + "; ".join(failures) + f"); copy the file into {dest_dir} by hand")
