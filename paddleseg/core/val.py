"""Evaluation over a whole dataset: one confusion matrix, every metric."""

import time

import numpy as np
import paddle
from tqdm import tqdm

from paddleseg.core.infer import aug_inference, inference
from paddleseg.utils import logger
from paddleseg.utils.metrics import confusion_matrix, metrics_from_confusion


def _eval_loader(dataset, num_workers):
    sampler = paddle.io.DistributedBatchSampler(dataset, batch_size=1,
                                                shuffle=False, drop_last=False)
    return paddle.io.DataLoader(dataset, batch_sampler=sampler,
                                num_workers=num_workers, return_list=True)


def _predict(model, batch, aug_eval, infer_kwargs):
    if aug_eval:
        return aug_inference(model, batch['img'], batch.get('trans_info'),
                             **infer_kwargs)
    return inference(model, batch['img'], batch.get('trans_info'),
                     **{k: infer_kwargs[k] for k in ('is_slide', 'stride',
                                                     'crop_size')
                        if k in infer_kwargs})


def evaluate(model, eval_dataset, num_workers=0, aug_eval=False, scales=1.0,
             flip_horizontal=False, flip_vertical=False, is_slide=False,
             stride=None, crop_size=None, precision='fp32', amp_level='O1',
             print_detail=True, progress=True, on_prediction=None):
    """Evaluate ``model`` on ``eval_dataset``.

    Every rank evaluates its share; the confusion matrices are summed across
    ranks, so the result is that of the whole set.

    Args:
        model (nn.Layer): Put in eval mode here.
        eval_dataset (Dataset): Items with ``img`` ``[3, H, W]``, ``label``
            ``[1, H0, W0]`` (or ``[H0, W0]``) at the original size, and
            ``trans_info``. Needs ``num_classes`` and ``ignore_index``.
        num_workers (int, optional): Loader workers. Default: 0.
        aug_eval (bool, optional): Multi-scale / flip averaging. Default: False.
        scales, flip_horizontal, flip_vertical: See :func:`aug_inference`.
        is_slide, stride, crop_size: See :func:`inference`.
        precision (str, optional): 'fp32' or 'fp16'. Default: 'fp32'.
        amp_level (str, optional): Default: 'O1'.
        print_detail (bool, optional): Log the summary. Default: True.
        progress (bool, optional): Show a tqdm bar on rank 0. Default: True.
        on_prediction (callable, optional): Called as ``on_prediction(pred,
            batch)`` for every batch, ``pred`` the ``int64 [N, H0, W0]``
            numpy class map, ``batch`` the loader's dict (``img_path``, ...);
            e.g. :class:`paddleseg.utils.cityscapes.CityscapesWriter`.
            Default: None.

    Returns:
        dict: See :func:`paddleseg.utils.metrics.metrics_from_confusion`, plus
        ``confusion`` (the matrix), ``images`` and ``images_per_sec``.
    """
    model.eval()
    num_classes = eval_dataset.num_classes
    ignore_index = getattr(eval_dataset, 'ignore_index', 255)
    loader = _eval_loader(eval_dataset, num_workers)
    infer_kwargs = dict(is_slide=is_slide, stride=stride, crop_size=crop_size)
    if aug_eval:
        infer_kwargs.update(scales=scales, flip_horizontal=flip_horizontal,
                            flip_vertical=flip_vertical)
    cm = np.zeros((num_classes, num_classes), np.int64)
    rank0 = paddle.distributed.get_rank() == 0
    start, images = time.time(), 0
    bar = tqdm(loader, desc='eval', disable=not (progress and rank0),
               leave=False, dynamic_ncols=True)
    with paddle.no_grad():
        for batch in bar:
            with paddle.amp.auto_cast(enable=precision == 'fp16',
                                      level=amp_level):
                out = _predict(model, batch, aug_eval, infer_kwargs)
            pred = paddle.argmax(out, axis=1)
            cm += confusion_matrix(pred, batch['label'], num_classes,
                                   ignore_index)
            if on_prediction is not None:
                on_prediction(pred.numpy(), batch)
            images += pred.shape[0]
    cm = _sum_over_ranks(cm)
    elapsed = max(time.time() - start, 1e-9)
    result = metrics_from_confusion(cm)
    result.update(confusion=cm, images=images, images_per_sec=images / elapsed)
    if print_detail and rank0:
        logger.info('[EVAL] #Images: {} mIoU: {:.4f} Acc: {:.4f} Kappa: {:.4f} '
                    '({:.2f} images/s)'.format(images, result['miou'],
                                               result['acc'], result['kappa'],
                                               result['images_per_sec']))
        logger.info('[EVAL] Class IoU: ' + np.array2string(
            result['class_iou'], precision=4, separator=' '))
    return result


def _sum_over_ranks(cm):
    if paddle.distributed.get_world_size() == 1:
        return cm
    t = paddle.to_tensor(cm)
    paddle.distributed.all_reduce(t)
    return t.numpy()
