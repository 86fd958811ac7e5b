"""imagecorruptions compat layer: one test per upstream quirk (fails once upstream is fixed,
so the shim can be dropped) + every corruption × severity works on 32-px images."""
import subprocess
import sys
import types
import warnings

import cv2
import numpy as np
import pytest
import skimage
import skimage.filters
from PIL import Image

from flatkd.errors import FlatkdError
from flatkd.robustness import corruptions_compat as compat
from flatkd.robustness.corruptions import CORRUPTIONS, SEVERITIES, available, corrupt_image

SPATTER_NAN_SEED = 35  # a seed for which upstream spatter (severity 1) gives NaN on IMAGE


def _image(size=32, seed=0):
    return (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)


IMAGE = _image()


def _unpatched(name):
    """The package's function with the module globals as shipped (real numpy/skimage)."""
    fn = getattr(compat.upstream, name)
    g = dict(compat.upstream.__dict__, np=np, sk=skimage, gaussian=skimage.filters.gaussian,
             cv2=cv2)
    return types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__)


def test_quirk_upstream_import_needs_pkg_resources():
    r = subprocess.run([sys.executable, "-c", "import imagecorruptions"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'pkg_resources'" in r.stderr


def test_shim_leaves_no_pkg_resources_behind():
    shim = sys.modules.get("pkg_resources")
    assert shim is None or getattr(shim, "resource_filename", None) is not compat._resource_filename
    path = compat.upstream.resource_filename(compat.upstream.__name__, "./frost/frost1.png")
    assert Image.open(path).size[0] > 32


def test_quirk_gaussian_blur_passes_removed_multichannel():
    with pytest.raises(TypeError, match="multichannel"):
        _unpatched("gaussian_blur")(Image.fromarray(IMAGE), 1)


def test_quirk_glass_blur_passes_removed_multichannel():
    with pytest.raises(TypeError, match="multichannel"):
        _unpatched("glass_blur")(Image.fromarray(IMAGE), 1)


def test_quirk_fog_uses_removed_np_float_():
    with pytest.raises(AttributeError, match="float_"):
        _unpatched("plasma_fractal")(mapsize=32, wibbledecay=2)  # fog's noise generator


def test_quirk_impulse_noise_ignores_global_seed():
    outs = []
    for _ in range(2):
        np.random.seed(0)
        outs.append(np.asarray(_unpatched("impulse_noise")(Image.fromarray(IMAGE), 3)))
    assert not np.array_equal(outs[0], outs[1])
    fixed = [compat.corrupt(IMAGE, compat.FUNCTIONS["impulse_noise"], 3, seed=0)
             for _ in range(2)]
    assert np.array_equal(fixed[0], fixed[1])
    assert not np.array_equal(fixed[0], compat.corrupt(IMAGE, compat.FUNCTIONS["impulse_noise"],
                                                       3, seed=1))


def test_quirk_spatter_returns_nan_without_liquid():
    np.random.seed(SPATTER_NAN_SEED)
    with np.errstate(invalid="ignore"):
        out = np.asarray(compat.upstream.spatter(Image.fromarray(IMAGE), 1))
    assert np.isnan(out).all()
    # our decision: no liquid drawn → the image comes back unchanged
    fixed = compat.corrupt(IMAGE, compat.FUNCTIONS["spatter"], 1, seed=SPATTER_NAN_SEED)
    assert np.array_equal(fixed, IMAGE)
    assert not np.array_equal(compat.corrupt(IMAGE, compat.FUNCTIONS["spatter"], 1, seed=0),
                              IMAGE)


@pytest.mark.crosslib
def test_quirk_frost_reads_its_texture_on_every_call_memoised_bit_identically():
    reads = []
    counting = type("cv2", (), {"__getattr__": lambda self, n: getattr(cv2, n),
                                "imread": lambda self, f: reads.append(f) or cv2.imread(f)})()
    frost = _unpatched("frost")
    frost.__globals__["cv2"] = counting
    outs = []
    for _ in range(2):
        np.random.seed(3)
        outs.append(np.asarray(frost(Image.fromarray(IMAGE), 2)))
    assert len(reads) == 2
    np.random.seed(3)
    assert np.array_equal(np.asarray(compat.FUNCTIONS["frost"](Image.fromarray(IMAGE), 2)), outs[0])


def test_quirk_scipy_interpolation_namespace_deprecated():
    with pytest.warns(DeprecationWarning, match="scipy.ndimage.interpolation"):
        from scipy.ndimage.interpolation import map_coordinates  # noqa: F401


def test_quirk_upstream_rejects_images_under_32px():
    import imagecorruptions

    with pytest.raises(AttributeError, match="32"):
        imagecorruptions.corrupt(IMAGE[:31, :31], severity=1, corruption_name="brightness")
    with pytest.raises(FlatkdError, match="32"):
        corrupt_image(IMAGE[:31, :31], "brightness", 1, "imagenet-c", 0, 0)


def test_every_corruption_and_severity_runs_on_32px_uint8_hwc():
    assert len(CORRUPTIONS.names()) == 19
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for constants in ("imagenet-c", "cifar-c"):
            for name in available(constants):
                for severity in SEVERITIES:
                    out = corrupt_image(IMAGE, name, severity, constants, seed=0, index=0)
                    assert out.dtype == np.uint8 and out.shape == IMAGE.shape, (name, severity)


@pytest.mark.parametrize("size", [64, 224])
def test_larger_images_keep_their_shape(size):
    img = _image(size)
    for name in ("frost", "zoom_blur", "snow", "impulse_noise"):
        out = corrupt_image(img, name, 5, "imagenet-c", seed=0, index=0)
        assert out.shape == img.shape and out.dtype == np.uint8


def test_deterministic_and_restores_caller_rng():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    a = corrupt_image(IMAGE, "frost", 3, "imagenet-c", seed=7, index=4)
    assert np.random.rand() == expected
    b = corrupt_image(IMAGE, "frost", 3, "imagenet-c", seed=7, index=4)
    c = corrupt_image(IMAGE, "frost", 3, "imagenet-c", seed=7, index=5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_grey_inputs_become_rgb():
    grey = IMAGE[..., 0]
    out = corrupt_image(grey, "contrast", 1, "imagenet-c", 0, 0)
    assert out.shape == (32, 32, 3)


def test_package_tables_are_the_imagenet_c_ones():
    assert compat.severity_table_source("brightness") == "[0.1, 0.2, 0.3, 0.4, 0.5]"
    assert compat.severity_table_source("jpeg_compression") == "[25, 18, 15, 10, 7]"
    assert compat.severity_table_source("zoom_blur").startswith("[np.arange(1, 1.11, 0.01)")


@pytest.mark.crosslib
def test_cifar_c_table_changes_the_parameter():
    grey = np.full((32, 32, 3), 128, np.uint8)  # V = 128/255 in HSV
    inet = corrupt_image(grey, "brightness", 1, "imagenet-c", 0, 0)
    cifar = corrupt_image(grey, "brightness", 1, "cifar-c", 0, 0)
    assert inet[0, 0, 0] == int((128 / 255 + 0.1) * 255)
    assert cifar[0, 0, 0] == int((128 / 255 + 0.05) * 255)


def test_serial_opencv_is_scoped():
    before = cv2.getNumThreads()
    with compat.serial_opencv():
        assert cv2.getNumThreads() <= 1
    assert cv2.getNumThreads() == before
