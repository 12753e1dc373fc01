"""8-bit RGB and grayscale PNGs are decoded by libspng (pyspng), everything
else by OpenCV; the two must give the same arrays and the same errors.
Without pyspng (it is optional) OpenCV reads everything: the tests that
compare with libspng are skipped, the others run."""

import cv2
import numpy as np
import pytest
from PIL import Image

from paddleseg.errors import DatasetError
from paddleseg.transforms import functional as F


@pytest.fixture
def spng_calls(monkeypatch):
    pyspng = pytest.importorskip('pyspng', reason='pyspng (requirements.txt) is not '
                                 'installed: PNGs are read by OpenCV only')
    assert F.pyspng is pyspng  # the reader uses it when it is there
    calls = []
    real = pyspng.load

    def load(data, format=None):
        calls.append(format)
        return real(data, format=format)
    monkeypatch.setattr(F.pyspng, 'load', load)
    return calls


@pytest.fixture
def opencv_only(monkeypatch):
    def read(fn, *args, **kwargs):
        installed = F.pyspng
        monkeypatch.setattr(F, 'pyspng', None)
        try:
            return fn(*args, **kwargs)
        finally:
            monkeypatch.setattr(F, 'pyspng', installed)
    return read


def _noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize('to_rgb', [True, False])
def test_rgb_png_is_decoded_by_libspng_like_opencv(tmp_path, spng_calls, opencv_only, to_rgb):
    path = str(tmp_path / 'img.png')
    bgr = _noise((37, 53, 3))
    cv2.imwrite(path, bgr)
    fast = F.read_image(path, to_rgb=to_rgb)
    assert spng_calls == ['RGB']
    reference = opencv_only(F.read_image, path, to_rgb=to_rgb)
    assert fast.dtype == np.uint8 and fast.shape == (37, 53, 3)
    np.testing.assert_array_equal(fast, reference)
    np.testing.assert_array_equal(fast, bgr[:, :, ::-1] if to_rgb else bgr)


def test_gray_image_and_label(tmp_path, spng_calls, opencv_only):
    path = str(tmp_path / 'gray.png')
    gray = _noise((20, 30), seed=1) % 19
    cv2.imwrite(path, gray)
    label = F.read_label(path)
    image = F.read_image(path, img_channels=1)
    assert spng_calls == ['L', 'L']
    for got in (label, image):
        assert got.dtype == np.uint8 and got.shape == (20, 30)
        np.testing.assert_array_equal(got, gray)
    np.testing.assert_array_equal(label, opencv_only(F.read_label, path))
    np.testing.assert_array_equal(image, opencv_only(F.read_image, path, img_channels=1))


def test_without_pyspng_opencv_reads_8_bit_pngs(tmp_path, opencv_only):
    bgr, gray = _noise((11, 13, 3), seed=6), _noise((9, 7), seed=7)
    cv2.imwrite(str(tmp_path / 'c.png'), bgr)
    cv2.imwrite(str(tmp_path / 'g.png'), gray)
    np.testing.assert_array_equal(opencv_only(F.read_image, str(tmp_path / 'c.png')),
                                  bgr[:, :, ::-1])
    np.testing.assert_array_equal(opencv_only(F.read_label, str(tmp_path / 'g.png')), gray)
    np.testing.assert_array_equal(
        opencv_only(F.read_image, str(tmp_path / 'g.png'), img_channels=1), gray)


def test_other_pngs_go_to_opencv(tmp_path, spng_calls, opencv_only):
    # a palette label (indices, as PIL reads them), a 16-bit label, an RGBA
    # image and a gray file read as colour: all left to OpenCV / PIL
    palette = tmp_path / 'p.png'
    indices = (_noise((8, 9), seed=2) % 5).astype(np.uint8)
    img = Image.fromarray(indices, mode='P')
    img.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 3 % 256, i)])
    img.save(palette)
    np.testing.assert_array_equal(F.read_label(str(palette)), indices)
    deep = str(tmp_path / 'deep.png')
    wide = np.random.default_rng(3).integers(0, 1000, (6, 7)).astype(np.uint16)
    cv2.imwrite(deep, wide)
    got = F.read_label(deep)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, wide)
    rgba = str(tmp_path / 'rgba.png')
    cv2.imwrite(rgba, _noise((5, 6, 4), seed=4))
    np.testing.assert_array_equal(F.read_image(rgba), opencv_only(F.read_image, rgba))
    gray = str(tmp_path / 'g.png')
    cv2.imwrite(gray, _noise((5, 6), seed=5))
    assert F.read_image(gray).shape == (5, 6, 3)
    assert spng_calls == []


@pytest.mark.parametrize('keep', [200, -30, -12, -1])
@pytest.mark.parametrize('reader', [F.read_image, F.read_label])
def test_corrupt_or_missing_png_gives_the_same_error(tmp_path, opencv_only, reader, keep):
    """Cut inside the image data, or only in the end chunk (all pixels are
    there, and libspng would decode them): OpenCV's error either way."""
    path = tmp_path / 'bad.png'
    cv2.imwrite(str(path), _noise((40, 40, 3) if reader is F.read_image else (40, 40)))
    path.write_bytes(path.read_bytes()[:keep])
    missing = str(tmp_path / 'missing.png')
    for target in (str(path), missing):
        with pytest.raises(DatasetError) as fast:
            reader(target)
        with pytest.raises(DatasetError) as reference:
            opencv_only(reader, target)
        assert str(fast.value) == str(reference.value)
        assert target in str(fast.value) and 'cannot read' in str(fast.value)
