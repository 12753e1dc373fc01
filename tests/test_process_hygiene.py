"""The library leaves the process it runs in alone; the entry scripts tune
theirs through one function (paddleseg.utils.env.tune_process)."""

import json
import os
import re
import subprocess
import sys

import pytest

from paddleseg import mkl_dispatch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    """tests/helpers/hygiene_driver.py's report, from a fresh interpreter whose
    environment has none of the variables tune_process sets, nor
    OMP_NUM_THREADS (more OpenMP threads than cores make Intel OpenMP start
    with a block time of 0, and the control below wants its default, 200)."""
    base = tmp_path_factory.mktemp('hygiene')
    env = {k: v for k, v in os.environ.items()
           if k not in (mkl_dispatch.VARIABLE, 'KMP_BLOCKTIME', 'SEG_MMAP_THRESHOLD',
                        'OMP_NUM_THREADS')}
    env.update(SEG_CPU_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.run([sys.executable, os.path.join(HERE, 'helpers', 'hygiene_driver.py'), str(base)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith('REPORT ')][-1]
    return dict(json.loads(line[len('REPORT '):]), log=proc.stdout)


def test_import_build_and_forward_change_no_environment_variable(report):
    assert report['import_build_forward_env'] == []


@pytest.mark.parametrize('run, raised', [
    ('full', None),                      # loader workers, evaluations, VisualDL
    ('sigterm', 'TrainingInterrupted'),  # SIGTERM during the run: saved and raised
    ('nan', 'NonFiniteLossError'),
    ('stalled', None),                   # stall_timeout without a watchdog
])
def test_core_train_restores_what_it_touched(report, run, raised):
    got = report[run]
    assert got['raised'] == raised
    assert got['env'] == []
    assert got['handlers'] == []         # SIGINT, SIGTERM and SIGCHLD as found
    assert got['hooks'] == []            # threading.excepthook and sys.excepthook
    assert got['calls'] == []            # no mallopt, no kmp_set_blocktime
    assert got['blocktime'][0] == got['blocktime'][1]
    assert got['watchdogs'] == []        # no watchdog thread left behind


def test_library_stall_watchdog_only_reports(report):
    """A step slower than ``stall_timeout``: an error line, and the run
    still finishes (the process is not ended)."""
    assert re.search(r'\[ERROR\] no progress for 0.5 s in iter 2 \(a stuck collective',
                     report['log'])
    assert report['stalled']['raised'] is None


def test_tune_process_is_what_changes_them(report):
    """The control: the probes above do see tune_process's changes."""
    got = report['tune_process']
    expected = {'KMP_BLOCKTIME'}
    if mkl_dispatch.mkl_cpu_type(*mkl_dispatch.read_cpuinfo()) is not None:
        expected.add(mkl_dispatch.VARIABLE)
    assert set(got['env']) == expected
    assert got['calls'] == ['mallopt', 'kmp_set_blocktime']
    assert got['blocktime'] == [200, 0]
