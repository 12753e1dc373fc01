"""The generic file-list dataset and the pieces its subclasses share.

An item is a dict:

* ``img``: ``float32 [C, H, W]``, the transformed image.
* ``label``: ``int64``; in ``train`` mode ``[H, W]``, transformed along with
  the image; in ``val`` mode ``[1, H0, W0]``, the label as stored (the
  prediction is mapped back to it through ``trans_info``); absent in
  ``test`` mode.
* (the training loader's view, :meth:`Dataset.compact_view`: ``img`` is
  ``uint8 [C, H, W]``, the image before the final Normalize, and ``label``
  ``uint8 [H, W]``.)
* ``trans_info``: list of ``('resize' | 'padding', (h, w))`` recorded by the
  transforms, for :func:`paddleseg.transforms.functional.reverse_transform`.
* ``gt_fields``: ``['label']`` in ``train`` mode, else ``[]``.
* ``img_path`` and (not in ``test`` mode) ``label_path``: the files read.
"""

import copy
import os

import cv2
import numpy as np
import paddle

from paddleseg.cvlibs import manager
from paddleseg.errors import ConfigError, DatasetError
from paddleseg.transforms import Compose
from paddleseg.transforms import functional as F

MODES = ('train', 'val', 'test')

_cv2_threads_limited = False


def _limit_cv2_threads_in_worker():
    """Make OpenCV single-threaded inside a DataLoader worker process.

    There the parallelism comes from the workers; OpenCV's own thread pool
    per worker would only oversubscribe the cores (and a pool inherited
    through ``fork`` is a known source of hangs). In the main process
    (``num_workers=0``, inference) OpenCV keeps its threads.
    """
    global _cv2_threads_limited
    if not _cv2_threads_limited and paddle.io.get_worker_info() is not None:
        cv2.setNumThreads(0)
        _cv2_threads_limited = True


def _split_line(line, separator):
    """Split a stripped list line.

    ``separator`` None: on ``','`` if the line has one, else on whitespace;
    ``' '``: on any run of whitespace; otherwise on ``separator``.
    """
    if separator is None:
        separator = ',' if ',' in line else ' '
    if separator == ' ':
        return line.split()
    return [part.strip() for part in line.split(separator)]


def read_file_list(list_path, dataset_root, separator=' ', need_labels=True):
    """Read a file list of ``image<separator>label`` lines.

    Paths in the list are relative to ``dataset_root`` (absolute ones are
    kept); blank lines are skipped; every file is checked to exist.

    Args:
        list_path (str): The list file.
        dataset_root (str): The folder the listed paths are relative to.
        separator (str|None, optional): See :func:`_split_line`. Default: ' '.
        need_labels (bool, optional): True: every line is ``image label``.
            False: lines are ``image`` or ``image label`` and labels are
            ignored. Default: True.

    Returns:
        list: ``(image_path, label_path)`` tuples, ``label_path`` None when
        ``need_labels`` is False.

    Raises:
        DatasetError: The list is missing or empty, a line is malformed, or
            a listed file does not exist (naming the list file and line).
    """
    if not os.path.isfile(list_path):
        raise DatasetError('file list {} does not exist'.format(list_path))
    counts = (2, ) if need_labels else (1, 2)
    expected = 'image{}label'.format(separator or ',')
    pairs = []
    with open(list_path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = _split_line(line, separator)
            if len(parts) not in counts or '' in parts:
                raise DatasetError('{}:{}: expected {!r}, got {!r}'.format(
                    list_path, lineno, expected, line))
            img_path = os.path.join(dataset_root, parts[0])
            label_path = os.path.join(dataset_root,
                                      parts[1]) if need_labels else None
            for kind, path in (('image', img_path), ('label', label_path)):
                if path is not None and not os.path.isfile(path):
                    raise DatasetError('{}:{}: {} file {} does not exist'.format(
                        list_path, lineno, kind, path))
            pairs.append((img_path, label_path))
    if not pairs:
        raise DatasetError('file list {} is empty'.format(list_path))
    return pairs


@manager.DATASETS.add_component
class Dataset(paddle.io.Dataset):
    """A segmentation dataset given by file lists; items as in the module doc.

    Args:
        mode (str): ``'train'``, ``'val'`` or ``'test'``.
        dataset_root (str): The folder the listed paths are relative to.
        transforms (list|Compose): The transforms.
        num_classes (int): Number of classes; label values must be below it
            or equal ``ignore_index``.
        img_channels (int, optional): 3 (colour, read as RGB) or 1. Default: 3.
        train_path (str, optional): File list of ``mode='train'``; lines
            ``image label``. Default: None.
        val_path (str, optional): File list of ``mode='val'``. Default: None.
        test_path (str, optional): File list of ``mode='test'``; the label
            column is optional and ignored. Default: None.
        separator (str|None, optional): Column separator of the lists; ``' '``
            means any whitespace, None detects ``','`` or whitespace per line.
            Default: ' '.
        ignore_index (int, optional): The label value excluded from training
            and evaluation. Default: 255.

    Raises:
        ConfigError: Bad ``mode``, ``num_classes`` or a missing ``*_path``.
        DatasetError: See :func:`read_file_list`; ``dataset_root`` missing;
            at item load time: an unreadable image or label, a label whose size
            differs from the image's, or invalid label values.
    """

    def __init__(self,
                 mode,
                 dataset_root,
                 transforms,
                 num_classes,
                 img_channels=3,
                 train_path=None,
                 val_path=None,
                 test_path=None,
                 separator=' ',
                 ignore_index=255):
        self._setup(mode, dataset_root, transforms, num_classes, ignore_index,
                    img_channels)
        list_path = {
            'train': train_path,
            'val': val_path,
            'test': test_path
        }[self.mode]
        if list_path is None:
            raise ConfigError("Dataset: mode '{0}' needs {0}_path".format(
                self.mode))
        self.file_list = read_file_list(list_path, dataset_root, separator,
                                        self.mode != 'test')

    def _setup(self, mode, dataset_root, transforms, num_classes, ignore_index,
               img_channels):
        """Check and store the arguments every subclass shares."""
        self.mode = str(mode).lower()
        if self.mode not in MODES:
            raise ConfigError('{}: mode must be one of {}, got {!r}'.format(
                type(self).__name__, ', '.join(MODES), mode))
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError('{}: num_classes must be a positive int, got '
                              '{!r}'.format(type(self).__name__, num_classes))
        if dataset_root is None or not os.path.isdir(dataset_root):
            raise DatasetError('dataset_root {} does not exist or is not a '
                               'folder'.format(dataset_root))
        self.dataset_root = dataset_root
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.img_channels = img_channels
        if isinstance(transforms, Compose):
            self.transforms = transforms
        else:
            self.transforms = Compose(transforms, img_channels=img_channels)

    def _read_label(self, label_path, img_path, img_size):
        """Read a label and check its size and values against the image."""
        label = F.read_label(label_path)
        if label.shape != img_size:
            raise DatasetError(
                'label {} is {}x{} (h x w) but image {} is {}x{}'.format(
                    label_path, label.shape[0], label.shape[1], img_path,
                    img_size[0], img_size[1]))
        bad = F.invalid_label_values(label, self.num_classes,
                                     self.ignore_index)
        if bad:
            raise DatasetError(
                'label {} has values {} that are neither < num_classes ({}) '
                'nor ignore_index ({})'.format(label_path, bad,
                                               self.num_classes,
                                               self.ignore_index))
        return label

    label_dtype = np.int64
    """The dtype of ``train`` labels (``uint8`` in :meth:`compact_view`)."""

    def compact_view(self):
        """This ``train`` dataset as the training loader's workers should
        send it: items with ``img`` ``uint8 [C, H, W]`` (the image before
        the transforms' final :class:`~paddleseg.transforms.Normalize`) and
        ``label`` ``uint8 [H, W]``, a quarter and an eighth of the float32
        and int64 bytes.

        Returns:
            tuple|None: ``(view, normalize)``, ``view`` a shallow copy of
            this dataset (which stays as it is), ``normalize`` the deferred
            Normalize, for the batch (``mean``, ``std``); None when the
            transforms do not end with a Normalize, or when a class id or
            ``ignore_index`` does not fit ``uint8`` (``num_classes > 256``).
        """
        split = self.transforms.split_normalize()
        ignore = self.ignore_index
        if (self.mode != 'train' or split is None or self.num_classes > 256
                or not (isinstance(ignore, int) and 0 <= ignore <= 255)):
            return None
        view = copy.copy(self)
        view.transforms, normalize = split
        view.label_dtype = np.uint8
        return view, normalize

    def _train_label(self, label, label_path):
        """A transformed ``train`` label as :attr:`label_dtype`; in ``uint8``
        only when its values fit (a label padded with a value above 255
        does not: DatasetError naming the file)."""
        if self.label_dtype == np.uint8 and label.dtype != np.uint8:
            if label.size and (label.min() < 0 or label.max() > 255):
                raise DatasetError(
                    'label {} holds values outside 0..255 after the transforms '
                    '(a label_padding_value?)'.format(label_path))
        return label.astype(self.label_dtype)

    def __getitem__(self, idx):
        _limit_cv2_threads_in_worker()
        img_path, label_path = self.file_list[idx]
        img = F.read_image(img_path, self.img_channels, self.transforms.to_rgb)
        data = {
            'img': img,
            'img_path': img_path,
            'trans_info': [],
            'gt_fields': []
        }
        if self.mode == 'test':
            return self.transforms(data)
        label = self._read_label(label_path, img_path, img.shape[:2])
        data['label_path'] = label_path
        if self.mode == 'train':
            data['label'] = label
            data['gt_fields'].append('label')
            data = self.transforms(data)
            data['label'] = self._train_label(data['label'], label_path)
        else:
            data = self.transforms(data)
            data['label'] = label[np.newaxis].astype(np.int64)
        return data

    def __len__(self):
        return len(self.file_list)
