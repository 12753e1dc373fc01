"""Colour maps and overlays for predictions."""

import numpy as np
from PIL import Image

# The official colours of Cityscapes' 19 training classes (trainId order).
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
    (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100),
    (0, 0, 230), (119, 11, 32)], dtype=np.uint8)


def get_palette(num_classes, custom_color=None):
    """A ``[256, 3]`` uint8 palette.

    Args:
        num_classes (int): Classes to colour.
        custom_color (list[int], optional): Flat ``[r, g, b, r, g, b, ...]``
            colours of the first classes. Default: None.

    Returns:
        np.ndarray: Class ``c`` gets ``custom_color[3c:3c+3]`` if given, else
        the Cityscapes colour for ``c < 19`` when ``num_classes == 19``, else
        a deterministic colour spreading the bits of ``c`` (as PASCAL VOC's).
    """
    palette = np.zeros((256, 3), np.uint8)
    for c in range(256):
        palette[c] = _bit_color(c)
    if num_classes == 19:
        palette[:19] = CITYSCAPES_PALETTE
    if custom_color:
        colors = np.asarray(custom_color, np.uint8).reshape(-1, 3)
        palette[:len(colors)] = colors
    return palette


def _bit_color(c):
    rgb = [0, 0, 0]
    for shift in range(8):
        for ch in range(3):
            rgb[ch] |= ((c >> (3 * shift + ch)) & 1) << (7 - shift)
    return rgb


def save_pseudo_color(pred, path, palette):
    """Write ``pred`` ``[H, W]`` as a palette PNG whose pixel values are the class ids."""
    img = Image.fromarray(pred.astype(np.uint8), mode='P')
    img.putpalette(palette.reshape(-1).tolist())
    img.save(path)


def overlay(image_bgr, pred, palette, weight=0.6):
    """Blend the colour map of ``pred`` over ``image_bgr`` (uint8 BGR ``[H, W, 3]``).

    Returns:
        np.ndarray: uint8 BGR, ``weight * image + (1 - weight) * colours``.
    """
    colors = palette[pred.astype(np.int64)][:, :, ::-1].astype(np.float32)
    out = weight * image_bgr.astype(np.float32) + (1 - weight) * colors
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
