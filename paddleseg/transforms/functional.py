"""Array-level image and label operations behind the transforms.

Images are ``HxWxC`` (or ``HxW``) numpy arrays, ``uint8`` while only
geometric and colour operations have touched them and ``float32`` once
normalised; labels are ``HxW`` integer arrays. Everything goes through
OpenCV on the ``uint8`` data where possible: a lookup table or one
``cv2`` call per operation, no PIL round trips and no ``float64``.
"""

import cv2
import numpy as np
import paddle
from PIL import Image

from paddleseg.errors import DatasetError

try:  # libspng decodes 8-bit PNGs about 1.5x faster than OpenCV's libpng
    import pyspng
except ImportError:  # pragma: no cover - it is in requirements.txt
    pyspng = None

# ITU-R 601 luma weights of R, G, B (the ones PIL's and OpenCV's RGB->L use).
_LUMA = (0.299, 0.587, 0.114)
# cv2 rounds blends to nearest; PIL truncates. Subtracting just under 0.5
# before rounding turns the rounding into the same truncation.
_TRUNCATE = -0.499
_SMOOTH_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13


_JPEG_START = b'\xff\xd8\xff'
_JPEG_SCAN, _JPEG_END = b'\xff\xda', b'\xff\xd9'


def is_truncated_jpeg(path):
    """True when ``path`` is a JPEG file cut short: no end-of-image marker
    after its last scan. (OpenCV decodes such a file with a warning and
    fills the missing part with grey; a PNG cut short does not decode.)
    An unreadable file is not a truncated JPEG."""
    try:
        with open(path, 'rb') as f:
            if f.read(3) != _JPEG_START:
                return False
            f.seek(-2, 2)
            if f.read(2) == _JPEG_END:  # the usual case, without reading it all
                return False
            f.seek(0)
            data = f.read()
    except OSError:
        return False
    scan = data.rfind(_JPEG_SCAN)
    return scan < 0 or data.find(_JPEG_END, scan) < 0


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'  # the IEND chunk, with its CRC
_PNG_GRAY, _PNG_RGB = 0, 2  # IHDR colour types
_SPNG_FORMAT = {_PNG_GRAY: 'L', _PNG_RGB: 'RGB'}


def _read_png_8bit(path, colour_types):
    """Decode ``path`` with libspng when it is an 8-bit PNG of one of
    ``colour_types`` (gray: ``HxW``, RGB: ``HxWx3`` in RGB order); None in
    every other case (not a PNG, another depth or colour type, no pyspng,
    unreadable or corrupt), which leaves the file to OpenCV, whose result
    (or error) is the reference: for these PNGs both give the same pixels."""
    if pyspng is None:
        return None
    try:
        with open(path, 'rb') as f:
            header = f.read(26)  # signature, IHDR up to depth and colour type
            if (len(header) < 26 or not header.startswith(_PNG_SIGNATURE)
                    or header[12:16] != b'IHDR' or header[24] != 8
                    or header[25] not in colour_types):
                return None  # a JPEG, say: read by OpenCV alone, once
            data = header + f.read()
    except OSError:
        return None
    colour = header[25]
    if len(data) < 45 or not data.endswith(_PNG_END):  # cut short: libspng may not notice
        return None
    try:
        return pyspng.load(data, format=_SPNG_FORMAT[colour])
    except Exception:  # corrupt or truncated: OpenCV reports it
        return None


def _check_complete(path, kind):
    if is_truncated_jpeg(path):
        raise DatasetError('{} {} is a truncated JPEG (it ends before its '
                           'end-of-image marker)'.format(kind, path))


def read_image(path, img_channels=3, to_rgb=True):
    """Read an image file as ``uint8``.

    Args:
        path (str): The image file.
        img_channels (int, optional): 3 reads colour (``HxWx3``), 1 reads
            grayscale (``HxW``). Default: 3.
        to_rgb (bool, optional): Return colour images in RGB order instead of
            OpenCV's BGR. Default: True.

    Raises:
        DatasetError: The file is missing, corrupt or not an image.
    """
    gray = img_channels == 1
    img = _read_png_8bit(path, (_PNG_GRAY,) if gray else (_PNG_RGB,))
    if img is not None:  # grayscale or RGB already
        return img if gray or to_rgb else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    _check_complete(path, 'image')
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError('cannot read image {} (missing, corrupt or not an '
                           'image)'.format(path))
    if to_rgb and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def read_label(path):
    """Read a label file's class ids as stored, ``HxW`` (``uint8`` for 8-bit PNGs).

    Palette PNGs give their palette indices, as PIL reads them.

    Raises:
        DatasetError: The file is unreadable or holds more than one channel
            of colour.
    """
    label = _read_png_8bit(path, (_PNG_GRAY,))
    if label is not None:
        return label
    _check_complete(path, 'label')
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if label is None:
        raise DatasetError('cannot read label {} (missing, corrupt or not an '
                           'image)'.format(path))
    if label.ndim == 3:  # OpenCV expands palette PNGs to colour
        with Image.open(path) as pil_label:
            if pil_label.mode not in ('P', 'L'):
                raise DatasetError(
                    'label {} has {} channels (mode {}); a label must be a '
                    'single-channel image of class ids'.format(
                        path, label.shape[2], pil_label.mode))
            label = np.asarray(pil_label)
    return label


def invalid_label_values(label, num_classes, ignore_index):
    """The sorted values of ``label`` neither in ``[0, num_classes)`` nor ``ignore_index``."""
    if label.dtype == np.uint8:
        hist = cv2.calcHist([label], [0], None, [256], [0, 256])
        present = np.flatnonzero(hist)
    else:
        present = np.unique(label)
    bad = (present < 0) | (present >= num_classes)
    bad &= present != ignore_index
    return present[bad].tolist()


def resize(img, size, interp=cv2.INTER_LINEAR):
    """Resize to ``size`` = (width, height) or to a square of side ``size``."""
    if isinstance(size, (list, tuple)):
        w, h = size
    else:
        w = h = size
    return cv2.resize(img, (int(w), int(h)), interpolation=interp)


def scale_size(h, w, scale):
    """``(width, height)`` of an ``h x w`` image scaled by ``scale``, rounded."""
    return int(round(w * scale)), int(round(h * scale))


def resize_long(img, long_size, interp=cv2.INTER_LINEAR):
    """Resize so the long side is ``long_size``, keeping the aspect ratio."""
    h, w = img.shape[:2]
    return resize(img, scale_size(h, w, long_size / max(h, w)), interp)


def resize_short(img, short_size, interp=cv2.INTER_LINEAR):
    """Resize so the short side is ``short_size``, keeping the aspect ratio."""
    h, w = img.shape[:2]
    return resize(img, scale_size(h, w, short_size / min(h, w)), interp)


def rescale_size(img_size, target_size):
    """Fit ``img_size`` (w, h) into ``target_size`` keeping the aspect ratio.

    The long side is matched to ``max(target_size)`` unless that makes the
    short side exceed ``min(target_size)``.

    Returns:
        tuple: ``([new_w, new_h], scale)``.
    """
    scale = min(max(target_size) / max(img_size),
                min(target_size) / min(img_size))
    return [int(round(s * scale)) for s in img_size], scale


def _fits_dtype(value, dtype):
    """Whether ``value`` is exactly representable in ``dtype``."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    return True


def pad(img, pad_h, pad_w, value):
    """Pad ``pad_h`` rows at the bottom and ``pad_w`` columns at the right.

    Every channel is padded with ``value``. An integer image that cannot hold
    ``value`` exactly (e.g. ``uint8`` and 127.5) is promoted to ``float32``.
    """
    if not _fits_dtype(value, img.dtype):
        img = img.astype(np.float32)
    channels = 1 if img.ndim == 2 else img.shape[2]
    return cv2.copyMakeBorder(img, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                              value=(value, ) * channels)


def rotate(img, matrix, size, interp, value):
    """``cv2.warpAffine`` onto a ``size`` = (w, h) canvas filled with ``value``.

    Like :func:`pad`, promotes an integer image that cannot hold ``value``.
    """
    if not _fits_dtype(value, img.dtype):
        img = img.astype(np.float32)
    channels = 1 if img.ndim == 2 else img.shape[2]
    return cv2.warpAffine(img, matrix, tuple(size), flags=interp,
                          borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(value, ) * channels)


def crop(img, box):
    """The ``box`` = (x1, y1, x2, y2) window of ``img`` (a view, no copy)."""
    x1, y1, x2, y2 = box
    return img[y1:y2, x1:x2]


def horizontal_flip(img):
    """Mirror left-right (a view)."""
    return img[:, ::-1]


def vertical_flip(img):
    """Mirror top-bottom (a view)."""
    return img[::-1]


def to_uint8(img):
    """``img`` as ``uint8``: float values are clipped to [0, 255] and truncated."""
    if img.dtype == np.uint8:
        return img
    return np.clip(img, 0, 255).astype(np.uint8)


def _truncated_lut(values):
    """A ``uint8`` lookup table from 256 float values, clipped and truncated like PIL."""
    return np.clip(values, 0, 255).astype(np.uint8)


def _luma_mean(img):
    """The mean of the image's grayscale (luma) version."""
    means = cv2.mean(img)
    if img.ndim == 2:
        return means[0]
    return sum(m * k for m, k in zip(means, _LUMA))


def brightness(img, factor):
    """Scale intensities by ``factor`` (PIL ``ImageEnhance.Brightness``). ``uint8`` in and out."""
    values = np.arange(256, dtype=np.float32) * np.float32(factor)
    return cv2.LUT(img, _truncated_lut(values))


def contrast(img, factor):
    """Blend with the mean luma by ``factor`` (PIL ``ImageEnhance.Contrast``). ``uint8`` in and out."""
    mean = np.float32(int(_luma_mean(img) + 0.5))
    values = mean + np.float32(factor) * (np.arange(256, dtype=np.float32) -
                                          mean)
    return cv2.LUT(img, _truncated_lut(values))


def saturation(img, factor):
    """Blend an RGB image with its grayscale by ``factor`` (PIL ``ImageEnhance.Color``).

    ``uint8`` in and out; a 2-D (grayscale) image is returned unchanged.
    """
    if img.ndim == 2:
        return img
    gray = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY),
                        cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(img, factor, gray, 1.0 - factor, _TRUNCATE)


def hue(img, delta):
    """Rotate the hue of an RGB ``uint8`` image by ``delta`` steps of a 256-step circle."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    shift = (np.arange(256) + int(np.floor(delta))) % 256
    hsv[..., 0] = cv2.LUT(hsv[..., 0], shift.astype(np.uint8))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def sharpness(img, factor):
    """Blend with PIL's 3x3 SMOOTH filter by ``factor`` (PIL ``ImageEnhance.Sharpness``).

    ``uint8`` in and out; as in PIL the 1-pixel border is left unfiltered.
    """
    smooth = cv2.filter2D(img, -1, _SMOOTH_KERNEL)
    smooth[[0, -1]] = img[[0, -1]]
    smooth[:, [0, -1]] = img[:, [0, -1]]
    return cv2.addWeighted(img, factor, smooth, 1.0 - factor, _TRUNCATE)


def round_to_uint8(img):
    """``img`` as ``uint8``, float values rounded to nearest (halves to even:
    127.5 -> 128) and clipped to [0, 255]; ``uint8`` is returned as it is.
    (:func:`to_uint8` truncates instead, as PIL's colour operations do.)"""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _normalize_args(mean, std, channels):
    mean = np.asarray(mean, np.float32).reshape(-1)
    std = np.asarray(std, np.float32).reshape(-1)
    if max(len(mean), len(std)) not in (1, channels):
        raise ValueError('Normalize has mean {} and std {} but the image has '
                         '{} channels'.format(mean.tolist(), std.tolist(),
                                              channels))
    return mean, std


def normalize_table(mean, std, channels):
    """``float32 [256, channels]``: ``(v / 255 - mean[c]) / std[c]`` for each
    ``uint8`` value ``v`` and channel ``c``, the one table behind
    :func:`normalize` of ``uint8`` images and the training loader's
    normalisation on the device (:mod:`paddleseg.core.loader`)."""
    mean, std = _normalize_args(mean, std, channels)
    table = (np.arange(256, dtype=np.float32)[:, None] / 255 - mean) / std
    return np.ascontiguousarray(np.broadcast_to(table, (256, channels)))


def normalize(img, mean, std):
    """``(img / 255 - mean) / std`` as ``float32``, per channel.

    Args:
        img (np.ndarray): ``HxWxC`` or ``HxW``; ``uint8`` goes through a
            256-entry lookup table (:func:`normalize_table`), other dtypes
            are computed directly.
        mean (sequence): 1 value (for every channel) or one per channel.
        std (sequence): Likewise.
    """
    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype != np.uint8:
        mean, std = _normalize_args(mean, std, channels)
        return (img.astype(np.float32) / 255 - mean) / std
    table = normalize_table(mean, std, channels)
    if channels > 1:
        table = table.reshape(256, 1, channels)
    return cv2.LUT(img, table)


def _as_int(value):
    """An int from a number, or from a one-element array or tensor (a collated batch)."""
    return int(np.asarray(value).reshape(-1)[0])


def _trans_step(item):
    """``(op, h, w)`` from a ``trans_info`` entry, raw ``('resize', (h, w))``
    or as batch collation leaves it ``(['resize'], [h_array, w_array])``."""
    op, (h, w) = item
    if not isinstance(op, str):
        op = op[0]
    return op, _as_int(h), _as_int(w)


def reverse_transform(pred, trans_info, mode='nearest'):
    """Undo the recorded resizes and paddings, mapping a prediction back to the original size.

    Args:
        pred (paddle.Tensor): ``[N, C, H, W]`` labels or logits of the
            transformed image(s).
        trans_info (list): The item's ``trans_info`` (one image's sizes; a
            collated batch of size 1 works too).
        mode (str, optional): Interpolation used to undo resizes,
            ``'nearest'`` (labels) or ``'bilinear'`` (logits). Default:
            ``'nearest'``.

    Returns:
        paddle.Tensor: ``[N, C, H0, W0]`` of ``pred``'s dtype.
    """
    for item in reversed(trans_info):
        op, h, w = _trans_step(item)
        if op == 'resize':
            dtype = pred.dtype
            pred = paddle.nn.functional.interpolate(pred.astype('float32'),
                                                   [h, w], mode=mode)
            pred = pred.astype(dtype)
        elif op == 'padding':
            pred = pred[:, :, :h, :w]
        else:
            raise ValueError('unknown trans_info step {!r}'.format(op))
    return pred
