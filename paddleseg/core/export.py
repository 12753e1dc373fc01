"""Export a model as a static inference model (``paddle.jit.save``).

The saved program is the eval-mode model (PointRend's adaptive subdivision
included) followed by the output op, with ``deploy.yaml`` next to it:

.. code-block:: yaml

    Deploy:
      model: model.json          # model.pdmodel with the old (non-PIR) IR
      params: model.pdiparams
      transforms:                # the config's export.transforms, else
        - type: Normalize        # val_dataset.transforms
      input_shape: [-1, 3, -1, -1]
      output_op: argmax
      output_dtype: int32
"""

import os

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import yaml

from paddleseg.utils import logger

OUTPUT_OPS = ('argmax', 'softmax', 'none')


class ExportedModel(nn.Layer):
    """The model in eval mode plus the output op.

    Args:
        model (nn.Layer): Returns a list whose first item is the logits
            ``[N, C, H, W]`` at the input size.
        output_op (str): 'argmax' (``int32 [N, H, W]`` class ids), 'softmax'
            (``float32 [N, C, H, W]`` probabilities) or 'none' (the logits).
    """

    def __init__(self, model, output_op='argmax'):
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise ValueError('output_op must be one of {}, got {!r}'.format(
                OUTPUT_OPS, output_op))
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        out = self.model(x)
        logits = out[0] if isinstance(out, (list, tuple)) else out
        if self.output_op == 'argmax':
            return paddle.argmax(logits, axis=1, dtype='int32')
        if self.output_op == 'softmax':
            return F.softmax(logits, axis=1)
        return logits


def parse_input_shape(values):
    """``[N, C, H, W]`` with -1 for a dynamic size -> the InputSpec shape
    (None for dynamic). Raises ValueError on anything else."""
    values = [int(v) for v in values]
    if len(values) != 4:
        raise ValueError('input_shape needs 4 numbers N C H W, got {}'.format(values))
    if values[1] <= 0:
        raise ValueError('input_shape: the channels C must be given, got {}'.format(values))
    if any(v == 0 or v < -1 for v in values):
        raise ValueError('input_shape: each size is positive or -1 (dynamic), '
                         'got {}'.format(values))
    return [None if v == -1 else v for v in values]


def export(model, save_dir, input_shape=(-1, 3, -1, -1), output_op='argmax',
           transforms=None):
    """Save ``model`` as ``save_dir/model.{json|pdmodel,pdiparams}`` and
    ``save_dir/deploy.yaml``.

    Args:
        model (nn.Layer): Weights loaded; put in eval mode here.
        save_dir (str): Output folder (created).
        input_shape (list[int], optional): ``N C H W``; -1 = dynamic.
            Default: (-1, 3, -1, -1).
        output_op (str, optional): See :class:`ExportedModel`. Default: 'argmax'.
        transforms (list[dict], optional): The transform specs written to
            ``deploy.yaml``. Default: None (empty list).

    Returns:
        dict: ``{'model': path, 'params': path, 'deploy': path}``.
    """
    shape = parse_input_shape(input_shape)
    model.eval()
    net = ExportedModel(model, output_op)
    net.eval()
    os.makedirs(save_dir, exist_ok=True)
    prefix = os.path.join(save_dir, 'model')
    spec = paddle.static.InputSpec(shape=shape, dtype='float32', name='x')
    static = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
    paddle.jit.save(static, prefix)
    model_file = next((prefix + ext for ext in ('.json', '.pdmodel')
                       if os.path.isfile(prefix + ext)), None)
    if model_file is None:
        raise RuntimeError('paddle.jit.save wrote no model file at {}'.format(prefix))
    deploy = {'Deploy': {
        'model': os.path.basename(model_file),
        'params': 'model.pdiparams',
        'transforms': list(transforms or []),
        'input_shape': [-1 if v is None else v for v in shape],
        'output_op': output_op,
        'output_dtype': 'int32' if output_op == 'argmax' else 'float32',
    }}
    deploy_file = os.path.join(save_dir, 'deploy.yaml')
    with open(deploy_file, 'w') as f:
        yaml.safe_dump(deploy, f, sort_keys=False)
    logger.info('Exported the inference model to {} ({}, input {}, output {})'.format(
        save_dir, os.path.basename(model_file), deploy['Deploy']['input_shape'],
        output_op))
    return {'model': model_file, 'params': prefix + '.pdiparams',
            'deploy': deploy_file}


def load_deploy(model_dir):
    """The ``Deploy`` mapping of ``model_dir/deploy.yaml``."""
    with open(os.path.join(model_dir, 'deploy.yaml')) as f:
        return yaml.safe_load(f)['Deploy']


def create_predictor(model_dir, use_gpu=False, use_onednn=False, cpu_threads=None):
    """A ``paddle.inference`` predictor of an exported model.

    Args:
        model_dir (str): The folder :func:`export` wrote.
        use_gpu (bool, optional): Default: False.
        use_onednn (bool, optional): oneDNN (MKLDNN) CPU kernels. Paddle
            3.3.1 cannot run ``bilinear_interp`` as a oneDNN op under the new
            IR ("ConvertPirAttribute2RuntimeAttribute not support
            ArrayAttribute<DoubleAttribute>", PaddlePaddle/Paddle#79749), so
            the pass that moves every supported op to oneDNN
            (``onednn_placement_pass``) is left out; the oneDNN fusion passes
            (convolution + batch norm + activation, ...) still apply.
            Default: False.
        cpu_threads (int, optional): CPU math threads. Default: Paddle's.

    Returns:
        paddle.inference.Predictor
    """
    from paddle import inference
    deploy = load_deploy(model_dir)
    config = inference.Config(os.path.join(model_dir, deploy['model']),
                              os.path.join(model_dir, deploy['params']))
    if use_gpu:
        config.enable_use_gpu(256, 0)
    else:
        config.disable_gpu()
        if cpu_threads:
            config.set_cpu_math_library_num_threads(int(cpu_threads))
        if use_onednn:
            config.enable_mkldnn()
            config.delete_pass('onednn_placement_pass')
        else:
            config.disable_mkldnn()
    config.disable_glog_info()
    return inference.create_predictor(config)


def run_predictor(predictor, images):
    """Run ``predictor`` on ``images`` (``float32 [N, 3, H, W]`` numpy,
    normalised as ``deploy.yaml``'s transforms do); returns the output."""
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(images.shape))
    handle.copy_from_cpu(images)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
