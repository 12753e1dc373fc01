"""Write the train.txt / val.txt / test.txt file lists of a dataset folder.

Two layouts:

* ``cityscapes``: ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png``.
* ``custom``: ``<image folder>/<split>/**/<name><image postfix>.<image ext>``
  with ``<label folder>/<split>/**/<name><label postfix>.<label ext>``
  (same ``<name>`` and sub-folders).

Each line is ``image<separator>label``, both relative to the dataset root; a
test image without a label gets a line of its own path alone. A split whose
image folder is missing is skipped.

Examples::

    python utils/create_dataset_list.py data/cityscapes
    python utils/create_dataset_list.py data/mine --type custom \\
        --folder images annotations --format jpg png
"""

import argparse
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python utils/create_dataset_list.py`
    sys.path.insert(0, ROOT)

from paddleseg.datasets.cityscapes import scan_cityscapes  # noqa: E402
from paddleseg.errors import DatasetError, SegError  # noqa: E402

SPLITS = ('train', 'val', 'test')


def custom_pairs(dataset_root, split, folder, formats, postfix):
    """Pair the images of a custom-layout split with their labels.

    Args:
        dataset_root (str): The dataset folder.
        split (str): The split sub-folder of both folders.
        folder (tuple): (image folder, label folder).
        formats (tuple): (image extension, label extension), no dot.
        postfix (tuple): (image name suffix, label name suffix) before the
            extension.

    Returns:
        list: ``(image, label)`` paths relative to ``dataset_root``, sorted;
        ``label`` is None for a test image without one.

    Raises:
        DatasetError: No image found, or a train/val image has no label.
    """
    img_dir = os.path.join(dataset_root, folder[0], split)
    label_dir = os.path.join(dataset_root, folder[1], split)
    img_end = '{}.{}'.format(postfix[0], formats[0])
    pattern = os.path.join(img_dir, '**', '*' + img_end)
    images = sorted(glob.glob(pattern, recursive=True))
    if not images:
        raise DatasetError('no images match {}'.format(pattern))
    pairs = []
    for img in images:
        name = os.path.relpath(img, img_dir)[:-len(img_end)]
        label = os.path.join(label_dir,
                             '{}{}.{}'.format(name, postfix[1], formats[1]))
        if os.path.isfile(label):
            label = os.path.relpath(label, dataset_root)
        elif split == 'test':
            label = None
        else:
            raise DatasetError('label {} of image {} does not exist'.format(
                label, img))
        pairs.append((os.path.relpath(img, dataset_root), label))
    return pairs


def write_file_list(path, pairs, separator=','):
    """Write ``(image, label)`` pairs as lines ``image<separator>label``
    (``image`` alone where ``label`` is None)."""
    with open(path, 'w', encoding='utf-8') as f:
        for pair in pairs:
            f.write(separator.join(p for p in pair if p is not None) + '\n')


def create_dataset_lists(dataset_root, layout='cityscapes', separator=',',
                         splits=SPLITS, folder=('images', 'annotations'),
                         formats=('jpg', 'png'), postfix=('', '')):
    """Write ``<split>.txt`` in ``dataset_root`` for each split present.

    Args:
        dataset_root (str): The dataset folder.
        layout (str, optional): ``'cityscapes'`` or ``'custom'``. Default:
            ``'cityscapes'``.
        separator (str, optional): Between image and label. Default: ','.
        splits (tuple, optional): Default: ('train', 'val', 'test').
        folder (tuple, optional): Custom layout: (image folder, label
            folder). Default: ('images', 'annotations').
        formats (tuple, optional): Custom layout: (image extension, label
            extension), no dot. Default: ('jpg', 'png').
        postfix (tuple, optional): Custom layout: (image name suffix, label
            name suffix) before the extension. Default: ('', '').

    Returns:
        dict: ``{split: (list path, number of lines)}`` of the lists written.

    Raises:
        DatasetError: ``dataset_root`` or every split is missing, or a split
            has no image or a missing label.
    """
    if not os.path.isdir(dataset_root):
        raise DatasetError('dataset root {} does not exist'.format(
            dataset_root))
    img_folder = 'leftImg8bit' if layout == 'cityscapes' else folder[0]
    written = {}
    for split in splits:
        if not os.path.isdir(os.path.join(dataset_root, img_folder, split)):
            continue
        if layout == 'cityscapes':
            pairs = scan_cityscapes(dataset_root, split, split != 'test')
        else:
            pairs = custom_pairs(dataset_root, split, folder, formats,
                                 postfix)
        path = os.path.join(dataset_root, split + '.txt')
        write_file_list(path, pairs, separator)
        written[split] = (path, len(pairs))
    if not written:
        raise DatasetError('none of the splits {} exists under {}'.format(
            ', '.join(splits), os.path.join(dataset_root, img_folder)))
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write train.txt/val.txt/test.txt file lists (image and '
        'label paths relative to the dataset root) for a Cityscapes or '
        'custom-layout dataset.')
    parser.add_argument('dataset_root', help='the dataset folder')
    parser.add_argument('--type', choices=('cityscapes', 'custom'),
                        default='cityscapes',
                        help='folder layout (default: cityscapes)')
    parser.add_argument('--separator', default=',',
                        help="between image and label (default: ',')")
    parser.add_argument('--splits', nargs='+', default=list(SPLITS),
                        help='split sub-folders (default: train val test)')
    parser.add_argument('--folder', nargs=2, default=['images', 'annotations'],
                        metavar=('IMAGES', 'LABELS'),
                        help='custom: image and label folders '
                        '(default: images annotations)')
    parser.add_argument('--format', nargs=2, default=['jpg', 'png'],
                        metavar=('IMAGE_EXT', 'LABEL_EXT'),
                        help='custom: file extensions (default: jpg png)')
    parser.add_argument('--postfix', nargs=2, default=['', ''],
                        metavar=('IMAGE_SUFFIX', 'LABEL_SUFFIX'),
                        help='custom: name suffixes before the extension '
                        '(default: none)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        written = create_dataset_lists(args.dataset_root, args.type,
                                       args.separator, tuple(args.splits),
                                       tuple(args.folder), tuple(args.format),
                                       tuple(args.postfix))
    except SegError as exc:
        print('error: {}'.format(exc), file=sys.stderr)
        return 1
    for path, count in written.values():
        print('wrote {} ({} lines)'.format(path, count))
    return 0


if __name__ == '__main__':
    sys.exit(main())
