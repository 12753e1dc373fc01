"""The package installs on its own: pyproject.toml + setup.py, no import of
the repository root, no import cycle. It installs ``paddleseg`` only: the
seed's ``lr_scheduler/`` stays a folder of the repository (``from
lr_scheduler import ...`` from the repository root), never a top-level
package in site-packages."""

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib

import pytest
import setuptools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_module():
    spec = importlib.util.spec_from_file_location(
        '_seg_setup', os.path.join(ROOT, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() runs only as __main__
    return module


def _run(code, cwd, env):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=300)


IMPORT_CHECK = """
    import importlib.util, sys
    import paddleseg.cvlibs.builder as builder
    assert 'lr_scheduler' not in sys.modules, 'the builder imported lr_scheduler'
    schedule = builder.resolve_component('PolynomialDecay', ('lr_scheduler',))
    from paddleseg.cvlibs import Config, SegBuilder, manager
    from paddleseg.optimizers.lr import PolynomialDecay
    assert PolynomialDecay is schedule
    assert importlib.util.find_spec('train') is None   # the repo root is not on sys.path
    assert importlib.util.find_spec('lr_scheduler') is None, 'lr_scheduler was installed'
    print(schedule.__module__)
"""


def test_the_package_imports_without_the_repository_root(tmp_path):
    site = tmp_path / 'site'
    site.mkdir()
    os.symlink(os.path.join(ROOT, 'paddleseg'), str(site / 'paddleseg'))
    env = dict(os.environ, PYTHONPATH=str(site))
    result = _run(IMPORT_CHECK, tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == 'paddleseg.optimizers.lr'


def test_lr_scheduler_imported_first_has_no_cycle(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = _run("""
        from lr_scheduler.poly_warmup import PolynomialDecay
        from lr_scheduler.paddle_schedules import CosineAnnealingDecay
        from paddleseg.cvlibs import manager
        assert manager.LR_SCHEDULERS['PolynomialDecay'] is PolynomialDecay
        assert manager.LR_SCHEDULERS['CosineAnnealingDecay'] is CosineAnnealingDecay
        import lr_scheduler   # the seed's import, from the repository root
        assert lr_scheduler.PolynomialDecay is PolynomialDecay
    """, tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_packages_are_every_package_under_paddleseg_and_nothing_else():
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as handle:
        project = tomllib.load(handle)
    assert project['project']['name'] == 'paddleseg'
    find = project['tool']['setuptools']['packages']['find']
    found = set(setuptools.find_packages(ROOT, include=find['include'],
                                         exclude=find.get('exclude', ())))
    on_disk = {os.path.relpath(folder, ROOT).replace(os.sep, '.')
               for folder, _, files in os.walk(os.path.join(ROOT, 'paddleseg'))
               if '__init__.py' in files}
    assert 'paddleseg.optimizers' in on_disk and 'paddleseg.cvlibs' in on_disk
    assert found == on_disk
    # the seed's folder is in the repository, but not in the distribution
    assert os.path.isfile(os.path.join(ROOT, 'lr_scheduler', '__init__.py'))
    assert not any(name.split('.')[0] == 'lr_scheduler' for name in found)


def test_dependencies_are_the_requirements_but_paddle():
    setup = _setup_module()
    requirements = setup.read_requirements(os.path.join(ROOT, 'requirements.txt'))
    others, paddle = setup.split_paddle(requirements)
    assert paddle and all(line.lower().startswith('paddlepaddle')
                          for line in paddle)
    assert others and not any('paddlepaddle' in line.lower() for line in others)
    assert sorted(others + paddle) == sorted(requirements)
    assert any(line.startswith('numpy') for line in others)


def test_requirement_file_parsing(tmp_path):
    (tmp_path / 'base.txt').write_text('numpy>=1.26  # arrays\n--index-url x\n')
    (tmp_path / 'req.txt').write_text(textwrap.dedent("""\
        # a comment
        paddlepaddle-gpu==3.3.1
        -r base.txt

        PaddlePaddle>=3 ; python_version >= "3.9"
        paddlepaddle_extra>=1
        pyyaml>=6.0
        """))
    setup = _setup_module()
    requirements = setup.read_requirements(str(tmp_path / 'req.txt'))
    assert requirements == ['paddlepaddle-gpu==3.3.1', 'numpy>=1.26',
                            'PaddlePaddle>=3 ; python_version >= "3.9"',
                            'paddlepaddle_extra>=1', 'pyyaml>=6.0']
    others, paddle = setup.split_paddle(requirements)
    assert paddle == ['paddlepaddle-gpu==3.3.1',
                      'PaddlePaddle>=3 ; python_version >= "3.9"']
    assert others == ['numpy>=1.26', 'paddlepaddle_extra>=1', 'pyyaml>=6.0']


@pytest.mark.opt_in
@pytest.mark.skipif(os.environ.get('SEG_TEST_INSTALL') != '1',
                    reason='pip install into a venv (about a minute, may '
                           'fetch setuptools and wheel from PyPI); set '
                           'SEG_TEST_INSTALL=1')
def test_pip_install_editable_into_a_venv(tmp_path):
    """``pip install --no-deps -e .`` of a copy of the package files in a
    ``--system-site-packages`` venv, then the import check from elsewhere
    (``lr_scheduler/`` is copied too: the install must leave it out)."""
    source = tmp_path / 'src'
    source.mkdir()
    for name in ('pyproject.toml', 'setup.py', 'requirements.txt', 'README.md'):
        shutil.copy(os.path.join(ROOT, name), str(source / name))
    for name in ('paddleseg', 'lr_scheduler'):
        shutil.copytree(os.path.join(ROOT, name), str(source / name),
                        ignore=shutil.ignore_patterns('__pycache__'))
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages',
                    '--without-pip', str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    command = [python, '-m', 'pip', 'install', '-q', '--no-deps', '-e',
               str(source)]
    if importlib.util.find_spec('wheel') is not None:
        command.insert(-2, '--no-build-isolation')
    subprocess.run(command, check=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run([python, '-c', textwrap.dedent(IMPORT_CHECK)],
                            cwd=str(tmp_path), env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    result = subprocess.run([python, '-m', 'pip', 'show', 'paddleseg'],
                            capture_output=True, text=True, check=True)
    requires = [line for line in result.stdout.splitlines()
                if line.startswith('Requires: ')]
    assert len(requires) == 1 and 'numpy' in requires[0]
    assert 'paddlepaddle' not in requires[0].lower()


# -------------------------------------------------------------- layers, sizes

LOWER_PACKAGES = ('models', 'cvlibs', 'utils', 'transforms', 'datasets',
                  'optimizers')
"""Below paddleseg.core: they never import it (nor cli, nor deploy)."""

ABOVE = {'lower': ('paddleseg.core', 'paddleseg.cli', 'paddleseg.deploy'),
         'core': ('paddleseg.cli', 'paddleseg.deploy')}


def _modules(*parts):
    for part in parts:
        path = os.path.join(ROOT, 'paddleseg', part)
        if path.endswith('.py'):
            yield path
            continue
        for folder, _, files in os.walk(path):
            yield from (os.path.join(folder, name) for name in sorted(files)
                        if name.endswith('.py'))


def _imported_names(path):
    """Every module ``path`` imports (at any depth, also inside functions)
    or names to importlib / __import__ as a constant string (a
    ``'module:attr'`` string counts too)."""
    import ast
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from ('{}.{}'.format(node.module, alias.name)
                        for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(
                node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            name = getattr(func, 'attr', None) or getattr(func, 'id', None)
            if name in ('import_module', '__import__', 'find_spec'):
                yield node.args[0].value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and ':' in node.value and node.value.startswith('paddleseg.'):
            yield node.value.partition(':')[0]


def _offending(paths, forbidden):
    """``'<file>: <module>'`` for each import of a ``forbidden`` package."""
    return sorted('{}: {}'.format(os.path.relpath(path, ROOT), name)
                  for path in paths for name in _imported_names(path)
                  if any(name == f or name.startswith(f + '.') for f in forbidden))


def test_layers_point_down_only():
    lower = list(_modules(*LOWER_PACKAGES, 'errors.py'))
    assert len(lower) > 40
    assert _offending(lower, ABOVE['lower']) == []
    assert _offending(_modules('core'), ABOVE['core']) == []


def test_the_import_scan_sees_imports_inside_functions(tmp_path):
    path = tmp_path / 'm.py'
    path.write_text('def f():\n    from paddleseg.core.val import evaluate\n'
                    "    importlib.import_module('paddleseg.core')\n"
                    "R = 'paddleseg.core.val:evaluate'\n")
    assert [line.split(': ')[1] for line in _offending([str(path)], ABOVE['lower'])] == [
        'paddleseg.core', 'paddleseg.core.val', 'paddleseg.core.val',
        'paddleseg.core.val.evaluate']


REGISTRIES_ONLY = """
    import sys
    from paddleseg.cvlibs import manager
    config_modules = [name for name in sys.modules if name.startswith(
        ('paddleseg.optimizers', 'paddleseg.core', 'paddleseg.cvlibs.'))
        and name != 'paddleseg.cvlibs.manager']
    assert config_modules == [], config_modules
    from paddleseg.cvlibs import Config, SegBuilder
    assert 'sgd' in manager.OPTIMIZERS and 'PolynomialDecay' in manager.LR_SCHEDULERS
    cfg = Config({path!r}, opts=['test_config={{is_slide: true, flip_vertical: true}}'],
                 for_training=True)
    assert SegBuilder(cfg).loss['coef']
    try:
        Config({path!r}, opts=['test_config={{is_slid: true}}'])
    except Exception as exc:
        assert 'paddleseg.core.val.evaluate has no argument' in str(exc), exc
    else:
        raise AssertionError('not refused')
    core = [name for name in sys.modules if name.startswith('paddleseg.core')]
    assert core == [], core
    print('ok')
"""


def test_the_registries_import_no_config_module_and_the_config_no_core(tmp_path):
    """``from paddleseg.cvlibs import manager`` (every component module
    does it) imports neither Config, SegBuilder, the schema nor the
    optimizers; checking and building a config with a ``test_config``
    imports no paddleseg.core."""
    path = os.path.join(ROOT, 'configs', 'pointrendfpn',
                        'pointrend_resnet101_os8_cityscapes_512x1024_80k.yml')
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = _run(REGISTRIES_ONLY.format(path=path), tmp_path, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith('ok')


OWNED = ('cvlibs', 'cli', 'utils', 'core/val.py', 'core/predict.py')
"""Modules held to the size rules here (the config stream's)."""


def _code_lines(source, node):
    """Lines of ``node`` that are neither blank, comments nor its docstring."""
    import ast
    first = node.body[0]
    doc = set()
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        doc = set(range(first.lineno, first.end_lineno + 1))
    lines = source.splitlines()[node.lineno - 1:node.end_lineno]
    return sum(1 for number, line in enumerate(lines, node.lineno)
               if line.strip() and not line.strip().startswith('#')
               and number not in doc)


@pytest.mark.parametrize('path', [os.path.join(ROOT, name) for name in
                                  ('train.py', 'val.py', 'predict.py')] +
                         list(_modules(*OWNED)),
                         ids=lambda path: os.path.relpath(path, ROOT))
def test_module_and_function_sizes(path):
    """At most 450 lines a module, 80 lines of code a function, and a
    module docstring saying what the module owns."""
    import ast
    source = open(path, encoding='utf-8').read()
    tree = ast.parse(source, path)
    assert len(source.splitlines()) <= 450
    assert ast.get_docstring(tree)
    long = {node.name: _code_lines(source, node) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and _code_lines(source, node) > 80}
    assert long == {}
