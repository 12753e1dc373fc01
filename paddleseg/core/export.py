"""Export a model for deployment, and run an exported model.

The saved program is the eval-mode model (PointRend's adaptive subdivision
included) followed by the output op, with ``deploy.yaml`` next to it:

.. code-block:: yaml

    Deploy:
      model: model.pdmodel       # model.json (format paddle), model.onnx (onnx)
      params: model.pdiparams    # absent with format onnx
      transforms:                # the config's export.transforms, else
        - type: Normalize        # val_dataset.transforms
      input_shape: [-1, 3, -1, -1]
      output_op: argmax
      output_dtype: int32
      format: paddle_legacy

Formats (:data:`FORMATS`):

* ``paddle_legacy`` (the default): Paddle's old program format
  (``model.pdmodel``), written with ``FLAGS_enable_pir_api`` off for the
  time of the export. The one that runs everywhere: Paddle Inference with
  any ``Config``, its CPU defaults included (also ``enable_memory_optim()``,
  which Paddle 3.3.1 rejects for every new-IR program, and oneDNN),
  PaddleSeg's ``deploy/python/infer.py`` (and, untested, other readers of
  ``.pdmodel`` such as FastDeploy; paddle2onnx 2.1.0 crashes on it, hence
  the ``onnx`` format, converted from the new IR).
* ``paddle``: the new IR (PIR, ``model.json``), Paddle >= 3.0 only; runs
  under a default ``paddle.inference.Config`` but not with
  ``enable_memory_optim()`` on Paddle 3.3.1.
* ``onnx``: ``model.onnx`` (paddle2onnx, opset :data:`ONNX_OPSET`) for ONNX
  Runtime and other ONNX consumers; needs the optional packages of
  ``requirements-deploy.txt``.
"""

import contextlib
import os
import shutil
import tempfile

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import yaml

from paddleseg.utils import logger

OUTPUT_OPS = ('argmax', 'softmax', 'none')
FORMATS = ('paddle_legacy', 'paddle', 'onnx')
DEFAULT_FORMAT = 'paddle_legacy'
ONNX_OPSET = 17  # GridSample needs 16
DEPLOY_EXTRAS = 'pip install -r requirements-deploy.txt'


def _old_ir_static():
    """Whether ops are being added to an old-IR static program."""
    return not paddle.in_dynamic_mode() and not paddle.framework.in_pir_mode()


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
            return _argmax_int32(logits)
        if self.output_op == 'softmax':
            return F.softmax(logits, axis=1)
        return logits


def _argmax_int32(logits):
    """``paddle.argmax(logits, axis=1, dtype='int32')``; in an old-IR
    program, where Paddle 3.3's ``paddle.argmax`` builds new-IR ops only,
    the ``arg_max`` op it stands for."""
    if not _old_ir_static():
        return paddle.argmax(logits, axis=1, dtype='int32')
    from paddle.base.layer_helper import LayerHelper
    helper = LayerHelper('arg_max')
    out = helper.create_variable_for_type_inference(paddle.int32)
    helper.append_op(type='arg_max', inputs={'X': logits}, outputs={'Out': out},
                     attrs={'axis': 1, 'keepdims': False, 'flatten': False,
                            'dtype': int(paddle.base.core.VarDesc.VarType.INT32)})
    return out


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


def check_format(fmt):
    """Raise ValueError for an unknown format, ImportError (one line, with
    the install command) when ``onnx`` lacks paddle2onnx."""
    if fmt not in FORMATS:
        raise ValueError('format must be one of {}, got {!r}'.format(FORMATS, fmt))
    if fmt == 'onnx':
        _import_or_explain('paddle2onnx', 'export --format onnx')


def _import_or_explain(module, what):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError('{} needs {} (optional): {}'.format(
            what, module, DEPLOY_EXTRAS)) from None


@contextlib.contextmanager
def _ir(old_ir):
    """Build programs in the old IR (``old_ir``) or the new one, whatever
    ``FLAGS_enable_pir_api`` the process started with."""
    from paddle import pir_utils
    with (pir_utils.DygraphOldIrGuard() if old_ir else pir_utils.DygraphPirGuard()):
        yield


def _save_program(net, prefix, shape, old_ir):
    """``paddle.jit.save`` of ``net`` at ``prefix``; returns the model file."""
    spec = paddle.static.InputSpec(shape=shape, dtype='float32', name='x')
    with _ir(old_ir):
        static = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
        paddle.jit.save(static, prefix)
    model_file = prefix + ('.pdmodel' if old_ir else '.json')
    if not os.path.isfile(model_file):
        raise RuntimeError('paddle.jit.save wrote no {}'.format(model_file))
    return model_file


def _to_onnx(model_file, params_file, onnx_file):
    """Convert a new-IR program to ONNX with paddle2onnx."""
    p2o = _import_or_explain('paddle2onnx', 'export --format onnx')
    try:  # save_file=None: the bytes, without paddle2onnx's optional folding
        data = p2o.export(model_file, params_file, save_file=None,
                          opset_version=ONNX_OPSET, auto_upgrade_opset=True,
                          enable_onnx_checker=True)
    except NameError:  # paddle2onnx logs its error and returns nothing
        data = None
    if not data:
        raise RuntimeError('paddle2onnx could not convert {} (see its log above)'
                           .format(model_file))
    with open(onnx_file, 'wb') as f:
        f.write(data)
    return onnx_file


def export(model, save_dir, input_shape=(-1, 3, -1, -1), output_op='argmax',
           transforms=None, format=DEFAULT_FORMAT):
    """Save ``model`` and ``deploy.yaml`` into ``save_dir``.

    Args:
        model (nn.Layer): Weights loaded; put in eval mode here.
        save_dir (str): Output folder (created).
        input_shape (list[int], optional): ``N C H W``; -1 = dynamic.
            Default: (-1, 3, -1, -1).
        output_op (str, optional): See :class:`ExportedModel`. Default: 'argmax'.
        transforms (list[dict], optional): The transform specs written to
            ``deploy.yaml``. Default: None (empty list).
        format (str, optional): One of :data:`FORMATS` (see the module's
            doc). Default: 'paddle_legacy'.

    Returns:
        dict: ``{'model': path, 'params': path or None, 'deploy': path}``.
    """
    shape = parse_input_shape(input_shape)
    check_format(format)
    model.eval()
    net = ExportedModel(model, output_op)
    net.eval()
    os.makedirs(save_dir, exist_ok=True)
    prefix = os.path.join(save_dir, 'model')
    params_file = prefix + '.pdiparams'
    if format == 'onnx':
        tmp = tempfile.mkdtemp(prefix='export_onnx_')
        try:
            tmp_prefix = os.path.join(tmp, 'model')
            model_file = _save_program(net, tmp_prefix, shape, old_ir=False)
            model_file = _to_onnx(model_file, tmp_prefix + '.pdiparams',
                                  prefix + '.onnx')
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        params_file = None
    else:
        model_file = _save_program(net, prefix, shape,
                                   old_ir=format == 'paddle_legacy')
    deploy = {'model': os.path.basename(model_file)}
    if params_file:
        deploy['params'] = os.path.basename(params_file)
    deploy.update({
        'transforms': list(transforms or []),
        'input_shape': [-1 if v is None else v for v in shape],
        'output_op': output_op,
        'output_dtype': 'int32' if output_op == 'argmax' else 'float32',
        'format': format,
    })
    deploy_file = os.path.join(save_dir, 'deploy.yaml')
    with open(deploy_file, 'w') as f:
        yaml.safe_dump({'Deploy': deploy}, f, sort_keys=False)
    logger.info('Exported the inference model to {} ({}, format {}, input {}, '
                'output {})'.format(save_dir, deploy['model'], format,
                                    deploy['input_shape'], output_op))
    return {'model': model_file, 'params': params_file, 'deploy': deploy_file}


def load_deploy(model_dir):
    """The ``Deploy`` mapping of ``model_dir/deploy.yaml``."""
    with open(os.path.join(model_dir, 'deploy.yaml')) as f:
        return yaml.safe_load(f)['Deploy']


def deploy_format(deploy):
    """The format of a ``Deploy`` mapping (older ones have no ``format``)."""
    if deploy.get('format'):
        return deploy['format']
    model = deploy['model']
    if model.endswith('.onnx'):
        return 'onnx'
    return 'paddle' if model.endswith('.json') else 'paddle_legacy'


def create_predictor(model_dir, use_gpu=False, use_onednn=False, cpu_threads=None):
    """A ``paddle.inference`` predictor of an exported model (either Paddle
    format).

    Args:
        model_dir (str): The folder :func:`export` wrote.
        use_gpu (bool, optional): Default: False.
        use_onednn (bool, optional): oneDNN (MKLDNN) CPU kernels. An old-IR
            program (``paddle_legacy``) gets every oneDNN pass. For a new-IR
            one (``paddle``) the pass that moves every supported op to
            oneDNN (``onednn_placement_pass``) is left out: Paddle 3.3.1
            cannot run ``bilinear_interp`` as a new-IR oneDNN op
            ("ConvertPirAttribute2RuntimeAttribute not support
            ArrayAttribute<DoubleAttribute>": it has no converter for the
            type of its ``scale`` attribute, even when empty); the fusion
            passes (convolution + batch norm + activation, ...) still apply.
            Default: False.
        cpu_threads (int, optional): CPU math threads. Default: Paddle's.

    Returns:
        paddle.inference.Predictor
    """
    from paddle import inference
    deploy = load_deploy(model_dir)
    if deploy_format(deploy) == 'onnx':
        raise ValueError('{} holds an ONNX model; use load_engine() or ONNX '
                         'Runtime'.format(model_dir))
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
            if deploy_format(deploy) == 'paddle':
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
    handle.copy_from_cpu(np.ascontiguousarray(images, dtype='float32'))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def create_onnx_session(model_dir, cpu_threads=None):
    """An ONNX Runtime CPU session of an ``--format onnx`` export."""
    ort = _import_or_explain('onnxruntime', 'running an ONNX model')
    deploy = load_deploy(model_dir)
    options = ort.SessionOptions()
    if cpu_threads:
        options.intra_op_num_threads = int(cpu_threads)
    options.log_severity_level = 3
    return ort.InferenceSession(os.path.join(model_dir, deploy['model']),
                                sess_options=options,
                                providers=['CPUExecutionProvider'])


def load_engine(model_dir, engine='auto', use_gpu=False, use_onednn=False,
                cpu_threads=None):
    """A callable that runs an exported model.

    Args:
        model_dir (str): The folder :func:`export` wrote.
        engine (str, optional): 'inference' (Paddle Inference), 'onnx'
            (ONNX Runtime) or 'auto' (ONNX Runtime for an ONNX export,
            Paddle Inference otherwise). Default: 'auto'.
        use_gpu, use_onednn, cpu_threads: Of Paddle Inference (see
            :func:`create_predictor`); ``cpu_threads`` also of ONNX Runtime.

    Returns:
        callable: ``images`` (``float32 [N, 3, H, W]`` numpy, normalised as
        ``deploy.yaml``'s transforms say) -> numpy output of the exported
        program: the ``int32 [N, H, W]`` class map (output_op argmax), or
        ``float32 [N, C, H, W]`` probabilities or logits. The callable has
        ``engine``, ``output_op`` and ``deploy`` attributes.
    """
    deploy = load_deploy(model_dir)
    fmt = deploy_format(deploy)
    if engine == 'auto':
        engine = 'onnx' if fmt == 'onnx' else 'inference'
    if engine not in ('inference', 'onnx'):
        raise ValueError("engine must be 'auto', 'inference' or 'onnx', got "
                         "{!r}".format(engine))
    if (engine == 'onnx') != (fmt == 'onnx'):
        raise ValueError('{} holds a {} model, which engine {!r} cannot run'
                         .format(model_dir, fmt, engine))
    if engine == 'onnx':
        session = create_onnx_session(model_dir, cpu_threads)
        input_name = session.get_inputs()[0].name
        output_name = session.get_outputs()[0].name

        def run(images):
            images = np.ascontiguousarray(images, dtype='float32')
            return session.run([output_name], {input_name: images})[0]
    else:
        predictor = create_predictor(model_dir, use_gpu, use_onednn, cpu_threads)

        def run(images):
            return run_predictor(predictor, images)
    run.engine = engine
    run.output_op = deploy.get('output_op', 'argmax')
    run.deploy = deploy
    return run
