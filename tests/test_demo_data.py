"""The synthetic demo data generator (utils/make_demo_data.py), on tiny sizes."""

import glob
import json
import os
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'utils'))
import convert_cityscapes_labels  # noqa: E402
import make_demo_data as demo  # noqa: E402

SIZE = dict(train=3, val=2, height=48, width=96)
VALID_TRAIN_IDS = set(range(19)) | {255}


def _files(root):
    """Every file under ``root``, relative path -> bytes."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, '**', '*'), recursive=True)):
        if os.path.isfile(path):
            with open(path, 'rb') as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope='module')
def made(tmp_path_factory):
    """Three datasets: seed 0 twice and seed 1 once."""
    base = tmp_path_factory.mktemp('demo')
    roots = {}
    for key, seed in (('a', 0), ('b', 0), ('c', 1)):
        roots[key] = str(base / key)
        assert demo.make_demo_data(roots[key], seed=seed, verbose=False,
                                   **SIZE)
    return roots


def test_same_seed_gives_identical_bytes(made):
    a, b = _files(made['a']), _files(made['b'])
    assert sorted(a) == sorted(b)
    assert a == b


def test_other_seed_gives_other_images(made):
    a, c = _files(made['a']), _files(made['c'])
    assert sorted(a) == sorted(c)  # same names and layout
    images = [k for k in a if k.endswith('_leftImg8bit.png')]
    assert images and all(a[k] != c[k] for k in images)


def test_layout_sizes_and_label_values(made):
    root = made['a']
    lut = convert_cityscapes_labels.train_id_lut()
    for split, cities in demo.SPLITS.items():
        images = sorted(glob.glob(os.path.join(
            root, 'leftImg8bit', split, '*', '*_leftImg8bit.png')))
        assert len(images) == SIZE[split]
        for img_path in images:
            city = os.path.basename(os.path.dirname(img_path))
            assert city in cities
            stem = img_path.replace(os.path.join('leftImg8bit', split),
                                    os.path.join('gtFine', split))
            stem = stem[:-len('_leftImg8bit.png')]
            img = cv2.imread(img_path, cv2.IMREAD_UNCHANGED)
            ids = cv2.imread(stem + '_gtFine_labelIds.png', cv2.IMREAD_UNCHANGED)
            train_ids = cv2.imread(stem + '_gtFine_labelTrainIds.png',
                                   cv2.IMREAD_UNCHANGED)
            assert img.shape == (SIZE['height'], SIZE['width'], 3)
            assert img.dtype == np.uint8
            for label in (ids, train_ids):
                assert label.shape == (SIZE['height'], SIZE['width'])
                assert label.dtype == np.uint8
            assert set(np.unique(ids)) <= set(demo.LABEL_ID.values())
            assert set(np.unique(train_ids)) <= VALID_TRAIN_IDS
            assert (train_ids == lut[ids]).all()


def test_every_class_appears(made):
    seen = set()
    for path in glob.glob(os.path.join(made['a'], 'gtFine', '*', '*',
                                       '*_gtFine_labelTrainIds.png')):
        seen |= set(np.unique(cv2.imread(path, cv2.IMREAD_UNCHANGED)).tolist())
    assert seen >= set(demo.TRAIN_ID.values())
    assert len(demo.TRAIN_ID) == 9


def test_render_scene_draws_every_class():
    for i in range(3):
        _, label = demo.render_scene(demo.image_rng(7, 'train', i), 64, 128)
        assert set(np.unique(label).tolist()) == set(demo.LABEL_ID.values())


def test_lists_and_metadata(made):
    root = made['a']
    for split in demo.SPLITS:
        with open(os.path.join(root, split + '.txt')) as f:
            lines = [line.strip() for line in f if line.strip()]
        assert len(lines) == SIZE[split]
        for line in lines:
            img, label = line.split(',')
            assert img.startswith('leftImg8bit/' + split + '/')
            assert label.endswith('_gtFine_labelTrainIds.png')
            assert os.path.isfile(os.path.join(root, img))
            assert os.path.isfile(os.path.join(root, label))
    with open(os.path.join(root, demo.META_FILE)) as f:
        assert json.load(f) == demo.demo_params(seed=0, **SIZE)


def test_up_to_date_data_is_kept(made, tmp_path):
    root = str(tmp_path / 'd')
    small = dict(SIZE, train=1, val=1)
    assert demo.make_demo_data(root, seed=3, verbose=False, **small)
    before = os.path.getmtime(os.path.join(root, 'train.txt'))
    assert not demo.make_demo_data(root, seed=3, verbose=False, **small)
    assert os.path.getmtime(os.path.join(root, 'train.txt')) == before
    # another seed regenerates (and replaces the images)
    assert demo.make_demo_data(root, seed=4, verbose=False, **small)
    with open(os.path.join(root, demo.META_FILE)) as f:
        assert json.load(f)['seed'] == 4


def test_bad_arguments():
    with pytest.raises(ValueError):
        demo.make_demo_data('unused', train=0)
    with pytest.raises(ValueError):
        demo.make_demo_data('unused', height=8)
    assert demo.main(['--root', 'unused', '--val', '0']) == 2
