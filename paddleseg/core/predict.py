"""Predict images and save colour maps and overlays.

:func:`predict` is PaddleSeg 2.8's ``paddleseg.core.predict`` (it loads the
weights file itself); :func:`predict_images` is the one predict.py uses,
for a model whose weights are loaded.

Under ``paddle.distributed.launch`` each rank predicts its own share of the
images (:func:`paddleseg.core.val.shard`), so each is written once. The
image lists come from :func:`paddleseg.utils.images.collect_images`
(importable from here too, as before).
"""

import os

import cv2
import numpy as np
import paddle
from tqdm import tqdm

from paddleseg.core.infer import predict_class_map
from paddleseg.core.val import shard
from paddleseg.utils import dist, logger
from paddleseg.utils.cityscapes import save_label_ids
from paddleseg.utils.dist import init_distributed
from paddleseg.utils.images import IMAGE_EXTS, collect_images  # noqa: F401  (importable here too)
from paddleseg.utils.visualize import get_palette, overlay, save_pseudo_color

def _relative(path, root):
    return os.path.relpath(path, root) if root else os.path.basename(path)


def predict(model, model_path, transforms, image_list, image_dir=None, save_dir='output',
            aug_pred=False, scales=1.0, flip_horizontal=True, flip_vertical=False,
            is_slide=False, stride=None, crop_size=None, custom_color=None):
    """PaddleSeg 2.8's ``paddleseg.core.predict``: load ``model_path`` into
    ``model``, then predict each image of ``image_list`` into
    ``save_dir/pseudo_color_prediction/`` (PNG colour maps) and
    ``save_dir/added_prediction/`` (overlays on the images).

    Args:
        model (nn.Layer): The model.
        model_path (str): Its weights (``.pdparams`` or ``.safetensors``, a
            path or URL), loaded strictly (a key or shape that does not fit
            raises); None keeps the weights the model has.
        transforms (Compose|list): The eval transforms (a list is composed).
        image_list (list[str]), image_dir (str, optional), save_dir (str,
        optional), aug_pred, scales, flip_horizontal (default True, used
        with ``aug_pred``), flip_vertical, is_slide, stride, crop_size,
        custom_color: As PaddleSeg's, see :func:`predict_images`.

    Returns:
        dict: As :func:`predict_images` (PaddleSeg's returns None).
    """
    from paddleseg.utils.checkpoint import load_entire_model
    if model_path is not None:
        load_entire_model(model, model_path)
    if isinstance(transforms, (list, tuple)):
        from paddleseg.transforms import Compose
        transforms = Compose(list(transforms))
    return predict_images(model, transforms, image_list, save_dir, image_dir=image_dir,
                          aug_pred=aug_pred, scales=scales, flip_horizontal=flip_horizontal,
                          flip_vertical=flip_vertical, is_slide=is_slide, stride=stride,
                          crop_size=crop_size, custom_color=custom_color)


def predict_images(model, transforms, image_list, save_dir, image_dir=None,
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
            pred = predict_class_map(model, im, data['trans_info'], aug=aug_pred,
                                     scales=scales, flip_horizontal=flip_horizontal,
                                     flip_vertical=flip_vertical, is_slide=is_slide,
                                     stride=stride, crop_size=crop_size)
            pred = pred[0].numpy().astype(np.uint8)
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
    parts = dist.all_gather_objects((done, failed))
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
