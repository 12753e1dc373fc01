"""Segmentation metrics from a confusion matrix.

The confusion matrix ``cm[i, j]`` counts pixels of true class ``i``
predicted as ``j``; it is accumulated with one ``bincount`` per batch
(pixels labelled ``ignore_index`` are dropped) and every metric derives from
it, so evaluation over a whole set is exact whatever the batch sizes.
"""

import numpy as np


def confusion_matrix(pred, label, num_classes, ignore_index=255):
    """Confusion matrix of one batch.

    One ``bincount`` of ``label * C + pred`` counts everything at once; the
    ignored pixels fall in a band of their own that is dropped, and any count
    outside the ``C x C`` block or that band reveals invalid values.

    Args:
        pred (np.ndarray|Tensor): Predicted class ids, any shape.
        label (np.ndarray|Tensor): True class ids, same number of elements.
        num_classes (int): Classes C.
        ignore_index (int, optional): Label value to skip. Default: 255.

    Returns:
        np.ndarray: ``[C, C]`` int64, rows true class, columns prediction.

    Raises:
        ValueError: a label outside ``[0, C)`` that is not ``ignore_index``,
            or a prediction outside ``[0, C)``.
    """
    c = num_classes
    pred = _as_int(pred).ravel()
    label = _as_int(label).ravel()
    if pred.size != label.size:
        raise ValueError('prediction has {} pixels, label {}'.format(
            pred.size, label.size))
    if pred.size == 0:
        return np.zeros((c, c), np.int64)
    if pred.min() < 0 or pred.max() >= c:
        _raise_invalid('prediction', pred, c, None)
    index = label.astype(np.int64) * c + pred
    try:
        counts = np.bincount(index)
    except ValueError:  # a negative label
        _raise_invalid('label', label, c, ignore_index)
    counts = np.pad(counts, (0, max(0, c * c - counts.size)))
    ignored = slice(ignore_index * c, ignore_index * c + c) \
        if ignore_index >= c else slice(0, 0)
    valid = counts[:c * c].sum() + counts[ignored].sum()
    if valid != label.size:
        _raise_invalid('label', label, c, ignore_index)
    return counts[:c * c].reshape(c, c)


def _raise_invalid(name, arr, num_classes, ignore_index):
    bad = (arr < 0) | (arr >= num_classes)
    if ignore_index is not None:
        bad &= arr != ignore_index
    values = np.unique(arr[bad])[:5].tolist()
    tail = '' if ignore_index is None else \
        ' and not the ignore index {}'.format(ignore_index)
    raise ValueError('{} values {} are outside [0, {}){}'.format(
        name, values, num_classes, tail))


def _as_int(x):
    if hasattr(x, 'numpy'):
        x = x.numpy()
    x = np.asarray(x)
    return x if x.dtype.kind in 'iu' else x.astype(np.int64)


def metrics_from_confusion(cm):
    """All metrics of a ``[C, C]`` confusion matrix.

    Per class ``c``: ``tp = cm[c, c]``, ``iou = tp / (row + col - tp)``,
    ``precision = tp / col``, ``recall = tp / row``. A class absent from both
    labels and predictions has an undefined IoU (NaN) and is left out of the
    mean; precision (recall) is 0 when nothing was predicted (labelled) as it.

    Returns:
        dict: ``miou``, ``acc`` (pixel accuracy), ``kappa`` (Cohen's),
        ``mean_precision``, ``mean_recall`` (floats) and ``class_iou``,
        ``class_precision``, ``class_recall`` (``[C]`` float64 arrays), and
        ``pixels`` (labelled pixels counted).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    rows, cols = cm.sum(1), cm.sum(0)
    total = cm.sum()
    union = rows + cols - tp
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.where(union > 0, tp / union, np.nan)
        precision = np.where(cols > 0, tp / cols, 0.0)
        recall = np.where(rows > 0, tp / rows, 0.0)
    present = union > 0
    acc = tp.sum() / total if total else 0.0
    expected = (rows * cols).sum() / total ** 2 if total else 0.0
    kappa = (acc - expected) / (1 - expected) if expected != 1 else 0.0
    return {
        'miou': float(np.nanmean(iou)) if present.any() else 0.0,
        'acc': float(acc),
        'kappa': float(kappa),
        'mean_precision': float(precision[present].mean()) if present.any() else 0.0,
        'mean_recall': float(recall[present].mean()) if present.any() else 0.0,
        'class_iou': iou,
        'class_precision': precision,
        'class_recall': recall,
        'pixels': int(total),
    }
