"""End to end: train.py, resume, val.py, predict.py on a tiny dataset."""

import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from robust_helpers import LAUNCH_ENV
from tiny_data import make_tiny_cityscapes, write_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import predict as predict_cli  # noqa: E402
import train as train_cli  # noqa: E402
import val as val_cli  # noqa: E402


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('tiny')
    root = make_tiny_cityscapes(str(base / 'cityscapes'))
    cfg = write_tiny_config(str(base / 'tiny.yml'), root, iters=4)
    return {'base': base, 'root': root, 'cfg': cfg}


def _train(cfg, save_dir, *extra):
    train_cli.main(['--config', cfg, '--save_dir', str(save_dir), '--seed', '3',
                    '--save_interval', '2', '--log_iters', '1',
                    '--keep_checkpoint_max', '2', '--device', 'cpu'] + list(extra))


def _params(path):
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


@pytest.fixture(scope='module')
def trained(tiny):
    out = tiny['base'] / 'run'
    _train(tiny['cfg'], out, '--do_eval', '--use_vdl')
    return out


def test_training_writes_checkpoints_best_model_and_logs(trained):
    assert sorted(os.listdir(trained)) == ['best_model', 'iter_2', 'iter_4', 'vdl']
    for it in (2, 4):
        meta = json.load(open(trained / 'iter_{}'.format(it) / 'meta.json'))
        assert meta['iter'] == it and meta['seed'] == 3
        assert meta['files'] == ['model.pdopt', 'model.pdparams']
    best = json.load(open(trained / 'best_model' / 'meta.json'))
    assert best['iter'] in (2, 4) and 0.0 <= best['miou'] <= 1.0
    assert os.listdir(trained / 'vdl')
    # the model changed from one checkpoint to the next
    a, b = _params(trained / 'iter_2' / 'model.pdparams'), \
        _params(trained / 'iter_4' / 'model.pdparams')
    assert any(not np.array_equal(a[k], b[k]) for k in a)


def test_keep_checkpoint_max_prunes_old_checkpoints(tiny):
    out = tiny['base'] / 'prune'
    _train(tiny['cfg'], out, '--keep_checkpoint_max', '1', '--save_interval', '1')
    assert sorted(os.listdir(out)) == ['iter_4']


def test_resume_gives_the_weights_of_an_uninterrupted_run(tiny, trained):
    out = tiny['base'] / 'resumed'
    _train(tiny['cfg'], out, '--resume_model', str(trained / 'iter_2'))
    assert sorted(os.listdir(out)) == ['iter_4']
    a = _params(trained / 'iter_4' / 'model.pdparams')
    b = _params(out / 'iter_4' / 'model.pdparams')
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    opt_a = paddle.load(str(trained / 'iter_4' / 'model.pdopt'))
    opt_b = paddle.load(str(out / 'iter_4' / 'model.pdopt'))
    assert opt_a['LR_Scheduler'] == opt_b['LR_Scheduler']


def test_resume_auto_picks_the_newest_checkpoint(tiny, trained, capfd):
    out = tiny['base'] / 'auto'
    _train(tiny['cfg'], out, '--iters', '2')
    _train(tiny['cfg'], out, '--iters', '4', '--resume_model', 'auto')
    assert 'Resumed from {} at iter 2'.format(out / 'iter_2') in capfd.readouterr().out
    assert sorted(os.listdir(out)) == ['iter_2', 'iter_4']


def test_val_reports_the_metrics_of_the_training_eval(tiny, trained):
    report = tiny['base'] / 'metrics.json'
    result = val_cli.run(val_cli.parse_args([
        '--config', tiny['cfg'], '--device', 'cpu',
        '--model_path', str(trained / 'best_model' / 'model.pdparams'),
        '--save_json', str(report)]))
    best = json.load(open(trained / 'best_model' / 'meta.json'))
    assert result['miou'] == pytest.approx(best['miou'], abs=1e-9)
    saved = json.load(open(report))
    assert saved['miou'] == pytest.approx(result['miou'])
    assert len(saved['classes']) == 19 and saved['classes']['road']['iou'] is not None
    confusion = np.array(saved['confusion'])
    assert confusion.sum() == 2 * (64 * 128 - 1)
    # a class absent from both the labels and the predictions has no IoU
    absent = [name for i, name in enumerate(saved['classes'])
              if confusion[i, :].sum() == 0 and confusion[:, i].sum() == 0]
    assert absent and all(saved['classes'][n]['iou'] is None for n in absent)


def test_predict_writes_palette_pngs_and_overlays(tiny, trained):
    out = tiny['base'] / 'pred'
    image_dir = os.path.join(tiny['root'], 'leftImg8bit', 'val')
    with open(os.path.join(image_dir, 'notes.txt'), 'w') as f:
        f.write('not an image')
    result = predict_cli.run(predict_cli.parse_args([
        '--config', tiny['cfg'], '--device', 'cpu', '--image_path', image_dir,
        '--model_path', str(trained / 'best_model' / 'model.pdparams'),
        '--save_dir', str(out)]))
    assert len(result['done']) == 2 and result['failed'] == []
    for rel in ('city0/city0_000000_000019_leftImg8bit',
                'city1/city1_000001_000019_leftImg8bit'):
        color = Image.open(out / 'pseudo_color_prediction' / (rel + '.png'))
        assert color.mode == 'P' and color.size == (128, 64)
        assert np.asarray(color).max() < 19
        assert color.getpalette()[:3] == [128, 64, 128]  # road
        added = Image.open(out / 'added_prediction' / (rel + '.jpg'))
        assert added.size == (128, 64)


def test_predict_on_folder_without_images_fails_clearly(tiny, trained, tmp_path, capsys):
    (tmp_path / 'a.txt').write_text('x')
    with pytest.raises(SystemExit) as exc:
        predict_cli.main(['--config', tiny['cfg'], '--device', 'cpu',
                          '--image_path', str(tmp_path), '--model_path',
                          str(trained / 'best_model' / 'model.pdparams')])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert 'no images found' in err and str(tmp_path) in err


def _run_driver(cfg, out, batch_size, nprocs, log_dir):
    """tests/helpers/dist_driver.py on ``nprocs`` processes (1: without the launcher)."""
    driver = os.path.join(os.path.dirname(__file__), 'helpers', 'dist_driver.py')
    args = [driver, str(cfg), str(out), str(batch_size), '--global-bn']
    if nprocs > 1:
        args = ['-m', 'paddle.distributed.launch', '--nproc_per_node', str(nprocs),
                '--log_dir', str(log_dir)] + args
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=LAUNCH_ENV)
    logs = ''.join(open(os.path.join(log_dir, f)).read()
                   for f in sorted(os.listdir(log_dir)) if f.startswith('workerlog')) \
        if os.path.isdir(log_dir) else ''
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:] + logs[-4000:]


def test_distributed_two_processes(tiny, tmp_path):
    """2 processes x batch 1 train like 1 process x batch 2: disjoint data per
    rank, identical weights on both ranks, and the weights of the single
    process, i.e. the gradients are averaged over the ranks (summed, every
    update would be twice as large).

    What would differ for other reasons is taken out, on both sides alike:

    * BatchNorm in training normalises with the statistics of its batch (a
      rank's on CPU; SyncBatchNorm needs CUDA): the driver's ``--global-bn``
      makes it use the running statistics (``use_global_stats``), so each
      image's forward pass is independent of the others.
    * PointRend draws its training points with a generator seeded per rank
      (``_step_seed(seed, it, rank)``): the point loss has coefficient 0, so
      the points do not matter (its gradient is exactly 0).
    * The cross entropy is a mean over the non-ignored pixels of the batch:
      no crop or flip (transforms: Normalize only), so each image has the
      same number of them (all but its one ignored pixel) and the mean of
      the per-rank means is the mean over the global batch.

    The data order is the sampler's: rank r takes the r-th image of each
    global batch, the single process both, with the same augmentation seeds.
    """
    cfg = yaml.safe_load(open(tiny['cfg']))
    cfg['train_dataset']['transforms'] = [{'type': 'Normalize'}]
    cfg['loss']['coef'] = [1, 0]
    cfg_path = tmp_path / 'global_batch.yml'
    cfg_path.write_text(yaml.safe_dump(cfg))
    one, two = tmp_path / 'one', tmp_path / 'two'
    _run_driver(cfg_path, one, 2, 1, str(tmp_path / 'log1'))
    _run_driver(cfg_path, two, 1, 2, str(tmp_path / 'log2'))

    seen = [json.load(open(two / 'seen_{}.json'.format(r))) for r in (0, 1)]
    single = json.load(open(one / 'seen_0.json'))
    assert len(single) == len(seen[0]) == len(seen[1]) == 2
    for it in range(2):
        assert seen[0][it] + seen[1][it] == single[it]  # rank r: r-th of the batch
        assert not set(seen[0][it]) & set(seen[1][it])  # disjoint shards
    init = np.load(two / 'init.npz')
    w0, w1 = np.load(two / 'weights_0.npz'), np.load(two / 'weights_1.npz')
    ref = np.load(one / 'weights_0.npz')
    assert w0.files == w1.files == ref.files
    params = [k for k in w0.files if not k.endswith(('_mean', '_variance'))]
    assert len(params) > 100
    for k in params:  # DataParallel keeps the ranks identical
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
    np.testing.assert_array_equal(np.load(one / 'init.npz')['backbone.conv1_1._conv.weight'],
                                  init['backbone.conv1_1._conv.weight'])
    # the two runs differ only in float summation order (per-rank gradients
    # averaged vs one batch's), ~1e-7 relative to the weights; summed
    # gradients would move every weight by about its whole update again
    update = max(float(np.abs(ref[k] - init[k]).max()) for k in params)
    diff = max(float(np.abs(w0[k] - ref[k]).max()) for k in params)
    assert update > 1e-4, update            # training moved the weights
    assert diff <= 1e-3 * update, (diff, update)
    for k in params:
        np.testing.assert_allclose(w0[k], ref[k], rtol=0, err_msg=k,
                                   atol=1e-3 * float(np.abs(ref[k] - init[k]).max()) + 1e-7)
    assert os.listdir(two / 'ckpt') == ['iter_2']  # only rank 0 saves


def test_visualdl_has_scalars_and_prediction_images(trained):
    from visualdl import LogReader
    log = [f for f in os.listdir(trained / 'vdl') if f.startswith('vdlrecords')][0]
    tags = LogReader(file_path=str(trained / 'vdl' / log)).get_tags()
    assert {'Train/loss', 'Train/loss_0', 'Train/loss_1', 'Train/lr',
            'Evaluate/mIoU'} <= set(tags['scalar'])
    assert {'Evaluate/prediction_0', 'Evaluate/prediction_1'} <= set(tags['image'])


class _NaNAfter(paddle.nn.Layer):
    """Cross entropy that turns NaN from its 4th call on."""
    calls = 0

    def forward(self, logits, label):
        from paddleseg.models.losses import CrossEntropyLoss
        _NaNAfter.calls += 1
        loss = CrossEntropyLoss()(logits, label)
        return loss * float('nan') if _NaNAfter.calls > 3 else loss


def test_nan_loss_stops_with_the_terms_and_keeps_the_last_checkpoint(tiny, capsys):
    from paddleseg.cvlibs import manager
    if 'NaNAfterThree' not in manager.LOSSES:
        manager.LOSSES.add_component(_NaNAfter, name='NaNAfterThree')
    out = tiny['base'] / 'nan'
    with pytest.raises(SystemExit) as exc:
        _train(tiny['cfg'], out, '--save_interval', '2', '--opts',
               'loss.types.0.type=NaNAfterThree')
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert 'non-finite loss at iter 4: terms nan' in err
    assert 'Last good checkpoint: {}'.format(out / 'iter_2') in err
    assert sorted(os.listdir(out)) == ['iter_2']
    assert _params(out / 'iter_2' / 'model.pdparams')


def test_seed_config_trains_on_a_cityscapes_layout_folder(tiny, tmp_path):
    """The reference config itself, pointed at the tiny folder (ImageNet
    weights off: no download here; small crop and batch for CPU)."""
    config = os.path.join(ROOT, 'configs', 'pointrendfpn',
                          'pointrend_resnet101_os8_cityscapes_512×1024_80k.yml')
    _train(config, tmp_path / 'out', '--iters', '1', '--batch_size', '1', '--warmup', 'false',
           '--save_interval', '1', '--opts',
           'train_dataset.dataset_root={}'.format(tiny['root']),
           'val_dataset.dataset_root={}'.format(tiny['root']),
           'model.backbone.pretrained=null',
           'train_dataset.transforms.1.crop_size=[64,64]')
    assert os.listdir(tmp_path / 'out' / 'iter_1')
