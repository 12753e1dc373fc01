"""Files from elsewhere: configs go through yaml.safe_load only, weights can
be .safetensors everywhere a weights file is taken (``--model_path``,
``pretrained:``, from a URL too), utils/convert_weights.py converts both
ways. (Archives with members escaping their folder: test_download.py, and
through train.py in test_bad_inputs.py.)"""

import os
import re

import numpy as np
import paddle
import pytest

import train as train_cli
import val as val_cli
from robust_helpers import ROOT, make_data, one_error_line, run_cli, train_args, write_config


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    from paddleseg.cvlibs import Config, SegBuilder
    base = tmp_path_factory.mktemp('untrusted')
    root = make_data(base / 'cs', n_train=1, n_val=1)
    cfg = write_config(base / 'tiny.yml', root)
    paddle.seed(7)
    model = SegBuilder(Config(cfg, for_training=True)).model
    weights = base / 'model.pdparams'
    paddle.save(model.state_dict(), str(weights))
    return {'base': base, 'cfg': cfg, 'weights': str(weights),
            'arrays': {k: v.numpy() for k, v in model.state_dict().items()}}


def _convert(src, dst, *extra):
    return run_cli('utils/convert_weights.py', src, dst, *extra)


def _assert_state(state, expected):
    state = {k: (v if isinstance(v, np.ndarray) else v.numpy()) for k, v in state.items()}
    assert state.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(state[key], expected[key], err_msg=key)


def test_no_python_file_loads_yaml_unsafely():
    unsafe = re.compile(r'yaml\.(load|unsafe_load|full_load|load_all)\(|Loader\s*=')
    found = []
    for folder, _, files in os.walk(ROOT):
        if any(part.startswith('.') for part in folder.split(os.sep)):
            continue
        for name in files:
            if name.endswith('.py') and name != 'test_untrusted_files.py':
                with open(os.path.join(folder, name), errors='replace') as f:
                    found += ['{}:{}'.format(name, i) for i, line in enumerate(f, 1)
                              if unsafe.search(line)]
    assert not found


def test_a_config_cannot_run_code(env, capsys):
    marker = env['base'] / 'pwned'
    cfg = env['base'] / 'evil.yml'
    cfg.write_text('batch_size: !!python/object/apply:os.system ["touch {}"]\n'.format(marker))
    with pytest.raises(SystemExit) as exc:
        train_cli.main(train_args(cfg, env['base'] / 'o'))
    assert exc.value.code == 2
    line = one_error_line(capsys.readouterr().err, 'train.py')
    assert '{}: line 1: invalid YAML'.format(cfg) in line
    assert not marker.exists()


def test_convert_weights_round_trip(env):
    st = env['base'] / 'model.safetensors'
    proc = _convert(env['weights'], st)
    assert proc.returncode == 0, proc.stderr
    assert 'Wrote {} ({} tensors)'.format(st, len(env['arrays'])) in proc.stdout
    back = env['base'] / 'back.pdparams'
    assert _convert(st, back).returncode == 0
    from paddleseg.utils.checkpoint import load_state_file
    _assert_state(load_state_file(str(st)), env['arrays'])
    _assert_state(paddle.load(str(back)), env['arrays'])


@pytest.mark.parametrize('case, message', [
    ('exists', 'exists; give --force to overwrite it'),
    ('suffix', 'expected one .pdparams and one .safetensors file'),
    ('optimizer_state', 'is not a dict of tensors'),
    ('missing', 'Checkpoint file not found'),
])
def test_convert_weights_errors_are_one_line(env, case, message):
    base = env['base']
    src, dst = env['weights'], base / ('{}.safetensors'.format(case))
    if case == 'exists':
        dst.write_text('keep me')
    elif case == 'suffix':
        dst = base / 'model.bin'
    elif case == 'optimizer_state':
        src = base / 'opt.pdparams'
        paddle.save({'LR_Scheduler': {'last_epoch': 3}, 'w_velocity_0': paddle.ones([2])},
                    str(src))
    else:
        src = base / 'nope.pdparams'
    proc = _convert(src, dst)
    assert proc.returncode == 2
    assert message in one_error_line(proc.stderr, 'convert_weights.py')
    if case == 'exists':
        assert dst.read_text() == 'keep me'
        assert _convert(src, dst, '--force').returncode == 0


def test_val_takes_safetensors_weights(env, capsys):
    st = env['base'] / 'val.safetensors'
    from paddleseg.utils.checkpoint import convert
    convert(env['weights'], str(st))
    results = [val_cli.run(val_cli.parse_args(['--config', env['cfg'], '--device', 'cpu',
                                               '--model_path', str(path)]))
               for path in (env['weights'], st)]
    np.testing.assert_array_equal(results[0]['confusion'], results[1]['confusion'])
    assert 'Loaded {n}/{n} tensors'.format(n=len(env['arrays'])) in capsys.readouterr().out


def test_pretrained_takes_safetensors_from_a_path_or_a_url(env, server, monkeypatch):
    """``model.pretrained`` (whole model) from a local .safetensors file and
    ``model.backbone.pretrained`` from a .safetensors URL."""
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.utils.checkpoint import save_safetensors
    local = save_safetensors(env['arrays'], str(env['base'] / 'whole.safetensors'))
    backbone = {k[len('backbone.'):]: v for k, v in env['arrays'].items()
                if k.startswith('backbone.')}
    save_safetensors(backbone, str(server.root / 'r18.safetensors'))
    monkeypatch.setenv('SEG_CACHE_DIR', str(env['base'] / 'cache'))
    cfg = Config(env['cfg'], opts=['model.pretrained=' + local], for_training=True)
    _assert_state(SegBuilder(cfg).model.state_dict(), env['arrays'])
    cfg = Config(env['cfg'], opts=[
        'model.backbone.pretrained={}/r18.safetensors'.format(server.url)], for_training=True)
    _assert_state(SegBuilder(cfg).model.backbone.state_dict(), backbone)
    assert server.requests == ['/r18.safetensors']
