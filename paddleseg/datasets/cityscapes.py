"""The Cityscapes dataset (19 train classes, ignore 255)."""

import glob
import os

import numpy as np

from paddleseg.cvlibs import manager
from paddleseg.datasets.dataset import Dataset, read_file_list
from paddleseg.errors import DatasetError

IMG_SUFFIX = '_leftImg8bit.png'
LABEL_SUFFIX = '_gtFine_labelTrainIds.png'


def scan_cityscapes(dataset_root, split, need_labels=True):
    """Pair the images of a Cityscapes split with their trainId labels.

    Images are ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png``; the
    label of each is ``gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png``.

    Args:
        dataset_root (str): The Cityscapes folder.
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        need_labels (bool, optional): True: a missing label is an error;
            False: its pair holds None. Default: True.

    Returns:
        list: ``(image, label)`` paths relative to ``dataset_root``, sorted.

    Raises:
        DatasetError: No image matches, or a needed label is missing.
    """
    pattern = os.path.join(dataset_root, 'leftImg8bit', split, '*',
                           '*' + IMG_SUFFIX)
    images = sorted(glob.glob(pattern))
    if not images:
        raise DatasetError('no Cityscapes images match {}'.format(pattern))
    pairs = []
    for img in images:
        city = os.path.basename(os.path.dirname(img))
        name = os.path.basename(img)[:-len(IMG_SUFFIX)]
        label = os.path.join('gtFine', split, city, name + LABEL_SUFFIX)
        if not os.path.isfile(os.path.join(dataset_root, label)):
            if need_labels:
                raise DatasetError(
                    'label {} of image {} does not exist (make the '
                    'labelTrainIds with utils/convert_cityscapes_labels.py)'.
                    format(os.path.join(dataset_root, label), img))
            label = None
        pairs.append((os.path.relpath(img, dataset_root), label))
    return pairs


@manager.DATASETS.add_component
class Cityscapes(Dataset):
    """Cityscapes fine annotations with the 19 train classes.

    Uses ``dataset_root/<mode>.txt`` when it exists (``image,label`` or
    ``image label`` lines relative to ``dataset_root``, separator detected per
    line); otherwise scans the standard layout (see :func:`scan_cityscapes`),
    which needs the ``*_gtFine_labelTrainIds.png`` files. Items as in
    :mod:`paddleseg.datasets.dataset`.

    Args:
        transforms (list|Compose): The transforms.
        dataset_root (str): The Cityscapes folder (with ``leftImg8bit`` and
            ``gtFine``).
        mode (str, optional): ``'train'``, ``'val'`` or ``'test'``. Default:
            ``'train'``.
    """
    NUM_CLASSES = 19
    IGNORE_INDEX = 255
    IMG_CHANNELS = 3
    class_names = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
                   'traffic light', 'traffic sign', 'vegetation', 'terrain',
                   'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train',
                   'motorcycle', 'bicycle')
    # The official RGB colour of each train class, in train-id order.
    PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
               (190, 153, 153), (153, 153, 153), (250, 170, 30),
               (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180),
               (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
               (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32))

    def __init__(self, transforms, dataset_root, mode='train'):
        self._setup(mode, dataset_root, transforms, self.NUM_CLASSES,
                    self.IGNORE_INDEX, self.IMG_CHANNELS)
        need_labels = self.mode != 'test'
        list_path = os.path.join(dataset_root, self.mode + '.txt')
        if os.path.isfile(list_path):
            self.file_list = read_file_list(list_path, dataset_root, None,
                                            need_labels)
        else:
            self.file_list = [
                (os.path.join(dataset_root, img),
                 os.path.join(dataset_root, label) if need_labels else None)
                for img, label in scan_cityscapes(dataset_root, self.mode,
                                                  need_labels)
            ]

    @classmethod
    def palette(cls):
        """A ``uint8 [256, 3]`` RGB lookup table: class colours, then black
        (so ``palette()[label]`` colours a label map, 255 included)."""
        table = np.zeros((256, 3), np.uint8)
        table[:len(cls.PALETTE)] = cls.PALETTE
        return table
