"""Atomic file writes: write to a temporary file in the same directory, fsync, then rename.

The file gets the permissions a plain ``open(path, "w")`` would give (0666 less the umask), not
``mkstemp``'s 0600; temporary files left by a killed writer of the same path are removed by
the next write.
"""
from __future__ import annotations

import glob
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path`` in one rename, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        orphan.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process umask: read from ``/proc/self/status`` where there is one (nothing changes,
    so threads writing at once are safe), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new regular file gets under the process umask (0o666 & ~umask)."""
    return 0o666 & ~_umask()


def writable_target(path: str | Path, what: str) -> Path:
    """Refuse, before any work, an output ``path`` that cannot be written: an existing directory
    (or file, for ``what`` ending in 'directory'), a parent that is a file, or no write access.
    An existing file of the wanted kind is fine: writes replace it atomically."""
    from .errors import FlatkdError
    p = Path(path)
    want_dir = what.endswith("directory")
    if p.exists() and p.is_dir() != want_dir:
        raise FlatkdError(f"{what} {p} exists and is a {'file' if want_dir else 'directory'}")
    probe = p if p.is_dir() else p.parent           # an existing file is replaced atomically
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise FlatkdError(f"{what} {p} lies inside {probe}, which is a file")
    try:                                  # a real write: permissions, read-only mounts, quotas
        fd, tmp = tempfile.mkstemp(prefix=".flatkd-probe.", dir=probe)
    except OSError as e:
        raise FlatkdError(f"{what} {p} is not writable ({e.strerror or e} in {probe})") from None
    os.close(fd)
    os.unlink(tmp)
    return p


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    """JSON with sorted keys and a trailing newline, written atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
