"""Metrics against hand-computed confusion matrices."""

import numpy as np
import pytest

from paddleseg.utils.metrics import confusion_matrix, metrics_from_confusion


def test_confusion_matrix_counts_and_ignores_255():
    label = np.array([[0, 0, 1, 255], [2, 1, 1, 0]])
    pred = np.array([[0, 1, 1, 2], [2, 0, 1, 0]])
    cm = confusion_matrix(pred, label, num_classes=4)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 2   # (0,0) twice
    expected[0, 1] = 1
    expected[1, 1] = 2
    expected[1, 0] = 1
    expected[2, 2] = 1   # the pixel labelled 255 is not counted
    np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r'label values \[7\]'):
        confusion_matrix(np.zeros(3), np.array([0, 7, 255]), num_classes=3)


def test_metrics_by_hand():
    # rows: true 0, 1, 2, 3 ; class 3 absent from labels and predictions
    cm = np.array([[3, 1, 0, 0],
                   [2, 4, 0, 0],
                   [0, 0, 0, 0],
                   [0, 0, 0, 0]])
    m = metrics_from_confusion(cm)
    # class 2: predicted never, labelled never -> NaN, left out
    iou0 = 3 / (4 + 5 - 3)
    iou1 = 4 / (6 + 5 - 4)
    assert np.isnan(m['class_iou'][2]) and np.isnan(m['class_iou'][3])
    np.testing.assert_allclose(m['class_iou'][:2], [iou0, iou1])
    np.testing.assert_allclose(m['miou'], (iou0 + iou1) / 2)
    np.testing.assert_allclose(m['acc'], 7 / 10)
    pe = (4 * 5 + 6 * 5) / 100
    np.testing.assert_allclose(m['kappa'], (0.7 - pe) / (1 - pe))
    np.testing.assert_allclose(m['class_precision'][:2], [3 / 5, 4 / 5])
    np.testing.assert_allclose(m['class_recall'][:2], [3 / 4, 4 / 6])
    assert m['pixels'] == 10


def test_class_predicted_but_never_labelled_counts_as_zero_iou():
    cm = np.array([[2, 1], [0, 0]])  # class 1 only predicted
    m = metrics_from_confusion(cm)
    np.testing.assert_allclose(m['class_iou'], [2 / 3, 0.0])
    np.testing.assert_allclose(m['miou'], 1 / 3)


def test_accumulating_batches_equals_one_pass():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, (4, 16, 16))
    label[:, :2] = 255
    pred = rng.integers(0, 5, (4, 16, 16))
    whole = confusion_matrix(pred, label, 5)
    parts = sum(confusion_matrix(pred[i], label[i], 5) for i in range(4))
    np.testing.assert_array_equal(whole, parts)
    assert whole.sum() == (label != 255).sum()


def test_confusion_matrix_uint8_labels_and_bad_values():
    label = np.array([[0, 1], [255, 2]], np.uint8)
    pred = np.array([[0, 2], [1, 2]], np.int64)
    cm = confusion_matrix(pred, label, 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    with pytest.raises(ValueError, match=r'label values \[-1\]'):
        confusion_matrix(np.zeros(2), np.array([-1, 0]), 3)
    with pytest.raises(ValueError, match=r'label values \[3, 254\]'):
        confusion_matrix(np.zeros(4), np.array([3, 254, 255, 0]), 3)
    with pytest.raises(ValueError, match=r'prediction values \[5\]'):
        confusion_matrix(np.array([5, 0]), np.array([0, 0]), 3)
