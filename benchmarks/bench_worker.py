"""One side of a benchmark, in its own process.

    python bench_worker.py --side ours|paddleseg --task TASK [options] --out result.json

Run by ``benchmarks/run.py`` twice per task: with this repository's Python
(``--side ours``) and with a throw-away venv's that has PyPI paddleseg 2.8.0
(``--side paddleseg``). Both build the same model, fill it with the same
weights (``tests/golden/golden_weights.py``), feed the same input and write
times, peak memory and a digest of the outputs to ``--out`` (and the logits,
for the max abs difference, to ``--out`` with ``.npy``).
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
        'eval', 'train', 'backbone_neck', 'pipeline', 'confusion', 'export'])
    p.add_argument('--backbone', default='ResNet18_vd')
    p.add_argument('--height', type=int, default=256)
    p.add_argument('--width', type=int, default=512)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--device', default='cpu')
    p.add_argument('--model_dir', default=None, help='export task: exported model')
    p.add_argument('--mmap_threshold', type=int, default=-1,
                   help='glibc mmap threshold in bytes for both sides (0: glibc\'s own); '
                        'default -1: each side as it runs (ours: what training sets, '
                        'paddleseg.utils.env.tune_host_allocator; PaddleSeg: glibc\'s own)')
    p.add_argument('--out', required=True)
    return p.parse_args()


def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return 0.0


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def setup(args):
    import paddle
    if args.side == 'ours':
        # what train.py / val.py / predict.py do: device and threads
        sys.path.insert(0, ROOT)
        from paddleseg.utils.cli import setup_device
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
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (args.batch, 3, args.height, args.width)).astype('float32')


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
                from paddleseg.core.export import export
                export(model, folder, shape, output_op='argmax')
            else:
                _export_generic(model, folder, shape)
        except Exception as exc:  # PaddleSeg 2.8.0 does not export on paddle 3
            result['export_error'] = str(exc).strip().splitlines()[-1][:160]

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
            result[name + '_error'] = str(exc).strip().splitlines()[-1][:160] \
                if str(exc).strip() else type(exc).__name__
    result.pop('dy')
    return result, None


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
