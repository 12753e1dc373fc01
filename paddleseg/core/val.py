"""Evaluation over a whole dataset: one confusion matrix, every metric.

:func:`evaluate` is PaddleSeg 2.8's (it returns ``miou, acc, class_iou,
class_precision, kappa``); :func:`evaluate_details` returns every metric
in a dict and is what val.py and the training loop use.

Under ``paddle.distributed.launch`` each rank evaluates a disjoint share of
the set (:func:`shard`: rank ``r`` of ``N`` takes images ``r, r + N, ...``,
nothing repeated to even the shares out) and the confusion matrices and image
counts are summed over the ranks, so the result is exactly that of one
process over the whole set. The ranks end an evaluation early together
(a stop request such as a signal, or a failure on any rank): every
:data:`STOP_CHECK_IMAGES` images they agree on it in one small all-reduce
(:class:`_StopAgreement`), which a rank with a shorter share or one that
failed joins too.
"""

import inspect
import time
import traceback

import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn
from tqdm import tqdm

from paddleseg.core import amp
from paddleseg.core.infer import predict_class_map
from paddleseg.core.stop import EvalAborted
from paddleseg.errors import ConfigError, DatasetError, SegError
from paddleseg.utils import dist, logger
from paddleseg.utils.dist import init_distributed
from paddleseg.utils.metrics import confusion_matrix, metrics_from_confusion


STOP_CHECK_IMAGES = 4
"""With several processes, the ranks agree whether to end an evaluation
early every this many images (of the largest share)."""


def shard(num_items, rank, nranks):
    """The indices of ``range(num_items)`` that rank ``rank`` of ``nranks`` handles.

    Rank ``r`` takes ``r, r + nranks, r + 2 * nranks, ...``: across the ranks
    every index appears exactly once, and shares differ by at most one item
    (a rank may get none when ``num_items < nranks``). Unlike paddle's
    ``DistributedBatchSampler(drop_last=False)`` nothing is repeated to make
    the shares equal, so nothing is counted twice.

    Args:
        num_items (int): Items to share, at least 0.
        rank (int): This process, ``0 <= rank < nranks``.
        nranks (int): Number of processes, at least 1.

    Returns:
        list[int]: This rank's indices, increasing.
    """
    if nranks < 1 or not 0 <= rank < nranks:
        raise ValueError('rank {} of {} processes'.format(rank, nranks))
    return list(range(rank, max(num_items, 0), nranks))


def resolve_precision(precision, amp_level='O1', what='evaluating'):
    """The precision to evaluate with here: ``precision``, or ``'fp32'`` (with
    one warning line) for fp16 where paddle has no fp16 (a CPU); see
    :func:`paddleseg.core.amp.resolve_precision`.

    Raises:
        ConfigError: an unknown precision or AMP level, or fp16 on a device
            that cannot run it.
    """
    return amp.resolve_precision(precision, amp_level, what=what)[0]


class _Indices:
    """A batch sampler: batches of one index, the given ones in order."""

    def __init__(self, indices):
        self.indices = indices

    def __iter__(self):
        return iter([i] for i in self.indices)

    def __len__(self):
        return len(self.indices)


_LOAD_ERROR, _LOAD_TRACEBACK, _USER_ERROR = 'load_error', 'load_traceback', 'user_error'


class _Guarded:
    """Wraps a dataset: an item that raises while loading comes out as
    ``{'load_error': message, 'load_traceback': text, 'user_error': 0|1}``
    (strings and arrays only, so that any loader can carry it) and is
    raised in the main process by :func:`_raise_load_error`. paddle's loader
    without workers would otherwise lose the error in its reading thread
    and wait forever for the batch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except Exception as exc:  # raised again in the main process
            user = isinstance(exc, SegError)
            return {_LOAD_ERROR: str(exc) if user else '{}: {}'.format(
                type(exc).__name__, exc), _LOAD_TRACEBACK: traceback.format_exc(),
                _USER_ERROR: np.array([int(user)], np.int32)}


def _collate(items):
    for item in items:
        if isinstance(item, dict) and _LOAD_ERROR in item:
            return item
    return default_collate_fn(items)


def _raise_load_error(batch):
    user = int(np.asarray(batch[_USER_ERROR]).ravel()[0])
    message, where = batch[_LOAD_ERROR], batch[_LOAD_TRACEBACK]
    message, where = (message[0] if isinstance(message, (list, tuple)) else message,
                      where[0] if isinstance(where, (list, tuple)) else where)
    if not user:  # a bug, not bad data: keep the traceback
        raise RuntimeError('loading an evaluation item failed: {}\n{}'.format(message, where))
    error = DatasetError(message)
    error.worker_traceback = where
    raise error


def _eval_batches(dataset, indices, num_workers):
    if not indices:  # a rank with no share still joins the collectives
        return []
    return paddle.io.DataLoader(_Guarded(dataset), batch_sampler=_Indices(indices),
                                num_workers=num_workers, return_list=True,
                                collate_fn=_collate)


class _StopAgreement:
    """When the ranks end an evaluation early, all at the same image.

    With several processes, after every ``every``-th image of the largest
    share (``checks`` times in all) each rank contributes ``(stop, failed)``
    to one max all-reduce: ``stop`` is ``stop_requested()`` (an int, e.g. a
    signal number; 0: go on), ``failed`` whether its loop raised. A rank
    that failed joins the next check at once; one whose share ended joins
    the remaining ones from :meth:`finish`; so every rank makes the same
    all-reduces and all stop after the same one. With one process the
    request is read after every image and nothing is exchanged.
    """

    def __init__(self, stop_requested, nranks, largest_share, every=STOP_CHECK_IMAGES):
        self.stop_requested = stop_requested or (lambda: 0)
        self.nranks, self.every = nranks, every
        self.checks = largest_share // every if nranks > 1 else 0
        self.done = 0
        self.stop = 0  # the agreed request (the same on every rank)
        self.ended = False

    def after(self, position, failed=False):
        """Whether this rank leaves its loop after its ``position``-th image
        (1-based) or a failure there; with several ranks, when it does
        because of a check, every rank does."""
        if self.nranks == 1:
            self.stop = int(self.stop_requested() or 0)
            return bool(self.stop or failed)
        if self.done >= self.checks:  # no check left: the final sum tells the others
            return failed
        if failed or position % self.every == 0:
            return self._check(failed)
        return False

    def _check(self, failed):
        self.done += 1
        stop, anyone_failed = dist.max_over_ranks([int(self.stop_requested() or 0),
                                                   int(failed)])
        self.stop = stop
        self.ended = bool(stop or anyone_failed)
        return self.ended

    def finish(self, failed):
        """Join the checks this rank did not make (its share was shorter)."""
        while self.done < self.checks and not self.ended:
            self._check(failed)


def details_kwargs(test_config, what='test_config'):
    """``test_config`` (keyword arguments of :func:`evaluate`, as PaddleSeg
    passes them) as keyword arguments of :func:`evaluate_details`.

    Raises:
        ConfigError: a key neither accepts, or ``auc_roc`` true.
    """
    kwargs = dict(test_config or {})
    if kwargs.pop('auc_roc', False):
        raise ConfigError('{}: auc_roc: true is not supported (it needs every '
                          "pixel's probabilities)".format(what))
    known = set(inspect.signature(evaluate_details).parameters) - {'model', 'eval_dataset'}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError('{}: {}: not an argument of paddleseg.core.evaluate'.format(
            what, ', '.join(unknown)))
    return kwargs


def evaluate(model, eval_dataset, aug_eval=False, scales=1.0, flip_horizontal=False,
             flip_vertical=False, is_slide=False, stride=None, crop_size=None,
             precision='fp32', amp_level='O1', num_workers=0, print_detail=True,
             auc_roc=False, *, progress=True, on_prediction=None):
    """PaddleSeg 2.8's ``paddleseg.core.evaluate``: its arguments in its
    order, and its result.

    See :func:`evaluate_details` for the arguments (``progress`` and
    ``on_prediction`` are this repository's, keyword-only).

    Returns:
        tuple: ``(miou, acc, class_iou, class_precision, kappa)``: floats
        and ``[num_classes]`` float64 arrays (a class absent from labels and
        predictions has a NaN IoU and is left out of ``miou``).

    Raises:
        ConfigError: ``auc_roc=True`` (PaddleSeg then also logs the ROC AUC
            of every pixel's probabilities; not supported here).
    """
    if auc_roc:
        raise ConfigError('evaluate: auc_roc=True is not supported (it needs every '
                          "pixel's probabilities); use auc_roc=False")
    result = evaluate_details(
        model, eval_dataset, num_workers=num_workers, aug_eval=aug_eval, scales=scales,
        flip_horizontal=flip_horizontal, flip_vertical=flip_vertical, is_slide=is_slide,
        stride=stride, crop_size=crop_size, precision=precision, amp_level=amp_level,
        print_detail=print_detail, progress=progress, on_prediction=on_prediction)
    return (result['miou'], result['acc'], result['class_iou'], result['class_precision'],
            result['kappa'])


def evaluate_details(model, eval_dataset, num_workers=0, aug_eval=False, scales=1.0,
                     flip_horizontal=False, flip_vertical=False, is_slide=False,
                     stride=None, crop_size=None, precision='fp32', amp_level='O1',
                     print_detail=True, progress=True, on_prediction=None,
                     stop_requested=None):
    """Evaluate ``model`` on ``eval_dataset``; every metric, in a dict
    (:func:`evaluate` is PaddleSeg's form, with its tuple).

    On several processes (``paddle.distributed.launch``; the parallel
    environment is initialised here if it is not yet) each rank predicts
    its :func:`shard` of the set, every image exactly once over all ranks,
    and the confusion matrices and image counts are summed with one
    all-reduce that every rank joins, even one with no image: the result,
    the same on every rank, is that of one process over the whole set. Only
    rank 0 shows the progress bar and logs. A rank whose data cannot be read
    (a :class:`~paddleseg.errors.SegError`) still joins it, so that every
    rank stops: it raises its error, the others a DatasetError saying that
    another process failed.

    Args:
        model (nn.Layer): Put in eval mode here.
        eval_dataset (Dataset): Items with ``img`` ``[3, H, W]``, ``label``
            ``[1, H0, W0]`` (or ``[H0, W0]``) at the original size, and
            ``trans_info``. Needs ``num_classes`` and ``ignore_index``.
        num_workers (int, optional): Loader workers. Default: 0.
        aug_eval (bool, optional): Multi-scale / flip averaging. Default: False.
        scales, flip_horizontal, flip_vertical: See :func:`aug_inference`.
        is_slide, stride, crop_size: See :func:`inference`.
        precision (str, optional): 'fp32' or 'fp16' (GPU; elsewhere fp32 with
            a warning, see :func:`resolve_precision`). Default: 'fp32'.
        amp_level (str, optional): 'O1' or 'O2', with fp16. For O2 the
            model should already be prepared with
            :func:`paddleseg.core.amp.prepare` (val.py does so; a model
            trained with O2 is). Default: 'O1'.
        print_detail (bool, optional): Log the summary. Default: True.
        progress (bool, optional): Show a tqdm bar on rank 0. Default: True.
        on_prediction (callable, optional): Called as ``on_prediction(pred,
            batch)`` for every batch of this rank, ``pred`` the ``int64
            [N, H0, W0]`` numpy class map, ``batch`` the loader's dict
            (``img_path``, ...); e.g.
            :class:`paddleseg.utils.cityscapes.CityscapesWriter`.
            Default: None.
        stop_requested (callable, optional): ``stop_requested()`` returns a
            non-zero int (e.g. a signal number) to end the evaluation early:
            read after every image with one process; with several, the
            ranks agree on it every :data:`STOP_CHECK_IMAGES` images and
            all end after the same image. Default: None.

    Returns:
        dict: See :func:`paddleseg.utils.metrics.metrics_from_confusion`, plus
        ``confusion`` (the matrix), ``images`` (over all ranks) and
        ``images_per_sec`` (``images`` over the wall time until the slowest
        rank finished).

    Raises:
        SegError: an image or label of this rank cannot be read;
            DatasetError: that of another rank, or another rank failed
            otherwise (this rank then raises its own error).
        EvalAborted: ``stop_requested`` (on any rank) ended it early.
    """
    precision = resolve_precision(precision, amp_level)
    rank, nranks = init_distributed()
    model.eval()
    num_classes = eval_dataset.num_classes
    ignore_index = getattr(eval_dataset, 'ignore_index', 255)
    indices = shard(len(eval_dataset), rank, nranks)
    infer_kwargs = dict(is_slide=is_slide, stride=stride, crop_size=crop_size)
    if aug_eval:
        infer_kwargs.update(scales=scales, flip_horizontal=flip_horizontal,
                            flip_vertical=flip_vertical)
    cm = np.zeros((num_classes, num_classes), np.int64)
    start, images, error = time.time(), 0, None
    agreement = _StopAgreement(stop_requested, nranks, len(shard(len(eval_dataset), 0, nranks)))
    bar = tqdm(_eval_batches(eval_dataset, indices, num_workers), total=len(indices),
               desc='eval', disable=not (progress and rank == 0), leave=False,
               dynamic_ncols=True)
    position = 0
    try:
        with paddle.no_grad():
            for batch in bar:
                position += 1
                if _LOAD_ERROR in batch:
                    _raise_load_error(batch)
                with amp.autocast(precision, amp_level):
                    pred = predict_class_map(model, batch['img'],
                                             batch.get('trans_info'),
                                             aug=aug_eval, **infer_kwargs)
                cm += confusion_matrix(pred, batch['label'], num_classes,
                                       ignore_index)
                if on_prediction is not None:
                    on_prediction(pred.numpy(), batch)
                images += pred.shape[0]
                if agreement.after(position):
                    break
    except Exception as exc:  # stop here, but after telling the others
        if nranks == 1 or isinstance(exc, EvalAborted):
            raise
        error = exc
        agreement.after(position, failed=True)
    finally:
        bar.close()
    agreement.finish(error is not None)
    cm, images, failed = _sum_over_ranks(cm, images, error is not None, nranks)
    if agreement.stop:
        raise EvalAborted(agreement.stop) from error
    if error is not None:
        raise error
    if failed:
        raise DatasetError('evaluation stopped: another process could not read its '
                           'images, or failed otherwise (see its log)')
    # measured after the all-reduce, which waits for the slowest rank
    elapsed = max(time.time() - start, 1e-9)
    result = metrics_from_confusion(cm)
    result.update(confusion=cm, images=images, images_per_sec=images / elapsed)
    if print_detail and rank == 0:
        logger.info('[EVAL] #Images: {} mIoU: {:.4f} Acc: {:.4f} Kappa: {:.4f} '
                    '({:.2f} images/s)'.format(images, result['miou'],
                                               result['acc'], result['kappa'],
                                               result['images_per_sec']))
        logger.info('[EVAL] Class IoU: ' + np.array2string(
            result['class_iou'], precision=4, separator=' '))
    return result


def _sum_over_ranks(cm, images, failed, nranks):
    """``(cm, images, failed)`` summed over the ranks, in one all-reduce
    (``failed``: how many ranks could not read their data, or failed)."""
    if nranks == 1:
        return cm, images, int(failed)
    total = dist.sum_over_ranks(np.append(cm.ravel(), [images, int(failed)]))
    return total[:-2].reshape(cm.shape), int(total[-2]), int(total[-1])
