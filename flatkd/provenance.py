"""Provenance recorded with every checkpoint and result: versions, git revision, command, time."""
from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "scikit-image",
             "imagecorruptions", "foolbox", "pyhessian")


def package_versions() -> dict[str, str | None]:
    """Installed versions of flatkd and the packages whose behaviour results depend on."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("flatkd",) + _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    """``<sha>`` (``<sha>-dirty`` with uncommitted changes) of the source tree, if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "") if sha else None


def collect(seed: int | None = None, **extra) -> dict:
    """A plain dict: versions, git revision, platform, command line, UTC time, seed, extras."""
    return {
        "versions": package_versions(),
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]) if sys.argv else None,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        **extra,
    }


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
