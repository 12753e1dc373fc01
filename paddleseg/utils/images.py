"""The images a prediction reads: :func:`collect_images` (and PaddleSeg's
name for it, :func:`get_image_list`) turns an image, a folder or a ``.txt``
list into a list of paths."""

import os

from paddleseg.errors import DatasetError
from paddleseg.utils import logger

__all__ = ['IMAGE_EXTS', 'collect_images', 'get_image_list']

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
"""File endings taken as images when walking a folder."""


def collect_images(image_path):
    """Images to predict and the folder their relative paths start from.

    Args:
        image_path (str): An image, a folder (walked recursively; non-images
            skipped with a warning) or a ``.txt`` list of image paths.

    Returns:
        tuple(list[str], str|None): The image paths (sorted for folders) and
        the root folder (None for a single file or a list).

    Raises:
        DatasetError: the path does not exist or holds no image.
    """
    if os.path.isdir(image_path):
        images, skipped = [], []
        for root, _, files in os.walk(image_path):
            for name in sorted(files):
                path = os.path.join(root, name)
                (images if name.lower().endswith(IMAGE_EXTS) else skipped).append(path)
        for path in skipped:
            logger.warning('skipping {}: not an image'.format(path))
        if not images:
            raise DatasetError('{}: no images found (looked for {})'.format(
                image_path, ', '.join(IMAGE_EXTS)))
        return sorted(images), image_path
    if not os.path.exists(image_path):
        raise DatasetError('{}: no such file or folder'.format(image_path))
    if image_path.lower().endswith('.txt'):
        with open(image_path) as f:
            images = [line.strip().split()[0] for line in f if line.strip()]
        if not images:
            raise DatasetError('{}: the image list is empty'.format(image_path))
        return images, None
    return [image_path], None


def get_image_list(image_path):
    """PaddleSeg's ``get_image_list``: :func:`collect_images`.

    Returns:
        tuple(list[str], str|None): ``(image_list, image_dir)``: the image
        paths (sorted for a folder) and the folder their relative paths
        start from (None for a single image or a list).

    Raises:
        DatasetError: the path does not exist or holds no image.
    """
    return collect_images(image_path)
