"""The training loader (paddleseg.core.loader): uint8 batches normalised on
the device, the shared-memory check, persistent workers."""

import os
import sys
from types import SimpleNamespace

import numpy as np
import paddle
import pytest

from paddleseg.core import loader as loader_mod
from paddleseg.core.loader import (DeviceNormalize, build_train_loader, compact_dataset,
                                   endless_batches, shm_needed, shm_shortage, to_device_batch,
                                   worker_death_message)
from paddleseg.core.sampler import LOAD_ERROR
from paddleseg.datasets import Cityscapes
from paddleseg.errors import ConfigError, DatasetError
from paddleseg.transforms import (Normalize, RandomDistort, RandomHorizontalFlip,
                                  RandomPaddingCrop, ResizeStepScaling)
from paddleseg.transforms import functional as F
from tiny_data import make_tiny_cityscapes

MB = 2 ** 20


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    return make_tiny_cityscapes(str(tmp_path_factory.mktemp('loader') / 'cs'), n_train=4)


def _seeded(dataset, index, seed):
    """An item of ``dataset`` with the augmentation RNGs seeded as the loader seeds them."""
    from paddleseg.core.sampler import SeededDataset
    return SeededDataset(dataset)[(index, seed)]


def _device_normalised(item, normalize):
    batch = {'img': paddle.to_tensor(item['img'][None])}
    return to_device_batch(batch, normalize)['img'].numpy()[0]


def test_device_normalize_gives_the_hand_computed_values():
    # (v / 255 - 0.5) / 0.5 for v = 0, 127, 128, 255
    img = paddle.to_tensor(np.array([0, 127, 128, 255], np.uint8).reshape(1, 1, 2, 2))
    out = DeviceNormalize((0.5, ), (0.5, ))(img)
    assert out.dtype == paddle.float32 and out.shape == [1, 1, 2, 2]
    np.testing.assert_allclose(out.numpy().reshape(-1),
                               [-1.0, -1 / 255, 1 / 255, 1.0], rtol=0, atol=1e-7)
    # per channel: channel 1 of value 51 with mean 0.1, std 0.2 -> (0.2 - 0.1) / 0.2
    img = paddle.to_tensor(np.full((2, 3, 1, 1), 51, np.uint8))
    out = DeviceNormalize((0.0, 0.1, 0.2), (1.0, 0.2, 0.5))(img).numpy()
    np.testing.assert_allclose(out[:, :, 0, 0], [[0.2, 0.5, 0.0]] * 2, atol=1e-6)


def test_device_normalize_equals_the_workers_uint8_normalize_bit_for_bit():
    """Both ways: OpenCV's lookup (a CPU tensor) and paddle's gather (what
    a GPU tensor takes, here on the CPU)."""
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    workers = np.stack([F.normalize(im, mean, std).transpose(2, 0, 1) for im in hwc])
    normalize = DeviceNormalize(mean, std)
    img = paddle.to_tensor(hwc.transpose(0, 3, 1, 2).copy())
    assert np.array_equal(normalize(img).numpy(), workers)
    gathered = normalize._gathered(img)
    assert gathered.dtype == paddle.float32 and np.array_equal(gathered.numpy(), workers)
    gray = paddle.to_tensor(hwc[:, None, :, :, 0].copy())
    np.testing.assert_array_equal(DeviceNormalize((0.5, ), (0.5, ))._gathered(gray).numpy(),
                                  (hwc[:, None, :, :, 0] / np.float32(255) - 0.5) / 0.5)


def _transforms(crop, distort):
    ops = [ResizeStepScaling(0.5, 1.0, 0.25), RandomPaddingCrop(crop_size=crop),
           RandomHorizontalFlip()]
    if distort:
        ops.append(RandomDistort(brightness_range=0.4, contrast_range=0.4,
                                 saturation_range=0.4))
    return ops + [Normalize()]


@pytest.mark.parametrize('distort', [True, False])
def test_compact_items_normalised_on_the_device_match_the_float_items(tiny_root, distort):
    """The reference recipe's transforms (padding with 127.5, then
    RandomDistort back to uint8): the same floats bit for bit. Without
    RandomDistort the padding stays 127.5 in the float path and becomes 128
    in uint8: (128 / 255 - 0.5) / 0.5 = 1 / 255 instead of 0 there, every
    other pixel equal. Labels equal, as uint8."""
    # 64x128 images scaled by 0.5..1 and cropped to 80x160: always padded
    dataset = Cityscapes(_transforms((160, 80), distort), tiny_root, mode='train')
    compact, normalize = compact_dataset(dataset)
    assert compact is not dataset and dataset.transforms.transforms[-1].__class__ is Normalize
    for index, seed in ((0, 11), (3, 12)):
        old, new = _seeded(dataset, index, seed), _seeded(compact, index, seed)
        assert new['img'].dtype == np.uint8 and new['img'].shape == (3, 80, 160)
        assert new['label'].dtype == np.uint8 and old['label'].dtype == np.int64
        assert np.array_equal(new['label'], old['label'])
        got = _device_normalised(new, normalize)
        padded = new['label'] == 255
        assert padded.sum() > 1000
        if distort:
            assert np.array_equal(got, old['img'])
        else:
            assert np.array_equal(got[:, ~padded], old['img'][:, ~padded])
            # the padding (and only it: label 255 at [0, 0] is a real pixel)
            assert np.all(old['img'][:, padded & (old['img'][0] == 0)] == 0)
            diff = np.abs(got - old['img'])
            assert diff.max() == pytest.approx(1 / 255, abs=1e-7)


def test_the_dataset_itself_stays_float_and_val_items_are_untouched(tiny_root):
    dataset = Cityscapes([Normalize()], tiny_root, mode='train')
    compact_dataset(dataset)
    assert dataset[0]['img'].dtype == np.float32 and dataset[0]['label'].dtype == np.int64
    val = Cityscapes([Normalize()], tiny_root, mode='val')
    assert val.compact_view() is None  # evaluation inputs stay as they are
    assert val[0]['img'].dtype == np.float32


def test_datasets_that_cannot_be_compact_load_as_before(tiny_root):
    no_normalize = Cityscapes([RandomHorizontalFlip()], tiny_root, mode='train')
    assert compact_dataset(no_normalize) == (no_normalize, None)
    normalize_first = Cityscapes([Normalize(), RandomHorizontalFlip()], tiny_root)
    assert compact_dataset(normalize_first)[1] is None
    many_classes = Cityscapes([Normalize()], tiny_root)
    many_classes.num_classes = 300
    assert compact_dataset(many_classes)[1] is None
    plain = [{'img': np.zeros((3, 2, 2), np.float32)}]  # no compact_view
    assert compact_dataset(plain) == (plain, None)
    batch = {'img': paddle.zeros([1, 3, 2, 2])}
    assert to_device_batch(batch, None) is batch
    failed = {LOAD_ERROR: 'bad image', 'failed': paddle.ones([1])}
    assert to_device_batch(failed, DeviceNormalize((0.5, ), (0.5, ))) is failed


def test_a_label_padded_beyond_uint8_is_refused_by_name(tiny_root):
    dataset = Cityscapes([RandomPaddingCrop((160, 80), label_padding_value=300), Normalize()],
                         tiny_root)
    compact, _ = compact_dataset(dataset)
    with pytest.raises(DatasetError, match=r'gtFine_labelTrainIds.png holds values outside '
                                           r'0\.\.255 after the transforms'):
        compact[0]


def _statvfs(free_bytes):
    return lambda path: SimpleNamespace(f_bavail=free_bytes // 4096, f_frsize=4096)


def test_shm_need_and_the_one_line_refusal():
    # the reference recipe before: 4 x (3x512x1024 float32 + 512x1024 int64) = 40 MB a batch
    assert shm_needed(40 * MB, 16, processes=4) == 40 * MB * 34 * 4
    # now: 4 x (3x512x1024 + 512x1024) uint8 = 8 MB; docker's default 64 MB
    line = shm_shortage(8 * MB, 16, processes=4, statvfs=_statvfs(64 * MB))
    assert '\n' not in line
    assert line.startswith('/dev/shm has 64 MB free but the training data loader needs '
                           'about 1088 MB (4 processes x 34 batches of 8.0 MB in flight '
                           'with --num_workers 16): pass --num_workers 0')
    assert 'docker run --shm-size=' in line
    # 1 GB free: (1024 - 2 x 8 x 4) / (2 x 8 x 4) = 15 workers fit
    line = shm_shortage(8 * MB, 16, processes=4, statvfs=_statvfs(1024 * MB))
    assert 'pass --num_workers 15 or fewer' in line
    assert shm_needed(8 * MB, 15, processes=4) <= 1024 * MB < shm_needed(8 * MB, 16, 4)
    assert shm_shortage(8 * MB, 15, processes=4, statvfs=_statvfs(1024 * MB)) is None
    assert shm_shortage(8 * MB, 0, statvfs=_statvfs(0)) is None  # no workers, no shm


def _state(seed=5):
    return SimpleNamespace(seed=seed, rank=0, nranks=1, start_iter=0)


def test_the_loader_refuses_to_start_workers_without_room(tiny_root, monkeypatch):
    dataset = Cityscapes([RandomPaddingCrop((64, 32)), Normalize()], tiny_root)
    monkeypatch.setattr(loader_mod.os, 'statvfs', _statvfs(10 * 2 ** 10))
    # one batch of 2: 2 x (3 + 1) x 32 x 64 = 16 KB; 6 in flight with 2 workers
    with pytest.raises(ConfigError, match=r'^/dev/shm has 0 MB free .* 6 batches of 0\.0 MB '
                                          r'in flight with --num_workers 2\): pass '
                                          r'--num_workers 0'):
        build_train_loader(dataset, 2, 2, _state())
    agreed = []
    with pytest.raises(ConfigError, match='another training process'):
        build_train_loader(dataset, 2, 0, _state(),
                           agree=lambda flags: agreed.append(flags) or [1])
    assert agreed == [[False]]
    monkeypatch.setattr(loader_mod.os, 'statvfs', _statvfs(2 ** 30))
    loader, normalize = build_train_loader(dataset, 2, 2, _state())
    assert loader._persistent_workers and normalize.mean == (0.5, )


def test_train_py_stops_with_one_line_when_shm_is_short(tiny_root, tmp_path, monkeypatch,
                                                       capsys):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import train as train_cli
    from tiny_data import write_tiny_config
    cfg = write_tiny_config(str(tmp_path / 'tiny.yml'), tiny_root, iters=2)
    monkeypatch.setattr(loader_mod.os, 'statvfs', _statvfs(2 ** 16))
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(['--config', cfg, '--save_dir', str(tmp_path / 'out'), '--device',
                        'cpu', '--num_workers', '4'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('train.py: error: /dev/shm has 0 MB free')
    assert '--num_workers 4)' in err[-1] and '--shm-size' in err[-1]


def test_paddles_loader_failures_become_the_shm_hint():
    exc = SystemError('(Fatal) Blocking queue is killed because the data reader raises an '
                      'exception.\n  [Hint: Expected killed_ != true, ...]')
    line = worker_death_message(exc, statvfs=_statvfs(3 * MB))
    assert line == ('the training data loader stopped: (Fatal) Blocking queue is killed '
                    'because the data reader raises an exception. If a worker died of a '
                    '"BUS error" (shared memory ran out; /dev/shm has 3 MB free now), pass '
                    'fewer --num_workers or give the container more shared memory (docker '
                    'run --shm-size=2g, or --ipc=host); otherwise see the error printed above')
    # paddle's SIGCHLD handler, after a worker's SIGBUS (its first line is garbled)
    bus = SystemError('(Fatal) DataLoader process (pid   1. If run DataLoader by ...\n  3. '
                      '...) exited is killed by signal: 17123.\n  It may be caused by '
                      'insufficient shared storage space. ...\nBus error (at data_loader.cc)')
    assert worker_death_message(bus, statvfs=_statvfs(5 * MB)) == (
        'the training data loader stopped: a worker died of a bus error, shared memory ran '
        'out (/dev/shm has 5 MB free now): pass fewer --num_workers or give the container '
        'more shared memory (docker run --shm-size=2g, or --ipc=host)')
    exited = RuntimeError('DataLoader process (pid 77) exited unexpectedly with code 1.')
    assert 'exited unexpectedly with code 1.' in worker_death_message(exited)
    assert worker_death_message(ValueError('bad transform')) is None
    assert worker_death_message(RuntimeError('out of memory')) is None


class _Items:
    def __len__(self):
        return 8

    def __getitem__(self, index):
        return {'img': np.zeros((3, 8, 8), np.float32), 'label': np.zeros((8, 8), np.int64)}


def _train_items(model, save_dir):
    from paddleseg.core import train
    from paddleseg.models.losses import CrossEntropyLoss
    train(model, _Items(), losses={'types': [CrossEntropyLoss()], 'coef': [1.0]},
          optimizer=paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters()),
          iters=2, batch_size=1, save_dir=str(save_dir), seed=1)


@pytest.mark.parametrize('where', ['step', '_next_batch'])
def test_a_dead_worker_reported_anywhere_in_the_loop_is_one_config_error(tmp_path,
                                                                       monkeypatch, where):
    """paddle's SIGCHLD handler raises in whatever the training process
    runs (a step, say); the loader's own report comes from next()."""
    from paddleseg.core.trainer import Trainer
    error = SystemError('(Fatal) DataLoader process (pid 9) exited unexpectedly with code 7.')

    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(Trainer, where, fail)
    with pytest.raises(ConfigError, match=r'^the training data loader stopped: \(Fatal\) '
                                          r'DataLoader process \(pid 9\) exited .*--shm-size'
                       ) as info:
        _train_items(_Pixelwise(), tmp_path)
    assert info.value.__cause__ is error
    error = RuntimeError('a bug')  # anything else passes as it is
    with pytest.raises(RuntimeError, match='^a bug$'):
        _train_items(_Pixelwise(), tmp_path)


class _Pids:
    """Items that say which process loaded them."""

    def __len__(self):
        return 4

    def __getitem__(self, item):
        return {'pid': np.array([os.getpid()]), 'index': np.array([item])}


def test_persistent_workers_serve_every_epoch_in_order(tiny_root, monkeypatch):
    """Three epochs from two worker processes that live through them all;
    the batches are the sampler's, in order (as without workers)."""
    monkeypatch.setattr(loader_mod, 'probe_sample_nbytes', lambda dataset, seed: None)
    loader, _ = build_train_loader(_Pids(), 2, 2, _state())
    batches = endless_batches(loader)
    try:
        got = [next(batches) for _ in range(6)]  # 2 batches an epoch
    finally:
        batches.close()
    pids = {int(p) for b in got for p in b['pid'].numpy().reshape(-1)}
    assert len(pids) == 2 and os.getpid() not in pids
    plain, _ = build_train_loader(_Pids(), 2, 0, _state())
    batches = endless_batches(plain)
    want = [next(batches)['index'].numpy().reshape(-1).tolist() for _ in range(6)]
    batches.close()
    assert [b['index'].numpy().reshape(-1).tolist() for b in got] == want


def _exited(pid):
    """Whether the child ``pid`` has ended (waitable, or already reaped by
    paddle's reader thread), without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def test_a_persistent_loader_whose_workers_died_raises_at_the_next_epoch(monkeypatch):
    """paddle's persistent loader waits for ever for dead workers to resume
    the next epoch: _endless raises instead (found by the two-rank loader
    test of tests/test_distributed_failures.py, which then hung)."""
    import signal
    import time
    monkeypatch.setattr(loader_mod, 'probe_sample_nbytes', lambda dataset, seed: None)
    loader, _ = build_train_loader(_Pids(), 2, 2, _state())
    batches = endless_batches(loader)
    handler = signal.getsignal(signal.SIGCHLD)
    try:
        got = [next(batches) for _ in range(2)]  # the whole first epoch
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # paddle's handler would raise here
        pids = {int(p) for b in got for p in b['pid'].numpy().reshape(-1)}
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # until each has ended: a worker with threads (OpenMP's, with
        # OMP_NUM_THREADS set) shows "Z" while its threads still exit
        deadline = time.monotonic() + 20
        while not all(_exited(pid) for pid in pids):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        def hung(signum, frame):
            raise TimeoutError('the next epoch waits for the dead workers')
        alarm = signal.signal(signal.SIGALRM, hung)
        signal.alarm(20)
        try:
            with pytest.raises(RuntimeError, match='exited unexpectedly'):
                next(batches)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, alarm)
    finally:
        signal.signal(signal.SIGCHLD, handler)
        batches.close()


class _Pixelwise(paddle.nn.Layer):
    """A 1x1 convolution to the 19 classes, with BatchNorm."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 19, 1)
        self.bn = paddle.nn.BatchNorm2D(19)

    def forward(self, x):
        return [self.bn(self.conv(x))]


def _run(root, save_dir, workers, iters, resume=None, crop=(64, 48)):
    """Train the 1x1 model on the tiny Cityscapes (4 images, batch 2: 2
    iterations an epoch); return its weights."""
    from paddleseg.core import train
    from paddleseg.models.losses import CrossEntropyLoss
    paddle.seed(0)
    model = _Pixelwise()
    optimizer = paddle.optimizer.Momentum(learning_rate=0.1, parameters=model.parameters())
    dataset = Cityscapes([ResizeStepScaling(0.5, 1.0, 0.25), RandomPaddingCrop(crop),
                          RandomHorizontalFlip(), Normalize()], root)
    train(model, dataset, losses={'types': [CrossEntropyLoss()], 'coef': [1.0]},
          optimizer=optimizer, iters=iters, batch_size=2, save_dir=str(save_dir),
          save_interval=3, num_workers=workers, seed=4, resume_model=resume)
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_runs_with_persistent_workers_and_resumed_ones_match_one_without(tiny_root, tmp_path):
    """Three epochs with two persistent workers give the weights of a run
    without workers; so does one resumed at iteration 3 (mid-epoch)."""
    plain = _run(tiny_root, tmp_path / 'plain', 0, 6)
    workers = _run(tiny_root, tmp_path / 'workers', 2, 6)
    resumed = _run(tiny_root, tmp_path / 'workers', 2, 6, resume=str(tmp_path / 'workers' /
                                                                     'iter_3'))
    for name, value in plain.items():
        assert np.array_equal(workers[name], value), name
        assert np.array_equal(resumed[name], value), name
    assert not np.array_equal(plain['conv.weight'], _run(tiny_root, tmp_path / 'short', 0, 5)
                              ['conv.weight'])


def test_training_on_compact_batches_equals_training_on_float_batches(tiny_root, tmp_path,
                                                                     monkeypatch):
    """Without padding (crop 64x32 inside every scaled 64x128 image) the
    device-normalised uint8 batches train exactly as the float ones."""
    compact = _run(tiny_root, tmp_path / 'compact', 0, 3, crop=(64, 32))
    monkeypatch.setattr(loader_mod, 'compact_dataset', lambda dataset: (dataset, None))
    floats = _run(tiny_root, tmp_path / 'float', 0, 3, crop=(64, 32))
    for name, value in floats.items():
        assert np.array_equal(compact[name], value), name


class _BusError:
    """Items whose worker process dies of SIGBUS at index 3, as a worker
    writing into a full /dev/shm does."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        import signal
        if index == 3 and paddle.io.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGBUS)
        return {'img': np.zeros((3, 8, 8), np.float32), 'label': np.zeros((8, 8), np.int64)}


def test_a_worker_dying_of_a_bus_error_stops_training_with_the_fix(tmp_path, capfd):
    from paddleseg.core import train
    from paddleseg.models.losses import CrossEntropyLoss
    model = _Pixelwise()
    # paddle's reader thread (queue killed) or its SIGCHLD handler (a bus error) reports it
    with pytest.raises(ConfigError, match=r'^the training data loader stopped: .*(Blocking queue '
                                          r'is killed|bus error).* pass fewer --num_workers '
                                          r'.*--shm-size'):
        train(model, _BusError(), losses={'types': [CrossEntropyLoss()], 'coef': [1.0]},
              optimizer=paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters()),
              iters=8, batch_size=1, save_dir=str(tmp_path), num_workers=1, seed=1)
    assert 'Unexpected BUS error encountered in DataLoader worker' in capfd.readouterr().err


def test_processes_sharing_the_machines_shm_come_from_the_launcher():
    from paddleseg.utils.env import local_process_count
    assert local_process_count({'PADDLE_LOCAL_SIZE': '4'}) == 4
    assert local_process_count({}) == 1
    assert local_process_count({'PADDLE_LOCAL_SIZE': 'x'}) == 1
    assert local_process_count({'PADDLE_LOCAL_SIZE': '0'}) == 1

