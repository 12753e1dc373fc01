"""Evaluation and prediction on several processes: every image exactly once.

In-process tests play each rank of N in turn (``init_distributed`` and the
collective replaced), which checks the sharding for any N quickly; the
``paddle.distributed.launch`` tests run val.py and predict.py on 2 CPU
processes and compare them with one process: same confusion matrix over the
5 images (3 on rank 0, 2 on rank 1), same class maps, each written once.
Also: an unreadable val image ends val.py with one error line (on every
rank when there are several), and ``--fp16``/``--amp_level`` (fp32 with a
warning on CPU; paddle's AMP API where a GPU is).
"""

import importlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

from robust_helpers import ENV, LAUNCH_ENV, ROOT, make_data, script, write_config
from tiny_data import seeded_model

sys.path.insert(0, ROOT)
import val as val_cli  # noqa: E402
# paddleseg.core.predict is PaddleSeg's function; the module, from sys.modules
core_predict = importlib.import_module('paddleseg.core.predict')  # noqa: E402
from paddleseg.core import val as core_val  # noqa: E402
from paddleseg.core.val import evaluate_details as evaluate, shard  # noqa: E402
from paddleseg.errors import DatasetError  # noqa: E402

N_VAL = 5


# -- the sharding -------------------------------------------------------------

@pytest.mark.parametrize('nranks', [1, 2, 3])
@pytest.mark.parametrize('num_items', range(8))
def test_shard_takes_every_index_exactly_once(nranks, num_items):
    shares = [shard(num_items, r, nranks) for r in range(nranks)]
    together = sorted(i for s in shares for i in s)
    assert together == list(range(num_items))          # each once, none padded
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    for r, s in enumerate(shares):
        assert s == sorted(s) and all(i % nranks == r for i in s)


@pytest.mark.parametrize('rank, nranks', [(2, 2), (-1, 2), (0, 0)])
def test_shard_rejects_a_rank_outside_the_job(rank, nranks):
    with pytest.raises(ValueError):
        shard(4, rank, nranks)


# -- evaluate / predict with N simulated ranks ----------------------------------

class _Items:
    """5 tiny items of 3 classes; records which indices are loaded."""
    num_classes = 3
    ignore_index = 255

    def __init__(self, n=N_VAL):
        self.n, self.loaded = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.loaded.append(int(i))
        rng = np.random.default_rng(i)
        label = rng.integers(0, 3, (1, 4, 6)).astype('int64')
        label[0, 0, 0] = 255
        return {'img': rng.normal(size=(3, 4, 6)).astype('float32'), 'label': label}


class _Model(paddle.nn.Layer):
    """Logits = a fixed 1x1 mix of the 3 channels (argmax varies per pixel)."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 3, 1)
        self.conv.weight.set_value(np.eye(3, dtype='float32')[:, :, None, None])

    def forward(self, x):
        return [self.conv(x)]


def _as_rank(monkeypatch, rank, nranks, module):
    monkeypatch.setattr(module, 'init_distributed', lambda: (rank, nranks))


@pytest.mark.parametrize('nranks', [2, 3, 7])
def test_evaluate_on_n_ranks_counts_each_image_once(monkeypatch, nranks):
    """Each rank loads only its share; the per-rank matrices sum to the
    single-process one (7 ranks: two of them have no image and still join
    the all-reduce)."""
    single = evaluate(_Model(), _Items(), progress=False, print_detail=False)
    assert single['images'] == N_VAL
    assert single['confusion'].sum() == N_VAL * (4 * 6 - 1)
    assert (single['confusion'].sum(0) > 0).sum() >= 2  # varied predictions
    joined, total, loaded = [], np.zeros_like(single['confusion']), []
    for rank in range(nranks):
        _as_rank(monkeypatch, rank, nranks, core_val)
        monkeypatch.setattr(core_val, '_sum_over_ranks',
                            lambda cm, images, failed, n:
                            joined.append((cm, images)) or (cm, images, int(failed)))
        items = _Items()
        evaluate(_Model(), items, progress=False, print_detail=False)
        assert items.loaded == shard(N_VAL, rank, nranks)
        loaded += items.loaded
    assert len(joined) == nranks   # every rank joined the collective
    for cm, images in joined:
        total += cm
    assert sorted(loaded) == list(range(N_VAL))
    assert sum(images for _, images in joined) == N_VAL
    np.testing.assert_array_equal(total, single['confusion'])


def test_sum_over_ranks_is_identity_on_one_process():
    cm = np.arange(9, dtype=np.int64).reshape(3, 3)
    out, images, failed = core_val._sum_over_ranks(cm, 4, False, 1)
    assert images == 4 and failed == 0 and np.array_equal(out, cm)


class _BrokenItem(_Items):
    def __getitem__(self, i):
        if i == 3:
            raise DatasetError('cannot read image {}'.format(i))
        return super().__getitem__(i)


def test_a_rank_that_cannot_read_its_data_still_joins_and_every_rank_stops(monkeypatch):
    """Item 3 (rank 1 of 2) is unreadable: rank 1 joins the all-reduce
    with its failure flag and raises its own error; rank 0, which read all of
    its images, learns of it there and stops too (no rank left waiting)."""
    flags = {}

    def sum_over_ranks(cm, images, failed, n):
        flags[rank] = failed
        return cm, images, 1   # as the all-reduce would: rank 1 failed

    monkeypatch.setattr(core_val, '_sum_over_ranks', sum_over_ranks)
    for rank in (1, 0):
        _as_rank(monkeypatch, rank, 2, core_val)
        with pytest.raises(DatasetError) as exc:
            evaluate(_Model(), _BrokenItem(), progress=False, print_detail=False)
        expected = 'cannot read image 3' if rank == 1 else 'another process could not read'
        assert expected in str(exc.value)
    assert flags == {1: True, 0: False}
    # one process raises at once, as before
    monkeypatch.setattr(core_val, 'init_distributed', lambda: (0, 1))
    with pytest.raises(DatasetError, match='cannot read image 3'):
        evaluate(_Model(), _BrokenItem(), progress=False, print_detail=False)


def test_predict_on_n_ranks_writes_each_image_once(monkeypatch, tmp_path):
    from paddleseg.transforms import Compose, Normalize
    root = make_data(tmp_path / 'cs', n_train=1, n_val=N_VAL)
    images = sorted(str(p) for p in (tmp_path / 'cs' / 'leftImg8bit' / 'val').rglob('*.png'))
    assert len(images) == N_VAL and root
    written = []
    real_save = core_predict._save
    monkeypatch.setattr(core_predict, '_save',
                        lambda path, *a: written.append(path) or real_save(path, *a))
    monkeypatch.setattr(core_predict, '_gather', lambda done, failed, n: (done, failed))
    done_here = []
    for rank in range(2):
        _as_rank(monkeypatch, rank, 2, core_predict)
        result = core_predict.predict_images(_Model(), Compose([Normalize()]), images,
                                      str(tmp_path / 'out'), num_classes=3)
        assert result['done_here'] == [images[i] for i in shard(N_VAL, rank, 2)]
        done_here += result['done_here']
    assert sorted(written) == sorted(done_here) == images   # each written once


@pytest.mark.parametrize('num_workers', [0, 1])
def test_val_on_an_unreadable_image_fails_in_one_line(tmp_path, num_workers):
    """Without workers paddle's loader reads in a thread that would swallow
    the error and leave evaluate() waiting forever; the error must come out."""
    from robust_helpers import one_error_line, run_cli
    root = make_data(tmp_path / 'cs', n_train=1, n_val=2)
    cfg = write_config(tmp_path / 'tiny.yml', root)
    weights = tmp_path / 'model.pdparams'
    _save_random_weights(cfg, weights)
    bad = next((tmp_path / 'cs' / 'leftImg8bit' / 'val').rglob('*.png'))
    bad.write_bytes(b'not a png')
    proc = run_cli('val.py', '--config', cfg, '--model_path', weights, '--device', 'cpu',
                   '--num_workers', num_workers, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = one_error_line(proc.stderr, 'val.py')
    assert str(bad) in line and 'cannot read image' in line


# -- precision ----------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """5 val images (32x64), the narrow config and random weights."""
    base = tmp_path_factory.mktemp('disteval')
    root = make_data(base / 'cs', n_train=1, n_val=N_VAL)
    cfg = write_config(base / 'tiny.yml', root)
    weights = base / 'model.pdparams'
    _save_random_weights(cfg, weights)
    return {'base': base, 'root': root, 'cfg': cfg, 'weights': weights}


def _save_random_weights(cfg, path, seed=11):
    """The initial weights of the config's model (seeded), as ``path``."""
    paddle.save(seeded_model(cfg, seed).state_dict(), str(path))


def _val_args(tiny, *extra):
    return ['--config', tiny['cfg'], '--model_path', str(tiny['weights']),
            '--device', 'cpu', '--cpu_threads', '1'] + [str(e) for e in extra]


def test_val_fp16_on_cpu_falls_back_to_fp32_with_one_warning(tiny, capsys):
    fp32 = val_cli.run(val_cli.parse_args(_val_args(tiny)))
    capsys.readouterr()
    fp16 = val_cli.run(val_cli.parse_args(_val_args(tiny, '--fp16', '--amp_level', 'O2')))
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if 'fp16' in line]
    assert len(warnings) == 1, out
    assert '[WARNING]' in warnings[0] and 'evaluating in fp32 on cpu' in warnings[0]
    np.testing.assert_array_equal(fp16['confusion'], fp32['confusion'])
    args = val_cli.parse_args(_val_args(tiny, '--precision', 'fp16'))
    assert (args.precision, args.amp_level, args.fp16) == ('fp16', 'O1', False)


@pytest.mark.parametrize('level', ['O1', 'O2'])
def test_val_fp16_on_a_gpu_uses_paddles_amp_api(tiny, monkeypatch, level):
    """With a GPU (simulated: paddle.get_device says gpu; the kernels still
    run on the CPU, where paddle's AMP casts nothing; and it can run fp16),
    O2 decorates the model once through :func:`paddleseg.core.amp.prepare`
    (``paddle.amp.decorate(models=model, level='O2', dtype='float16', ...)``),
    and every forward pass runs under ``auto_cast(enable=True, level=...)``."""
    from paddleseg.core import amp
    decorated, casts = [], []
    real_decorate, real_cast = paddle.amp.decorate, paddle.amp.auto_cast

    def decorate(models, level='O1', **kw):
        decorated.append((type(models).__name__, level, kw))
        return real_decorate(models=models, level=level, **kw)

    def auto_cast(enable=True, level='O1', **kw):
        casts.append((enable, level))
        return real_cast(enable=False, level=level, **kw)

    monkeypatch.setattr(paddle, 'get_device', lambda: 'gpu:0')
    monkeypatch.setattr(amp, 'fp16_unsupported_reason', lambda device=None: None)
    monkeypatch.setattr(paddle.amp, 'decorate', decorate)
    monkeypatch.setattr(paddle.amp, 'auto_cast', auto_cast)
    result = val_cli.run(val_cli.parse_args(_val_args(tiny, '--fp16', '--amp_level', level)))
    assert result['images'] == N_VAL
    assert [d[:2] for d in decorated] == ([('PointRend', 'O2')] if level == 'O2' else [])
    assert all(d[2]['dtype'] == 'float16' and 'optimizers' not in d[2] for d in decorated)
    assert casts == [(True, level)] * N_VAL


# -- 2 processes under paddle.distributed.launch -----------------------------------



def _launch(name, args, log_dir, timeout=900):
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
           '--log_dir', str(log_dir), script(name)] + [str(a) for a in args]
    proc = subprocess.run(cmd, cwd=ROOT, env=LAUNCH_ENV, capture_output=True, text=True,
                          timeout=timeout)
    logs = [(log_dir / 'workerlog.{}'.format(r)).read_text(errors='replace')
            if (log_dir / 'workerlog.{}'.format(r)).exists() else '' for r in (0, 1)]
    return proc, logs


def _single(name, args, timeout=600):
    return subprocess.run([sys.executable, script(name)] + [str(a) for a in args],
                          cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def _pngs(folder):
    return {str(p.relative_to(folder)): np.asarray(Image.open(p))
            for p in sorted(folder.rglob('*.png'))}


def test_val_on_two_processes_gives_the_single_process_confusion_matrix(tiny):
    base = tiny['base']
    one = _single('val.py', _val_args(tiny, '--save_json', base / 'one.json',
                                      '--save_cityscapes', base / 'cs_one'))
    assert one.returncode == 0, one.stderr[-3000:]
    proc, logs = _launch('val.py', _val_args(tiny, '--save_json', base / 'two.json',
                                             '--save_cityscapes', base / 'cs_two'),
                         base / 'val_log')
    assert proc.returncode == 0, proc.stdout[-2000:] + logs[0][-3000:] + logs[1][-3000:]
    a, b = json.load(open(base / 'one.json')), json.load(open(base / 'two.json'))
    cm = np.array(a['confusion'])
    assert cm.sum() == N_VAL * (32 * 64 - 1)        # each image once
    assert (cm.sum(0) > 0).sum() >= 2               # the model predicts several classes
    np.testing.assert_array_equal(np.array(b['confusion']), cm)
    assert a['images'] == b['images'] == N_VAL
    assert b['miou'] == a['miou'] and b['kappa'] == a['kappa']
    # rank 0 reports (the whole set); rank 1 only evaluates
    assert 'images: {}'.format(N_VAL) in logs[0]
    assert 'images: ' not in logs[1] and 'Wrote' not in logs[1]
    assert 'Wrote {} Cityscapes label-id PNGs'.format(N_VAL) in logs[0]
    # the two ranks' disjoint PNGs make up the single process's set
    one_png, two_png = _pngs(base / 'cs_one'), _pngs(base / 'cs_two')
    assert len(one_png) == N_VAL and one_png.keys() == two_png.keys()
    for k in one_png:
        np.testing.assert_array_equal(two_png[k], one_png[k], err_msg=k)


def test_val_engine_on_two_processes_gives_dygraphs_confusion_matrix(tiny):
    """val.py --engine inference under the launcher: each rank runs its own
    predictor of the export on its share; the summed matrix is the one of
    the dygraph model in one process."""
    base = tiny['base']
    export = _single('export.py', ['--config', tiny['cfg'], '--model_path',
                                   tiny['weights'], '--save_dir', base / 'export',
                                   '--device', 'cpu'])
    assert export.returncode == 0, export.stderr[-3000:]
    one = _single('val.py', _val_args(tiny, '--save_json', base / 'dy_one.json'))
    assert one.returncode == 0, one.stderr[-3000:]
    args = ['--config', tiny['cfg'], '--model_path', base / 'export', '--engine',
            'inference', '--device', 'cpu', '--cpu_threads', '1', '--save_json',
            base / 'engine_two.json']
    proc, logs = _launch('val.py', args, base / 'engine_log')
    assert proc.returncode == 0, proc.stdout[-2000:] + logs[0][-3000:] + logs[1][-3000:]
    a, b = json.load(open(base / 'dy_one.json')), json.load(open(base / 'engine_two.json'))
    cm = np.array(a['confusion'])
    assert (cm.sum(0) > 0).sum() >= 2
    moved = np.abs(np.array(b['confusion']) - cm).sum() / 2 / cm.sum()
    assert moved <= 1e-3, moved
    assert a['images'] == b['images'] == N_VAL


def test_predict_on_two_processes_writes_each_image_once_and_reports_skips(tiny):
    """6 files, one unreadable: it falls to rank 1, rank 0 names it and the
    job exits 1, as one process does; the 5 class maps are those of one
    process."""
    base = tiny['base']
    images = base / 'images'
    shutil.copytree(os.path.join(tiny['root'], 'leftImg8bit', 'val'), images)
    broken = images / 'city0' / 'city0_000001_broken.png'   # sorted 2nd: rank 1
    broken.write_bytes(b'not a png')
    common = ['--config', tiny['cfg'], '--model_path', tiny['weights'], '--device',
              'cpu', '--cpu_threads', '1', '--image_path', images]
    one = _single('predict.py', common + ['--save_dir', base / 'pred_one'])
    assert one.returncode == 1, one.stderr[-3000:]
    assert 'predict.py: error: skipped {}'.format(broken) in one.stderr
    proc, logs = _launch('predict.py', common + ['--save_dir', base / 'pred_two'],
                         base / 'pred_log')
    assert proc.returncode == 1, proc.stdout[-2000:] + logs[0][-3000:] + logs[1][-3000:]
    assert 'skipping {}'.format(broken) in logs[1]            # rank 1 read it
    assert 'skipping {}'.format(broken) not in logs[0]
    assert 'predict.py: error: skipped {}'.format(broken) in logs[0]  # rank 0 reports
    assert 'predict.py: error' not in logs[1]
    assert 'Predicted {} images'.format(N_VAL) in logs[0]
    one_png = _pngs(base / 'pred_one' / 'pseudo_color_prediction')
    two_png = _pngs(base / 'pred_two' / 'pseudo_color_prediction')
    assert len(one_png) == N_VAL and one_png.keys() == two_png.keys()
    for k in one_png:
        np.testing.assert_array_equal(two_png[k], one_png[k], err_msg=k)
    assert len(list((base / 'pred_two' / 'added_prediction').rglob('*.jpg'))) == N_VAL


def test_val_on_two_processes_stops_every_rank_on_an_unreadable_image(tmp_path):
    """The rank that cannot read its image still joins the final all-reduce,
    so both ranks stop at once with a one-line error (the other one waiting
    in the collective would otherwise be ended only by the launcher, or by
    gloo's timeout)."""
    import time
    root = make_data(tmp_path / 'cs', n_train=1, n_val=3)
    cfg = write_config(tmp_path / 'tiny.yml', root)
    weights = tmp_path / 'model.pdparams'
    _save_random_weights(cfg, weights)
    bad = sorted((tmp_path / 'cs' / 'leftImg8bit' / 'val').rglob('*.png'))[1]
    bad.write_bytes(b'not a png')
    start = time.monotonic()
    proc, logs = _launch('val.py', ['--config', cfg, '--model_path', weights, '--device',
                                    'cpu', '--cpu_threads', '1'], tmp_path / 'log')
    took = time.monotonic() - start
    assert proc.returncode != 0
    own = [r for r in (0, 1) if 'val.py: error: cannot read image {}'.format(bad) in logs[r]]
    assert len(own) == 1, logs
    other = 1 - own[0]
    assert 'val.py: error: evaluation stopped: another process could not read' \
        in logs[other], logs[other][-3000:]
    assert 'Traceback' not in logs[0] + logs[1]
    assert took < 120

