"""Exports shared by the export, deploy and engine tests, and PaddleSeg
v2.8.0's deploy/python/infer.py reproduced (its calls, in its order; not its
code) for tests/test_deploy.py and benchmarks/deploy_agreement.py.

:class:`TinyExports` (the session fixture ``tiny_exports`` of
``tests/conftest.py``) holds one tiny model and exports it once per format
and output op; tests/test_export.py, test_deploy.py and test_engines.py
read those exports (the model is not exported again for each test).
"""

import os

import numpy as np
import yaml
from PIL import Image

from tiny_data import seeded_model, write_tiny_config

# Points the tiny model's subdivision re-predicts per step. Its coarse
# logits are at stride 8 and each of the 2 steps doubles them: a 64x128
# input has 16x32 = 512 cells at the first step and 32x64 = 2048 at the
# second, so 300 keeps fewer cells than the grid has at both (PaddleSeg's
# 8196 would keep them all at every size the tests use, and a wrong
# TopK or scatter in an exported graph would go unnoticed).
SUBDIVISION_POINTS = 300
SEED = 3


def subdivision_cells(h, w):
    """Cells of the first subdivision step's grid for an ``h x w`` input
    (coarse logits at stride 8, doubled): the fewest of the two steps."""
    return -(-h // 8) * 2 * (-(-w // 8) * 2)


class TinyExports:
    """A tiny PointRendFPN (ResNet18_vd, fixed random weights, the
    subdivision cut at :data:`SUBDIVISION_POINTS`) and its exports.

    Attributes:
        base: The folder everything is written in.
        cfg (str): The model's config (its datasets' root is an empty
            folder: a test that evaluates writes its own config with
            ``_base_: cfg``).
        weights (str): The ``.pdparams`` every export is made from.
        model: The same model, in eval mode (the dygraph reference).

    ``exports(fmt, output_op)`` returns the folder of ``export.py --format
    fmt --output_op output_op`` with the default, fully dynamic input
    shape, made on first use (``exports()`` is export.py with no
    ``--format`` or ``--output_op``: its defaults).
    """

    def __init__(self, base):
        self.base = base
        os.makedirs(os.path.join(str(base), 'data'), exist_ok=True)
        self.cfg = write_tiny_config(
            os.path.join(str(base), 'tiny.yml'), os.path.join(str(base), 'data'),
            model={'point_subdivision_num_points': SUBDIVISION_POINTS})
        self.model = seeded_model(self.cfg, SEED)
        assert self.model.pointhead.subdivision_num_points == SUBDIVISION_POINTS
        self.weights = os.path.join(str(base), 'model.pdparams')
        import paddle
        paddle.save(self.model.state_dict(), self.weights)
        self._dirs = {}

    def __call__(self, fmt='paddle_legacy', output_op='argmax'):
        key = (fmt, output_op)
        if key not in self._dirs:
            import export as export_cli
            save_dir = os.path.join(str(self.base), 'export_{}_{}'.format(fmt, output_op))
            args = ['--config', self.cfg, '--model_path', self.weights,
                    '--save_dir', save_dir, '--device', 'cpu']
            # export.py's defaults (paddle_legacy, argmax) are left to it
            if fmt != 'paddle_legacy':
                args += ['--format', fmt]
            if output_op != 'argmax':
                args += ['--output_op', output_op]
            export_cli.main(args)
            self._dirs[key] = save_dir
        return self._dirs[key]


def deploy_transforms(deploy):
    """The Compose of ``Deploy.transforms``, built as predict.py builds its own."""
    from paddleseg.cvlibs import builder
    from paddleseg.transforms import Compose
    return Compose([builder.build_component(dict(t), 'Deploy.transforms.{}'.format(i))
                    for i, t in enumerate(deploy['transforms'])])


def paddleseg_infer(deploy_yaml, image_paths, save_dir, enable_mkldnn=False,
                    with_argmax=False, cpu_threads=2, batch_size=1):
    """What PaddleSeg v2.8.0's deploy/python/infer.py does on a CPU.

    Reads Deploy.model, Deploy.params and Deploy.transforms; builds
    ``Config(model, params)``, ``disable_glog_info()``,
    ``enable_memory_optim()``, ``switch_ir_optim(True)``, ``disable_gpu()``,
    with ``enable_mkldnn`` also ``set_mkldnn_cache_capacity(10)`` and
    ``enable_mkldnn()``, then ``set_cpu_math_library_num_threads``; feeds the
    first input, reads the first output, takes the argmax over axis 1 only
    with ``with_argmax``, and saves each result as a palette PNG named after
    the image. Returns the PNG paths.
    """
    from paddle.inference import Config, create_predictor
    with open(deploy_yaml) as f:
        deploy = yaml.safe_load(f)['Deploy']
    folder = os.path.dirname(deploy_yaml)
    transforms = deploy_transforms(deploy)
    config = Config(os.path.join(folder, deploy['model']),
                    os.path.join(folder, deploy['params']))
    config.disable_glog_info()
    config.enable_memory_optim()
    config.switch_ir_optim(True)
    config.disable_gpu()
    if enable_mkldnn:
        config.set_mkldnn_cache_capacity(10)
        config.enable_mkldnn()
    config.set_cpu_math_library_num_threads(cpu_threads)
    predictor = create_predictor(config)
    input_handle = predictor.get_input_handle(predictor.get_input_names()[0])
    output_handle = predictor.get_output_handle(predictor.get_output_names()[0])
    os.makedirs(save_dir, exist_ok=True)
    saved = []
    for i in range(0, len(image_paths), batch_size):
        batch = image_paths[i:i + batch_size]
        data = np.array([transforms({'img': p})['img'] for p in batch])
        input_handle.reshape(data.shape)
        input_handle.copy_from_cpu(data)
        predictor.run()
        results = output_handle.copy_to_cpu()
        if with_argmax:
            results = np.argmax(results, axis=1)
        for result, path in zip(results, batch):
            im = Image.fromarray(result.astype(np.uint8), mode='P')
            im.putpalette([v for c in range(256) for v in (c, 255 - c, (7 * c) % 256)])
            out = os.path.join(save_dir, os.path.splitext(os.path.basename(path))[0] + '.png')
            im.save(out)
            saved.append(out)
    return saved
