"""export.py, then the exported model in a GPU predictor.

The inference model (dynamic input, and a fixed 1x3x64x128 input) is run by
``paddle.inference`` on GPU 0 (``Config.enable_use_gpu``), built directly
and through ``paddleseg.deploy.create_predictor(use_gpu=True)``; its
class map must agree with the dygraph eval-mode model on the GPU, and with
the CPU predictor, on at least 99.9% of the pixels (fused or reordered
kernels may flip a few near-ties).
"""

import os

import numpy as np
import paddle
import pytest
import yaml

MIN_AGREEMENT = 0.999
# (N, H, W) each export of the `exported` fixture (tests/gpu/conftest.py) runs at
SHAPES = {'dynamic': [(1, 64, 128), (2, 96, 160), (1, 128, 256)],
          'fixed': [(1, 64, 128)]}


def _gpu_predictor(model_dir):
    """A paddle.inference predictor of ``model_dir`` on GPU 0."""
    from paddle import inference
    with open(os.path.join(model_dir, 'deploy.yaml')) as f:
        deploy = yaml.safe_load(f)['Deploy']
    config = inference.Config(os.path.join(model_dir, deploy['model']),
                              os.path.join(model_dir, deploy['params']))
    config.enable_use_gpu(256, 0)  # memory_pool_init_size_mb, device_id
    assert config.use_gpu() and config.gpu_device_id() == 0
    config.disable_glog_info()
    return inference.create_predictor(config)


def _image(n, h, w, seed):
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype('float32')


def _dygraph_class_map(model, x):
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x))[0]
    return paddle.argmax(logits, axis=1).numpy().astype(np.int32)


@pytest.mark.parametrize('name', sorted(SHAPES))
def test_gpu_predictor_matches_dygraph_and_the_cpu_predictor(
        exported, tiny, tools, random_weights, on_device, name):
    from paddleseg.deploy import create_predictor, run_predictor
    from paddleseg.utils.checkpoint import load_entire_model

    _, model = tools.build(tiny['cfg'], for_training=False)
    load_entire_model(model, random_weights)
    model.eval()
    gpu = _gpu_predictor(exported[name])
    project_gpu = create_predictor(exported[name], use_gpu=True)
    cpu = create_predictor(exported[name], cpu_threads=1)
    for n, h, w in SHAPES[name]:
        x = _image(n, h, w, seed=n + h + w)
        out = run_predictor(gpu, x)
        assert out.dtype == np.int32 and out.shape == (n, h, w), (out.dtype, out.shape)
        where = '{} input {}x3x{}x{}'.format(name, n, h, w)
        for other, what in ((_dygraph_class_map(model, x), 'the dygraph model on the GPU'),
                            (run_predictor(project_gpu, x), 'create_predictor(use_gpu=True)'),
                            (run_predictor(cpu, x), 'the CPU predictor')):
            share = tools.agreement(out, other)
            assert share >= MIN_AGREEMENT, '{}: the GPU predictor agrees with {} on {:.4%} ' \
                'of the pixels'.format(where, what, share)
