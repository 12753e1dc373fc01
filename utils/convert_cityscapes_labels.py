"""Make Cityscapes ``*_gtFine_labelTrainIds.png`` from ``*_gtFine_labelIds.png``.

Every label id is mapped to its train id through a 256-entry table built from
cityscapesscripts' label table (``cityscapesscripts.helpers.labels.labels``);
ids without a train id (``trainId`` 255 or -1) and ids missing from the table
become 255, the ignore index. The output is written next to its input. An
output at least as new as its input is skipped unless ``--force``.

Example::

    python utils/convert_cityscapes_labels.py data/cityscapes --num_workers 8
"""

import argparse
import glob
import multiprocessing
import os
import sys

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import labels
from tqdm import tqdm

LABEL_IDS_SUFFIX = '_gtFine_labelIds.png'
TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'
IGNORE_INDEX = 255


def train_id_lut():
    """The ``uint8 [256]`` table label id -> train id (255 where there is none)."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < IGNORE_INDEX:
            lut[label.id] = label.trainId
    return lut


def output_path(label_ids_path):
    """``.../x_gtFine_labelIds.png`` -> ``.../x_gtFine_labelTrainIds.png``."""
    return label_ids_path[:-len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX


def is_up_to_date(src, dst):
    """Whether ``dst`` exists and is not older than ``src``."""
    return os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src)


def convert_file(src, dst, lut):
    """Write ``lut`` applied to the 8-bit single-channel label ``src`` as PNG ``dst``.

    The PNG is written to a temporary file first, so an interrupted run never
    leaves a partial (and then up-to-date looking) output.

    Raises:
        ValueError: ``src`` is unreadable or not an 8-bit single-channel image.
    """
    label = cv2.imread(src, cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError('{}: not a readable 8-bit single-channel label '
                         'image'.format(src))
    _, png = cv2.imencode('.png', cv2.LUT(label, lut))
    tmp = dst + '.tmp'
    png.tofile(tmp)
    os.replace(tmp, dst)


def _convert_task(task):
    convert_file(*task)


def convert_cityscapes_labels(dataset_root, num_workers=None, force=False,
                              progress=True):
    """Convert every ``gtFine/**/*_gtFine_labelIds.png`` under ``dataset_root``.

    Args:
        dataset_root (str): The Cityscapes folder.
        num_workers (int, optional): Worker processes; 1 converts in this
            process. Default: None (one per CPU).
        force (bool, optional): Also convert up-to-date outputs. Default: False.
        progress (bool, optional): Show a tqdm progress bar. Default: True.

    Returns:
        tuple: ``(converted, skipped)`` counts.

    Raises:
        FileNotFoundError: No ``*_gtFine_labelIds.png`` found.
        ValueError: A label file is unreadable (see :func:`convert_file`).
    """
    pattern = os.path.join(dataset_root, 'gtFine', '**', '*' + LABEL_IDS_SUFFIX)
    sources = sorted(glob.glob(pattern, recursive=True))
    if not sources:
        raise FileNotFoundError('no files match {}'.format(pattern))
    lut = train_id_lut()
    tasks = [(src, output_path(src), lut) for src in sources
             if force or not is_up_to_date(src, output_path(src))]
    num_workers = num_workers or os.cpu_count() or 1
    with tqdm(total=len(tasks), desc='labelTrainIds',
              disable=not progress or not tasks) as bar:
        if num_workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                _convert_task(task)
                bar.update()
        else:
            with multiprocessing.Pool(min(num_workers, len(tasks))) as pool:
                for _ in pool.imap_unordered(_convert_task, tasks, chunksize=4):
                    bar.update()
    return len(tasks), len(sources) - len(tasks)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Make Cityscapes *_gtFine_labelTrainIds.png from '
        '*_gtFine_labelIds.png (cityscapesscripts label table).')
    parser.add_argument('dataset_root',
                        help='the Cityscapes folder (with gtFine/)')
    parser.add_argument('--num_workers', type=int, default=None,
                        help='worker processes (default: one per CPU)')
    parser.add_argument('--force', action='store_true',
                        help='also convert labels whose output is up to date')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        converted, skipped = convert_cityscapes_labels(
            args.dataset_root, args.num_workers, args.force)
    except (FileNotFoundError, ValueError) as exc:
        print('error: {}'.format(exc), file=sys.stderr)
        return 1
    print('converted {}, skipped {} up to date'.format(converted, skipped))
    return 0


if __name__ == '__main__':
    sys.exit(main())
