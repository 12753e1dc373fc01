"""utils/install_requirements.py: an installed PaddlePaddle build (GPU, XPU,
any distribution that provides ``paddle``) is never replaced by the CPU
wheel of requirements.txt; without one, requirements.txt is installed as is.

The decision is tested on its own and through ``bash run.sh`` with
``--dry-run`` (which prints the pip command instead of running it) in a
fresh virtual environment, with and without a fake ``paddlepaddle-gpu`` on
its path. Nothing is downloaded.
"""

import os
import shlex
import subprocess
import sys
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'utils'))
import install_requirements as tool  # noqa: E402

REQS = ['paddlepaddle==3.3.1', 'numpy>=1.26', 'opencv-python-headless>=4.8', 'pyyaml>=6.0']


def fake_dist(site, name, version, files=(), top_level=None, record=True):
    """A ``<name>-<version>.dist-info`` in ``site`` (and the files it lists)."""
    info = site / '{}-{}.dist-info'.format(name.replace('-', '_'), version)
    info.mkdir(parents=True)
    (info / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: {}\nVersion: {}\n'.format(name, version))
    if top_level is not None:
        (info / 'top_level.txt').write_text(''.join(t + '\n' for t in top_level))
    if record:
        (info / 'RECORD').write_text(''.join(
            '{},,\n'.format(f) for f in list(files) + [info.name + '/METADATA']))
    for f in files:
        (site / f).parent.mkdir(parents=True, exist_ok=True)
        (site / f).write_text('')
    return site


def fake_paddle_gpu(site, version='3.3.1'):
    return fake_dist(site, 'paddlepaddle-gpu', version,
                     ['paddle/__init__.py', 'paddle/base/core.py'], top_level=['paddle'])


# -- the decision --------------------------------------------------------------

@pytest.mark.parametrize('line, expected', [
    ('paddlepaddle==3.3.1', True), ('paddlepaddle-gpu==3.3.1', True),
    ('PaddlePaddle_GPU>=3.0', True), ('paddlepaddle-xpu', True), ('paddlepaddle', True),
    ('paddle2onnx>=1.0', False), ('paddleseg==2.8.0', False), ('pyyaml>=6.0', False),
    ('-r requirements.txt', False), ('--extra-index-url http://x/paddlepaddle', False),
])
def test_which_lines_name_a_paddle_build(line, expected):
    assert tool.is_paddle_build(line) is expected


def test_nothing_installed_keeps_every_line():
    lines, messages = tool.plan(REQS, [])
    assert lines == REQS and messages == []


def test_an_installed_gpu_build_drops_only_the_paddle_line():
    lines, messages = tool.plan(REQS, [('paddlepaddle-gpu', '3.3.1')])
    assert lines == REQS[1:]  # the others, in their order
    assert messages == [('out', 'install_requirements.py: keeping the installed '
                         'paddlepaddle-gpu 3.3.1 (provides `paddle`); not installing '
                         'paddlepaddle==3.3.1')]


def test_an_edited_gpu_line_is_dropped_too_and_the_rest_kept():
    reqs = ['paddlepaddle-gpu==3.3.1'] + REQS[1:]
    assert tool.plan(reqs, [('paddlepaddle-gpu', '3.0.0')])[0] == REQS[1:]
    assert tool.plan(reqs, [])[0] == reqs


def test_a_paddle_2_build_is_kept_with_one_warning_line():
    lines, messages = tool.plan(REQS, [('paddlepaddle-gpu', '2.6.2')])
    assert lines == REQS[1:]
    warnings = [text for stream, text in messages if stream == 'err']
    assert len(warnings) == 1 and '\n' not in warnings[0]
    assert 'paddlepaddle-gpu 2.6.2 is not PaddlePaddle 3.x' in warnings[0]
    # 3.x: no warning
    assert [s for s, _ in tool.plan(REQS, [('paddlepaddle-xpu', '3.1.0')])[1]] == ['out']


def test_installed_paddle_finds_the_distributions_that_provide_paddle(tmp_path):
    assert tool.installed_paddle([str(tmp_path)]) == []
    fake_dist(tmp_path, 'numpy', '2.1.0', ['numpy/__init__.py'], top_level=['numpy'])
    # a plugin that only adds files below paddle/ does not provide paddle
    fake_dist(tmp_path, 'paddle-plugin', '1.0', ['paddle/plugins/x.so', 'plug/__init__.py'],
              top_level=['plug'])
    assert tool.installed_paddle([str(tmp_path)]) == []
    fake_paddle_gpu(tmp_path)
    assert tool.installed_paddle([str(tmp_path)]) == [('paddlepaddle-gpu', '3.3.1')]
    # no RECORD: top_level.txt decides
    other = fake_dist(tmp_path / 'other', 'paddlepaddle-xpu', '3.2.0', top_level=['paddle'],
                      record=False)
    assert tool.installed_paddle([str(tmp_path), str(other)]) == [
        ('paddlepaddle-gpu', '3.3.1'), ('paddlepaddle-xpu', '3.2.0')]


def test_this_environment_has_its_paddle_found():
    """The paddle these tests run with is found, under its own name."""
    import importlib.metadata
    names = importlib.metadata.packages_distributions()['paddle']
    found = tool.installed_paddle()
    assert found and {name for name, _ in found} <= set(names)


def test_requirement_files_are_read_with_includes_and_without_comments(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'base.txt').write_text(
        '# a comment\npaddlepaddle==3.3.1  # CPU build\n\nnumpy>=1.26\n')
    (tmp_path / 'dev.txt').write_text('-r sub/base.txt\npytest>=7.0\n')
    assert tool.read_requirements(tmp_path / 'dev.txt') == [
        'paddlepaddle==3.3.1', 'numpy>=1.26', 'pytest>=7.0']
    (tmp_path / 'loop.txt').write_text('-r loop.txt\n')
    with pytest.raises(ValueError, match='cycle'):
        tool.read_requirements(tmp_path / 'loop.txt')


def test_the_repository_files_name_the_cpu_wheel_once():
    reqs = tool.read_requirements(os.path.join(ROOT, 'requirements.txt'))
    dev = tool.read_requirements(os.path.join(ROOT, 'requirements-dev.txt'))
    assert [r for r in reqs if tool.is_paddle_build(r)] == ['paddlepaddle==3.3.1']
    assert dev[:len(reqs)] == reqs and 'pytest>=7.0' in dev


# -- the real command path: bash run.sh ... --dry-run --------------------------

@pytest.fixture(scope='module')
def bare_python(tmp_path_factory):
    """The python of a new virtual environment without site packages (so no
    paddle) and without pip: the tool needs only the standard library."""
    home = tmp_path_factory.mktemp('venv')
    venv.create(str(home), with_pip=False, system_site_packages=False)
    return str(home / 'bin' / 'python')


def _run_sh(python, *args, site=None):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    env['PYTHON'] = python
    if site is not None:
        env['PYTHONPATH'] = str(site)
    return subprocess.run(['bash', os.path.join(ROOT, 'run.sh')] + list(args), env=env,
                          capture_output=True, text=True, timeout=120)


def _pip_args(proc, python):
    """The requirements of the one pip command ``--dry-run`` printed."""
    commands = [line for line in proc.stdout.splitlines() if ' -m pip ' in line]
    assert len(commands) == 1, proc.stdout + proc.stderr
    words = shlex.split(commands[0])
    head = [python, '-m', 'pip'] + tool.PIP_OPTIONS
    assert words[:len(head)] == head
    return words[len(head):]


def test_run_sh_install_without_paddle_installs_the_cpu_wheel(bare_python):
    proc = _run_sh(bare_python, 'install', '--dry-run')
    assert proc.returncode == 0, proc.stderr
    assert _pip_args(proc, bare_python) == tool.read_requirements(
        os.path.join(ROOT, 'requirements.txt'))
    assert 'paddlepaddle==3.3.1' in _pip_args(proc, bare_python)
    assert 'keeping' not in proc.stdout and proc.stderr == ''


def test_run_sh_install_keeps_an_installed_paddlepaddle_gpu(bare_python, tmp_path):
    site = fake_paddle_gpu(tmp_path / 'site')
    proc = _run_sh(bare_python, 'install', '--dry-run', site=site)
    assert proc.returncode == 0, proc.stderr
    args = _pip_args(proc, bare_python)
    assert not [a for a in args if a.startswith('paddlepaddle')]
    assert args == [r for r in tool.read_requirements(os.path.join(ROOT, 'requirements.txt'))
                    if not r.startswith('paddlepaddle')]
    assert 'keeping the installed paddlepaddle-gpu 3.3.1' in proc.stdout
    assert proc.stderr == ''


def test_run_sh_install_warns_about_a_paddle_2_gpu_build(bare_python, tmp_path):
    site = fake_paddle_gpu(tmp_path / 'site', version='2.6.2')
    proc = _run_sh(bare_python, 'install', '--dry-run', site=site)
    assert proc.returncode == 0, proc.stderr
    assert not [a for a in _pip_args(proc, bare_python) if a.startswith('paddlepaddle')]
    assert len(proc.stderr.splitlines()) == 1
    assert 'warning: paddlepaddle-gpu 2.6.2 is not PaddlePaddle 3.x' in proc.stderr


def test_run_sh_test_and_test_gpu_install_through_the_tool(tmp_path):
    """``test`` and ``test-gpu`` call the tool on requirements-dev.txt, then
    pytest on tests/ or tests/gpu (a recording stand-in for python)."""
    log = tmp_path / 'calls'
    recorder = tmp_path / 'python'
    recorder.write_text('#!/bin/sh\necho "$*" >> {}\n'.format(shlex.quote(str(log))))
    recorder.chmod(0o755)
    for target, runs in (('test-gpu', ['tests/gpu']),
                         ('test', ['tests --durations=25'])):
        log.write_text('')
        proc = _run_sh(str(recorder), target, '-x')
        assert proc.returncode == 0, proc.stderr
        assert log.read_text().splitlines() == [
            'utils/install_requirements.py requirements-dev.txt'] + [
            '-m pytest -q {} -x'.format(tests) for tests in runs]
    with open(os.path.join(ROOT, 'run.sh')) as f:
        assert 'pip install' not in f.read()  # pip only through the tool
