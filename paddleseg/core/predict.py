"""Predict images and save colour maps and overlays.

Under ``paddle.distributed.launch`` each rank predicts its own share of the
images (:func:`paddleseg.core.val.shard`), so each is written once.
"""

import os

import cv2
import numpy as np
import paddle
from tqdm import tqdm

from paddleseg.core.infer import aug_inference, inference
from paddleseg.core.val import shard
from paddleseg.errors import DatasetError
from paddleseg.utils import logger
from paddleseg.utils.cityscapes import save_label_ids
from paddleseg.utils.env import init_distributed
from paddleseg.utils.visualize import get_palette, overlay, save_pseudo_color

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


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


def _relative(path, root):
    return os.path.relpath(path, root) if root else os.path.basename(path)


def predict(model, transforms, image_list, save_dir, image_dir=None,
            num_classes=None, aug_pred=False, scales=1.0, flip_horizontal=False,
            flip_vertical=False, is_slide=False, stride=None, crop_size=None,
            custom_color=None, cityscapes_dir=None):
    """Predict each image; write ``pseudo_color_prediction/`` and ``added_prediction/``.

    Args:
        model (nn.Layer): Weights already loaded.
        transforms (Compose): The eval transforms.
        image_list (list[str]): Image paths.
        save_dir (str): Output folder.
        image_dir (str, optional): Root of ``image_list``; sub-folders below
            it are kept in the outputs. Default: None (flat).
        num_classes (int, optional): For the palette. Default: the model's.
        aug_pred, scales, flip_horizontal, flip_vertical, is_slide, stride,
        crop_size: See :mod:`paddleseg.core.infer`.
        custom_color (list[int], optional): ``[r, g, b, ...]`` class colours.
        cityscapes_dir (str, optional): Also write Cityscapes label-id PNGs
            there (:func:`paddleseg.utils.cityscapes.save_label_ids`).
            Default: None.

    On several processes (``paddle.distributed.launch``; the parallel
    environment is initialised here if it is not yet) rank ``r`` of ``N``
    predicts images ``r, r + N, ...`` of ``image_list``, then every rank
    learns what the others did (one ``all_gather_object``, which every rank
    joins, even one with no image).

    Returns:
        dict: ``done`` (paths written) and ``failed`` (``(path, reason)``)
        over all ranks, ``done_here``/``failed_here`` those of this rank. An
        unreadable image is reported and skipped; the others are still
        predicted.
    """
    model.eval()
    palette = get_palette(num_classes or getattr(model, 'num_classes', 256),
                          custom_color)
    rank, nranks = init_distributed()
    mine = [image_list[i] for i in shard(len(image_list), rank, nranks)]
    done, failed = [], []
    with paddle.no_grad():
        for path in tqdm(mine, desc='predict', dynamic_ncols=True,
                         disable=rank != 0):
            try:
                data = transforms({'img': path})
            except Exception as exc:  # a corrupt image must not stop the rest
                logger.warning('skipping {}: {}'.format(path, exc))
                failed.append((path, str(exc)))
                continue
            im = paddle.to_tensor(data['img'][np.newaxis])
            kwargs = dict(is_slide=is_slide, stride=stride, crop_size=crop_size)
            if aug_pred:
                out = aug_inference(model, im, data['trans_info'], scales=scales,
                                    flip_horizontal=flip_horizontal,
                                    flip_vertical=flip_vertical, **kwargs)
            else:
                out = inference(model, im, data['trans_info'], **kwargs)
            pred = paddle.argmax(out, axis=1)[0].numpy().astype(np.uint8)
            _save(path, pred, save_dir, _relative(path, image_dir), palette)
            if cityscapes_dir:
                save_label_ids(pred, path, cityscapes_dir)
            done.append(path)
    all_done, all_failed = _gather(done, failed, nranks)
    logger.info('Predicted {} images into {} ({} failed)'.format(
        len(all_done), save_dir, len(all_failed)))
    return {'done': all_done, 'failed': all_failed, 'done_here': done,
            'failed_here': failed}


def _gather(done, failed, nranks):
    """``done`` and ``failed`` of every rank, concatenated in rank order."""
    if nranks == 1:
        return list(done), list(failed)
    parts = []
    paddle.distributed.all_gather_object(parts, (done, failed))
    return ([p for d, _ in parts for p in d],
            [tuple(f) for _, fs in parts for f in fs])


def _save(path, pred, save_dir, rel, palette):
    stem = os.path.splitext(rel)[0]
    color_path = os.path.join(save_dir, 'pseudo_color_prediction', stem + '.png')
    added_path = os.path.join(save_dir, 'added_prediction', stem + '.jpg')
    for p in (color_path, added_path):
        os.makedirs(os.path.dirname(p), exist_ok=True)
    save_pseudo_color(pred, color_path, palette)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    cv2.imwrite(added_path, overlay(image, pred, palette))
