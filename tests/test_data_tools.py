"""utils/create_dataset_list.py and utils/convert_cityscapes_labels.py (the
latter needs cityscapesscripts; without it its tests are skipped)."""

import os
import sys

import cv2
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'utils'))
import create_dataset_list as list_tool  # noqa: E402

from paddleseg.datasets import Cityscapes  # noqa: E402
from paddleseg.errors import DatasetError  # noqa: E402

H, W = 16, 32


@pytest.fixture
def convert_tool():
    """utils/convert_cityscapes_labels.py, which reads cityscapesscripts' label table."""
    pytest.importorskip('cityscapesscripts', reason='cityscapesscripts (requirements.txt) '
                        'is not installed; the label conversion needs its table')
    import convert_cityscapes_labels
    return convert_cityscapes_labels


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), array)


def make_cityscapes(root, with_test_labels=False):
    """Two train images (aachen, bremen), one val, one test, labelIds and trainIds."""
    layout = [('train', 'aachen'), ('train', 'bremen'), ('val', 'lindau'),
              ('test', 'bonn')]
    for split, city in layout:
        name = '{}_000000_000019'.format(city)
        write_png(root / 'leftImg8bit' / split / city /
                  (name + '_leftImg8bit.png'), np.zeros((H, W, 3), np.uint8))
        if split != 'test' or with_test_labels:
            write_png(root / 'gtFine' / split / city /
                      (name + '_gtFine_labelIds.png'),
                      np.full((H, W), 7, np.uint8))
            write_png(root / 'gtFine' / split / city /
                      (name + '_gtFine_labelTrainIds.png'),
                      np.zeros((H, W), np.uint8))


def test_cityscapes_lists(tmp_path):
    make_cityscapes(tmp_path)
    written = list_tool.create_dataset_lists(str(tmp_path))
    assert {split: count for split, (_, count) in written.items()} == {
        'train': 2, 'val': 1, 'test': 1}
    assert (tmp_path / 'train.txt').read_text().splitlines() == [
        'leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png,'
        'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png',
        'leftImg8bit/train/bremen/bremen_000000_000019_leftImg8bit.png,'
        'gtFine/train/bremen/bremen_000000_000019_gtFine_labelTrainIds.png',
    ]
    assert (tmp_path / 'test.txt').read_text() == (
        'leftImg8bit/test/bonn/bonn_000000_000019_leftImg8bit.png\n')
    ds = Cityscapes([], str(tmp_path), mode='val')  # reads val.txt
    assert ds[0]['label'].shape == (1, H, W)


def test_cityscapes_lists_space_separator_and_test_labels(tmp_path):
    make_cityscapes(tmp_path, with_test_labels=True)
    list_tool.create_dataset_lists(str(tmp_path), separator=' ',
                                   splits=('test', ))
    assert (tmp_path / 'test.txt').read_text() == (
        'leftImg8bit/test/bonn/bonn_000000_000019_leftImg8bit.png '
        'gtFine/test/bonn/bonn_000000_000019_gtFine_labelTrainIds.png\n')
    assert not (tmp_path / 'train.txt').exists()


def test_cityscapes_lists_missing_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    os.remove(tmp_path / 'gtFine' / 'val' / 'lindau' /
              'lindau_000000_000019_gtFine_labelTrainIds.png')
    with pytest.raises(DatasetError, match='lindau_000000_000019_gtFine_'
                       'labelTrainIds.png of image'):
        list_tool.create_dataset_lists(str(tmp_path))


def test_custom_lists_match_names_suffixes_and_subfolders(tmp_path):
    img, label = np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint8)
    write_png(tmp_path / 'JPEGImages' / 'train' / 'a_img.jpg', img)
    write_png(tmp_path / 'JPEGImages' / 'train' / 'sub' / 'b_img.jpg', img)
    write_png(tmp_path / 'JPEGImages' / 'train' / 'ignored.png', img)
    write_png(tmp_path / 'Annotations' / 'train' / 'a_mask.png', label)
    write_png(tmp_path / 'Annotations' / 'train' / 'sub' / 'b_mask.png', label)
    write_png(tmp_path / 'JPEGImages' / 'test' / 'c_img.jpg', img)
    written = list_tool.create_dataset_lists(
        str(tmp_path), 'custom', ',', folder=('JPEGImages', 'Annotations'),
        formats=('jpg', 'png'), postfix=('_img', '_mask'))
    assert sorted(written) == ['test', 'train']
    assert (tmp_path / 'train.txt').read_text().splitlines() == [
        'JPEGImages/train/a_img.jpg,Annotations/train/a_mask.png',
        'JPEGImages/train/sub/b_img.jpg,Annotations/train/sub/b_mask.png',
    ]
    assert (tmp_path / 'test.txt').read_text() == 'JPEGImages/test/c_img.jpg\n'


def test_custom_lists_missing_label(tmp_path):
    write_png(tmp_path / 'images' / 'val' / 'a.jpg', np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetError, match='label .*annotations/val/a.png of '
                       'image .*a.jpg does not exist'):
        list_tool.create_dataset_lists(str(tmp_path), 'custom')


def test_create_dataset_list_cli(tmp_path, capsys):
    make_cityscapes(tmp_path)
    assert list_tool.main([str(tmp_path), '--type', 'cityscapes']) == 0
    assert 'train.txt (2 lines)' in capsys.readouterr().out
    assert list_tool.main([str(tmp_path / 'nowhere')]) == 1
    assert 'error: dataset root' in capsys.readouterr().err
    assert list_tool.main([str(tmp_path), '--type', 'custom']) == 1
    assert 'none of the splits' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        list_tool.main(['--help'])
    assert exc.value.code == 0


def test_train_id_table_follows_cityscapesscripts(convert_tool):
    from cityscapesscripts.helpers.labels import id2label
    lut = convert_tool.train_id_lut()
    assert lut.shape == (256, ) and lut.dtype == np.uint8
    # road 7 -> 0, sidewalk 8 -> 1, car 26 -> 13, bicycle 33 -> 18,
    # unlabeled 0, ego vehicle 1 and guard rail 14 -> ignore
    for label_id, train_id in [(7, 0), (8, 1), (26, 13), (33, 18), (0, 255),
                               (1, 255), (14, 255)]:
        assert lut[label_id] == train_id
        assert id2label[label_id].trainId in (train_id, -1)
    assert (lut[34:] == 255).all()


def label_ids_image():
    label = np.zeros((H, W), np.uint8)
    label[:, :8], label[:, 8:16], label[:, 16:24] = 7, 26, 33
    return label  # last quarter: 0 (unlabeled)


def test_convert_writes_train_ids_and_skips_up_to_date(tmp_path, convert_tool):
    src = tmp_path / 'gtFine' / 'train' / 'aachen' / 'a_gtFine_labelIds.png'
    write_png(src, label_ids_image())
    dst = tmp_path / 'gtFine' / 'train' / 'aachen' / 'a_gtFine_labelTrainIds.png'
    assert convert_tool.convert_cityscapes_labels(
        str(tmp_path), num_workers=1, progress=False) == (1, 0)
    out = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, [0, 8, 16, 24]], [0, 13, 18, 255])
    assert not (tmp_path / 'gtFine' / 'train' / 'aachen' /
                'a_gtFine_labelTrainIds.png.tmp').exists()
    # up to date: skipped, even if the output was changed since
    cv2.imwrite(str(dst), np.full((H, W), 9, np.uint8))
    assert convert_tool.convert_cityscapes_labels(
        str(tmp_path), num_workers=1, progress=False) == (0, 1)
    assert (cv2.imread(str(dst), cv2.IMREAD_UNCHANGED) == 9).all()
    # --force, or an input newer than its output: converted again
    assert convert_tool.convert_cityscapes_labels(
        str(tmp_path), num_workers=1, force=True, progress=False) == (1, 0)
    assert cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)[0, 0] == 0
    cv2.imwrite(str(dst), np.full((H, W), 9, np.uint8))
    stamp = os.path.getmtime(dst)
    os.utime(src, (stamp + 10, stamp + 10))
    assert convert_tool.convert_cityscapes_labels(
        str(tmp_path), num_workers=1, progress=False) == (1, 0)
    assert cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)[0, 0] == 0


def test_convert_with_a_pool_and_cli(tmp_path, capsys, convert_tool):
    for city in ('aachen', 'bremen', 'lindau'):
        write_png(tmp_path / 'gtFine' / 'train' / city /
                  (city + '_0_gtFine_labelIds.png'), label_ids_image())
    assert convert_tool.main([str(tmp_path), '--num_workers', '2']) == 0
    assert 'converted 3, skipped 0' in capsys.readouterr().out
    for city in ('aachen', 'bremen', 'lindau'):
        out = cv2.imread(str(tmp_path / 'gtFine' / 'train' / city /
                             (city + '_0_gtFine_labelTrainIds.png')),
                         cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(out[0, [0, 8, 16, 24]], [0, 13, 18, 255])
    assert convert_tool.main([str(tmp_path)]) == 0
    assert 'converted 0, skipped 3' in capsys.readouterr().out


def test_convert_errors(tmp_path, capsys, convert_tool):
    assert convert_tool.main([str(tmp_path)]) == 1
    assert 'no files match' in capsys.readouterr().err
    bad = tmp_path / 'gtFine' / 'val' / 'x' / 'b_gtFine_labelIds.png'
    os.makedirs(bad.parent)
    bad.write_bytes(b'broken')
    assert convert_tool.main([str(tmp_path), '--num_workers', '1']) == 1
    assert 'b_gtFine_labelIds.png: not a readable 8-bit' in (
        capsys.readouterr().err)
