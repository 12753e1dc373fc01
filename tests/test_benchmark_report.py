"""The benchmark's report (benchmarks/run.py): how rounds combine and what a
row says. Nothing is timed here; the inputs are made-up worker results."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'benchmarks'))
import run as bench  # noqa: E402


def _round(ours, ref, ours_mb=100.0, ref_mb=400.0, base=None):
    res = {'ours': {'seconds': ours, 'peak_mb': ours_mb, 'times': [ours]},
           'paddleseg': {'seconds': ref, 'peak_mb': ref_mb, 'times': [ref]}}
    if base is not None:
        res['base'] = {'seconds': base}
    return res


def test_rounds_give_the_median_per_side_and_every_ratio():
    rounds = [_round(2.0, 5.0, 100, 400, base=1.0), _round(4.0, 6.0, 300, 500, base=3.0),
              _round(3.0, 3.0, 200, 600, base=2.0)]
    res = bench.combine(rounds)
    assert res['ours']['seconds'] == 3.0 and res['paddleseg']['seconds'] == 5.0
    assert res['ours']['peak_mb'] == 200 and res['paddleseg']['peak_mb'] == 500
    assert res['base']['seconds'] == 2.0
    assert res['speedups'] == pytest.approx([2.5, 1.5, 1.0])
    assert res['ours']['times'] == [2.0]  # the rest comes from the first round


def test_a_failed_round_is_reported_not_averaged():
    rounds = [_round(2.0, 5.0), {'ours': {'error': 'MemoryError'},
                                 'paddleseg': {'seconds': 4.0}}]
    res = bench.combine(rounds)
    assert res['ours'] == {'error': 'MemoryError'}
    assert res['speedups'] == [2.5]
    row = bench.format_row(('eval X', 'eval', res, None, None))
    assert row.startswith('| eval X | MemoryError |')


def test_row_shows_ratios_range_and_verdicts():
    res = bench.combine([_round(2.0, 5.0, 100, 400, base=1.5),
                         _round(2.0, 3.0, 100, 400, base=1.5)])
    row = bench.format_row(('eval R18', 'eval', res, {'speedup': 1.6, 'memory': 0.3,
                                                      'base': 1.5}, 6e-7))
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[:4] == ['eval R18', '2.0000', '4.0000', '2.00x (1.50-2.50 in 2 rounds)']
    assert cells[4:7] == ['100', '400', '0.25']
    assert cells[7] == '1.33 (PaddleSeg: 2.67)'
    assert cells[8] == '6.0e-07'
    assert cells[9] == ('speed >= 1.6x met; memory <= 0.3 met; '
                        'ours/backbone+neck <= 1.5 met')
    single = bench.format_row(('t', 'train', bench.combine([_round(4.0, 4.4)]),
                               {'speedup': 1.2}, None))
    assert '| 1.10x |' in single and 'speed >= 1.2x NOT met' in single


def test_mkl_path_of_each_side(monkeypatch):
    """'same' gives PaddleSeg the MKL path our import picks on this CPU;
    'as_run' leaves it MKL's own choice there, and ours always picks itself."""
    from paddleseg import mkl_dispatch as md
    monkeypatch.setattr(bench, 'ENV_BEFORE', {'PATH': '/bin'})
    picked = md.mkl_cpu_type(*md.read_cpuinfo())
    assert bench.side_env('ours', 'same') == {'PATH': '/bin'}
    assert bench.side_env('paddleseg', 'as_run') == {'PATH': '/bin'}
    same = bench.side_env('paddleseg', 'same')
    assert same.get(md.VARIABLE) == picked and same['PATH'] == '/bin'
    assert bench.mkl_path('as_run') == 'MKL_DEBUG_CPU_TYPE ours={}, PaddleSeg=None'.format(picked)
    monkeypatch.setattr(bench, 'ENV_BEFORE', {md.VARIABLE: ''})  # the user's opt-out
    assert bench.mkl_path('same') == 'MKL_DEBUG_CPU_TYPE ours=, PaddleSeg='
