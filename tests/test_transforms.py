"""Transforms: shapes, label values, nearest labels, seeding, exact numbers."""

import random

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image, ImageEnhance

import paddleseg.transforms as T
from paddleseg.cvlibs import manager
from paddleseg.errors import ConfigError
from paddleseg.transforms import functional as F

LABEL_VALUES = {0, 3, 7}


def make_item(h=8, w=12, seed=0):
    """A uint8 RGB image and a label of values {0, 3, 7} in vertical stripes."""
    rng = np.random.RandomState(seed)
    img = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    label = np.zeros((h, w), np.uint8)
    label[:, w // 3:2 * w // 3] = 3
    label[:, 2 * w // 3:] = 7
    return {'img': img, 'label': label, 'gt_fields': ['label'],
            'trans_info': []}


def label_values(data):
    return set(np.unique(data['label']).tolist())


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)


def seed_pipeline(crop=(32, 16)):
    return T.Compose([
        T.ResizeStepScaling(0.5, 2.0, 0.25),
        T.RandomPaddingCrop(crop_size=list(crop)),
        T.RandomHorizontalFlip(),
        T.RandomDistort(brightness_range=0.4, contrast_range=0.4,
                        saturation_range=0.4),
        T.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
    ])


def test_all_transforms_registered_by_class_name():
    for name in T.__all__:
        assert manager.TRANSFORMS[name] is getattr(T, name)


def test_compose_reads_paths_as_rgb_and_returns_chw_float32(tmp_path):
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 10  # blue
    bgr[..., 2] = 200  # red
    label = np.full((4, 6), 5, np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), bgr)
    cv2.imwrite(str(tmp_path / 'a_label.png'), label)
    out = T.Compose([])({'img': str(tmp_path / 'a.png'),
                         'label': str(tmp_path / 'a_label.png')})
    assert out['img'].shape == (3, 4, 6)
    assert out['img'].dtype == np.float32
    assert out['img'].flags['C_CONTIGUOUS']
    assert out['img'][0].max() == 200 and out['img'][2].max() == 10
    assert out['label'].dtype == np.uint8
    assert (out['label'] == 5).all()
    assert out['trans_info'] == []


def test_compose_keeps_bgr_with_to_rgb_false(tmp_path):
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 9
    cv2.imwrite(str(tmp_path / 'a.png'), bgr)
    out = T.Compose([], to_rgb=False)({'img': str(tmp_path / 'a.png')})
    assert (out['img'][0] == 9).all()


def test_compose_takes_arrays_as_they_are_and_grayscale():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = T.Compose([], img_channels=1)({'img': img})
    assert out['img'].shape == (1, 2, 3)
    np.testing.assert_array_equal(out['img'][0], img)
    with pytest.raises(ValueError, match='img_channels is 3'):
        T.Compose([])({'img': img})


def test_compose_rejects_bad_arguments():
    with pytest.raises(ConfigError, match='must be a list'):
        T.Compose(T.Normalize())
    with pytest.raises(ConfigError, match='img_channels'):
        T.Compose([], img_channels=4)


@pytest.mark.parametrize('cls, flip', [(T.RandomHorizontalFlip, np.fliplr),
                                       (T.RandomVerticalFlip, np.flipud)])
def test_flips(cls, flip):
    data = make_item()
    img, label = data['img'].copy(), data['label'].copy()
    out = cls(prob=1.0)(data)
    np.testing.assert_array_equal(out['img'], flip(img))
    np.testing.assert_array_equal(out['label'], flip(label))
    out = cls(prob=0.0)(make_item())
    np.testing.assert_array_equal(out['img'], img)


def test_resize_records_size_and_keeps_label_values():
    out = T.Resize(target_size=[17, 5])(make_item())
    assert out['img'].shape == (5, 17, 3)
    assert out['label'].shape == (5, 17)
    assert label_values(out) == LABEL_VALUES
    assert out['trans_info'] == [('resize', (8, 12))]


def test_resize_label_is_nearest():
    label = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    data = make_item(h=2, w=3)
    data['label'] = label
    out = T.Resize(target_size=[6, 4], interp='CUBIC')(data)
    np.testing.assert_array_equal(out['label'],
                                  np.repeat(np.repeat(label, 2, 0), 2, 1))


def test_resize_keep_ratio_and_size_divisor():
    out = T.Resize(target_size=[30, 20], keep_ratio=True)(make_item(8, 12))
    assert out['img'].shape[:2] == (20, 30)
    out = T.Resize(target_size=[10, 10], size_divisor=8)(make_item())
    assert out['img'].shape[:2] == (16, 16)


def test_resize_random_interp_is_seeded_and_bad_interp_rejected():
    seed_all(3)
    a = T.Resize([9, 7], interp='RANDOM')(make_item())['img']
    seed_all(3)
    b = T.Resize([9, 7], interp='RANDOM')(make_item())['img']
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match='interp'):
        T.Resize(interp='BILINEAR')
    with pytest.raises(ConfigError, match='target_size'):
        T.Resize(target_size=[1, 2, 3])


@pytest.mark.parametrize('op, shape', [
    (T.ResizeByLong(long_size=24), (16, 24)),
    (T.ResizeByShort(short_size=4), (4, 6)),
    (T.ResizeByShort(short_size=16, max_size=12), (8, 12)),
    (T.LimitLong(max_long=6), (4, 6)),
    (T.LimitLong(min_long=24), (16, 24)),
    (T.LimitLong(max_long=100, min_long=2), (8, 12)),
])
def test_resize_family_shapes_and_record(op, shape):
    out = op(make_item(8, 12))
    assert out['img'].shape[:2] == shape
    assert out['label'].shape == shape
    assert label_values(out) == LABEL_VALUES
    assert out['trans_info'] == [('resize', (8, 12))]


def test_limit_long_rejects_min_above_max():
    with pytest.raises(ConfigError, match='min_long'):
        T.LimitLong(max_long=5, min_long=6)


def test_resize_step_scaling_draws_from_the_steps():
    sizes = set()
    op = T.ResizeStepScaling(0.5, 2.0, 0.25)
    for seed in range(40):
        seed_all(seed)
        out = op(make_item(8, 12))
        sizes.add(out['img'].shape[:2])
        assert out['label'].shape == out['img'].shape[:2]
        assert label_values(out) == LABEL_VALUES
        assert out['trans_info'] == []  # a training-only resize
    expected = {(round(8 * s), round(12 * s))
                for s in np.linspace(0.5, 2.0, 7)}
    assert sizes == expected
    with pytest.raises(ConfigError):
        T.ResizeStepScaling(2.0, 1.0)


def test_resize_range_scaling_long_side_in_range():
    for seed in range(10):
        seed_all(seed)
        out = T.ResizeRangeScaling(10, 20)(make_item(8, 12))
        assert 10 <= max(out['img'].shape[:2]) <= 20
        assert label_values(out) == LABEL_VALUES


def test_normalize_numbers_by_hand():
    img = np.array([[[0, 51, 255]]], np.uint8)
    out = T.Normalize(mean=[0.5, 0.4, 0.3], std=[0.5, 0.2, 0.1])(
        {'img': img})['img']
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [-1.0, -1.0, 7.0], rtol=1e-6)
    out = T.Normalize()({'img': img})['img']  # defaults 0.5 / 0.5
    np.testing.assert_allclose(out[0, 0], [-1.0, -0.6, 1.0], rtol=1e-6)


def test_normalize_float_input_matches_uint8_input():
    img = make_item()['img']
    op = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    a = op({'img': img})['img']
    b = op({'img': img.astype(np.float32)})['img']
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_normalize_rejects_bad_arguments():
    with pytest.raises(ConfigError, match='std'):
        T.Normalize(std=[0.5, 0, 0.5])
    with pytest.raises(ConfigError, match='mean'):
        T.Normalize(mean=0.5)
    with pytest.raises(ValueError, match='channels'):
        T.Normalize(mean=[0.5] * 3, std=[0.5] * 3)(
            {'img': np.zeros((2, 2), np.uint8)})


def test_padding_fills_and_records():
    out = T.Padding(target_size=[15, 10])(make_item(8, 12))
    assert out['img'].shape == (10, 15, 3)
    assert out['img'].dtype == np.float32  # 127.5 does not fit uint8
    assert (out['img'][8:] == 127.5).all() and (out['img'][:, 12:] == 127.5).all()
    assert (out['label'][8:] == 255).all() and (out['label'][:, 12:] == 255).all()
    assert label_values(out) == LABEL_VALUES | {255}
    assert out['trans_info'] == [('padding', (8, 12))]
    out = T.Padding(16, im_padding_value=0)(make_item(8, 12))
    assert out['img'].shape == (16, 16, 3) and out['img'].dtype == np.uint8
    with pytest.raises(ConfigError, match='larger than the target'):
        T.Padding(target_size=[10, 10])(make_item(8, 12))


def test_padding_by_aspect_ratio():
    out = T.PaddingByAspectRatio(aspect_ratio=2)(make_item(8, 12))
    assert out['img'].shape[:2] == (8, 16)
    assert out['trans_info'] == [('padding', (8, 12))]
    out = T.PaddingByAspectRatio(aspect_ratio=1.5)(make_item(8, 12))
    assert out['trans_info'] == []


def test_random_padding_crop_is_a_window_of_the_input():
    data = make_item(8, 12)
    img, label = data['img'].copy(), data['label'].copy()
    seed_all(1)
    out = T.RandomPaddingCrop(crop_size=[5, 4])(data)
    assert out['img'].shape == (4, 5, 3) and out['label'].shape == (4, 5)
    windows = [(y, x) for y in range(5) for x in range(8)
               if np.array_equal(img[y:y + 4, x:x + 5], out['img'])]
    assert len(windows) == 1
    y, x = windows[0]
    np.testing.assert_array_equal(label[y:y + 4, x:x + 5], out['label'])


def test_random_padding_crop_pads_with_255_when_smaller():
    out = T.RandomPaddingCrop(crop_size=[20, 10])(make_item(8, 12))
    assert out['img'].shape == (10, 20, 3)
    assert (out['label'][8:] == 255).all() and (out['label'][:, 12:] == 255).all()
    assert label_values(out) == LABEL_VALUES | {255}
    assert (out['img'][8:] == 127.5).all()
    out = T.RandomPaddingCrop(crop_size=[20, 10], im_padding_value=0,
                              label_padding_value=9)(make_item(8, 12))
    assert out['img'].dtype == np.uint8 and (out['img'][8:] == 0).all()
    assert label_values(out) == LABEL_VALUES | {9}


def test_random_padding_crop_category_max_ratio():
    data = make_item(8, 30)
    data['label'][:] = 1
    data['label'][:, 25:] = 2  # only windows reaching x >= 25 mix classes
    seed_all(0)
    out = T.RandomPaddingCrop(crop_size=[10, 8], category_max_ratio=0.75,
                              loop_times=50)(data)
    counts = np.bincount(out['label'].ravel())
    assert len(np.flatnonzero(counts)) == 2
    assert counts.max() / counts.sum() < 0.75


def test_random_distort_is_seeded_and_stays_uint8():
    outs = []
    for _ in range(2):
        seed_all(5)
        outs.append(T.RandomDistort(sharpness_prob=0.5)(make_item())['img'])
    assert outs[0].dtype == np.uint8 and outs[0].shape == (8, 12, 3)
    np.testing.assert_array_equal(outs[0], outs[1])
    gray = T.RandomDistort(hue_prob=1.0)({'img': make_item()['img'][..., 0]})
    assert gray['img'].shape == (8, 12)


@pytest.mark.parametrize('factor', [0.6, 1.0, 1.4])
def test_brightness_and_contrast_match_pil_exactly(factor):
    img = make_item(16, 16)['img']
    pil = Image.fromarray(img)
    np.testing.assert_array_equal(
        F.brightness(img, factor),
        np.asarray(ImageEnhance.Brightness(pil).enhance(factor)))
    np.testing.assert_array_equal(
        F.contrast(img, factor),
        np.asarray(ImageEnhance.Contrast(pil).enhance(factor)))


@pytest.mark.parametrize('name, factor', [('Color', 0.7), ('Color', 1.3),
                                          ('Sharpness', 0.7),
                                          ('Sharpness', 1.3)])
def test_saturation_and_sharpness_within_one_of_pil(name, factor):
    img = make_item(16, 16)['img']
    ours = {'Color': F.saturation, 'Sharpness': F.sharpness}[name]
    pil = getattr(ImageEnhance, name)(Image.fromarray(img)).enhance(factor)
    diff = ours(img, factor).astype(int) - np.asarray(pil)
    assert np.abs(diff).max() <= 1


def test_saturation_leaves_gray_pixels():
    gray = np.full((2, 2, 3), 77, np.uint8)
    np.testing.assert_array_equal(F.saturation(gray, 1.5), gray)


def test_hue_rotates_primaries():
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    # a third of the hue circle: red -> green
    np.testing.assert_array_equal(F.hue(red, 256 / 3)[0, 0], [0, 255, 0])
    np.testing.assert_array_equal(F.hue(red, 0), red)


def test_random_blur_noise_rotation_scale_aspect_keep_labels():
    seed_all(0)
    data = T.RandomBlur(prob=1.0, blur_type='random')(make_item())
    assert data['img'].dtype == np.uint8 and data['img'].shape == (8, 12, 3)
    data = T.RandomNoise(prob=1.0)(make_item())
    assert data['img'].dtype == np.float32
    assert 0 <= data['img'].min() and data['img'].max() <= 255
    data = T.RandomRotation(max_rotation=30)(make_item(16, 24))
    assert data['img'].shape[:2] == data['label'].shape
    assert label_values(data) <= LABEL_VALUES | {255}
    data = T.RandomScaleAspect(min_scale=0.3, aspect_ratio=0.5)(
        make_item(16, 24))
    assert data['img'].shape == (16, 24, 3)
    assert label_values(data) <= LABEL_VALUES
    with pytest.raises(ConfigError, match='blur_type'):
        T.RandomBlur(blur_type='motion')


def test_seed_train_pipeline_shapes_values_and_determinism():
    pipeline = seed_pipeline(crop=(32, 16))
    results = []
    for seed in (11, 11, 12):
        seed_all(seed)
        results.append(pipeline(make_item(32, 64, seed=1)))
    first, again, other = results
    assert first['img'].shape == (3, 16, 32) and first['img'].dtype == np.float32
    assert first['label'].shape == (16, 32)
    assert label_values(first) <= LABEL_VALUES | {255}
    assert -1 <= first['img'].min() and first['img'].max() <= 1
    np.testing.assert_array_equal(first['img'], again['img'])
    np.testing.assert_array_equal(first['label'], again['label'])
    assert not np.array_equal(first['img'], other['img'])


def test_reverse_transform_undoes_resize_and_padding():
    data = make_item(8, 12)
    val = T.Compose([T.Resize(target_size=[24, 16], interp='NEAREST'),
                     T.Padding(target_size=[32, 20], im_padding_value=0)])
    out = val(data)
    assert out['trans_info'] == [('resize', (8, 12)), ('padding', (16, 24))]
    label = np.zeros((20, 32), np.int64)
    label[:16, :24] = np.repeat(np.repeat(make_item()['label'], 2, 0), 2, 1)
    pred = paddle.to_tensor(label[None, None])
    back = F.reverse_transform(pred, out['trans_info'])
    assert back.dtype == paddle.int64
    np.testing.assert_array_equal(back.numpy()[0, 0], make_item()['label'])
    logits = paddle.ones([1, 19, 20, 32])
    assert F.reverse_transform(logits, out['trans_info'],
                               mode='bilinear').shape == [1, 19, 8, 12]


def test_reverse_transform_accepts_collated_trans_info():
    # as paddle.io.DataLoader collates a batch of one
    collated = [[['resize'], [paddle.to_tensor([4]), paddle.to_tensor([6])]]]
    pred = paddle.zeros([1, 1, 8, 12], 'int32')
    assert F.reverse_transform(pred, collated).shape == [1, 1, 4, 6]
    with pytest.raises(ValueError, match='unknown'):
        F.reverse_transform(pred, [('crop', (4, 6))])


def test_round_to_uint8_rounds_halves_to_even_and_clips():
    values = np.array([-3, 0.4, 0.5, 1.5, 127.5, 128.5, 254.6, 300], np.float32)
    assert F.round_to_uint8(values).tolist() == [0, 0, 0, 2, 128, 128, 255, 255]
    same = np.array([7], np.uint8)
    assert F.round_to_uint8(same) is same


def test_split_normalize_leaves_the_pipeline_and_gives_uint8_chw():
    norm = T.Normalize(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    compose = T.Compose([T.RandomHorizontalFlip(prob=0), norm])
    head, deferred = compose.split_normalize()
    assert deferred is norm and len(compose.transforms) == 2 and len(head.transforms) == 1
    img = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    out = head({'img': img.copy()})['img']
    assert out.dtype == np.uint8 and out.shape == (3, 2, 4)
    assert np.array_equal(out, img.transpose(2, 0, 1))
    assert compose({'img': img.copy()})['img'].dtype == np.float32
    assert T.Compose([norm, T.RandomHorizontalFlip()]).split_normalize() is None
    assert T.Compose([]).split_normalize() is None
