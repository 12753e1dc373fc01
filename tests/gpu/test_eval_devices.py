"""The same weights evaluated on the GPU and on the CPU.

val.py and predict.py run once with ``--device gpu`` and once with
``--device cpu`` on the tiny validation set, with seeded random weights.
GPU and CPU kernels may sum in another order, so a few near-ties may flip:
the class maps must agree on at least 99.9% of the pixels.
"""

import json
import os

import numpy as np
from PIL import Image

MIN_AGREEMENT = 0.999


def _class_maps(folder):
    """``{relative path: class map}`` of predict.py's palette PNGs."""
    maps = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if name.endswith('.png'):
                path = os.path.join(dirpath, name)
                image = Image.open(path)
                assert image.mode == 'P', path  # pixel values are the class ids
                maps[os.path.relpath(path, folder)] = np.asarray(image)
    return maps


def test_gpu_and_cpu_evaluation_agree(tiny, tools, random_weights, tmp_path):
    devices = (tools.DEVICE, 'cpu')
    metrics, maps = {}, {}
    for device in devices:
        path = tmp_path / 'metrics_{}.json'.format(device)
        proc = tools.run_python([tools.script('val.py'), '--config', tiny['cfg'],
                                 '--model_path', random_weights, '--device', device,
                                 '--save_json', path])
        tools.check_ok(proc, 'val.py --device ' + device)
        metrics[device] = json.load(open(path))

        out = tmp_path / 'pred_{}'.format(device)
        proc = tools.run_python([tools.script('predict.py'), '--config', tiny['cfg'],
                                 '--model_path', random_weights, '--device', device,
                                 '--image_path', os.path.join(tiny['root'], 'leftImg8bit', 'val'),
                                 '--save_dir', out])
        tools.check_ok(proc, 'predict.py --device ' + device)
        maps[device] = _class_maps(out / 'pseudo_color_prediction')

    # predict.py: the class maps, pixel by pixel
    gpu_maps, cpu_maps = maps[devices[0]], maps['cpu']
    assert sorted(gpu_maps) == sorted(cpu_maps) and len(gpu_maps) == 2, (gpu_maps, cpu_maps)
    names = sorted(gpu_maps)
    share = tools.agreement(np.concatenate([gpu_maps[n].ravel() for n in names]),
                            np.concatenate([cpu_maps[n].ravel() for n in names]))
    assert share >= MIN_AGREEMENT, 'GPU and CPU class maps agree on {:.4%} of the pixels'.format(share)

    # val.py: the same pixels counted; predictions that differ on at most
    # 0.1% of them move the confusion matrix and the metrics that little
    gpu, cpu = metrics[devices[0]], metrics['cpu']
    assert gpu['images'] == cpu['images'] == 2
    cm_gpu, cm_cpu = np.array(gpu['confusion']), np.array(cpu['confusion'])
    np.testing.assert_array_equal(cm_gpu.sum(axis=1), cm_cpu.sum(axis=1))  # the labels
    labelled = int(cm_cpu.sum())
    assert labelled > 0
    moved = np.abs(cm_gpu - cm_cpu).sum() / 2
    assert moved <= (1 - MIN_AGREEMENT) * labelled, (moved, labelled)
    assert abs(gpu['acc'] - cpu['acc']) <= 1e-3
    present_gpu = (cm_gpu.sum(axis=0) + cm_gpu.sum(axis=1)) > 0
    present_cpu = (cm_cpu.sum(axis=0) + cm_cpu.sum(axis=1)) > 0
    if (present_gpu == present_cpu).all():
        # (a class predicted on a handful of pixels by one device only
        # would enter that device's mean alone)
        assert abs(gpu['miou'] - cpu['miou']) <= 1e-3, (gpu['miou'], cpu['miou'])
