"""imagecorruptions 1.1.2 on today's stack — the one place that knows the package's defects.

imagecorruptions 1.1.2 (the last release) is imported, never copied. Its defects on
numpy 2 / scikit-image ≥ 0.20 / setuptools ≥ 82 / scipy ≥ 1.8 are fixed *at import time* by
replacing names in the module namespace of ``imagecorruptions.corruptions`` (its functions look
their globals up at call time, so the replacements take effect inside them):

1. ``from pkg_resources import resource_filename`` (setuptools ≥ 82 has no ``pkg_resources``):
   a stand-in ``pkg_resources`` module that only offers ``resource_filename`` is placed in
   ``sys.modules`` for the duration of the import (only when the real one is missing), then
   removed again. ``frost`` uses it to locate its bundled frost textures.
2. ``gaussian(..., multichannel=True)`` in ``gaussian_blur``/``glass_blur`` (scikit-image 0.19
   renamed it ``channel_axis``, 0.20 removed it): the module's ``gaussian`` becomes a wrapper
   translating ``multichannel=True`` → ``channel_axis=-1``.
3. ``np.float_`` in ``plasma_fractal`` (``fog``; removed in NumPy 2): the module's ``np`` becomes an
   overlay of numpy that adds ``float_ = numpy.float64``; every other attribute is numpy's.
4. ``impulse_noise`` calls ``skimage.util.random_noise`` which draws from a fresh, unseeded
   ``numpy.random.Generator``: the module's ``sk`` becomes an overlay whose ``util.random_noise``
   passes ``rng=`` seeded from the legacy global RNG — so ``np.random.seed`` governs it like
   every other corruption.
5. ``spatter`` (severities 1–3) divides its liquid mask by its maximum; when the random draw
   puts no liquid on the image (often at 32 px) the mask is 0/0 = NaN everywhere and the
   package returns an all-black image. Decision: the wrapper returns the *input unchanged*,
   which is the limit of the formula (no liquid → nothing is added). It neither redraws
   (that would bias the severity towards more spatter) nor blackens the image.
6. ``from scipy.ndimage.interpolation import map_coordinates`` emits a DeprecationWarning
   (namespace removed in SciPy 2.0): silenced during the import only.
7. Speed, not correctness: ``frost`` decodes its texture file from disk on every call (≈ 10 ms
   of its ≈ 11 ms per 32-px image). The module's ``cv2`` becomes an overlay whose ``imread``
   is memoised per file name and returns a read-only array (``frost`` never writes to it),
   so results are bit-identical.
8. OpenCV's thread pool is not fork-safe: a forked child that touches it can block forever on
   a mutex held by a parent thread. :func:`serial_opencv` turns OpenCV threading off (in the
   parent, around the fork and the pool's lifetime) so forked workers never use the pool.

Each quirk has a test in ``tests/test_robustness_compat.py`` that fails once upstream changes,
so the corresponding shim can be dropped. Images smaller than 32 px are rejected upstream;
:func:`corrupt` rejects them with a :class:`~flatkd.errors.FlatkdError`.

Determinism: :func:`corrupt` seeds the legacy global ``numpy.random`` state (which every
corruption draws from) with the given seed, and restores the caller's state afterwards.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import textwrap
import types
import warnings
from importlib import metadata
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from ..errors import FlatkdError

MIN_SIZE = 32
"""Smallest height/width imagecorruptions accepts (pixels)."""


def _resource_filename(package: str, resource: str) -> str:
    """``pkg_resources.resource_filename`` for plain files next to an imported module."""
    module = importlib.import_module(package)
    return os.path.normpath(os.path.join(os.path.dirname(module.__file__), resource))


def _import_upstream() -> types.ModuleType:
    """Import ``imagecorruptions.corruptions`` with a temporary ``pkg_resources`` stand-in."""
    shim_needed = "pkg_resources" not in sys.modules and (
        importlib.util.find_spec("pkg_resources") is None)
    if shim_needed:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = _resource_filename
        sys.modules["pkg_resources"] = shim
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*scipy\.ndimage\.interpolation",
                                    category=DeprecationWarning)
            return importlib.import_module("imagecorruptions.corruptions")
    finally:
        if shim_needed:
            del sys.modules["pkg_resources"]


class _Overlay:
    """A stand-in for a module: the given attributes, everything else from ``base``."""

    def __init__(self, base: Any, **overrides: Any):
        self._base = base
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


upstream = _import_upstream()
"""The (patched) ``imagecorruptions.corruptions`` module."""

VERSION = metadata.version("imagecorruptions")
"""Installed imagecorruptions version (part of every cache key)."""

_skimage_gaussian = upstream.gaussian
_skimage = upstream.sk
_cv2 = upstream.cv2


def _gaussian(image, *args, multichannel: bool | None = None, **kwargs):
    """``skimage.filters.gaussian`` accepting the removed ``multichannel=`` keyword."""
    if multichannel is not None:
        kwargs.setdefault("channel_axis", -1 if multichannel else None)
    return _skimage_gaussian(image, *args, **kwargs)


def _random_noise(image, mode="gaussian", rng=None, **kwargs):
    """``skimage.util.random_noise`` whose default ``rng`` is drawn from the global numpy RNG."""
    if rng is None:
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
    return _skimage.util.random_noise(image, mode=mode, rng=rng, **kwargs)


@functools.lru_cache(maxsize=16)
def _imread(filename: str, *args) -> np.ndarray:
    """``cv2.imread`` memoised per file (read-only result): frost's six texture files."""
    image = _cv2.imread(filename, *args)
    if image is not None:
        image.setflags(write=False)
    return image


upstream.gaussian = _gaussian
upstream.cv2 = _Overlay(_cv2, imread=_imread)
upstream.np = _Overlay(np, float_=np.float64)
upstream.sk = _Overlay(_skimage, util=_Overlay(_skimage.util, random_noise=_random_noise))


@contextlib.contextmanager
def serial_opencv() -> Iterator[None]:
    """Run OpenCV single-threaded inside the block (fork processes only inside it)."""
    threads = _cv2.getNumThreads()
    _cv2.setNumThreads(0)
    try:
        yield
    finally:
        _cv2.setNumThreads(threads)


def _spatter(x: Image.Image, severity: int = 1, *, _fn: Callable = upstream.spatter):
    """``spatter`` that returns the input unchanged when the package's mask is 0/0 (NaN)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.asarray(_fn(x, severity), dtype=np.float64)
    if not np.isfinite(out).all():
        return np.asarray(x, dtype=np.float64)
    return out


FUNCTIONS: dict[str, Callable] = {
    f.__name__: f for f in (
        upstream.gaussian_noise, upstream.shot_noise, upstream.impulse_noise,
        upstream.defocus_blur, upstream.glass_blur, upstream.motion_blur, upstream.zoom_blur,
        upstream.snow, upstream.frost, upstream.fog, upstream.brightness, upstream.contrast,
        upstream.elastic_transform, upstream.pixelate, upstream.jpeg_compression,
        upstream.speckle_noise, upstream.gaussian_blur, upstream.spatter, upstream.saturate)
}
"""The 19 corruption functions ``f(PIL.Image, severity) -> array|PIL.Image``, name → function."""
FUNCTIONS["spatter"] = _spatter


def severity_table_source(name: str) -> str:
    """The source text of the package's severity table of corruption ``name``.

    Every corruption starts with ``<var> = [<5 entries>][severity - 1]``; this returns
    ``[<5 entries>]`` (e.g. ``'[0.08, 0.12, 0.18, 0.26, 0.38]'``).
    """
    return ast.unparse(_table_assignment(_function_ast(name)).value.value)


def with_severity_table(name: str, table_source: str) -> Callable:
    """Corruption ``name`` with its severity table replaced by ``table_source``.

    ``table_source`` is a Python expression for a 5-entry list (it may use ``np``). The
    package's function is re-compiled from its installed source with only that list changed
    and runs in the patched module namespace, so the fixes above still apply.
    """
    tree = _function_ast(name)
    assign = _table_assignment(tree)
    assign.value.value = ast.parse(table_source, mode="eval").body
    namespace: dict[str, Any] = {}
    code = compile(ast.fix_missing_locations(ast.Module(body=[tree], type_ignores=[])),
                   inspect.getsourcefile(upstream), "exec")
    exec(code, upstream.__dict__, namespace)
    fn = namespace[name]
    if name == "spatter":
        return lambda x, severity=1: _spatter(x, severity, _fn=fn)
    return fn


def _function_ast(name: str) -> ast.FunctionDef:
    source = textwrap.dedent(inspect.getsource(getattr(upstream, name)))
    return ast.parse(source).body[0]


def _table_assignment(fn: ast.FunctionDef) -> ast.Assign:
    for stmt in fn.body:
        if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Subscript)
                and isinstance(stmt.value.value, ast.List) and len(stmt.value.value.elts) == 5
                and "severity" in ast.unparse(stmt.value.slice)):
            return stmt
    raise RuntimeError(f"imagecorruptions.{fn.name} has no '[...][severity - 1]' table")


def corrupt(image: np.ndarray, fn: Callable, severity: int, seed: int) -> np.ndarray:
    """Apply corruption function ``fn`` (from :data:`FUNCTIONS` or :func:`with_severity_table`).

    ``image``: uint8 HWC (C = 3, or 1 / HW for grey, which is repeated to RGB), H, W ≥ 32.
    Returns uint8 HxWx3 of the same height/width. The package's float output in [0, 255]
    is truncated to uint8 as the package's own ``corrupt`` does. Deterministic in ``seed``; the
    global numpy RNG state of the caller is restored afterwards.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise FlatkdError(f"corruptions expect uint8 images, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise FlatkdError(f"corruptions expect HxWx3 images, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if min(image.shape[:2]) < MIN_SIZE:
        raise FlatkdError(f"corruptions need images of at least {MIN_SIZE}x{MIN_SIZE} px, "
                          f"got {image.shape[0]}x{image.shape[1]}")
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        out = np.asarray(fn(Image.fromarray(image), severity))
    finally:
        np.random.set_state(state)
    return out.astype(np.uint8)
