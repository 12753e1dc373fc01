"""Data transforms, built from configs by class name with PaddleSeg's argument names.

Every transform is a callable taking and returning the item dict:

* ``img``: ``HxWxC`` (or ``HxW``) array. It stays ``uint8`` (as read) through
  the geometric and colour transforms, which is what makes them cheap, and
  becomes ``float32`` at :class:`Normalize` (or earlier, where a transform
  needs values ``uint8`` cannot hold: padding with 127.5, noise).
* the keys named in ``gt_fields`` (usually ``['label']``): ``HxW`` integer
  arrays moved along with the image, always with nearest-neighbour
  interpolation and padded with ``label_padding_value`` (255).
* ``trans_info``: the ``('resize' | 'padding', (h, w))`` size before each
  :class:`Resize`-family or :class:`Padding` step, which
  :func:`paddleseg.transforms.functional.reverse_transform` undoes.

Random choices come from Python's ``random`` and numpy's global RNG, drawn
in the same order as PaddleSeg 2.8 draws them, so seeding both makes a
pipeline deterministic.
"""

import math
import random

import cv2
import numpy as np

from paddleseg.cvlibs import manager
from paddleseg.errors import ConfigError
from paddleseg.transforms import functional as F

__all__ = [
    'Compose', 'RandomHorizontalFlip', 'RandomVerticalFlip', 'Resize',
    'ResizeByLong', 'ResizeByShort', 'LimitLong', 'ResizeRangeScaling',
    'ResizeStepScaling', 'Normalize', 'Padding', 'PaddingByAspectRatio',
    'RandomPaddingCrop', 'RandomNoise', 'RandomBlur', 'RandomRotation',
    'RandomScaleAspect', 'RandomDistort'
]

INTERPOLATIONS = {
    'NEAREST': cv2.INTER_NEAREST,
    'LINEAR': cv2.INTER_LINEAR,
    'CUBIC': cv2.INTER_CUBIC,
    'AREA': cv2.INTER_AREA,
    'LANCZOS4': cv2.INTER_LANCZOS4,
}


def _size_pair(value, name, owner):
    """``value`` as a ``(width, height)`` tuple; an int means a square."""
    if isinstance(value, int):
        return value, value
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError('{}: {} must be [width, height], got {!r}'.format(
            owner, name, value))
    return tuple(value)


def _apply(data, img_fn, label_fn):
    """Apply ``img_fn`` to the image and ``label_fn`` to every ``gt_fields`` key."""
    data['img'] = img_fn(data['img'])
    for key in data.get('gt_fields', []):
        data[key] = label_fn(data[key])
    return data


def _resize_all(data, size, interp=cv2.INTER_LINEAR):
    """Resize image (with ``interp``) and labels (nearest) to ``size`` = (w, h)."""
    return _apply(data, lambda img: F.resize(img, size, interp),
                  lambda label: F.resize(label, size, cv2.INTER_NEAREST))


def _record(data, step):
    """Append ``(step, (h, w))`` of the current image to ``trans_info``."""
    data.setdefault('trans_info', []).append((step, data['img'].shape[:2]))


def _channels(img):
    return 1 if img.ndim == 2 else img.shape[2]


@manager.TRANSFORMS.add_component
class Compose:
    """Load an item, run the transforms, and lay the image out as ``CHW float32``
    (or ``uint8``: :meth:`split_normalize`).

    Args:
        transforms (list): The transforms, applied in order; empty means
            only load and lay out.
        to_rgb (bool, optional): Turn colour images read from a path from
            OpenCV's BGR to RGB. Default: True.
        img_channels (int, optional): 3 (colour) or 1 (grayscale): how a path
            is read, and the channel count an array must have. Default: 3.
    """

    def __init__(self, transforms, to_rgb=True, img_channels=3):
        if not isinstance(transforms, (list, tuple)):
            raise ConfigError('Compose: transforms must be a list, got '
                              '{!r}'.format(transforms))
        if img_channels not in (1, 3):
            raise ConfigError('Compose: img_channels must be 1 or 3, got '
                              '{!r}'.format(img_channels))
        self.transforms = list(transforms)
        self.to_rgb = to_rgb
        self.img_channels = img_channels
        self.img_dtype = np.float32

    def split_normalize(self):
        """Defer a final :class:`Normalize` (the training loader's compact
        batches, :mod:`paddleseg.core.loader`).

        Returns:
            tuple|None: ``(head, normalize)`` when the last transform is a
            :class:`Normalize`: ``head`` a Compose of the transforms before
            it whose image comes out ``uint8 [C, H, W]`` (a float image,
            e.g. padded with 127.5, rounded to nearest:
            :func:`~paddleseg.transforms.functional.round_to_uint8`), and
            that Normalize, for the caller to apply later. None otherwise.
        """
        if not self.transforms or not isinstance(self.transforms[-1], Normalize):
            return None
        head = Compose(self.transforms[:-1], self.to_rgb, self.img_channels)
        head.img_dtype = np.uint8
        return head, self.transforms[-1]

    def __call__(self, data):
        """Transform one item.

        Args:
            data (dict): ``img`` (a path, or an ``HxWxC``/``HxW`` array taken
                as it is, in the channel order wanted), optional ``label``
                (a path or an ``HxW`` array), ``gt_fields`` (keys to
                transform with the image; default none) and ``trans_info``.

        Returns:
            dict: ``data`` with ``img`` a C-contiguous ``float32 [C, H, W]``
            (``uint8`` for the head of :meth:`split_normalize`) and
            ``trans_info`` (created empty if absent).
        """
        if isinstance(data['img'], str):
            data['img'] = F.read_image(data['img'], self.img_channels,
                                       self.to_rgb)
        elif _channels(data['img']) != self.img_channels:
            raise ValueError('Compose: img_channels is {} but the image has {} '
                             'channels'.format(self.img_channels,
                                               _channels(data['img'])))
        if isinstance(data.get('label'), str):
            data['label'] = F.read_label(data['label'])
        data.setdefault('trans_info', [])
        for op in self.transforms:
            data = op(data)
        img = data['img']
        if img.ndim == 2:
            img = img[:, :, np.newaxis]
        if self.img_dtype == np.uint8:
            img = F.round_to_uint8(img)
        data['img'] = np.ascontiguousarray(img.transpose(2, 0, 1),
                                           dtype=self.img_dtype)
        return data


@manager.TRANSFORMS.add_component
class RandomHorizontalFlip:
    """Mirror image and labels left-right with probability ``prob`` (default 0.5)."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, data):
        if random.random() < self.prob:
            _apply(data, F.horizontal_flip, F.horizontal_flip)
        return data


@manager.TRANSFORMS.add_component
class RandomVerticalFlip:
    """Mirror image and labels top-bottom with probability ``prob`` (default 0.1)."""

    def __init__(self, prob=0.1):
        self.prob = prob

    def __call__(self, data):
        if random.random() < self.prob:
            _apply(data, F.vertical_flip, F.vertical_flip)
        return data


@manager.TRANSFORMS.add_component
class Resize:
    """Resize to a fixed size; records ``('resize', (h, w))``.

    Args:
        target_size (list|tuple, optional): ``[width, height]``. Default:
            (512, 512).
        keep_ratio (bool, optional): Keep the aspect ratio, fitting the image
            inside ``target_size`` (long side to the larger target side unless
            the short side would then exceed the smaller one). Default: False.
        size_divisor (int, optional): Round both sides up to a multiple of it.
            Default: None.
        interp (str, optional): Image interpolation, one of ``NEAREST``,
            ``LINEAR``, ``CUBIC``, ``AREA``, ``LANCZOS4`` or ``RANDOM`` (one of
            those drawn per call). Default: ``'LINEAR'``.
    """

    def __init__(self,
                 target_size=(512, 512),
                 keep_ratio=False,
                 size_divisor=None,
                 interp='LINEAR'):
        if interp != 'RANDOM' and interp not in INTERPOLATIONS:
            raise ConfigError('Resize: interp must be RANDOM or one of {}, got '
                              '{!r}'.format(', '.join(INTERPOLATIONS), interp))
        if size_divisor is not None and not isinstance(size_divisor, int):
            raise ConfigError('Resize: size_divisor must be an int or None, '
                              'got {!r}'.format(size_divisor))
        self.target_size = _size_pair(target_size, 'target_size', 'Resize')
        self.keep_ratio = keep_ratio
        self.size_divisor = size_divisor
        self.interp = interp

    def __call__(self, data):
        _record(data, 'resize')
        interp = self.interp
        if interp == 'RANDOM':
            interp = random.choice(list(INTERPOLATIONS))
        size = self.target_size
        if self.keep_ratio:
            h, w = data['img'].shape[:2]
            size, _ = F.rescale_size((w, h), size)
        if self.size_divisor:
            size = [
                math.ceil(s / self.size_divisor) * self.size_divisor
                for s in size
            ]
        return _resize_all(data, size, INTERPOLATIONS[interp])


@manager.TRANSFORMS.add_component
class ResizeByLong:
    """Resize so the long side is ``long_size``, keeping the aspect ratio; records ``resize``."""

    def __init__(self, long_size):
        self.long_size = long_size

    def __call__(self, data):
        _record(data, 'resize')
        h, w = data['img'].shape[:2]
        return _resize_all(data, F.scale_size(h, w, self.long_size / max(h, w)))


@manager.TRANSFORMS.add_component
class ResizeByShort:
    """Resize so the short side is ``short_size``, keeping the aspect ratio; records ``resize``.

    Args:
        short_size (int|list): The short side; a list means one of its values,
            drawn per call.
        max_size (int, optional): Shrink the short side so the long side does
            not exceed this. Default: 1e10 (no limit).
    """

    def __init__(self, short_size, max_size=1e10):
        self.short_size = short_size
        self.max_size = max_size

    def __call__(self, data):
        _record(data, 'resize')
        h, w = data['img'].shape[:2]
        short = self.short_size
        if isinstance(short, (list, tuple)):
            short = random.choice(short)
        if short / min(h, w) * max(h, w) > self.max_size:
            short = int(self.max_size / max(h, w) * min(h, w))
        return _resize_all(data, F.scale_size(h, w, short / min(h, w)))


@manager.TRANSFORMS.add_component
class LimitLong:
    """Resize (keeping the aspect ratio) only if the long side is outside [min_long, max_long].

    Records ``resize`` either way.

    Args:
        max_long (int, optional): Longest allowed long side. Default: None.
        min_long (int, optional): Shortest allowed long side. Default: None.
    """

    def __init__(self, max_long=None, min_long=None):
        for name, value in (('max_long', max_long), ('min_long', min_long)):
            if value is not None and not isinstance(value, int):
                raise ConfigError('LimitLong: {} must be an int or None, got '
                                  '{!r}'.format(name, value))
        if None not in (max_long, min_long) and min_long > max_long:
            raise ConfigError('LimitLong: min_long ({}) is larger than '
                              'max_long ({})'.format(min_long, max_long))
        self.max_long = max_long
        self.min_long = min_long

    def __call__(self, data):
        _record(data, 'resize')
        h, w = data['img'].shape[:2]
        long_side = max(h, w)
        target = long_side
        if self.max_long is not None and long_side > self.max_long:
            target = self.max_long
        elif self.min_long is not None and long_side < self.min_long:
            target = self.min_long
        if target == long_side:
            return data
        return _resize_all(data, F.scale_size(h, w, target / long_side))


@manager.TRANSFORMS.add_component
class ResizeRangeScaling:
    """Resize the long side to a size drawn uniformly from [min_value, max_value].

    Args:
        min_value (int, optional): Default: 400.
        max_value (int, optional): Default: 600.
    """

    def __init__(self, min_value=400, max_value=600):
        if min_value > max_value:
            raise ConfigError('ResizeRangeScaling: min_value ({}) is larger '
                              'than max_value ({})'.format(min_value,
                                                           max_value))
        self.min_value = min_value
        self.max_value = max_value

    def __call__(self, data):
        long_size = self.max_value
        if self.min_value != self.max_value:
            long_size = int(
                np.random.uniform(self.min_value, self.max_value) + 0.5)
        h, w = data['img'].shape[:2]
        return _resize_all(data, F.scale_size(h, w, long_size / max(h, w)))


@manager.TRANSFORMS.add_component
class ResizeStepScaling:
    """Scale by a factor drawn from ``min, min + step, ..., max`` (uniformly).

    Args:
        min_scale_factor (float, optional): Default: 0.75.
        max_scale_factor (float, optional): Default: 1.25.
        scale_step_size (float, optional): The step; 0 draws the factor from
            the continuous range. Default: 0.25.
    """

    def __init__(self,
                 min_scale_factor=0.75,
                 max_scale_factor=1.25,
                 scale_step_size=0.25):
        if min_scale_factor > max_scale_factor:
            raise ConfigError('ResizeStepScaling: min_scale_factor ({}) is '
                              'larger than max_scale_factor ({})'.format(
                                  min_scale_factor, max_scale_factor))
        self.min_scale_factor = min_scale_factor
        self.max_scale_factor = max_scale_factor
        self.scale_step_size = scale_step_size

    def _draw_factor(self):
        low, high = self.min_scale_factor, self.max_scale_factor
        if low == high:
            return low
        if self.scale_step_size == 0:
            return np.random.uniform(low, high)
        num_steps = int((high - low) / self.scale_step_size + 1)
        factors = np.linspace(low, high, num_steps).tolist()
        np.random.shuffle(factors)
        return factors[0]

    def __call__(self, data):
        h, w = data['img'].shape[:2]
        return _resize_all(data, F.scale_size(h, w, self._draw_factor()))


@manager.TRANSFORMS.add_component
class Normalize:
    """``(img / 255 - mean) / std`` per channel, giving ``float32``.

    Args:
        mean (list|tuple, optional): One value for every channel, or one per
            channel. Default: (0.5, ).
        std (list|tuple, optional): Likewise; no zeros. Default: (0.5, ).
    """

    def __init__(self, mean=(0.5, ), std=(0.5, )):
        for name, value in (('mean', mean), ('std', std)):
            if not isinstance(value, (list, tuple)) or len(value) not in (1, 3):
                raise ConfigError('Normalize: {} must be a list of 1 or 3 '
                                  'numbers, got {!r}'.format(name, value))
        if 0 in std:
            raise ConfigError('Normalize: std must not contain 0, got '
                              '{!r}'.format(std))
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, data):
        data['img'] = F.normalize(data['img'], self.mean, self.std)
        return data


def _pad_to(data, target_w, target_h, im_value, label_value, owner):
    """Pad bottom-right up to ``target_w x target_h`` and record ``padding``."""
    h, w = data['img'].shape[:2]
    if h > target_h or w > target_w:
        raise ConfigError('{}: the image ({}x{}, w x h) is larger than the '
                          'target size ({}x{})'.format(owner, w, h, target_w,
                                                       target_h))
    _record(data, 'padding')
    pad_h, pad_w = target_h - h, target_w - w
    return _apply(data, lambda img: F.pad(img, pad_h, pad_w, im_value),
                  lambda label: F.pad(label, pad_h, pad_w, label_value))


@manager.TRANSFORMS.add_component
class Padding:
    """Pad bottom-right up to ``target_size``; records ``('padding', (h, w))``.

    Args:
        target_size (list|tuple|int): ``[width, height]`` (an int: a square).
        im_padding_value (float, optional): Image fill. Default: 127.5.
        label_padding_value (int, optional): Label fill. Default: 255.
    """

    def __init__(self,
                 target_size,
                 im_padding_value=127.5,
                 label_padding_value=255):
        self.target_size = _size_pair(target_size, 'target_size', 'Padding')
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value

    def __call__(self, data):
        target_w, target_h = self.target_size
        return _pad_to(data, target_w, target_h, self.im_padding_value,
                       self.label_padding_value, 'Padding')


@manager.TRANSFORMS.add_component
class PaddingByAspectRatio:
    """Pad bottom-right to the aspect ratio ``width / height``; records ``padding`` if it pads.

    Args:
        aspect_ratio (float, optional): Default: 1.
        im_padding_value (float, optional): Image fill. Default: 127.5.
        label_padding_value (int, optional): Label fill. Default: 255.
    """

    def __init__(self,
                 aspect_ratio=1,
                 im_padding_value=127.5,
                 label_padding_value=255):
        self.aspect_ratio = aspect_ratio
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value

    def __call__(self, data):
        h, w = data['img'].shape[:2]
        ratio = w / h
        if ratio == self.aspect_ratio:
            return data
        if ratio > self.aspect_ratio:
            h = int(w / self.aspect_ratio)
        else:
            w = int(h * self.aspect_ratio)
        return _pad_to(data, w, h, self.im_padding_value,
                       self.label_padding_value, 'PaddingByAspectRatio')


@manager.TRANSFORMS.add_component
class RandomPaddingCrop:
    """Crop a random ``crop_size`` window, padding bottom-right first if the image is smaller.

    Args:
        crop_size (list|tuple, optional): ``[width, height]``. Default:
            (512, 512).
        im_padding_value (float, optional): Image fill. Default: 127.5.
        label_padding_value (int, optional): Label fill. Default: 255.
        category_max_ratio (float, optional): Below 1, redraw the window (up
            to ``loop_times`` times) until it holds at least two classes and
            none covers this fraction of its non-ignored pixels; the last draw
            is kept if none qualifies. Default: 1.0 (no check).
        ignore_index (int, optional): Label value left out of that check.
            Default: 255.
        loop_times (int, optional): Default: 10.
    """

    def __init__(self,
                 crop_size=(512, 512),
                 im_padding_value=127.5,
                 label_padding_value=255,
                 category_max_ratio=1.0,
                 ignore_index=255,
                 loop_times=10):
        if category_max_ratio <= 0:
            raise ConfigError('RandomPaddingCrop: category_max_ratio must be '
                              '> 0, got {!r}'.format(category_max_ratio))
        if loop_times <= 0:
            raise ConfigError('RandomPaddingCrop: loop_times must be > 0, got '
                              '{!r}'.format(loop_times))
        self.crop_size = _size_pair(crop_size, 'crop_size',
                                    'RandomPaddingCrop')
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value
        self.category_max_ratio = category_max_ratio
        self.ignore_index = ignore_index
        self.loop_times = loop_times

    def _random_box(self, h, w):
        crop_w, crop_h = self.crop_size
        y = np.random.randint(0, h - crop_h + 1)
        x = np.random.randint(0, w - crop_w + 1)
        return x, y, x + crop_w, y + crop_h

    def _balanced(self, label):
        values, counts = np.unique(label, return_counts=True)
        counts = counts[values != self.ignore_index]
        return (len(counts) > 1 and
                counts.max() / counts.sum() < self.category_max_ratio)

    def _choose_box(self, data, h, w):
        box = self._random_box(h, w)
        if self.category_max_ratio >= 1.0:
            return box
        for _ in range(self.loop_times):
            if self._balanced(F.crop(data['label'], box)):
                break
            box = self._random_box(h, w)
        return box

    def __call__(self, data):
        crop_w, crop_h = self.crop_size
        h, w = data['img'].shape[:2]
        if (h, w) == (crop_h, crop_w):
            return data
        pad_h, pad_w = max(crop_h - h, 0), max(crop_w - w, 0)
        if pad_h or pad_w:
            _apply(data,
                   lambda img: F.pad(img, pad_h, pad_w, self.im_padding_value),
                   lambda label: F.pad(label, pad_h, pad_w,
                                       self.label_padding_value))
        box = self._choose_box(data, h + pad_h, w + pad_w)
        return _apply(data, lambda img: F.crop(img, box),
                      lambda label: F.crop(label, box))


@manager.TRANSFORMS.add_component
class RandomNoise:
    """Add Gaussian noise (sigma drawn from [0, max_sigma)) with probability ``prob``; gives ``float32``.

    Args:
        prob (float, optional): Default: 0.5.
        max_sigma (float, optional): Default: 10.0.
    """

    def __init__(self, prob=0.5, max_sigma=10.0):
        self.prob = prob
        self.max_sigma = max_sigma

    def __call__(self, data):
        if random.random() < self.prob:
            sigma = random.random() * self.max_sigma
            img = data['img'].astype(np.float32)
            img += np.random.normal(0, sigma, img.shape).astype(np.float32)
            data['img'] = np.clip(img, 0, 255, out=img)
        return data


@manager.TRANSFORMS.add_component
class RandomBlur:
    """Blur the image with probability about ``prob`` and an odd kernel of 3 to 9.

    As in PaddleSeg the chance is ``1 / int(1 / prob)`` (0.1 -> 1/10,
    0.3 -> 1/3). The blurred image is ``uint8``.

    Args:
        prob (float, optional): Default: 0.1.
        blur_type (str, optional): ``gaussian``, ``median``, ``blur`` (box)
            or ``random`` (gaussian 30%, median 30%, box 40%). Default:
            ``'gaussian'``.
    """

    BLUR_TYPES = ('gaussian', 'median', 'blur', 'random')

    def __init__(self, prob=0.1, blur_type='gaussian'):
        if blur_type not in self.BLUR_TYPES:
            raise ConfigError('RandomBlur: blur_type must be one of {}, got '
                              '{!r}'.format(', '.join(self.BLUR_TYPES),
                                            blur_type))
        self.prob = prob
        self.blur_type = blur_type

    def _blur_type(self):
        if self.blur_type != 'random':
            return self.blur_type
        select = random.random()
        if select < 0.3:
            return 'gaussian'
        return 'median' if select < 0.6 else 'blur'

    def __call__(self, data):
        if self.prob <= 0:
            return data
        tries = 1 if self.prob >= 1 else int(1.0 / self.prob)
        if np.random.randint(0, tries) != 0:
            return data
        ksize = np.random.randint(3, 10) | 1  # 3, 5, 7 or 9
        img = F.to_uint8(data['img'])
        blur_type = self._blur_type()
        if blur_type == 'gaussian':
            data['img'] = cv2.GaussianBlur(img, (ksize, ksize), 0)
        elif blur_type == 'median':
            data['img'] = cv2.medianBlur(img, ksize)
        else:
            data['img'] = cv2.blur(img, (ksize, ksize))
        return data


@manager.TRANSFORMS.add_component
class RandomRotation:
    """Rotate by an angle drawn from [-max_rotation, max_rotation] degrees.

    The canvas grows to hold the whole rotated image; the corners are filled
    with the padding values.

    Args:
        max_rotation (float, optional): Default: 15.
        im_padding_value (float, optional): Image fill. Default: 127.5.
        label_padding_value (int, optional): Label fill. Default: 255.
    """

    def __init__(self,
                 max_rotation=15,
                 im_padding_value=127.5,
                 label_padding_value=255):
        self.max_rotation = max_rotation
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value

    def __call__(self, data):
        if self.max_rotation <= 0:
            return data
        h, w = data['img'].shape[:2]
        angle = np.random.uniform(-self.max_rotation, self.max_rotation)
        center = (w // 2, h // 2)
        matrix = cv2.getRotationMatrix2D(center, angle, 1.0)
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        new_w, new_h = int(h * sin + w * cos), int(h * cos + w * sin)
        matrix[0, 2] += new_w / 2 - center[0]
        matrix[1, 2] += new_h / 2 - center[1]
        size = (new_w, new_h)
        return _apply(
            data, lambda img: F.rotate(img, matrix, size, cv2.INTER_LINEAR,
                                       self.im_padding_value),
            lambda label: F.rotate(label, matrix, size, cv2.INTER_NEAREST,
                                   self.label_padding_value))


@manager.TRANSFORMS.add_component
class RandomScaleAspect:
    """Crop a random window of random area and aspect ratio and scale it back to the full size.

    Up to 10 draws; if no window fits, the item is unchanged.

    Args:
        min_scale (float, optional): Smallest window area as a fraction of
            the image. Default: 0.5.
        aspect_ratio (float, optional): Window aspect ratios are drawn from
            [aspect_ratio, 1 / aspect_ratio]; 0 (or ``min_scale`` 0) turns
            the transform off. Default: 0.33.
    """

    def __init__(self, min_scale=0.5, aspect_ratio=0.33):
        self.min_scale = min_scale
        self.aspect_ratio = aspect_ratio

    def _draw_box(self, h, w):
        """A random window ``(x1, y1, x2, y2)`` or None if the draw does not fit."""
        area = h * w * np.random.uniform(self.min_scale, 1.0)
        ratio = np.random.uniform(self.aspect_ratio, 1.0 / self.aspect_ratio)
        box_w, box_h = int(np.sqrt(area * ratio)), int(np.sqrt(area / ratio))
        if np.random.randint(10) < 5:
            box_w, box_h = box_h, box_w
        if box_h >= h or box_w >= w:
            return None
        y = np.random.randint(0, h - box_h)
        x = np.random.randint(0, w - box_w)
        return x, y, x + box_w, y + box_h

    def __call__(self, data):
        if self.min_scale == 0 or self.aspect_ratio == 0:
            return data
        h, w = data['img'].shape[:2]
        for _ in range(10):
            box = self._draw_box(h, w)
            if box is not None:
                _apply(data, lambda img: F.crop(img, box),
                       lambda label: F.crop(label, box))
                return _resize_all(data, (w, h))
        return data


@manager.TRANSFORMS.add_component
class RandomDistort:
    """Randomly change brightness, contrast, saturation, hue and sharpness, in random order.

    Each adjustment happens with its probability, with a factor drawn
    uniformly from ``[1 - range, 1 + range]`` (hue: an offset from
    ``[-hue_range, hue_range]`` on a 256-step hue circle). The arithmetic is
    PIL's ``ImageEnhance`` (as in PaddleSeg) done with OpenCV lookup tables
    on ``uint8``; the image comes out ``uint8``.

    Args:
        brightness_range (float, optional): Default: 0.5.
        brightness_prob (float, optional): Default: 0.5.
        contrast_range (float, optional): Default: 0.5.
        contrast_prob (float, optional): Default: 0.5.
        saturation_range (float, optional): Default: 0.5.
        saturation_prob (float, optional): Default: 0.5.
        hue_range (int, optional): Default: 18.
        hue_prob (float, optional): Default: 0.5.
        sharpness_range (float, optional): Default: 0.5.
        sharpness_prob (float, optional): Default: 0.
    """

    def __init__(self,
                 brightness_range=0.5,
                 brightness_prob=0.5,
                 contrast_range=0.5,
                 contrast_prob=0.5,
                 saturation_range=0.5,
                 saturation_prob=0.5,
                 hue_range=18,
                 hue_prob=0.5,
                 sharpness_range=0.5,
                 sharpness_prob=0):
        # (function, draw range, probability), in the order PaddleSeg shuffles.
        self.ops = [
            (F.brightness, (1 - brightness_range, 1 + brightness_range),
             brightness_prob),
            (F.contrast, (1 - contrast_range, 1 + contrast_range),
             contrast_prob),
            (F.saturation, (1 - saturation_range, 1 + saturation_range),
             saturation_prob),
            (F.sharpness, (1 - sharpness_range, 1 + sharpness_range),
             sharpness_prob),
            (F.hue, (-hue_range, hue_range), hue_prob),
        ]

    def __call__(self, data):
        img = F.to_uint8(data['img'])
        ops = list(self.ops if img.ndim == 3 else self.ops[:-1])  # gray: no hue
        random.shuffle(ops)
        for op, (low, high), prob in ops:
            if np.random.uniform(0, 1) < prob:
                img = op(img, np.random.uniform(low, high))
        data['img'] = img
        return data
