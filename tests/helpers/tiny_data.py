"""A tiny Cityscapes-layout dataset and config for end-to-end tests.

Images are 64x128 scenes of four classes (road, sidewalk, sky, car) with
noise; labels are trainIds. Everything is made by this file.
"""

import os

import cv2
import numpy as np
import yaml

COLORS = {0: (128, 64, 128), 1: (232, 35, 244), 10: (180, 130, 70), 13: (142, 0, 0)}


def make_tiny_cityscapes(root, n_train=8, n_val=2, h=64, w=128, seed=0):
    """Write ``root/{leftImg8bit,gtFine}/{train,val}/<city>/`` and return root."""
    rng = np.random.default_rng(seed)
    for split, n in (('train', n_train), ('val', n_val)):
        for i in range(n):
            city = 'city{}'.format(i % 2)
            name = '{}_{:06d}_000019'.format(city, i)
            label = np.zeros((h, w), np.uint8)            # road
            label[: h // 4] = 10                          # sky
            label[h // 2 + int(rng.integers(0, h // 8)):, : w // 3] = 1  # sidewalk
            x0 = int(rng.integers(w // 3, w - w // 4))
            label[h // 3: h // 3 + h // 4, x0: x0 + w // 5] = 13       # car
            label[0, 0] = 255
            img = np.zeros((h, w, 3), np.float32)
            for cls, color in COLORS.items():
                img[label == cls] = color
            img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
            for kind, arr, suffix in (('leftImg8bit', img, '_leftImg8bit.png'),
                                      ('gtFine', label, '_gtFine_labelTrainIds.png')):
                folder = os.path.join(root, kind, split, city)
                os.makedirs(folder, exist_ok=True)
                cv2.imwrite(os.path.join(folder, name + suffix), arr)
    return root


BASE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), 'configs', '_base_', 'cityscapes.yml')


def write_tiny_config(path, dataset_root, iters=4, batch_size=2, crop=64,
                      model=None, extra=''):
    """A ResNet18_vd PointRendFPN config on the tiny dataset.

    Args:
        crop (int): Side of the square training crop. Default: 64.
        model (dict, optional): Extra ``model:`` keys (e.g. a narrower head).
        extra (str, optional): YAML appended at the top level.
    """
    cfg = {
        '_base_': BASE_CONFIG,
        'batch_size': batch_size,
        'iters': iters,
        'train_dataset': {'dataset_root': str(dataset_root), 'transforms': [
            {'type': 'RandomPaddingCrop', 'crop_size': [crop, crop]},
            {'type': 'RandomHorizontalFlip'},
            {'type': 'Normalize'}]},
        'val_dataset': {'dataset_root': str(dataset_root)},
        'model': dict({'type': 'PointRendFPN',
                       'backbone': {'type': 'ResNet18_vd', 'output_stride': 8},
                       'backbone_indices': [0, 1, 2, 3],
                       'fpn_inplanes': [64, 128, 256, 512],
                       'point_num_points': 64}, **(model or {})),
        'loss': {'types': [{'type': 'CrossEntropyLoss'},
                           {'type': 'PointCrossEntropyLoss'}],
                 'coef': [1, 1]},
        'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01,
                         'warmup_iters': 1},
    }
    with open(path, 'w') as f:
        f.write(yaml.safe_dump(cfg, sort_keys=False) + extra)
    return path


def seeded_model(cfg_path, seed):
    """The model of the config at ``cfg_path`` with the initial weights
    ``paddle.seed(seed)`` gives (no pretrained download), in eval mode."""
    import paddle
    from paddleseg.cli.build import without_pretrained
    from paddleseg.cvlibs import Config, SegBuilder
    paddle.seed(seed)
    cfg = Config(cfg_path)
    without_pretrained(cfg.dic)
    model = SegBuilder(cfg).model
    model.eval()
    return model
