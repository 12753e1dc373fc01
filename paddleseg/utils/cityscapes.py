"""Cityscapes results in the official format, and the official evaluation.

The official pixel-level evaluation (``cityscapesscripts.evaluation.
evalPixelLevelSemanticLabeling``) and the test server read one PNG per image
whose pixels are Cityscapes *label ids* (``id`` of
``cityscapesscripts.helpers.labels``, e.g. road = 7), not the 19 train ids
the model predicts, and find the PNG of ground truth
``<city>_<seq>_<frame>_gtFine_labelIds.png`` by the pattern
``<city>_<seq>_<frame>*.png`` anywhere below the results folder.

:func:`save_label_ids` writes a train-id prediction that way, as
``<results>/<city>/<city>_<seq>_<frame>_pred_labelIds.png``;
:func:`evaluate_official` runs the official evaluation on such a folder.

The two mIoUs agree: the official IoU of a class is ``tp / (tp + fp + fn)``
over the pixels whose ground truth is not an ignored label (ours: not 255),
and a class with ``tp + fp + fn == 0`` (absent from both the ground truth and
the predictions) is NaN and left out of the mean ("averageScoreClasses"), as
in :func:`paddleseg.utils.metrics.metrics_from_confusion`. A class predicted
but absent from the ground truth has IoU 0 in both and counts in the mean.
"""

import glob
import os
import re

import numpy as np
from PIL import Image

from paddleseg.errors import DatasetError

NUM_TRAIN_IDS = 19
# <city>_<6 digits>_<6 digits>, the core of every Cityscapes file name
_CORE = re.compile(r'^([^_/\\]+_\d{6}_\d{6})')


def label_id_lut():
    """The ``uint8 [256]`` table train id -> Cityscapes label id.

    Built from ``cityscapesscripts.helpers.labels`` (the source of truth):
    train ids 0..18 map to their label id (0 -> 7 road, ..., 18 -> 33
    bicycle); every other value maps to 0 ('unlabeled', ignored in evaluation).
    """
    from cityscapesscripts.helpers.labels import labels
    lut = np.zeros(256, np.uint8)
    seen = set()
    for label in labels:
        if 0 <= label.trainId < NUM_TRAIN_IDS and label.id >= 0:
            if label.trainId in seen:  # not the case in the official table
                raise ValueError('train id {} has two label ids'.format(label.trainId))
            seen.add(label.trainId)
            lut[label.trainId] = label.id
    if len(seen) != NUM_TRAIN_IDS:
        raise ValueError('cityscapesscripts maps only {} train ids'.format(len(seen)))
    return lut


def to_label_ids(pred):
    """A train-id map (any integer array) as a ``uint8`` label-id map."""
    pred = np.asarray(pred)
    if pred.size and (pred.min() < 0 or pred.max() >= NUM_TRAIN_IDS):
        raise ValueError('train ids must be in [0, {}), got values in [{}, {}]'
                         .format(NUM_TRAIN_IDS, pred.min(), pred.max()))
    return label_id_lut()[pred.astype(np.int64)]


def result_path(results_dir, image_path):
    """Where the result of ``image_path`` goes.

    ``.../<city>/<city>_<seq>_<frame>_leftImg8bit.png`` ->
    ``<results_dir>/<city>/<city>_<seq>_<frame>_pred_labelIds.png``. Other
    names keep their stem (``<results_dir>/<parent folder>/<stem>_pred_labelIds.png``);
    the official evaluation only finds Cityscapes-named ones.
    """
    name = os.path.basename(image_path)
    match = _CORE.match(name)
    stem = match.group(1) if match else os.path.splitext(name)[0]
    parent = os.path.basename(os.path.dirname(os.path.abspath(image_path)))
    return os.path.join(results_dir, parent, stem + '_pred_labelIds.png')


def save_label_ids(pred, image_path, results_dir):
    """Write the train-id prediction ``pred`` ``[H, W]`` of ``image_path``
    as an 8-bit label-id PNG (see :func:`result_path`); returns its path."""
    path = result_path(results_dir, image_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(to_label_ids(pred), mode='L').save(path)
    return path


class CityscapesWriter:
    """Callback of :func:`paddleseg.core.evaluate`: saves each batch's
    prediction with :func:`save_label_ids`. ``paths`` lists what it wrote."""

    def __init__(self, results_dir):
        self.results_dir = results_dir
        self.paths = []

    def __call__(self, pred, batch):
        image_paths = batch['img_path']
        if isinstance(image_paths, str):
            image_paths = [image_paths]
        for p, image_path in zip(np.asarray(pred), image_paths):
            self.paths.append(save_label_ids(p, image_path, self.results_dir))


def evaluate_official(dataset_root, results_dir, split='val', quiet=True,
                      json_file=None):
    """Run cityscapesscripts' pixel-level evaluation in this process.

    Args:
        dataset_root (str): The Cityscapes folder; the ground truth is
            ``gtFine/<split>/*/*_gtFine_labelIds.png``.
        results_dir (str): The label-id PNGs (found recursively by name).
        split (str, optional): Default: 'val'.
        quiet (bool, optional): Silence its per-class printout. Default: True.
        json_file (str, optional): Also write its JSON result there (the
            script's own default, ``<dataset_root>/evaluationResults/``, is
            not used). Default: None (no file).

    Returns:
        dict: The script's result: ``averageScoreClasses`` (the official
        mIoU), ``classScores`` (IoU per class name; NaN for ignored or
        absent classes), ``averageScoreCategories``, ``confMatrix``, ...
        Instance-level scores (iIoU) are not computed (they need the
        ``*_instanceIds.png`` and, in cityscapesscripts 2.2, ``np.in1d``,
        which numpy 2.4 removed) and are NaN.

    Raises:
        DatasetError: No ground truth, or the script stopped with an error
            (missing, duplicate or wrongly sized prediction; its ERROR line
            is printed above).
    """
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev
    args = ev.CArgs()
    args.cityscapesPath = dataset_root
    args.exportFile = json_file
    args.JSONOutput = json_file is not None
    args.groundTruthSearch = os.path.join(dataset_root, 'gtFine', split, '*',
                                          '*_gtFine_labelIds.png')
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.evalLabels = []
    args.printRow = 5
    args.normalized = True
    args.colorized = False
    args.bold = args.nocol = ''
    args.quiet = quiet
    args.avgClassSize = dict(ev.args.avgClassSize)
    args.predictionPath = results_dir
    args.predictionWalk = None
    ground_truth = sorted(glob.glob(args.groundTruthSearch))
    if not ground_truth:
        raise DatasetError('no Cityscapes ground truth matches {}'.format(
            args.groundTruthSearch))
    if not os.path.isdir(results_dir):
        raise DatasetError('results folder {} does not exist'.format(results_dir))
    try:
        predictions = [ev.getPrediction(args, gt) for gt in ground_truth]
        return ev.evaluateImgLists(predictions, ground_truth, args)
    except SystemExit as exc:  # its printError() prints and exits
        raise DatasetError('the official Cityscapes evaluation of {} against {} '
                           'stopped (see its ERROR line)'.format(
                               results_dir, dataset_root)) from exc
