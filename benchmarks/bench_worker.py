"""One side of a benchmark, in its own process.

    python bench_worker.py --side ours|paddleseg --task TASK [options] --out result.json

Run by ``benchmarks/run.py`` twice per task: with this repository's Python
(``--side ours``) and with a throw-away venv's that has PyPI paddleseg 2.8.0
(``--side paddleseg``). Both build the same model, fill it with the same
weights (``tests/golden/golden_weights.py``), feed the same input and write
times, peak memory and a digest of the outputs to ``--out`` (and the logits,
for the max abs difference, to ``--out`` with ``.npy``).

The ``engine`` task is ours only (:func:`task_engine`: every engine of
val.py / predict.py ``--engine`` against our dygraph pass); run.py gives
PaddleSeg's side of it the ``eval`` task on the same (``--input structured``)
image.
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'tests', 'golden'))


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument('--side', choices=['ours', 'paddleseg'], required=True)
    p.add_argument('--task', required=True, choices=[
        'eval', 'train', 'backbone_neck', 'pipeline', 'confusion', 'export', 'engine'])
    p.add_argument('--backbone', default='ResNet18_vd')
    p.add_argument('--height', type=int, default=256)
    p.add_argument('--width', type=int, default=512)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--device', default='cpu')
    p.add_argument('--model_dir', default=None, help='pipeline task: the PNG pair')
    p.add_argument('--input', choices=['uniform', 'structured'], default=None,
                   help='the input image: uniform noise, or smooth patterns (see '
                        'structured_inputs) for varied class maps; default: structured '
                        'for the engine task, uniform otherwise')
    p.add_argument('--mmap_threshold', type=int, default=-1,
                   help='glibc mmap threshold in bytes for both sides (0: glibc\'s own); '
                        'default -1: each side as it runs (ours: what training sets, '
                        'paddleseg.utils.env.tune_host_allocator; PaddleSeg: glibc\'s own)')
    p.add_argument('--out', required=True)
    args = p.parse_args()
    if args.input is None:
        args.input = 'structured' if args.task == 'engine' else 'uniform'
    if args.task == 'engine' and args.side != 'ours':
        p.error("--task engine is ours only (run.py gives PaddleSeg's side its eval task)")
    return args


def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return 0.0


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mb(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) / 1024.0
    return None


def reset_peak():
    """Start a new peak resident size (Linux >= 4.0: writing 5 to
    ``/proc/self/clear_refs`` resets VmHWM to the current VmRSS), so that
    several steps in one process get a peak each. Returns the resident size
    now (MB), or None where the reset is not available."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        return None
    return _status_mb('VmRSS')


def peak_since_reset(base):
    """Peak resident size (MB) above ``base`` since :func:`reset_peak`."""
    hwm = _status_mb('VmHWM') if base is not None else None
    return None if hwm is None else hwm - base


def setup(args):
    import paddle
    if args.side == 'ours':
        # what train.py / val.py / predict.py do: device and threads
        sys.path.insert(0, ROOT)
        from paddleseg.cli.build import setup_device
        from paddleseg.utils.env import tune_host_allocator
        setup_device(args.device, args.threads)
        if args.device == 'cpu' and args.mmap_threshold >= 0:
            tune_host_allocator(args.mmap_threshold)
        elif args.device == 'cpu' and args.task == 'train':
            tune_host_allocator()  # what train.py does (paddleseg.utils.env.tune_process)
    else:
        os.chdir('/tmp')  # never import this repository's paddleseg/
        sys.path = [p for p in sys.path if os.path.abspath(p or '.') != ROOT]
        paddle.set_device(args.device)
        if args.device == 'cpu':
            paddle.base.core.set_num_threads(args.threads)
            if args.mmap_threshold > 0:
                # tune_host_allocator's call, without importing this repository
                import ctypes
                ctypes.CDLL(None).mallopt(-3, args.mmap_threshold)  # M_MMAP_THRESHOLD
    return paddle


def build_model(args):
    import golden_weights
    from paddleseg.models import PointRend
    from paddleseg.models import backbones
    bb = getattr(backbones, args.backbone)(output_stride=8)
    model = PointRend(num_classes=19, backbone=bb, backbone_indices=[0, 1, 2, 3],
                      fpn_inplanes=bb.feat_channels)
    golden_weights.fill_state_dict(model, 2020)
    return model


def inputs(args, seed=0):
    if args.input == 'structured':
        return structured_inputs(args.batch, args.height, args.width, seed)
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (args.batch, 3, args.height, args.width)).astype('float32')


def structured_inputs(batch, height, width, seed=0):
    """``float32 [batch, 3, height, width]`` with spatial structure, numpy
    only (the same on both sides): per channel a sum of 6 plane waves of 1-6
    cycles across the image (random directions and phases, so the pattern
    scales with the size), scaled to [-1.5, 1.5] as a normalised photo's
    range roughly is, plus uniform noise of +-0.1 for texture. The golden
    weights then give class maps with regions of many classes, where
    uniform noise gives speckle."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid(np.linspace(0, 1, height, dtype=np.float64),
                       np.linspace(0, 1, width, dtype=np.float64), indexing='ij')
    out = np.empty((batch, 3, height, width), np.float32)
    for n in range(batch):
        for c in range(3):
            img = np.zeros((height, width))
            for _ in range(6):
                cycles = rng.uniform(1, 6)
                angle = rng.uniform(0, np.pi)
                img += np.sin(2 * np.pi * cycles * (np.cos(angle) * u + np.sin(angle) * v)
                              + rng.uniform(0, 2 * np.pi))
            img = 3 * (img - img.min()) / max(img.max() - img.min(), 1e-12) - 1.5
            out[n, c] = img + rng.uniform(-0.1, 0.1, (height, width))
    return out


def paddleseg_eval_context(args):
    if args.side == 'paddleseg':
        from make_pointrend_golden import concat_of_scalars_as_vectors
        return concat_of_scalars_as_vectors()
    import contextlib
    return contextlib.nullcontext()


def timed(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), times


def task_eval(args, paddle):
    model = build_model(args)
    model.eval()
    x = paddle.to_tensor(inputs(args))
    result = {}

    def run():
        with paddle.no_grad(), paddleseg_eval_context(args):
            result['out'] = model(x)[0]
    base = rss_mb()
    median, times = timed(run, args.repeat)
    return {'seconds': median, 'times': times, 'peak_mb': peak_mb() - base}, \
        result['out'].numpy()


def task_backbone_neck(args, paddle):
    model = build_model(args)
    model.eval()
    x = paddle.to_tensor(inputs(args))

    def run():
        with paddle.no_grad():
            model.neck(model.backbone(x))
    median, times = timed(run, args.repeat)
    return {'seconds': median, 'times': times}, None


def _loss_fns():
    """The two cross entropies, written here with paddle only so that both
    sides compute the same loss (PaddleSeg 2.8.0's own losses fail on paddle 3)."""
    import paddle.nn.functional as F

    def point_sample_labels(label, points):
        grid = (points * 2 - 1).unsqueeze(2)
        sampled = F.grid_sample(label.unsqueeze(1).astype('float32'), grid,
                                mode='nearest', align_corners=False)
        return sampled.squeeze([1, 3]).astype('int64')

    def coarse(logits, label):
        return F.cross_entropy(logits.transpose([0, 2, 3, 1]), label.unsqueeze(-1),
                               ignore_index=255).mean()

    def point(point_logits, points, label):
        point_label = point_sample_labels(label, points)
        return F.cross_entropy(point_logits.transpose([0, 2, 1]),
                               point_label.unsqueeze(-1), ignore_index=255).mean()
    return coarse, point


def task_train(args, paddle):
    model = build_model(args)
    model.train()
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9,
                                    parameters=model.parameters(),
                                    weight_decay=paddle.regularizer.L2Decay(5e-4))
    x = paddle.to_tensor(inputs(args))
    rng = np.random.default_rng(1)
    label = paddle.to_tensor(rng.integers(0, 19, (args.batch, args.height,
                                                  args.width)).astype('int64'))
    coarse_loss, point_loss = _loss_fns()
    result = {}

    def run():
        paddle.seed(0)
        coarse, (point_logits, points) = model(x)
        loss = coarse_loss(coarse, label) + point_loss(point_logits, points, label)
        loss.backward()
        opt.step()
        opt.clear_grad()
        result['loss'] = float(loss)
        result['coarse'] = coarse
    base = rss_mb()
    median, times = timed(run, args.repeat)
    return {'seconds': median, 'times': times, 'peak_mb': peak_mb() - base,
            'loss': result['loss']}, None


def task_pipeline(args, paddle):
    """The seed's Cityscapes train transforms on a 1024x2048 PNG pair, one core."""
    import random
    import cv2
    cv2.setNumThreads(1)
    from paddleseg import transforms as T
    compose = T.Compose([
        T.ResizeStepScaling(min_scale_factor=0.5, max_scale_factor=2.0,
                            scale_step_size=0.25),
        T.RandomPaddingCrop(crop_size=(1024, 512)),
        T.RandomHorizontalFlip(),
        T.RandomDistort(brightness_range=0.4, contrast_range=0.4,
                        saturation_range=0.4),
        T.Normalize()])
    img = os.path.join(args.model_dir, 'image.png')
    label = os.path.join(args.model_dir, 'label.png')
    state = {'i': 0}

    def run():
        random.seed(state['i'])
        np.random.seed(state['i'])
        state['i'] += 1
        batch = []
        for _ in range(2):
            data = compose({'img': img, 'label': label, 'gt_fields': ['label'],
                            'trans_info': []})
            batch.append((data['img'], data['label']))
        np.stack([b[0] for b in batch]), np.stack([b[1] for b in batch])
    median, times = timed(run, args.repeat)
    return {'seconds': median / 2, 'times': [t / 2 for t in times]}, None


def task_confusion(args, paddle):
    """Confusion counts of a 1024x2048 prediction (19 classes)."""
    rng = np.random.default_rng(0)
    pred = paddle.to_tensor(rng.integers(0, 19, (1, 1024, 2048)).astype('int64'))
    label_np = rng.integers(0, 19, (1, 1024, 2048)).astype('int64')
    label_np[:, :100] = 255
    label = paddle.to_tensor(label_np)
    if args.side == 'ours':
        from paddleseg.utils.metrics import confusion_matrix

        def run():
            confusion_matrix(pred, label, 19)
    else:
        from make_pointrend_golden import concat_of_scalars_as_vectors
        from paddleseg.utils.metrics import calculate_area

        def run():
            # PaddleSeg 2.8.0's per-class loop; its concat of 0-d sums needs
            # the same paddle-3 shim as its eval path (a stack, in effect)
            with concat_of_scalars_as_vectors():
                calculate_area(pred, label, 19)
    median, times = timed(run, args.repeat)
    return {'seconds': median, 'times': times}, None


def _export_generic(model, folder, shape):
    """paddle.jit.save of ``model`` (eval, argmax) for a side without export.py."""
    import paddle

    class Argmax(paddle.nn.Layer):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return paddle.argmax(self.net(x)[0], axis=1).astype('int32')
    net = Argmax(model)
    net.eval()
    spec = paddle.static.InputSpec(shape=shape, dtype='float32', name='x')
    paddle.jit.save(paddle.jit.to_static(net, input_spec=[spec], full_graph=True),
                    os.path.join(folder, 'model'))


def _predictor(folder, onednn, threads):
    from paddle import inference
    model = next(os.path.join(folder, 'model' + e) for e in ('.json', '.pdmodel')
                 if os.path.isfile(os.path.join(folder, 'model' + e)))
    config = inference.Config(model, os.path.join(folder, 'model.pdiparams'))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    if onednn:
        config.enable_mkldnn()
        if onednn == 'workaround':
            config.delete_pass('onednn_placement_pass')
    else:
        config.disable_mkldnn()
    config.disable_glog_info()
    return inference.create_predictor(config)


def _run_predictor(predictor, x):
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def task_export(args, paddle):
    """Exported model (fixed input size) in paddle.inference, with and without
    oneDNN, against the dygraph model; 'seconds' is the dygraph time."""
    import tempfile
    model = build_model(args)
    model.eval()
    x = inputs(args)
    shape = list(x.shape)
    folder = tempfile.mkdtemp()
    result = {}
    with paddleseg_eval_context(args):
        t = paddle.to_tensor(x)
        try:
            if args.side == 'ours':
                from paddleseg.deploy import export
                export(model, folder, shape, output_op='argmax')
            else:
                _export_generic(model, folder, shape)
        except Exception as exc:  # PaddleSeg 2.8.0 does not export on paddle 3
            result['export_error'] = _one_line(exc)

        def dygraph():
            with paddle.no_grad():
                result['dy'] = paddle.argmax(model(t)[0], axis=1).numpy()
        result['seconds'], _ = timed(dygraph, args.repeat)
    for name, onednn in (('inference', False), ('onednn', True),
                         ('onednn_workaround', 'workaround')):
        if 'export_error' in result:
            result[name] = None
            continue
        try:
            pred = _predictor(folder, onednn, args.threads)
            out = {}

            def run():
                out['y'] = _run_predictor(pred, x)
            result[name], _ = timed(run, args.repeat)
            result[name + '_agree'] = float((out['y'] == result['dy']).mean())
        except Exception as exc:  # report, do not crash: that is the finding
            result[name] = None
            result[name + '_error'] = _one_line(exc)
    result.pop('dy')
    return result, None

NOISY_LABEL_SHARE = 0.1  # of the pixels of the synthetic labels (engine task)


def _one_line(exc):
    """``paddleseg.errors.last_line`` cut to 160 characters, written here
    because this runs on PaddleSeg's side too, where ``paddleseg`` is
    PaddleSeg 2.8.0."""
    text = str(exc).strip()
    return text.splitlines()[-1].strip()[:160] if text else type(exc).__name__


def noisy_labels(class_map, num_classes=19, share=NOISY_LABEL_SHARE, seed=7):
    """The engine task's synthetic labels: ``class_map`` with ``share`` of
    its pixels (drawn with a fixed generator) set to a random class (which
    is the original one 1 time in ``num_classes``)."""
    rng = np.random.default_rng(seed)
    labels = class_map.astype(np.int64).copy()
    flip = rng.random(labels.shape) < share
    labels[flip] = rng.integers(0, num_classes, int(flip.sum()))
    return labels


def engine_agreement(class_map, reference, labels, num_classes=19):
    """``(agreement, mIoU difference)`` of an engine's ``class_map`` with
    the dygraph ``reference``: the share of equal pixels, and
    ``|mIoU(class_map, labels) - mIoU(reference, labels)|`` computed as
    val.py does (``paddleseg.utils.metrics``)."""
    from paddleseg.utils.metrics import confusion_matrix, metrics_from_confusion
    class_map = np.asarray(class_map).reshape(reference.shape)
    agreement = float((class_map == reference).mean())

    def miou(pred):
        return metrics_from_confusion(confusion_matrix(pred, labels, num_classes))['miou']
    return agreement, abs(miou(class_map) - miou(reference))


# (engine's name in the report, export it runs, load_engine's engine, its
#  options): the engines of task_engine, in the order of the report's lines
ENGINE_RUNS = (
    ('inference', 'paddle_legacy', 'inference', dict(use_onednn=False)),
    ('inference+oneDNN', 'paddle_legacy', 'inference', dict(use_onednn=True)),
    ('onnx', 'onnx', 'onnx', {}),
    ('onnx int8', 'onnx_int8', 'onnx', {}),
    ('openvino', 'onnx', 'openvino', dict(precision='fp32')),
    ('openvino bf16', 'onnx', 'openvino', dict(precision='bf16')),
    ('openvino int8', 'onnx_int8', 'openvino', dict(precision='fp32')),
    ('inference+oneDNN, fixed-size export', 'paddle_legacy_fixed', 'inference',
     dict(use_onednn=True)),
)


def not_run_reason(options):
    """Why an engine of :data:`ENGINE_RUNS` with ``options`` is not run on
    this machine, or None: bf16 only where the CPU has bf16 instructions
    (:func:`paddleseg.utils.cpu.bf16_isa`, the check behind ``--precision
    bf16``)."""
    from paddleseg.utils.cpu import bf16_isa
    if options.get('precision') == 'bf16' and bf16_isa() is None:
        return ('no AMX-BF16 or AVX512-BF16 on this CPU (paddleseg.utils.cpu.bf16_isa), '
                'so OpenVINO would compute in fp32')
    return None


def task_engine(args, paddle):
    """Our model in each engine that val.py / predict.py ``--engine`` offer,
    on one input, against our own dygraph pass (``--side ours`` only; run.py
    pairs it with PaddleSeg's ``eval`` task).

    The model is built as in :func:`task_eval` and exported with
    ``paddleseg.deploy.export`` (dynamic N/H/W, output_op argmax, as
    export.py writes by default): formats ``paddle_legacy`` and ``onnx``
    (also quantized to INT8).
    Engines (:data:`ENGINE_RUNS`), each timed with :func:`timed` on the same
    numpy input (input copy-in and class map copy-out included, as a user's
    call has them):

    * ``dygraph``: ``model.eval()``, the argmax of the logits, to numpy;
    * ``inference``: the paddle_legacy export in Paddle Inference, oneDNN off;
    * ``inference+oneDNN``: the same with ``use_onednn=True``;
    * ``onnx``: the onnx export in ONNX Runtime (CPU);
    * ``onnx int8``: its INT8 quantization (``export.py --quantize int8``,
      calibrated on four other structured images), in ONNX Runtime;
    * ``openvino``: the onnx export in OpenVINO (``load_engine(dir,
      'openvino', precision='fp32')``);
    * ``openvino bf16``: the same in bf16, only on a CPU with bf16
      instructions (:func:`not_run_reason`; elsewhere the engine's line
      says it was not run and why);
    * ``openvino int8``: the INT8 quantization in OpenVINO (compiled for
      this input's size in the warm-up call, since OpenVINO does not
      compile the dynamic-size QDQ model: so its peak memory includes the
      compilation);
    * ``inference+oneDNN, fixed-size export``: a paddle_legacy export of
      this input's size (``export.py --input_shape 1 3 H W``), which keeps
      the FPN head's shortcut that a dynamic-size program cannot take.

    Per engine: ``seconds`` (median), ``times``, ``peak_mb`` (peak resident
    size above the size before the timed runs, the engine already loaded),
    and against the dygraph class map:

    * ``agreement``: the share of pixels of equal class;
    * ``miou_diff``: how far the disagreeing pixels move an mIoU. There is
      no ground truth for a random-weight model, so the labels are
      synthetic: the dygraph class map with 10% of its pixels (fixed
      generator) set to a random class of 19 (:func:`noisy_labels`), i.e.
      labels the dygraph model gets about 90% of pixels right on. The value
      is ``|mIoU(engine, labels) - mIoU(dygraph, labels)|`` with val.py's
      metrics. It is 0 when the maps are equal, and grows with the pixels
      that differ, weighted by how small their classes are; it is a proxy
      for the mIoU change on a real validation set, not that change.

    An engine (or an export) that fails records its one-line ``error``
    instead, one not run here its ``not_run`` reason. The dygraph logits go
    to ``--out``.npy (run.py compares them with PaddleSeg's).
    """
    import gc
    import shutil
    import tempfile
    from paddleseg.deploy import export, load_engine
    from paddleseg.utils.cpu import bf16_isa
    model = build_model(args)
    model.eval()
    x = inputs(args)
    engines = {}
    result = {}

    def dygraph():
        with paddle.no_grad():
            t = paddle.to_tensor(x)
            logits = model(t)[0]
            result['map'] = paddle.argmax(logits, axis=1, dtype='int32').numpy()
            result['logits'] = logits

    base = reset_peak()
    seconds, times = timed(dygraph, args.repeat)
    engines['dygraph'] = {'seconds': seconds, 'times': times,
                          'peak_mb': peak_since_reset(base),
                          'agreement': 1.0, 'miou_diff': 0.0}
    reference = result.pop('map')
    logits = result.pop('logits').numpy()
    labels = noisy_labels(reference)
    classes = np.bincount(reference.ravel(), minlength=19)

    root = tempfile.mkdtemp(prefix='bench_engine_')
    folders, export_errors = {}, {}
    try:
        # INT8: calibrated on 4 other structured images (seeds 1-4), not the measured one
        calib = dict(quantize='int8', calib_source='structured_inputs seeds 1-4',
                     calib_batches=[structured_inputs(1, args.height, args.width, seed=s)
                                    for s in range(1, 5)])
        for fmt, shape, extra in (('paddle_legacy', [-1, 3, -1, -1], {}),
                                  ('onnx', [-1, 3, -1, -1], {}),
                                  ('onnx_int8', [-1, 3, -1, -1], calib),
                                  ('paddle_legacy_fixed', list(x.shape), {})):
            folders[fmt] = os.path.join(root, fmt)
            try:
                export(model, folders[fmt], input_shape=shape, output_op='argmax',
                       format=fmt.replace('_fixed', '').replace('_int8', ''), **extra)
            except Exception as exc:  # report, do not crash: that is the finding
                export_errors[fmt] = 'export: ' + _one_line(exc)
        model = None  # free the dygraph model before the engines load
        gc.collect()
        for name, fmt, engine, options in ENGINE_RUNS:
            if fmt in export_errors:
                engines[name] = {'error': export_errors[fmt]}
                continue
            reason = not_run_reason(options)
            if reason:
                engines[name] = {'not_run': reason}
                continue
            try:
                run = load_engine(folders[fmt], engine, cpu_threads=args.threads, **options)
                out = {}

                def call():
                    out['map'] = run(x)
                base = reset_peak()
                seconds, times = timed(call, args.repeat)
                peak = peak_since_reset(base)
                agreement, miou_diff = engine_agreement(out['map'], reference, labels)
                engines[name] = {'seconds': seconds, 'times': times, 'peak_mb': peak,
                                 'agreement': agreement, 'miou_diff': miou_diff,
                                 'precision': 'int8' if fmt.endswith('_int8')
                                 else options.get('precision', 'fp32')}
                if options.get('precision') == 'bf16':
                    engines[name]['note'] = 'bf16 on ' + bf16_isa()
            except Exception as exc:  # report, do not crash: that is the finding
                engines[name] = {'error': _one_line(exc)}
            run = out = None
            gc.collect()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {'engines': engines, 'input': args.input,
            'classes_in_dygraph_map': int((classes > 0).sum()),
            'largest_class_share': float(classes.max() / classes.sum())}, logits


def main():
    args = parse_args()
    paddle = setup(args)
    task = globals()['task_' + args.task]
    summary, array = task(args, paddle)
    summary.update(side=args.side, task=args.task, backbone=args.backbone,
                   size=[args.height, args.width], batch=args.batch,
                   threads=args.threads, paddle=paddle.__version__)
    if array is not None:
        np.save(args.out + '.npy', array)
    with open(args.out, 'w') as f:
        json.dump(summary, f)


if __name__ == '__main__':
    main()
