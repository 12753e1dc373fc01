"""Checkpoints across PaddleSeg 2.8 and this repository, both ways.

PaddleSeg 2.8 saves ``iter_N/`` with only ``model.pdparams`` and
``model.pdopt``, the optimizer state keyed by paddle's per-process names
(``conv2d_3.w_0_velocity_0``). ``golden/paddleseg_pdopt_r18.json`` records
those keys, in the file's order, with the structured name of each one's
parameter, for PaddleSeg's PointRend on ResNet18_vd after 2 steps of its
Momentum (``tests/golden/paddleseg_checkpoint.py fixture``), so the
mapping is checked without PaddleSeg. The tests marked ``paddleseg_ref``
also run PaddleSeg itself, in the throw-away venv of PyPI paddleseg 2.8.0
that the suite makes or reuses (the ``paddleseg_ref`` fixture of
``tests/conftest.py``, ``benchmarks/ref_venv.sh``): (a) its real checkpoint
is resumed here, (b) ours is resumed by PaddleSeg's own ``resume``.
"""

import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddleseg.core.optim_state import (canonical_names, load_optimizer_state,
                                        match_by_order, optimizer_state, param_names)
from paddleseg.core.options import TrainOptions
from paddleseg.core.trainer import Trainer
from paddleseg.cvlibs import manager
from paddleseg.errors import CheckpointError
from paddleseg.models.backbones import ResNet18_vd
from paddleseg.utils.checkpoint import read_meta
from tiny_data import make_tiny_cityscapes, write_tiny_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURE = os.path.join(HERE, 'golden', 'paddleseg_pdopt_r18.json')
SCRIPT = os.path.join(HERE, 'golden', 'paddleseg_checkpoint.py')


def _fixture():
    with open(FIXTURE) as f:
        return json.load(f)


def _model():
    return manager.MODELS['PointRendFPN'](
        num_classes=19, backbone=ResNet18_vd(output_stride=8),
        backbone_indices=[0, 1, 2, 3], fpn_inplanes=[64, 128, 256, 512])


def _momentum(model, iters=4):
    lr = paddle.optimizer.lr.PolynomialDecay(0.01, decay_steps=iters, end_lr=0.0, power=0.9)
    return paddle.optimizer.Momentum(lr, momentum=0.9, parameters=model.parameters(),
                                     weight_decay=4.0e-5)


def _paddleseg_like_state(keys, seed=0):
    """A ``model.pdopt`` as PaddleSeg writes it: ``keys`` in order, each a
    distinct random array, and the scheduler after 2 steps."""
    rng = np.random.default_rng(seed)
    state = {key: paddle.to_tensor(rng.standard_normal(shape).astype('float32'))
             for key, shape, _ in keys}
    state['LR_Scheduler'] = {'last_epoch': 2, 'last_lr': 0.005358867312681466}
    return state


def _velocities(optimizer, model):
    """``{structured name: velocity}`` as the optimizer's next step will use
    them: its accumulators created (each is looked up in the loaded state by
    the name this process gives it), as the first step does."""
    params = [p for p in model.parameters() if not p.stop_gradient]
    optimizer._create_accumulators(paddle.static.default_main_program().global_block(),
                                   params)
    created = optimizer._accumulators[optimizer._velocity_acc_str]
    names = {p.name: n for n, p in model.named_parameters()}
    return {names[name]: var.numpy() for name, var in created.items()}


def _by_structured(keys, state):
    return {structured: state[key].numpy() for key, _, structured in keys}


UNUSED = 'neck.fpn_out.3.'   # never has a gradient: PaddleSeg saves no state for it


def _same_velocities(got, want):
    """``got`` has ``want``'s velocities, and zeros (a fresh velocity) for
    the unused parameters."""
    assert sorted(n for n in got if not n.startswith(UNUSED)) == sorted(want)
    assert len(want) == 118 and len(got) == 121
    for name, value in got.items():
        if name.startswith(UNUSED):
            assert not value.any(), name
        else:
            np.testing.assert_array_equal(value, want[name], err_msg=name)


# -- PaddleSeg -> ours, from the fixture ------------------------------------

def test_the_fixture_is_paddlesegs_order_minus_the_unused_fpn_out():
    fixture = _fixture()
    saved = [structured for _, _, structured in fixture['keys']]
    assert fixture['trainable'] == [n for n, p in _model().named_parameters()
                                    if not p.stop_gradient]
    assert saved == [n for n in fixture['trainable'] if not n.startswith('neck.fpn_out.3.')]
    assert len(saved) == 118 and all(k.endswith('_velocity_0') for k, _, _ in fixture['keys'])


@pytest.mark.parametrize('layers_before', [0, 3])
def test_a_paddleseg_pdopt_is_matched_to_our_parameters(layers_before):
    """In a fresh process and in one that built other layers first (paddle's
    names of our parameters shifted): every velocity reaches the parameter
    PaddleSeg kept it for, as the optimizer's first step reads it."""
    for _ in range(layers_before):
        paddle.nn.Conv2D(3, 3, 1)
        paddle.nn.BatchNorm2D(3)
    fixture = _fixture()
    model = _model()
    state = _paddleseg_like_state(fixture['keys'])
    mapping = match_by_order(state, model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {k: names[id(p)] for k, p in mapping.items()} == {
        key[:-len('_velocity_0')]: structured for key, _, structured in fixture['keys']}
    optimizer = _momentum(model)
    load_optimizer_state(optimizer, model, state)
    assert optimizer._learning_rate.last_epoch == 2
    _same_velocities(_velocities(optimizer, model), _by_structured(fixture['keys'], state))


def test_a_pdopt_of_another_model_is_refused_in_one_line():
    fixture = _fixture()
    keys = [k for k in fixture['keys'] if 'pointhead' not in k[2]]
    keys.insert(5, ['conv2d_99.w_0_velocity_0', [7, 7], 'x'])
    model = _model()
    with pytest.raises(CheckpointError, match=r'holds optimizer state for 111 parameters '
                       r'that do not match .* 121 trainable .* conv2d_99\.w_0, shape \[7, 7\]'):
        match_by_order(_paddleseg_like_state(keys), model)
    swapped = list(fixture['keys'])
    swapped[0], swapped[3] = swapped[3], swapped[0]
    with pytest.raises(CheckpointError):
        match_by_order(_paddleseg_like_state(swapped), model)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp('psckpt')
    root = make_tiny_cityscapes(str(base / 'cs'), n_train=4, n_val=2)
    cfg = write_tiny_config(str(base / 'tiny.yml'), root, iters=3, batch_size=2,
                            extra='optimizer:\n  type: sgd\n  momentum: 0.9\n'
                                  '  weight_decay: 4.0e-5\n')
    return {'base': base, 'root': root, 'cfg': cfg}


def _paddleseg_folder(folder, state, seed=1):
    """``folder`` as PaddleSeg's loop writes it: two files, no meta.json."""
    os.makedirs(folder)
    paddle.seed(seed)
    params = _model().state_dict()
    paddle.save(params, os.path.join(folder, 'model.pdparams'))
    paddle.save(state, os.path.join(folder, 'model.pdopt'))
    return params


def _built(cfg_path):
    from paddleseg.cvlibs import Config, SegBuilder
    builder = SegBuilder(Config(cfg_path))
    return builder, builder.model, builder.optimizer


def test_the_trainer_resumes_a_paddleseg_folder_at_the_next_iteration(tiny, tmp_path,
                                                                       capsys):
    fixture = _fixture()
    state = _paddleseg_like_state(fixture['keys'], seed=4)
    folder = str(tmp_path / 'ps' / 'iter_2')
    params = _paddleseg_folder(folder, state)
    assert read_meta(folder) == {'iter': 2, 'files': ['model.pdopt', 'model.pdparams'],
                                 'format': 'paddleseg'}
    builder, model, optimizer = _built(tiny['cfg'])
    trainer = Trainer(model, builder.train_dataset, builder.loss, optimizer,
                      TrainOptions(iters=3, batch_size=2, save_dir=str(tmp_path / 'out'),
                                   resume_model=folder))
    assert trainer.start_iter == trainer.it == 2
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if 'WARNING' in line]
    assert len(warnings) == 1 and 'PaddleSeg checkpoint' in warnings[0] \
        and 'not bit-exact' in warnings[0]
    for name, value in params.items():
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), value.numpy())
    assert optimizer._learning_rate.last_epoch == 2
    _same_velocities(_velocities(optimizer, model), _by_structured(fixture['keys'], state))


def test_train_py_resumes_a_paddleseg_folder(tiny, tmp_path):
    folder = str(tmp_path / 'ps' / 'iter_2')
    _paddleseg_folder(folder, _paddleseg_like_state(_fixture()['keys']))
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'train.py'), '--config', tiny['cfg'],
         '--save_dir', str(out), '--resume_model', folder, '--device', 'cpu',
         '--log_iters', '1', '--save_interval', '1'],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'Resumed from {} at iter 2'.format(folder) in log
    assert '[TRAIN] iter: 3/3' in log and '[TRAIN] iter: 2/3' not in log
    assert sorted(os.listdir(out)) == ['iter_3'] and read_meta(str(out / 'iter_3'))['iter'] == 3


@pytest.mark.filterwarnings('ignore:The input state dict is empty')
def test_a_folder_that_is_neither_kind_still_fails(tmp_path):
    from paddleseg.utils.checkpoint import load_checkpoint
    folder = tmp_path / 'iter_4'
    folder.mkdir()
    paddle.save({}, str(folder / 'model.pdparams'))
    with pytest.raises(CheckpointError, match=r'iter_4 is not a complete checkpoint: '
                       r'cannot read meta\.json .*nor is it a PaddleSeg checkpoint'):
        load_checkpoint(str(folder))
    other = tmp_path / 'final'
    other.mkdir()
    for name in ('model.pdparams', 'model.pdopt'):
        paddle.save({}, str(other / name))
    with pytest.raises(CheckpointError, match='nor is it a PaddleSeg checkpoint'):
        read_meta(str(other))   # the iteration comes from the name iter_N


# -- ours -> PaddleSeg ---------------------------------------------------------

@pytest.fixture(scope='module')
def ours(tiny, tmp_path_factory):
    """Our iter_2 of the tiny config (momentum SGD, as PaddleSeg's config)."""
    from paddleseg.core import train
    out = tmp_path_factory.mktemp('ours')
    builder, model, optimizer = _built(tiny['cfg'])
    paddle.nn.Conv2D(3, 3, 1)       # layers built after the model: no effect on the names
    train(model, builder.train_dataset, optimizer=optimizer, losses=builder.loss,
          save_dir=str(out), iters=2, batch_size=2, save_interval=2, seed=2)
    folder = str(out / 'iter_2')
    return {'folder': folder, 'pdopt': paddle.load(os.path.join(folder, 'model.pdopt')),
            'meta': read_meta(folder), 'model': model, 'optimizer': optimizer}


def _ours_by_structured(ours):
    names = ours['meta']['optimizer_params']
    return {names[key[:-len('_velocity_0')]]: value.numpy()
            for key, value in ours['pdopt'].items()
            if key.endswith('_velocity_0') and key[:-len('_velocity_0')] in names}


def test_our_pdopt_has_the_keys_a_fresh_paddleseg_process_asks_for(ours):
    expected = {key for key, _, _ in _fixture()["keys"]}
    velocity = {k for k in ours['pdopt'] if k.endswith('_velocity_0')}
    plain = {k for k in velocity if not k.startswith('sync_batch_norm_')}
    assert plain == expected and len(plain) == 118
    # BatchNorm's also under PaddleSeg's multi-GPU name, with the same values
    aliases = velocity - plain
    assert aliases == {'sync_batch_norm_' + k[len('batch_norm2d_'):] for k in plain
                       if k.startswith('batch_norm2d_')}
    for key in aliases:
        plain_key = 'batch_norm2d_' + key[len('sync_batch_norm_'):]
        np.testing.assert_array_equal(ours['pdopt'][key].numpy(),
                                      ours['pdopt'][plain_key].numpy())
    assert set(ours['pdopt']['LR_Scheduler']) == {'last_epoch', 'last_lr', 'LinearWarmup_LR'}
    # and they hold the velocities of our optimizer
    current = {n: ours['optimizer']._accumulators['velocity'][p.name].numpy()
               for n, p in ours['model'].named_parameters()
               if p.name in ours['optimizer']._accumulators['velocity']}
    by_structured = _ours_by_structured(ours)
    assert sorted(by_structured) == sorted(current) and len(current) == 118
    for name, value in current.items():
        np.testing.assert_array_equal(by_structured[name], value, err_msg=name)


def test_our_keys_name_the_parameters_paddlesegs_model_gives_them(ours):
    names = ours['meta']['optimizer_params']
    assert {k for k in ours['pdopt'] if k.endswith('_velocity_0')
            and not k.startswith('sync_')} == {key for key, _, _ in _fixture()['keys']}
    for key, _, structured in _fixture()['keys']:
        assert names[key[:-len('_velocity_0')]] == structured, key


def test_our_resume_is_exact_in_a_process_whose_names_differ(ours):
    """Another model and optimizer were built first (paddle's names of the
    parameters and of their velocities, ``_velocity_1``, differ): the
    velocities still reach their parameters, and a step runs."""
    _momentum(_model())
    model = _model()
    first = _momentum(model)
    _velocities(first, model)                         # velocity_0 names taken
    optimizer = _momentum(model)
    load_optimizer_state(optimizer, model, ours['pdopt'], names=ours['meta']['optimizer_params'])
    got = _velocities(optimizer, model)
    assert any(v.name.endswith('_velocity_1') for v in
               optimizer._accumulators['velocity'].values())
    _same_velocities(got, _ours_by_structured(ours))


def test_canonical_names_do_not_depend_on_what_was_built_before():
    first = canonical_names(_model())
    paddle.nn.Conv2D(3, 3, 1)
    paddle.nn.BatchNorm2D(3)
    model = _model()
    assert sorted(canonical_names(model).values()) == sorted(first.values())
    assert param_names(model)['conv2d_0.w_0'] == 'backbone.conv1_1._conv.weight'


def test_optimizer_state_drops_nothing_of_a_state_without_accumulators():
    model = paddle.nn.Linear(2, 2)
    optimizer = paddle.optimizer.SGD(0.1, parameters=model.parameters())
    assert optimizer_state(optimizer, model) == {}
    load_optimizer_state(optimizer, model, {}, names=param_names(model))


# -- against PaddleSeg 2.8.0 itself --------------------------------------------

def _ref(ref_python, *args):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([ref_python, SCRIPT] + [str(a) for a in args], cwd='/tmp',
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.paddleseg_ref
def test_a_paddleseg_checkpoint_resumes_here_with_every_velocity(tiny, tmp_path, capsys,
                                                                 paddleseg_ref):
    """(a) PaddleSeg 2.8.0 trains 2 steps and saves iter_2 as its loop does;
    our trainer resumes it at iter 3 with its weights and velocities."""
    _ref(paddleseg_ref, 'save', tmp_path)
    folder = str(tmp_path / 'iter_2')
    with open(tmp_path / 'truth.json') as f:
        truth = json.load(f)
    saved = paddle.load(os.path.join(folder, 'model.pdopt'))
    builder, model, optimizer = _built(tiny['cfg'])
    trainer = Trainer(model, builder.train_dataset, builder.loss, optimizer,
                      TrainOptions(iters=3, batch_size=2, save_dir=str(tmp_path / 'out'),
                                   resume_model=folder))
    assert trainer.start_iter == 2
    assert 'PaddleSeg checkpoint' in capsys.readouterr().out
    for name, value in paddle.load(os.path.join(folder, 'model.pdparams')).items():
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), value.numpy())
    assert optimizer._learning_rate.last_epoch == 2
    _same_velocities(_velocities(optimizer, model), _by_structured(truth['keys'], saved))
    trainer.run()
    assert read_meta(str(tmp_path / 'out' / 'iter_3'))['iter'] == 3


def _paddleseg_resumes_ours(ref_python, ours, tmp_path):
    out = tmp_path / 'paddleseg.npz'
    _ref(ref_python, 'load', ours['folder'], out, 1)   # warmup_iters: 1, as the tiny config
    loaded = np.load(out)
    assert int(loaded['iter']) == 2 and int(loaded['last_epoch']) == 2
    return {k[2:]: loaded[k] for k in loaded.files if k.startswith('v/')}


@pytest.mark.paddleseg_ref
def test_paddleseg_resumes_ours_with_every_velocity(ours, tmp_path, paddleseg_ref):
    theirs = _paddleseg_resumes_ours(paddleseg_ref, ours, tmp_path)
    ours_v = _ours_by_structured(ours)
    assert sorted(theirs) == sorted(ours_v)
    for name, value in ours_v.items():
        np.testing.assert_array_equal(theirs[name], value, err_msg=name)
