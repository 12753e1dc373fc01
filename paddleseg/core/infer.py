"""Inference: whole image, sliding window, and multi-scale / flip averaging.

All functions take a normalised image batch ``[N, 3, H, W]`` and return
logits or probabilities ``[N, C, H0, W0]`` at the size of the original image
(``trans_info`` undoes the resizes and paddings of the eval transforms);
:func:`predict_class_map`, what evaluation and prediction call, returns the
class map, also of an exported model (:mod:`paddleseg.deploy.engine`).
"""

import math

import paddle
import paddle.nn.functional as F

from paddleseg.transforms.functional import reverse_transform


def _logits(model, im):
    out = model(im)
    return out[0] if isinstance(out, (list, tuple)) else out


def slide_inference(model, im, crop_size, stride):
    """Average the logits of overlapping ``crop_size`` windows.

    Args:
        crop_size (tuple): Window ``(width, height)``.
        stride (tuple): Step ``(width, height)``.

    Returns:
        Tensor: ``[N, C, H, W]`` logits of ``im`` ``[N, 3, H, W]``. Windows
        are clipped to the image (an image smaller than a window is
        processed whole along that side).
    """
    h, w = im.shape[2:]
    w_crop, h_crop = crop_size
    w_stride, h_stride = stride
    rows = max(math.ceil((h - h_crop) / h_stride), 0) + 1
    cols = max(math.ceil((w - w_crop) / w_stride), 0) + 1
    total, count = None, paddle.zeros([1, 1, h, w])
    for r in range(rows):
        for c in range(cols):
            y1 = max(min(r * h_stride, h - h_crop), 0)
            x1 = max(min(c * w_stride, w - w_crop), 0)
            y2, x2 = min(y1 + h_crop, h), min(x1 + w_crop, w)
            logits = _logits(model, im[:, :, y1:y2, x1:x2])
            if total is None:
                total = paddle.zeros([im.shape[0], logits.shape[1], h, w])
            total[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


def inference(model, im, trans_info=None, is_slide=False, stride=None,
              crop_size=None):
    """Logits of ``im`` at the original image size.

    Args:
        model (nn.Layer): In eval mode; returns a list whose first item is
            the logits at the input size.
        im (Tensor): ``[N, 3, H, W]``.
        trans_info (list, optional): The eval transforms' record. Default: None.
        is_slide (bool, optional): Sliding-window inference. Default: False.
        stride (tuple, optional): Window step (w, h) when sliding.
        crop_size (tuple, optional): Window size (w, h) when sliding.

    Returns:
        Tensor: ``[N, C, H0, W0]`` logits.
    """
    if is_slide:
        if crop_size is None or stride is None:
            raise ValueError('sliding-window inference needs crop_size and stride')
        logits = slide_inference(model, im, crop_size, stride)
    else:
        logits = _logits(model, im)
    if trans_info:
        logits = reverse_transform(logits, trans_info, mode='bilinear')
    return logits


def aug_inference(model, im, trans_info=None, scales=1.0,
                  flip_horizontal=False, flip_vertical=False, is_slide=False,
                  stride=None, crop_size=None):
    """Average softmax probabilities over scales and flips.

    Args:
        scales (float|list[float], optional): Resize factors of the input.
            Default: 1.0.
        flip_horizontal (bool, optional): Also predict the mirrored image.
        flip_vertical (bool, optional): Also predict the upside-down image.
        Others as :func:`inference`.

    Returns:
        Tensor: ``[N, C, H0, W0]`` averaged probabilities.
    """
    scales = [scales] if isinstance(scales, (int, float)) else list(scales)
    flips = [[]]
    if flip_horizontal:
        flips.append([3])
    if flip_vertical:
        flips.append([2])
        if flip_horizontal:
            flips.append([2, 3])
    h, w = im.shape[2:]
    total = 0
    for scale in scales:
        size = [int(h * scale + 0.5), int(w * scale + 0.5)]
        scaled = F.interpolate(im, size, mode='bilinear', align_corners=False)
        for axes in flips:
            x = paddle.flip(scaled, axes) if axes else scaled
            logits = inference(model, x, is_slide=is_slide, stride=stride,
                               crop_size=crop_size)
            if axes:
                logits = paddle.flip(logits, axes)
            logits = F.interpolate(logits, [h, w], mode='bilinear',
                                   align_corners=False)
            total = total + F.softmax(logits, axis=1)
    probs = total / (len(scales) * len(flips))
    if trans_info:
        probs = reverse_transform(probs, trans_info, mode='bilinear')
    return probs


def predict_class_map(model, im, trans_info=None, aug=False, scales=1.0,
                      flip_horizontal=False, flip_vertical=False, is_slide=False,
                      stride=None, crop_size=None):
    """The ``int64 [N, H0, W0]`` class map of ``im`` at the original size.

    ``model`` is a dygraph model, or a
    :class:`paddleseg.deploy.EngineModel`: one that returns the class
    map itself (``returns_class_map``, an ``argmax`` export) is run on the
    whole image and its map is mapped back with nearest-neighbour resizing;
    any other goes through :func:`aug_inference` (``aug``) or
    :func:`inference` and an argmax over the classes.

    Args:
        aug (bool, optional): Multi-scale / flip averaging. Default: False.
        Others as :func:`aug_inference`.
    """
    if getattr(model, 'returns_class_map', False):
        model.check_inference(aug=aug, is_slide=is_slide)
        labels = _logits(model, im)
        if trans_info:
            labels = reverse_transform(labels.unsqueeze(1), trans_info,
                                       mode='nearest').squeeze(1)
        return labels
    if aug:
        out = aug_inference(model, im, trans_info, scales=scales,
                            flip_horizontal=flip_horizontal,
                            flip_vertical=flip_vertical, is_slide=is_slide,
                            stride=stride, crop_size=crop_size)
    else:
        out = inference(model, im, trans_info, is_slide=is_slide, stride=stride,
                        crop_size=crop_size)
    return paddle.argmax(out, axis=1)
