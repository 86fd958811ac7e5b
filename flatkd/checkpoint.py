"""The flatkd checkpoint: one file of plain data, loadable with ``weights_only=True``.

Keys: format, version, method, arch, dataset, num_classes, models (name → state_dict),
architectures (name → ``flatkd.models.create`` kwargs), optim (name → optimizer state),
epoch, step, config (resolved, plain), metrics (per-epoch rows), provenance, state (loop and
method state for ``--resume``: replay buffer, step counters), integrity (``content_sha256``,
written by :func:`save`). Reading verifies the archive's CRCs and that hash.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import models
from .errors import CheckpointError, FlatkdError
from .io import atomic_path
from .provenance import sha256_of
from .serialization_compat import refused_content

FORMAT = "flatkd.checkpoint"
VERSION = 1
#: required key → its type in a valid checkpoint
SCHEMA: dict[str, type] = {
    "format": str, "version": int, "method": str, "arch": str, "dataset": str, "num_classes": int,
    "models": dict, "architectures": dict, "optim": dict, "epoch": int, "step": int,
    "config": dict, "metrics": list, "provenance": dict}
REQUIRED_KEYS = tuple(SCHEMA)
_ZIP_MAGIC = b"PK\x03\x04"           # torch.save's archive format (every flatkd checkpoint)
_TYPE_NAMES = {str: "a string", int: "an integer", dict: "a mapping", list: "a list"}


def content_sha256(payload: dict) -> str:
    """SHA-256 of a checkpoint's content: every entry but ``integrity``, walked in sorted key
    order — tensors by dtype, shape and raw bytes, other leaves by type and exact value (floats
    as ``float.hex``). Recorded at write time in ``integrity.content_sha256``; an altered
    tensor or value changes it even when the archive's own CRCs were rewritten to match."""
    h = hashlib.sha256()

    def walk(obj: Any) -> None:
        if torch.is_tensor(obj):
            t = obj.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            h.update(f"D{len(obj)}".encode())
            for k in sorted(obj, key=str):
                h.update(f"K{k!s}".encode())
                walk(obj[k])
        elif isinstance(obj, (list, tuple)):
            h.update(f"L{len(obj)}".encode())
            for v in obj:
                walk(v)
        elif isinstance(obj, float):
            h.update(f"F{obj.hex()}".encode())
        else:
            h.update(f"{type(obj).__name__}:{obj!s}".encode())
    walk({k: v for k, v in payload.items() if k != "integrity"})
    return h.hexdigest()


def save(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` (must hold every key in REQUIRED_KEYS) atomically with its
    :func:`content_sha256` in ``integrity``; return the path."""
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    if payload["format"] != FORMAT:
        raise ValueError("checkpoint payload has the wrong format tag")
    payload = {**payload, "integrity": {"content_sha256": content_sha256(payload)}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _verify_archive(p: Path) -> None:
    """The zip CRC-32 torch stores for every record of the archive (a flipped byte anywhere
    fails it)."""
    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{p} is truncated or not a checkpoint file "
                              f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})") from None
    if bad is not None:
        raise CheckpointError(f"{p} is corrupted: record {bad.partition('/')[2] or bad!r} fails "
                              "its CRC check (the file "
                              "changed after it was written); retrain or restore it")


def _verify_content(data: dict, p: Path) -> None:
    """The content hash recorded at write time, when there is one (older checkpoints: none)."""
    rec = data.get("integrity")
    if rec is None:
        return
    want = rec.get("content_sha256") if isinstance(rec, dict) else None
    if not isinstance(want, str) or content_sha256(data) != want:
        raise CheckpointError(f"{p} is corrupted: its content does not match the hash recorded "
                              "when it was written; retrain or restore it")


def read(path: str | Path) -> dict:
    """Load and validate the raw dict. Any problem → :class:`CheckpointError` (one clear line)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    with open(p, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{p} is empty (0 bytes), not a flatkd checkpoint")
    if head != _ZIP_MAGIC:
        raise CheckpointError(f"{p} is not a flatkd checkpoint (not a PyTorch checkpoint archive)")
    _verify_archive(p)
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {p}: it holds Python objects that are not plain data "
            f"({refused_content(e)}; flatkd loads checkpoints with weights_only=True)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError,
            KeyError) as e:
        raise CheckpointError(f"{p} is truncated or not a checkpoint file "
                              f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})") from None
    validate(data, p)
    _verify_content(data, p)
    return data


def validate(data: Any, p: Path) -> None:
    """Raise :class:`CheckpointError` unless ``data`` has the checkpoint keys with their types."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a flatkd checkpoint (no format={FORMAT!r} tag)")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise CheckpointError(f"{p} has checkpoint version {version!r}; "
                              f"this flatkd reads versions 1 to {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{p} is missing checkpoint keys: {', '.join(missing)}")
    for key, kind in SCHEMA.items():
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise CheckpointError(f"{p} is corrupt: {key!r} must be {_TYPE_NAMES[kind]}, "
                                  f"got {type(data[key]).__name__}")
    if data["num_classes"] < 1:
        raise CheckpointError(f"{p} is corrupt: num_classes must be ≥ 1, got {data['num_classes']}")
    for name, arch in data["architectures"].items():
        if not isinstance(arch, dict) or not isinstance(data["models"].get(name), dict):
            raise CheckpointError(f"{p} is corrupt: network {name!r} needs an architecture mapping "
                                  "and a state_dict")


@dataclass
class Checkpoint:
    """A validated checkpoint: metadata attributes plus ``build_model(name)``."""

    path: Path
    raw: dict = field(repr=False)

    method = property(lambda self: self.raw["method"])
    arch = property(lambda self: self.raw["arch"])
    dataset = property(lambda self: self.raw["dataset"])
    num_classes = property(lambda self: self.raw["num_classes"])
    config = property(lambda self: self.raw["config"])
    metrics = property(lambda self: self.raw["metrics"])
    provenance = property(lambda self: self.raw["provenance"])
    epoch = property(lambda self: self.raw["epoch"])
    step = property(lambda self: self.raw["step"])

    @property
    def model_names(self) -> list[str]:
        """Names of the evaluable networks (those with an architecture entry)."""
        return sorted(self.raw["architectures"])

    @cached_property
    def sha256(self) -> str:
        return sha256_of(self.path)

    def build_model(self, name: str = "student", exits: bool = False) -> nn.Module:
        """The network ``name`` on CPU in eval mode; expects [0, 1] NCHW input, returns logits.

        A self-KD (BYOT) network is returned as deployed — its backbone, whose output is the
        deepest exit — so flatness and robustness see only parameters that shape the
        prediction; ``exits=True`` returns the full multi-exit training network instead.
        """
        if name not in self.raw["architectures"]:
            raise CheckpointError(f"checkpoint {self.path} has no model {name!r}; "
                                  f"valid choices: {', '.join(self.model_names)}")
        try:
            net = models.create(**self.raw["architectures"][name])
        except (TypeError, ValueError, FlatkdError) as e:
            raise CheckpointError(f"{self.path}: the architecture recorded for {name!r} is invalid "
                                  f"({str(e).splitlines()[0][:160]})") from None
        try:
            net.load_state_dict(self.raw["models"][name])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"{self.path}: weights of {name!r} do not fit its architecture "
                                  f"({str(e).splitlines()[0][:160]})") from None
        if isinstance(net, models.MultiExitResNet) and not exits:
            net = net.backbone
        return net.eval()

    def non_finite_tensor(self, name: str = "student") -> str | None:
        """The first weight/buffer of network ``name`` holding NaN or ±Inf, or None."""
        for key, value in self.raw["models"][name].items():
            if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
                return key
        return None

    def interval_boundaries_epochs(self) -> list[float]:
        """Epochs (fractional) at which a spaced replay happened; [] for non-spaced methods."""
        steps = self.raw.get("state", {}).get("replay_steps", [])
        bpe = self.raw.get("state", {}).get("batches_per_epoch")
        return [s / bpe for s in steps] if bpe else []


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Validate and wrap a checkpoint file. Raises CheckpointError on anything else."""
    return Checkpoint(Path(path), read(path))


def plain(obj: Any) -> Any:
    """Recursively convert tuples to lists so a payload is plain data (dict/list/scalars/tensors)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
