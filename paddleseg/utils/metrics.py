"""Segmentation metrics from a confusion matrix.

The confusion matrix ``cm[i, j]`` counts pixels of true class ``i``
predicted as ``j``; it is accumulated with one ``bincount`` per batch
(pixels labelled ``ignore_index`` are dropped) and every metric derives from
it, so evaluation over a whole set is exact whatever the batch sizes.
"""

import numpy as np


def confusion_matrix(pred, label, num_classes, ignore_index=255):
    """Confusion matrix of one batch.

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
    pred = _as_int64(pred).ravel()
    label = _as_int64(label).ravel()
    if pred.size != label.size:
        raise ValueError('prediction has {} pixels, label {}'.format(
            pred.size, label.size))
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]
    for name, arr in (('label', label), ('prediction', pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            bad = np.unique(arr[(arr < 0) | (arr >= num_classes)])[:5]
            raise ValueError('{} values {} are outside [0, {}) and not the '
                             'ignore index {}'.format(name, bad.tolist(),
                                                      num_classes, ignore_index))
    return np.bincount(label * num_classes + pred,
                       minlength=num_classes ** 2).reshape(num_classes,
                                                           num_classes)


def _as_int64(x):
    if hasattr(x, 'numpy'):
        x = x.numpy()
    return np.asarray(x).astype(np.int64, copy=False)


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
