"""Datasets: item format, list and scan discovery, one-line errors."""

import os

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image

import paddleseg.transforms as T
from paddleseg.cvlibs import manager
from paddleseg.datasets import Cityscapes, Dataset
from paddleseg.errors import ConfigError, DatasetError

H, W = 16, 32
CITIES = {'train': ('aachen', 'bremen'), 'val': ('lindau', ), 'test': ('bonn', )}


def write_label(path, value, bad_value=None):
    label = np.full((H, W), value, np.uint8)
    label[:, :4] = 255
    if bad_value is not None:
        label[0, 0] = bad_value
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), label)


def write_image(path, value):
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 2] = value  # red in BGR
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), img)


@pytest.fixture
def cityscapes(tmp_path):
    """A tiny Cityscapes layout: 2 train, 1 val and 1 test image of 16x32."""
    root = tmp_path / 'cityscapes'
    for split, cities in CITIES.items():
        for i, city in enumerate(cities):
            name = '{}_000000_00001{}'.format(city, i)
            write_image(root / 'leftImg8bit' / split / city /
                        (name + '_leftImg8bit.png'), 10 * (i + 1))
            write_label(root / 'gtFine' / split / city /
                        (name + '_gtFine_labelTrainIds.png'), 3 + i)
    return root


def image_label_lines(root, split, separator):
    lines = []
    for dirpath, _, files in sorted(os.walk(root / 'leftImg8bit' / split)):
        for f in sorted(files):
            img = os.path.relpath(os.path.join(dirpath, f), root)
            label = img.replace('leftImg8bit', 'gtFine', 1).replace(
                '_leftImg8bit.png', '_gtFine_labelTrainIds.png')
            lines.append(img + separator + label)
    return lines


def write_list(path, lines):
    path.write_text(''.join(line + '\n' for line in lines))
    return str(path)


def test_registered():
    assert manager.DATASETS['Cityscapes'] is Cityscapes
    assert manager.DATASETS['Dataset'] is Dataset


def test_cityscapes_scan_train_item(cityscapes):
    ds = Cityscapes(transforms=[T.Normalize()], dataset_root=str(cityscapes))
    assert len(ds) == 2
    assert ds.num_classes == 19 and ds.ignore_index == 255
    item = ds[0]
    assert item['img'].shape == (3, H, W) and item['img'].dtype == np.float32
    # read as RGB: red 10 normalised by 0.5 / 0.5
    np.testing.assert_allclose(item['img'][0], 10 / 127.5 - 1, rtol=1e-6)
    assert item['label'].shape == (H, W) and item['label'].dtype == np.int64
    assert set(np.unique(item['label'])) == {3, 255}
    assert item['gt_fields'] == ['label']
    assert item['trans_info'] == []
    assert item['img_path'].endswith(
        'aachen/aachen_000000_000010_leftImg8bit.png')
    assert item['label_path'].endswith(
        'aachen/aachen_000000_000010_gtFine_labelTrainIds.png')


def test_cityscapes_val_label_stays_at_original_size(cityscapes):
    ds = Cityscapes([T.Resize(target_size=[16, 8])], str(cityscapes),
                    mode='val')
    item = ds[0]
    assert item['img'].shape == (3, 8, 16)
    assert item['label'].shape == (1, H, W) and item['label'].dtype == np.int64
    assert item['trans_info'] == [('resize', (H, W))]
    assert item['gt_fields'] == []


def test_cityscapes_test_mode_has_no_label(cityscapes):
    item = Cityscapes([], str(cityscapes), mode='test')[0]
    assert 'label' not in item and 'label_path' not in item
    assert item['img'].shape == (3, H, W)


@pytest.mark.parametrize('separator', [',', ' '])
def test_cityscapes_lists_with_either_separator(cityscapes, separator):
    lines = image_label_lines(cityscapes, 'train', separator)
    write_list(cityscapes / 'train.txt', lines[::-1])  # order from the list
    ds = Cityscapes([], str(cityscapes))
    assert [os.path.relpath(img, cityscapes) for img, _ in ds.file_list
            ] == [line.split(separator)[0] for line in lines[::-1]]
    assert set(np.unique(ds[0]['label'])) == {4, 255}


def test_cityscapes_classes_and_palette_match_cityscapesscripts():
    pytest.importorskip('cityscapesscripts', reason='cityscapesscripts (requirements.txt) '
                        'is not installed; it holds the official class table')
    from cityscapesscripts.helpers.labels import trainId2label
    assert len(Cityscapes.class_names) == Cityscapes.NUM_CLASSES == 19
    for train_id, (name, colour) in enumerate(
            zip(Cityscapes.class_names, Cityscapes.PALETTE)):
        assert trainId2label[train_id].name == name
        assert trainId2label[train_id].color == colour
    palette = Cityscapes.palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert tuple(palette[13]) == (0, 0, 142) and not palette[255].any()


def test_cityscapes_scan_errors(cityscapes, tmp_path):
    os.remove(cityscapes / 'gtFine' / 'val' / 'lindau' /
              'lindau_000000_000010_gtFine_labelTrainIds.png')
    with pytest.raises(DatasetError,
                       match='lindau_000000_000010_gtFine_labelTrainIds.png '
                       'of image .*convert_cityscapes_labels'):
        Cityscapes([], str(cityscapes), mode='val')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(DatasetError, match='no Cityscapes images match'):
        Cityscapes([], str(empty))
    with pytest.raises(DatasetError, match='dataset_root .*nowhere'):
        Cityscapes([], str(tmp_path / 'nowhere'))
    with pytest.raises(ConfigError, match="mode must be one of"):
        Cityscapes([], str(cityscapes), mode='training')


def test_dataloader_batches_items(cityscapes):
    ds = Cityscapes([T.RandomPaddingCrop(crop_size=[16, 8]), T.Normalize()],
                    str(cityscapes))
    batch = next(iter(paddle.io.DataLoader(ds, batch_size=2)))
    assert batch['img'].shape == [2, 3, 8, 16]
    assert batch['label'].shape == [2, 8, 16]
    assert batch['label'].dtype == paddle.int64


@pytest.fixture
def custom(tmp_path):
    """A custom dataset: 2 images with labels of classes {0, 1} (+255)."""
    root = tmp_path / 'custom'
    for i in range(2):
        write_image(root / 'img' / '{}.jpg'.format(i), 50)
        write_label(root / 'ann' / '{}.png'.format(i), i)
    return root


def make_dataset(root, lines, mode='train', **kwargs):
    path = write_list(root / '{}.txt'.format(mode), lines)
    kwargs.setdefault('num_classes', 2)
    return Dataset(mode=mode, dataset_root=str(root), transforms=[],
                   **{mode + '_path': path}, **kwargs)


def test_dataset_separators(custom):
    ds = make_dataset(custom, ['img/0.jpg ann/0.png', 'img/1.jpg\tann/1.png'])
    assert len(ds) == 2
    assert set(np.unique(ds[1]['label'])) == {1, 255}
    ds = make_dataset(custom, ['img/0.jpg;ann/0.png'], separator=';')
    assert ds.file_list[0][1] == os.path.join(str(custom), 'ann/0.png')
    ds = make_dataset(custom, ['img/0.jpg,ann/0.png', 'img/1.jpg ann/1.png'],
                      separator=None)
    assert len(ds) == 2


def test_dataset_test_mode_label_column_optional(custom):
    ds = make_dataset(custom, ['img/0.jpg', 'img/1.jpg ann/1.png'],
                      mode='test')
    assert ds.file_list[1][1] is None
    assert 'label' not in ds[0]


def test_dataset_grayscale_images(custom):
    ds = make_dataset(custom, ['img/0.jpg ann/0.png'], img_channels=1)
    assert ds[0]['img'].shape == (1, H, W)


def test_dataset_reads_palette_labels_as_indices(custom):
    label = Image.fromarray(np.full((H, W), 1, np.uint8), mode='P')
    label.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    label.save(custom / 'ann' / 'p.png')
    ds = make_dataset(custom, ['img/0.jpg ann/p.png'])
    assert set(np.unique(ds[0]['label'])) == {1}


@pytest.mark.parametrize('lines, message', [
    (['img/0.jpg ann/0.png', 'img/1.jpg'],
     r"train.txt:2: expected 'image label', got 'img/1.jpg'"),
    (['img/0.jpg ann/0.png extra'], r"train.txt:1: expected 'image label'"),
    (['', 'img/9.jpg ann/0.png'],
     r'train.txt:2: image file .*img/9.jpg does not exist'),
    (['img/0.jpg ann/9.png'],
     r'train.txt:1: label file .*ann/9.png does not exist'),
    ([], r'file list .*train.txt is empty'),
])
def test_dataset_list_errors_name_file_and_line(custom, lines, message):
    with pytest.raises(DatasetError, match=message):
        make_dataset(custom, lines)


def test_dataset_argument_errors(custom):
    with pytest.raises(DatasetError, match='file list .*missing.txt does not'):
        Dataset('train', str(custom), [], 2,
                train_path=str(custom / 'missing.txt'))
    with pytest.raises(ConfigError, match="mode 'val' needs val_path"):
        Dataset('val', str(custom), [], 2, train_path='x')
    with pytest.raises(ConfigError, match='num_classes'):
        make_dataset(custom, ['img/0.jpg ann/0.png'], num_classes=0)
    with pytest.raises(DatasetError, match='dataset_root .*nowhere'):
        Dataset('train', str(custom / 'nowhere'), [], 2, train_path='x')


def test_dataset_load_errors(custom):
    (custom / 'img' / 'broken.jpg').write_bytes(b'not an image')
    ds = make_dataset(custom, ['img/broken.jpg ann/0.png'])
    with pytest.raises(DatasetError,
                       match=r'cannot read image .*broken.jpg \(missing, '
                       r'corrupt'):
        ds[0]
    cv2.imwrite(str(custom / 'ann' / 'small.png'), np.zeros((4, 4), np.uint8))
    ds = make_dataset(custom, ['img/0.jpg ann/small.png'])
    with pytest.raises(DatasetError,
                       match=r'label .*small.png is 4x4 \(h x w\) but image '
                       r'.*0.jpg is 16x32'):
        ds[0]
    write_label(custom / 'ann' / 'bad.png', 1, bad_value=7)
    ds = make_dataset(custom, ['img/0.jpg ann/bad.png', 'img/1.jpg ann/1.png'])
    assert ds[1]['label'].shape == (H, W)
    with pytest.raises(DatasetError,
                       match=r'label .*bad.png has values \[7\] that are '
                       r'neither < num_classes \(2\) nor ignore_index \(255\)'):
        ds[0]
    ds = make_dataset(custom, ['img/0.jpg ann/bad.png'], num_classes=8)
    assert 7 in ds[0]['label']
