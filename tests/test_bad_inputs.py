"""Every row of the bad-input table (docs/troubleshooting.md), through the real entry scripts.

Each case runs train.py, val.py or predict.py (in-process through ``main``,
a few also as a subprocess) on one bad input and checks: the exit status,
exactly one line on stderr that starts with ``<script>: error:`` and names
the file or key, no traceback; with ``--debug`` a traceback as well; and that
what was on disk before is still there.
"""

import glob
import io
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap

import cv2
import numpy as np
import paddle
import pytest

import predict as predict_cli
import train as train_cli
import val as val_cli
from robust_helpers import (ENV, ROOT, make_data, one_error_line, own_lines, run_cli,
                            train_args, write_config)

CLIS = {'train.py': train_cli, 'val.py': val_cli, 'predict.py': predict_cli}


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    from paddleseg.cvlibs import Config, SegBuilder
    from paddleseg.utils.checkpoint import save_checkpoint
    base = tmp_path_factory.mktemp('bad')
    root = make_data(base / 'cs')
    cfg = write_config(base / 'ok.yml', root)
    model = SegBuilder(Config(cfg, for_training=True)).model
    weights = base / 'model.pdparams'
    paddle.save(model.state_dict(), str(weights))
    ckpt = base / 'ckpt'
    save_checkpoint({'model.pdparams': model.state_dict(), 'model.pdopt': {'step': paddle.zeros([1])}},
                    ckpt / 'iter_1', meta={'iter': 1, 'seed': 3})
    return {'base': base, 'root': root, 'cfg': cfg, 'weights': str(weights),
            'ckpt': ckpt}


def _fresh_data(env, name):
    """A copy of the dataset that a case may break."""
    root = env['base'] / name
    if not root.exists():
        shutil.copytree(env['root'], root)
    return root


def _train_files(root, kind):
    folder = 'leftImg8bit' if kind == 'image' else 'gtFine'
    return sorted(glob.glob(os.path.join(str(root), folder, 'train', '*', '*.png')))


def _list_lines(root):
    """``image label`` lines of the train split, relative to ``root``."""
    return ['{} {}'.format(os.path.relpath(i, root), os.path.relpath(l, root))
            for i, l in zip(_train_files(root, 'image'), _train_files(root, 'label'))]


def _with_list(env, name, lines):
    root = _fresh_data(env, name)
    (root / 'train.txt').write_text(''.join(line + '\n' for line in lines))
    return root


def _data_case(env, name, root):
    """train.py on the config pointed at ``root``."""
    cfg = write_config(env['base'] / (name + '.yml'), str(root))
    return train_args(cfg, env['base'] / ('out_' + name))


# -- the cases: name -> (script, function(env) -> (argv, [expected texts]), status)

def no_config(env):
    return [], ['the following arguments are required: --config']


def config_missing(env):
    path = env['base'] / 'nope.yml'
    return train_args(path, env['base'] / 'o'), ['{}: config file not found'.format(path)]


def yaml_syntax(env):
    path = env['base'] / 'broken.yml'
    path.write_text('batch_size: 1\nmodel:\n  type: [PointRendFPN\n  backbone: {}\n')
    return train_args(path, env['base'] / 'o'), ['{}: line 4: invalid YAML'.format(path)]


def unknown_type(env):
    path = write_config(env['base'] / 'unknown_type.yml', env['root'])
    text = open(path).read().replace('type: ResNet18_vd', 'type: ResNet19_vd')
    open(path, 'w').write(text)
    return train_args(path, env['base'] / 'o'), [
        "model.backbone: unknown backbones type 'ResNet19_vd'; known: ", 'ResNet18_vd']


def opts_misspelled(env):
    return train_args(env['cfg'], env['base'] / 'o', '--opts', 'model.point_num_point=8'), [
        "model.point_num_point: unknown key 'point_num_point'",
        "did you mean 'point_num_points'?"]


def base_cycle(env):
    a, b = env['base'] / 'cycle_a.yml', env['base'] / 'cycle_b.yml'
    a.write_text('_base_: cycle_b.yml\n')
    b.write_text('_base_: cycle_a.yml\n')
    return train_args(a, env['base'] / 'o'), ['inheritance cycle: ', 'cycle_a.yml', 'cycle_b.yml']


def num_classes_mismatch(env):
    return train_args(env['cfg'], env['base'] / 'o', '--opts', 'model.num_classes=5'), [
        'model.num_classes: is 5 but train_dataset has 19 classes']


def bad_flag_value(env):
    return train_args(env['cfg'], env['base'] / 'o', '--iters', 'many'), [
        "argument --iters: invalid int value: 'many'"]


def dataset_root_missing(env):
    gone = env['base'] / 'no_such_folder'
    return train_args(env['cfg'], env['base'] / 'o', '--opts',
                      'train_dataset.dataset_root={}'.format(gone)), [
        'dataset_root {} does not exist'.format(gone)]


def list_missing_image(env):
    lines = _list_lines(env['root'])
    lines[1] = 'leftImg8bit/train/city1/gone.png ' + lines[1].split()[1]
    root = _with_list(env, 'list_missing_image', lines)
    return _data_case(env, 'list_missing_image', root), [
        '{}:2: image file {} does not exist'.format(
            root / 'train.txt', root / 'leftImg8bit/train/city1/gone.png')]


def list_missing_label(env):
    lines = _list_lines(env['root'])
    lines[2] = lines[2].split()[0] + ' gtFine/train/gone.png'
    root = _with_list(env, 'list_missing_label', lines)
    return _data_case(env, 'list_missing_label', root), [
        '{}:3: label file {} does not exist'.format(root / 'train.txt',
                                                   root / 'gtFine/train/gone.png')]


def list_malformed_line(env):
    lines = _list_lines(env['root'])
    lines[0] = lines[0] + ' extra_column'
    root = _with_list(env, 'list_malformed', lines)
    return _data_case(env, 'list_malformed', root), ['{}:1: expected '.format(root / 'train.txt')]


def list_empty(env):
    root = _with_list(env, 'list_empty', [])
    return _data_case(env, 'list_empty', root), [
        'file list {} is empty'.format(root / 'train.txt')]


def too_few_images(env):
    return train_args(env['cfg'], env['base'] / 'o', '--batch_size', '8'), [
        'the dataset has 4 samples, fewer than one batch of 8']


def label_other_size(env):
    root = _fresh_data(env, 'label_size')
    for path in _train_files(root, 'label'):
        cv2.imwrite(path, np.zeros((16, 32), np.uint8))
    return _data_case(env, 'label_size', root), [
        'is 16x32 (h x w) but image ', 'is 32x64', str(root / 'gtFine' / 'train')]


def label_values(env):
    root = _fresh_data(env, 'label_values')
    for path in _train_files(root, 'label'):
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        label[5, 5] = 30
        cv2.imwrite(path, label)
    return _data_case(env, 'label_values', root), [
        'has values [30] that are neither < num_classes (19) nor ignore_index (255)',
        str(root / 'gtFine' / 'train')]


def corrupt_png(env):
    root = _fresh_data(env, 'corrupt_png')
    for path in _train_files(root, 'image'):
        with open(path, 'r+b') as f:
            f.seek(40)
            f.write(b'\x00' * 64)
    return _data_case(env, 'corrupt_png', root), [
        'cannot read image ' + str(root / 'leftImg8bit' / 'train')]


def truncated_jpeg(env):
    root = _fresh_data(env, 'truncated_jpeg')
    lines = []
    for image, label in zip(_train_files(root, 'image'), _train_files(root, 'label')):
        data = cv2.imencode('.jpg', cv2.imread(image))[1].tobytes()
        jpeg = image[:-4] + '.jpg'
        with open(jpeg, 'wb') as f:
            f.write(data[:len(data) * 2 // 3])
        lines.append('{} {}'.format(os.path.relpath(jpeg, root), os.path.relpath(label, root)))
    (root / 'train.txt').write_text('\n'.join(lines) + '\n')
    return _data_case(env, 'truncated_jpeg', root), [
        'is a truncated JPEG', str(root / 'leftImg8bit' / 'train')]


def save_dir_is_a_file(env):
    path = env['base'] / 'a_file'
    path.write_text('x')
    return train_args(env['cfg'], path), ['--save_dir {}: cannot create it'.format(path)]


def model_path_missing(env):
    path = env['base'] / 'nowhere.pdparams'
    return ['--config', env['cfg'], '--device', 'cpu', '--model_path', str(path)], [
        'Weights file not found: {}'.format(path)]


def model_path_not_weights(env):
    path = env['base'] / 'notes.pdparams'
    path.write_text('these are not weights\n')
    return ['--config', env['cfg'], '--device', 'cpu', '--model_path', str(path)], [
        'Cannot read checkpoint {}'.format(path)]


def model_path_other_model(env):
    path = env['base'] / 'linear.pdparams'
    paddle.save(paddle.nn.Linear(2, 3).state_dict(), str(path))
    return ['--config', env['cfg'], '--device', 'cpu', '--model_path', str(path)], [
        '{} does not fit PointRend: '.format(path), ' missing: backbone.',
        '2 unexpected: weight, bias']


def resume_without_meta(env):
    half = env['base'] / 'half' / 'iter_1'
    if not half.exists():
        shutil.copytree(env['ckpt'] / 'iter_1', half)
        os.remove(half / 'meta.json')
        os.remove(half / 'model.pdopt')  # with it, the folder is a PaddleSeg checkpoint
    return train_args(env['cfg'], env['base'] / 'o', '--resume_model', half), [
        '{} is not a complete checkpoint: cannot read meta.json'.format(half)]


def resume_truncated(env):
    ckpt = env['base'] / 'truncated' / 'iter_1'
    if not ckpt.exists():
        shutil.copytree(env['ckpt'] / 'iter_1', ckpt)
        size = os.path.getsize(ckpt / 'model.pdparams')
        os.truncate(ckpt / 'model.pdparams', size // 2)
    return train_args(env['cfg'], env['base'] / 'o', '--resume_model', ckpt), [
        'Cannot read checkpoint {} (truncated'.format(ckpt / 'model.pdparams')]


def predict_empty_folder(env):
    folder = env['base'] / 'empty'
    folder.mkdir(exist_ok=True)
    return ['--config', env['cfg'], '--device', 'cpu', '--model_path', env['weights'],
            '--image_path', str(folder)], ['{}: no images found'.format(folder)]


def predict_no_images(env):
    folder = env['base'] / 'not_images'
    folder.mkdir(exist_ok=True)
    (folder / 'readme.txt').write_text('hello')
    (folder / 'data.csv').write_text('1,2')
    return ['--config', env['cfg'], '--device', 'cpu', '--model_path', env['weights'],
            '--image_path', str(folder)], ['{}: no images found'.format(folder)]


def pretrained_404(env):
    url = env['server'].url + '/resnet18_vd_ssld.tar.gz'
    return train_args(env['cfg'], env['base'] / 'o', '--opts',
                      'model.backbone.pretrained=' + url), [
        'Cannot download {}: HTTP 404'.format(url)]


def pretrained_escaping_archive(env):
    data = b'evil'
    info = tarfile.TarInfo('../../escaped.pdparams')
    info.size = len(data)
    with tarfile.open(env['server'].root / 'evil_w.tar.gz', 'w:gz') as tar:
        tar.addfile(info, io.BytesIO(data))
    url = env['server'].url + '/evil_w.tar.gz'
    return train_args(env['cfg'], env['base'] / 'o', '--opts',
                      'model.backbone.pretrained=' + url), [
        'Refusing to unpack ', "member '../../escaped.pdparams' would be written outside"]


CASES = {
    'no_config': ('train.py', no_config),
    'config_missing': ('train.py', config_missing),
    'yaml_syntax': ('train.py', yaml_syntax),
    'unknown_type': ('train.py', unknown_type),
    'opts_misspelled': ('train.py', opts_misspelled),
    'base_cycle': ('train.py', base_cycle),
    'num_classes_mismatch': ('train.py', num_classes_mismatch),
    'bad_flag_value': ('train.py', bad_flag_value),
    'dataset_root_missing': ('train.py', dataset_root_missing),
    'list_missing_image': ('train.py', list_missing_image),
    'list_missing_label': ('train.py', list_missing_label),
    'list_malformed_line': ('train.py', list_malformed_line),
    'list_empty': ('train.py', list_empty),
    'too_few_images': ('train.py', too_few_images),
    'label_other_size': ('train.py', label_other_size),
    'label_values': ('train.py', label_values),
    'corrupt_png': ('train.py', corrupt_png),
    'truncated_jpeg': ('train.py', truncated_jpeg),
    'save_dir_is_a_file': ('train.py', save_dir_is_a_file),
    'model_path_missing': ('val.py', model_path_missing),
    'model_path_not_weights': ('val.py', model_path_not_weights),
    'model_path_other_model': ('val.py', model_path_other_model),
    'resume_without_meta': ('train.py', resume_without_meta),
    'resume_truncated': ('train.py', resume_truncated),
    'predict_empty_folder': ('predict.py', predict_empty_folder),
    'predict_no_images': ('predict.py', predict_no_images),
    'pretrained_404': ('train.py', pretrained_404),
    'pretrained_escaping_archive': ('train.py', pretrained_escaping_archive),
}
NO_TRACEBACK = {'no_config', 'bad_flag_value'}  # argparse: nothing to trace


def _snapshot(folder):
    """Every file under ``folder`` with its size and mtime."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def _run(name, env, capsys, debug=False):
    prog, make = CASES[name]
    argv, expected = make(env)
    argv = argv + (['--debug'] if debug else [])
    before = _snapshot(env['base'])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        CLIS[prog].main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    after = _snapshot(env['base'])
    assert {p: v for p, v in after.items() if p in before} == before  # nothing lost
    return prog, err, expected


@pytest.mark.parametrize('name', sorted(CASES))
def test_bad_input_gives_one_line(name, env, capsys, server, monkeypatch):
    monkeypatch.setenv('SEG_CACHE_DIR', str(server.root.parent / 'cache'))
    env['server'] = server
    prog, err, expected = _run(name, env, capsys)
    line = one_error_line(err, prog)
    for text in expected:
        assert text in line, line


@pytest.mark.parametrize('name', sorted(set(CASES) - NO_TRACEBACK))
def test_debug_shows_the_traceback(name, env, capsys, server, monkeypatch):
    monkeypatch.setenv('SEG_CACHE_DIR', str(server.root.parent / 'cache'))
    env['server'] = server
    prog, err, expected = _run(name, env, capsys, debug=True)
    assert 'Traceback (most recent call last)' in err
    last = own_lines(err)[-1]
    assert last.startswith(prog + ': error: ') and expected[0] in last


@pytest.mark.parametrize('name', ['label_other_size', 'truncated_jpeg'])
def test_errors_in_dataloader_workers_are_one_line_too(name, env):
    """The same errors raised in a DataLoader worker process (a real
    subprocess, --num_workers 1): still one line; --debug adds the worker's
    traceback."""
    argv, expected = CASES[name][1](env)
    proc = run_cli('train.py', *argv, '--num_workers', '1')
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc.stderr, 'train.py')
    for text in expected:
        assert text in line
    proc = run_cli('train.py', *argv, '--num_workers', '1', '--debug')
    assert proc.returncode == 2
    assert 'Where the data was loaded (DataLoader):' in proc.stderr
    assert 'in _read_label' in proc.stderr or 'in read_image' in proc.stderr


@pytest.mark.parametrize('omp_threads', [None, '3'])
def test_a_subprocess_run_prints_nothing_else(env, omp_threads):
    """Through a real interpreter (imports, warnings filters): one line, with
    OMP_NUM_THREADS unset or set (paddle then warns; that is not ours)."""
    omp = {'OMP_NUM_THREADS': omp_threads}
    first = run_cli('train.py', *CASES['yaml_syntax'][1](env)[0], env=omp)
    assert first.returncode == 2
    assert 'line 4: invalid YAML' in one_error_line(first.stderr, 'train.py')
    proc = run_cli('train.py', env=omp)
    assert proc.returncode == 2
    one_error_line(proc.stderr, 'train.py')
    if omp_threads:  # paddle 3.3.1 warns: the one line was found among others
        assert 'OMP_NUM_THREADS set to 3' in first.stderr, first.stderr


PADDLE_NOISE = (
    'WARNING: OMP_NUM_THREADS set to 2, not 1. The computation speed will not be optimized '
    'if you use data parallel. It will fail if this PaddlePaddle binary is compiled with '
    'OpenBlas since OpenBlas does not support multi-threads.\n'
    'PLEASE USE OMP_NUM_THREADS WISELY.\n'
    'I1202 11:31:17.123456  4242 init.cc:233] ENV [CUSTOM_DEVICE_ROOT]=\n'
    'W1202 11:31:18.000001 4242 gpu_resources.cc:119] Please NOTE: device: 0, '
    'GPU Compute Capability: 8.0, Driver API Version: 12.4, Runtime API Version: 11.8\n'
    'E20261202 11:31:18.500000 77 dynamic_loader.cc:301] The third-party dynamic library '
    '(libcudnn.so) that Paddle depends on is not configured correctly.\n')


def test_own_lines_drops_paddles_noise_and_nothing_else():
    ours = ['train.py: error: no.yml: config file not found']
    assert own_lines(PADDLE_NOISE + ours[0] + '\n') == ours
    assert own_lines(ours[0] + '\n\n' + PADDLE_NOISE) == ours
    assert one_error_line(PADDLE_NOISE + ours[0] + '\n', 'train.py') == ours[0]
    kept = ['Traceback (most recent call last):',
            '  File "train.py", line 1, in <module>',
            'UserWarning: OMP_NUM_THREADS set to 2',
            'WARNING: OMP_NUM_THREADS set to 2, by the cluster',
            'PLEASE USE OMP_NUM_THREADS WISELY. Or not.',
            'I1202 is a line of ours',
            'W1202 11:31:18 4242 gpu.cc:1] (not glog: no microseconds)',
            '  I1202 11:31:17.123456  4242 init.cc:233] (indented)',
            ' 50%|#####     | 1/2 [00:01<00:01]']
    assert own_lines('\n'.join(kept) + '\n' + PADDLE_NOISE) == kept
    # \r ends a line too (progress bars redraw with it)
    assert own_lines(' 10%|#\r 20%|##\r\n') == [' 10%|#', ' 20%|##']
    with pytest.raises(AssertionError):
        one_error_line(PADDLE_NOISE + 'train.py: error: x\ntrain.py: error: y\n', 'train.py')


def test_tests_and_their_subprocesses_run_on_cpu():
    assert paddle.get_device() == 'cpu'
    # conftest.py hides CUDA devices from what the tests start themselves,
    # robust_helpers.ENV from the runs of the scripts
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '' == ENV['CUDA_VISIBLE_DEVICES']


def test_the_cpu_pin_spares_tests_marked_gpu(tmp_path):
    """tests/conftest.py: tests run on CPU with no CUDA device visible to
    their subprocesses, set up before their module-scoped fixtures; a test
    marked ``gpu`` gets the session's CUDA_VISIBLE_DEVICES and paddle's
    default device back, and the next CPU test is pinned again."""
    (tmp_path / 'test_pin.py').write_text(textwrap.dedent('''
        import os

        import paddle
        import pytest

        import conftest


        @pytest.fixture(scope='module')
        def at_module_setup():
            return paddle.get_device(), os.environ.get('CUDA_VISIBLE_DEVICES')


        def test_a_cpu(at_module_setup):
            assert at_module_setup == ('cpu', '')
            assert paddle.get_device() == 'cpu'


        @pytest.mark.gpu
        def test_b_gpu():
            assert os.environ['CUDA_VISIBLE_DEVICES'] == '7'
            assert paddle.get_device() == conftest._DEFAULT_DEVICE


        def test_c_cpu_again():
            assert (paddle.get_device(), os.environ['CUDA_VISIBLE_DEVICES']) == ('cpu', '')
    '''))
    environ = dict(ENV, CUDA_VISIBLE_DEVICES='7', PYTHONPATH=os.path.join(ROOT, 'tests'))
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           '-p', 'conftest', '-c', os.path.join(ROOT, 'pyproject.toml'),
                           '--rootdir', str(tmp_path), '--strict-markers',
                           str(tmp_path / 'test_pin.py')],
                          cwd=str(tmp_path), env=environ, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '3 passed' in proc.stdout, proc.stdout


def test_predict_names_unreadable_images_and_does_the_others(env, capsys):
    folder = env['base'] / 'mixed'
    folder.mkdir(exist_ok=True)
    good = _train_files(env['root'], 'image')[:2]
    for i, path in enumerate(good):
        shutil.copy(path, folder / 'good{}.png'.format(i))
    (folder / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 100)
    out = env['base'] / 'mixed_out'
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        predict_cli.main(['--config', env['cfg'], '--device', 'cpu', '--model_path',
                          env['weights'], '--image_path', str(folder),
                          '--save_dir', str(out)])
    assert exc.value.code == 1
    line = one_error_line(capsys.readouterr().err, 'predict.py')
    assert 'skipped {}'.format(folder / 'bad.png') in line
    assert sorted(os.listdir(out / 'pseudo_color_prediction')) == ['good0.png', 'good1.png']


@pytest.mark.parametrize('exc, with_type, line', [
    (ValueError('first\nsecond'), False, 'first'),
    (ValueError('  padded  \n'), True, 'ValueError: padded'),
    (RuntimeError(''), False, 'RuntimeError'),
    (RuntimeError(''), True, 'RuntimeError'),
    (KeyError('key'), True, "KeyError: 'key'"),
])
def test_first_line_is_the_one_line_every_message_quotes(exc, with_type, line):
    from paddleseg.errors import first_line
    assert first_line(exc, with_type) == line


@pytest.mark.parametrize('exc, line', [
    (RuntimeError('Exception from core.cpp:117:\nCheck failed\n\n  the cause  \n\n'),
     'the cause'),
    (ValueError('one'), 'one'),
    (RuntimeError(' \n '), 'RuntimeError'),
])
def test_last_line_is_where_the_runtimes_put_the_cause(exc, line):
    from paddleseg.errors import last_line
    assert last_line(exc) == line
