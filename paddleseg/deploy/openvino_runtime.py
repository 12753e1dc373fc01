"""OpenVINO Runtime: the compiled model of an ``--format onnx`` export.

Owns the CPU plugin's settings (:func:`compile_config`: precision, threads,
no core pinning), :func:`create_openvino_model` and :func:`openvino_runner`,
the call on an image batch. Every OpenVINO call uses the process's one
Core, :func:`paddleseg.utils.openvino_core.openvino_core`.

OpenVINO reads the ``model.onnx`` unchanged, fixed or dynamic input size
alike. An int8 (QDQ) export with a dynamic height and width does not
compile as it is (OpenVINO 2026.4: "Accessing out-of-range dimension"), so
the runner compiles an int8 export (deploy.yaml's ``precision``) for each
input size it meets without spending a compile on trying, and any other
dynamic model that fails likewise (dynamic batch alone compiles). (A crash
once seen in such a failed compile, in a full test run, was most likely the
signal-stack fault of two Cores, :mod:`paddleseg.utils.openvino_core`: with
the one Core, six failed compiles in a row raised this error and nothing
else.) Its Paddle frontend is no way round the
ONNX step: it has no converter for ``put_along_axis``, the op that writes
PointRend's refined points back.

Precision: OpenVINO's CPU plugin computes in bf16 by default on a CPU with
AMX-BF16 or AVX512-BF16, so fp32 is asked for explicitly; 'bf16' is asked
only when :mod:`paddleseg.deploy.options` found the CPU able to
(:func:`paddleseg.utils.cpu.bf16_isa`). Under 'bf16' the PointRend
refinement keeps fp32 (:func:`keep_refinement_fp32`).
"""

import collections
import os
import tempfile
import xml.etree.ElementTree as ET

import numpy as np

from paddleseg.deploy.deploy_file import import_or_explain, load_deploy
from paddleseg.errors import last_line
from paddleseg.utils import logger
from paddleseg.utils.openvino_core import openvino_core

PRECISION_HINTS = {'fp32': 'f32', 'bf16': 'bf16'}
"""Our precision names -> OpenVINO's ``INFERENCE_PRECISION_HINT``."""

MAX_SIZES = 8
"""How many input sizes the per-size runner keeps compiled."""


def compile_config(cpu_threads=None, precision='fp32'):
    """The CPU plugin's properties for ``cpu_threads`` (None or 0: all the
    cores it sees) and ``precision`` ('fp32' or 'bf16').

    One stream with the latency hint (one batch at a time, as the loops
    call it), and no pinning of threads to cores: on Linux OpenVINO would
    pin every process to the same first cores, so the processes that
    ``paddle.distributed.launch`` starts side by side would share them.
    """
    config = {'INFERENCE_PRECISION_HINT': PRECISION_HINTS[precision],
              'PERFORMANCE_HINT': 'LATENCY',
              'NUM_STREAMS': 1,
              'ENABLE_CPU_PINNING': False}
    if cpu_threads:
        config['INFERENCE_NUM_THREADS'] = int(cpu_threads)
    return config


KEEP_PRECISION = ('DisablePrecisionConversion', 'dynamic:f16,bf16')
"""The IR runtime attribute (name, value) that makes OpenVINO's CPU plugin
keep a node in its own precision under a bf16 hint: "no conversion of this
node from any type to f16 or bf16" (2026.4's plugin reads the f16 entry as
"keep the original precision", also under bf16; bf16 is listed for a plugin
that reads it). Python cannot create the attribute on a node: IR text can."""


def _ir_graph(root):
    """``(layers by id, parent ids by id, child ids by id)`` of an IR's XML."""
    layers = {layer.get('id'): layer for layer in root.find('layers')}
    parents = collections.defaultdict(list)
    children = collections.defaultdict(list)
    for edge in root.find('edges'):
        parents[edge.get('to-layer')].append(edge.get('from-layer'))
        children[edge.get('from-layer')].append(edge.get('to-layer'))
    return layers, parents, children


def _reach(start, step):
    """Ids reachable from ``start`` along ``step`` (id -> ids), in breadth-first
    order, ``start`` first."""
    order, seen = [start], {start}
    for layer_id in order:
        for nxt in step.get(layer_id, ()):
            if nxt not in seen:
                seen.add(nxt)
                order.append(nxt)
    return order


def refinement_layers(root):
    """Ids of the IR layers (``root``: the XML's ``<net>``) that compute the
    PointRend refinement: the convolution of the coarse logits and every
    layer after it with a floating-point output (upsampling, uncertainty,
    point coordinates, point MLP, write-back, final resize and argmax).

    Found by structure, not by name: the subdivision's first step ranks the
    classes with a TopK (the top-2 of the upsampled logits), and the
    convolution nearest above that TopK computes the coarse logits. An
    export without TopK, or without a convolution above it, gives ``[]``.
    """
    layers, parents, children = _ir_graph(root)
    topks = {i for i, layer in layers.items() if layer.get('type') == 'TopK'}
    first = [i for i in topks if not topks & set(_reach(i, parents)[1:])]
    if not first:
        return []
    convs = [i for i in _reach(first[0], parents) if layers[i].get('type') == 'Convolution']
    if not convs:
        return []

    def is_float(layer):
        ports = layer.find('output')
        return (layer.get('type') not in ('Const', 'Parameter', 'Result') and ports is not None
                and any(port.get('precision') == 'FP32' for port in ports))
    return [i for i in _reach(convs[0], children) if is_float(layers[i])]


def keep_refinement_fp32(core, model):
    """``(model, n)``: a copy of the ``ov.Model`` ``model`` in which the
    ``n`` layers of :func:`refinement_layers` carry :data:`KEEP_PRECISION`,
    so that under ``INFERENCE_PRECISION_HINT`` bf16 the backbone, neck and
    FPN head compute in bf16 and the refinement in fp32 (``model`` itself,
    n = 0, when the export has no refinement).

    Why: bf16 rounds the coarse logits, the point coordinates (computed
    from flat indices, with 8 bits of mantissa) and the logits the argmax
    compares; on the demo's trained model bf16 class maps were 98.79%
    equal to fp32, 99.20% with this at about the same speed
    (docs/deployment.md, OpenVINO Runtime). Layers the plugin rewrites
    (MatMul into FullyConnected, Interpolate, ScatterElementsUpdate) lose
    the attribute and stay bf16. Goes through the IR text (a temporary
    folder): Python cannot set the attribute on a node.
    """
    ov = import_or_explain('openvino', 'running an ONNX model with OpenVINO')
    with tempfile.TemporaryDirectory() as folder:
        xml_path = os.path.join(folder, 'model.xml')
        ov.save_model(model, xml_path, compress_to_fp16=False)
        tree = ET.parse(xml_path)
        layers = _ir_graph(tree.getroot())[0]
        marked = refinement_layers(tree.getroot())
        if not marked:
            return model, 0
        name, value = KEEP_PRECISION
        for layer_id in marked:
            rt_info = layers[layer_id].find('rt_info')
            if rt_info is None:
                rt_info = ET.Element('rt_info')
                layers[layer_id].insert(0, rt_info)
            ET.SubElement(rt_info, 'attribute', name=name, version='0', value=value)
        weights = np.fromfile(os.path.join(folder, 'model.bin'), dtype=np.uint8)
        return core.read_model(ET.tostring(tree.getroot()), ov.Tensor(weights)), len(marked)


def create_openvino_model(model_dir, cpu_threads=None, precision='fp32', shape=None):
    """The OpenVINO CPU compiled model of an ``--format onnx`` export (see
    :func:`compile_config`); with ``shape`` (``[N, 3, H, W]``), compiled for
    that input size alone; in bf16 with the refinement kept fp32
    (:func:`keep_refinement_fp32`)."""
    import_or_explain('openvino', 'running an ONNX model with OpenVINO')
    core = openvino_core()
    model = core.read_model(os.path.join(model_dir, load_deploy(model_dir)['model']))
    if shape is not None:
        model.reshape([int(v) for v in shape])
    if precision == 'bf16':
        model = keep_refinement_fp32(core, model)[0]
    return core.compile_model(model, 'CPU', compile_config(cpu_threads, precision))


def _request_runner(compiled):
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(images):
        return request.infer({0: images}, share_outputs=False)[output]
    return run


def openvino_runner(model_dir, cpu_threads=None, precision='fp32'):
    """``images`` (``float32 [N, 3, H, W]`` numpy) -> the first output of the
    export run by OpenVINO (numpy, a copy: the next call does not overwrite
    it). Compiled once; or, for a model with a dynamic size that OpenVINO
    cannot compile, once per input size met (one info line says so)."""
    deploy = load_deploy(model_dir)
    dynamic = -1 in deploy.get('input_shape', [-1])[2:]
    try:
        if dynamic and deploy.get('precision') == 'int8':
            # not tried: OpenVINO 2026.4 refuses it (module doc), a compile wasted
            raise RuntimeError('an int8 (QDQ) model with a dynamic height and width')
        compiled = create_openvino_model(model_dir, cpu_threads, precision)
    except RuntimeError as exc:
        if not dynamic:
            raise  # a fixed size: nothing to narrow
        reason = last_line(exc)
        logger.info('OpenVINO cannot compile {} with a dynamic input size ({}); '
                    'compiling it for each input size'.format(model_dir, reason))
        by_size = collections.OrderedDict()

        def run_at(images):
            if images.shape not in by_size:
                if len(by_size) >= MAX_SIZES:
                    by_size.popitem(last=False)
                by_size[images.shape] = _request_runner(create_openvino_model(
                    model_dir, cpu_threads, precision, shape=images.shape))
            return by_size[images.shape](images)
        run_one = run_at
    else:
        run_one = _request_runner(compiled)

    def run(images):
        return run_one(np.ascontiguousarray(images, dtype='float32'))
    return run
