"""notebooks/quickstart.ipynb runs headless end to end on tiny settings.

The parameters cell is followed by an override cell (as papermill does):
tiny images, 2 training iterations, no installation, and every output in a
temporary folder, which is also the kernel's working folder; the repository
is not written to. The install cell is tested on its own: it installs
through utils/install_requirements.py, which keeps an installed paddle build.
Without nbclient/nbformat/ipykernel/matplotlib (requirements-dev.txt) the
tests that need them are skipped, naming the missing one.
"""

import importlib.util
import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'notebooks', 'quickstart.ipynb')


def need(module, where='requirements-dev.txt'):
    """``module``, or skip the test, naming the package that is missing."""
    return pytest.importorskip(module, reason='{} is not installed ({})'.format(module, where))


def _code_cells():
    with open(NOTEBOOK) as f:
        return [''.join(c['source']) for c in json.load(f)['cells']
                if c['cell_type'] == 'code']


def _overrides(tmp_path):
    values = dict(REPO_DIR=ROOT, DATA_DIR=str(tmp_path / 'data'),
                  OUTPUT_DIR=str(tmp_path / 'out'), INSTALL=False, NUM_TRAIN=2,
                  NUM_VAL=2, HEIGHT=64, WIDTH=128, ITERS=2, BATCH_SIZE=2,
                  NUM_SHOW=2, DEVICE='cpu')
    return '\n'.join('{} = {!r}'.format(k, v) for k, v in values.items())


def test_parameters_cell_is_tagged_and_first_code_cell():
    nbformat = need('nbformat')
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == 'code']
    assert 'parameters' in code[0].metadata.get('tags', [])
    assert all(not c.get('outputs') for c in code)  # stored without outputs


def test_notebook_runs_on_tiny_settings(tmp_path):
    nbformat, nbclient = need('nbformat'), need('nbclient')
    for module in ('ipykernel', 'matplotlib'):  # the kernel; the pictures
        need(module)
    need('cityscapesscripts', 'requirements.txt')  # the official evaluation cell
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells)
                 if 'parameters' in c.metadata.get('tags', []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(_overrides(tmp_path)))
    work = tmp_path / 'work'
    work.mkdir()
    before = {p: os.path.exists(os.path.join(ROOT, p))
              for p in ('data/demo', 'output/quickstart')}
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name='python3',
                                     resources={'metadata': {'path': str(work)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
    assert not [o for o in outputs if o.output_type == 'error']
    text = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
    assert 'requirements: all there' in text or 'missing (INSTALL is False)' in text
    assert 'official mIoU (averageScoreClasses)' in text
    pictures = [o for o in outputs if o.output_type == 'display_data'
                and 'image/png' in o.data]
    assert len(pictures) == 2  # the image grid and the class legend

    out = tmp_path / 'out'
    metrics = json.load(open(out / 'metrics.json'))
    assert 0.0 <= metrics['miou'] <= 1.0
    assert os.path.isfile(out / 'train' / 'best_model' / 'model.pdparams')
    assert len(list((out / 'cityscapes_val').rglob('*_pred_labelIds.png'))) == 2
    assert len(list((out / 'result' / 'added_prediction').rglob('*.jpg'))) == 2
    assert (tmp_path / 'data' / 'val.txt').is_file()
    # the official mIoU printed equals ours
    official = float(text.split('official mIoU (averageScoreClasses): ')[1].split()[0])
    assert official == pytest.approx(metrics['miou'], abs=1e-4)
    assert not os.listdir(work)  # nothing written to the working folder
    assert before == {p: os.path.exists(os.path.join(ROOT, p)) for p in before}


@pytest.mark.parametrize('install', [True, False])
def test_install_cell_installs_through_the_tool_that_keeps_paddle(tmp_path, monkeypatch,
                                                                  install):
    """The install cell (run here with a module reported missing) calls
    utils/install_requirements.py, as run.sh does; that exact command, with
    --dry-run, leaves the installed paddle alone and adds matplotlib."""
    cells = _code_cells()
    setup = next(c for c in cells if 'def run(' in c)
    install_cell = next(c for c in cells if 'MODULES = ' in c)
    assert '%pip' not in install_cell and 'pip install' not in install_cell
    ns = {'REPO_DIR': ROOT, 'DATA_DIR': str(tmp_path / 'data'),
          'OUTPUT_DIR': str(tmp_path / 'out'), 'INSTALL': install}
    exec(setup, ns)
    calls = []
    ns['run'] = lambda script, *args, **kwargs: calls.append([script] + list(args))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'visualdl' else real(name, *a))
    exec(install_cell, ns)
    if not install:
        assert calls == []
        return
    assert calls == [['utils/install_requirements.py', os.path.join(ROOT, 'requirements.txt'),
                      '--add', 'matplotlib']]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, calls[0][0])] + calls[0][1:] +
                          ['--dry-run'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pip = shlex.split(proc.stdout.splitlines()[-1])
    assert pip[:3] == [sys.executable, '-m', 'pip'] and pip[-1] == 'matplotlib'
    assert 'opencv-python-headless>=4.8' in pip
    # this environment has paddle: its build is kept, no paddlepaddle wheel
    assert not [a for a in pip if a.startswith('paddlepaddle')]
    assert 'keeping the installed paddlepaddle' in proc.stdout
