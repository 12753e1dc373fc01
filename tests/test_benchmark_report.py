"""The benchmark's report (benchmarks/run.py): how rounds combine and what a
row says, engine cases included; and the engine task's agreement measure
(benchmarks/bench_worker.py). Nothing is timed here; the inputs are made-up
worker results."""

import os
import sys

import numpy as np
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


def _engine_round(ref, dygraph, inference, onednn, onnx, agreement=1.0, miou_diff=0.0):
    """A made-up engine case round: PaddleSeg's dygraph eval and our
    engines; an engine given as a string failed with that error."""
    def engine(value, agree=1.0, diff=0.0):
        if isinstance(value, str):
            return {'error': value}
        return {'seconds': value, 'times': [value], 'peak_mb': 50.0,
                'agreement': agree, 'miou_diff': diff}
    return {'ours': {'engines': {'dygraph': engine(dygraph),
                                 'inference': engine(inference, agreement, miou_diff),
                                 'inference+oneDNN': engine(onednn, agreement, miou_diff),
                                 'onnx': engine(onnx, agreement, miou_diff)},
                     'classes_in_dygraph_map': 4, 'largest_class_share': 0.9},
            'paddleseg': {'seconds': ref, 'peak_mb': 400.0, 'times': [ref]}}


ENGINE_GOAL = {'speedup': 4, 'agreement': 0.999, 'miou_diff': 1e-3}


def _lines(row):
    return {line.split('|')[1].strip(): [c.strip() for c in line.strip('|').split('|')]
            for line in row.splitlines()}


def test_engine_rounds_give_the_median_per_engine_the_worst_agreement_and_errors():
    rounds = [_engine_round(10.0, 5.0, 4.0, 2.0, 1.0, agreement=0.9995, miou_diff=2e-4),
              _engine_round(12.0, 6.0, 3.0, 'Unimplemented: oneDNN', 3.0,
                            agreement=0.9999, miou_diff=1e-5),
              _engine_round(8.0, 4.0, 2.0, 2.0, 2.0, agreement=0.998, miou_diff=5e-4)]
    res = bench.combine(rounds)
    engines = res['ours']['engines']
    assert res['paddleseg']['seconds'] == 10.0
    assert engines['dygraph']['seconds'] == 5.0 and engines['inference']['seconds'] == 3.0
    assert engines['onnx']['seconds'] == 2.0
    assert engines['inference']['agreement'] == 0.998  # the worst round
    assert engines['inference']['miou_diff'] == 5e-4
    assert engines['inference+oneDNN'] == {'error': 'Unimplemented: oneDNN'}
    assert res['engine_speedups']['onnx'] == pytest.approx([10.0, 4.0, 4.0])
    assert 'inference+oneDNN' not in res['engine_speedups']
    assert res['speedups'] == []  # no one 'seconds' on our side


def test_engine_row_has_a_line_per_engine_with_verdicts_and_errors():
    res = bench.combine([_engine_round(20.0, 10.0, 8.0, 'Unimplemented: oneDNN', 4.0,
                                       agreement=0.99995, miou_diff=2e-5)])
    res['vs_paddleseg'] = 0.99999
    row = bench.format_row(('engine R101 512x1024', 'engine', res, ENGINE_GOAL, 9.5e-6))
    lines = _lines(row)
    assert list(lines) == ['engine R101 512x1024: ' + e for e in
                           ('dygraph', 'inference', 'inference+oneDNN', 'onnx')]
    header_cells = bench.HEADER.splitlines()[0].count('|') - 1
    assert all(len(cells) == header_cells for cells in lines.values())
    dy = lines['engine R101 512x1024: dygraph']
    assert dy[1:7] == ['10.0000', '20.0000', '2.00x', '50', '400', '0.12']
    assert dy[8] == '9.5e-06'
    assert dy[9] == ('reference class map; agreement with PaddleSeg 99.9990%; '
                     '4 classes, largest 90.0% of pixels; speedup >= 4x NOT met')
    onnx = lines['engine R101 512x1024: onnx']
    assert onnx[1:4] == ['4.0000', '20.0000', '5.00x']
    assert onnx[9] == ('agreement 99.9950%, mIoU diff 2.0e-05; speedup >= 4x met; '
                       'agreement >= 99.9% met; mIoU diff <= 0.001 met')
    inference = lines['engine R101 512x1024: inference']
    assert inference[3] == '2.50x' and 'speedup >= 4x NOT met' in inference[9]
    failed = lines['engine R101 512x1024: inference+oneDNN']
    assert failed[1] == 'fails: Unimplemented: oneDNN' and failed[2] == '20.0000'
    assert failed[9] == 'NOT met (fails)'


def test_engine_row_flags_disagreement_and_shows_the_ratio_range():
    res = bench.combine([_engine_round(20.0, 10.0, 5.0, 4.0, 4.0, agreement=0.998,
                                       miou_diff=2e-3),
                         _engine_round(30.0, 10.0, 5.0, 4.0, 5.0, agreement=0.998,
                                       miou_diff=2e-3)])
    lines = _lines(bench.format_row(('engine X', 'engine', res, ENGINE_GOAL, None)))
    onnx = lines['engine X: onnx']
    assert onnx[1:4] == ['4.5000', '25.0000', '5.56x (5.00-6.00 in 2 rounds)']
    assert onnx[9].endswith('speedup >= 4x met; agreement >= 99.9% NOT met; '
                            'mIoU diff <= 0.001 NOT met')
    assert lines['engine X: dygraph'][8] == ''  # no logits compared


def test_low_precision_engines_are_judged_on_issue_20s_speed_goal_not_agreement():
    """int8/bf16 rows: >= 8x and the 12x stretch against PaddleSeg; their
    random-weight agreement is shown without a verdict (near-ties)."""
    res_round = _engine_round(20.0, 10.0, 8.0, 6.0, 4.0)
    res_round['ours']['engines']['openvino int8'] = {
        'seconds': 2.0, 'times': [2.0], 'peak_mb': 50.0, 'agreement': 0.92,
        'miou_diff': 0.02, 'precision': 'int8'}
    res_round['ours']['engines']['openvino bf16'] = {
        'seconds': 1.5, 'times': [1.5], 'peak_mb': 50.0, 'agreement': 0.97,
        'miou_diff': 0.01, 'precision': 'bf16'}
    res = bench.combine([res_round])
    lines = _lines(bench.format_row(('engine X', 'engine', res, ENGINE_GOAL, None)))
    int8 = lines['engine X: openvino int8'][9]
    assert int8 == ('agreement 92.0000%, mIoU diff 2.0e-02; ' + bench.LOW_PRECISION_NOTE +
                    '; speedup >= 8x met; stretch >= 12x NOT met')
    assert lines['engine X: openvino bf16'][9].endswith('speedup >= 8x met; stretch >= 12x met')
    assert lines['engine X: onnx'][9].endswith('speedup >= 4x met; agreement >= 99.9% met; '
                                               'mIoU diff <= 0.001 met')


def test_engine_not_run_here_has_its_reason_and_no_verdict_and_bf16_its_isa():
    """An engine the worker did not run on this machine (bf16 on a CPU
    without it) keeps its reason over the rounds and prints it without a
    verdict; a bf16 engine that ran names the ISA beside its agreement."""
    rounds = [_engine_round(20.0, 10.0, 5.0, 4.0, 4.0) for _ in range(2)]
    reason = 'no AMX-BF16 or AVX512-BF16 on this CPU'
    for r in rounds:
        r['ours']['engines']['openvino bf16'] = {'not_run': reason}
        r['ours']['engines']['openvino int8'] = {
            'seconds': 2.0, 'times': [2.0], 'peak_mb': 60.0, 'agreement': 0.99,
            'miou_diff': 2e-3, 'note': 'bf16 on AVX512-BF16'}
    res = bench.combine(rounds)
    assert res['ours']['engines']['openvino bf16'] == {'not_run': reason}
    assert 'openvino bf16' not in res['engine_speedups']
    lines = _lines(bench.format_row(('engine X', 'engine', res, ENGINE_GOAL, None)))
    assert list(lines)[-2:] == ['engine X: openvino bf16', 'engine X: openvino int8']
    skipped = lines['engine X: openvino bf16']
    assert skipped[1] == 'not run: ' + reason and skipped[2] == '20.0000'
    assert skipped[3] == '' and skipped[9] == ''
    assert len(skipped) == bench.HEADER.splitlines()[0].count('|') - 1
    ran = lines['engine X: openvino int8']
    assert ran[3] == '10.00x (10.00-10.00 in 2 rounds)'
    assert ran[9].startswith('agreement 99.0000%, mIoU diff 2.0e-03; bf16 on AVX512-BF16; '
                             'speedup >= 4x met')


def test_worker_runs_openvino_fp32_bf16_where_the_cpu_has_it_and_int8(monkeypatch):
    """The engine task's list: OpenVINO fp32 and bf16 on the float ONNX
    export, int8 on the quantized one, next to ONNX Runtime's; bf16 is
    left out, with its reason, where bf16_isa finds no bf16."""
    import bench_worker
    from paddleseg.utils import cpu
    runs = {name: (fmt, engine, options)
            for name, fmt, engine, options in bench_worker.ENGINE_RUNS}
    assert runs['openvino'] == ('onnx', 'openvino', {'precision': 'fp32'})
    assert runs['openvino bf16'] == ('onnx', 'openvino', {'precision': 'bf16'})
    assert runs['openvino int8'] == ('onnx_int8', 'openvino', {'precision': 'fp32'})
    assert runs['onnx int8'] == ('onnx_int8', 'onnx', {})
    names = [r[0] for r in bench_worker.ENGINE_RUNS]
    low = names.index('onnx int8')
    assert names[low:low + 4] == ['onnx int8', 'openvino', 'openvino bf16', 'openvino int8']
    monkeypatch.setattr(cpu, 'bf16_isa', lambda: None)
    assert 'bf16_isa' in bench_worker.not_run_reason({'precision': 'bf16'})
    assert bench_worker.not_run_reason({'precision': 'fp32'}) is None
    monkeypatch.setattr(cpu, 'bf16_isa', lambda: 'AVX512-BF16')
    assert bench_worker.not_run_reason({'precision': 'bf16'}) is None


def test_engine_case_failures_of_a_whole_side():
    ours_failed = bench.combine([{'ours': {'error': 'MemoryError'},
                                  'paddleseg': {'seconds': 3.0, 'peak_mb': 1.0}}])
    row = bench.format_row(('engine X', 'engine', ours_failed, ENGINE_GOAL, None))
    assert row.startswith('| engine X | MemoryError |') and '\n' not in row
    ref_failed = bench.combine([_engine_round(1.0, 1.0, 1.0, 1.0, 1.0)])
    ref_failed['paddleseg'] = {'error': 'TypeError: concat'}
    lines = _lines(bench.format_row(('engine X', 'engine', ref_failed, ENGINE_GOAL, None)))
    assert lines['engine X: onnx'][2] == 'fails: TypeError: concat'
    assert 'speedup >= 4x NOT met' in lines['engine X: onnx'][9]


def test_engine_cases_in_the_plan_use_all_cores_unless_threads_is_given(monkeypatch):
    import argparse
    quick = [c for c in bench.plan(True) if c[1] == 'engine']
    full = [c for c in bench.plan(False) if c[1] == 'engine']
    assert [c[0] for c in quick] == ['engine R18 256x512']
    assert [c[0] for c in full] == ['engine R101 512x1024', 'engine R101 1024x2048']
    assert full[1][2] == dict(backbone='ResNet101_vd', height=1024, width=2048,
                              input='structured')
    assert bench.side_task('paddleseg', 'engine') == 'eval'
    assert bench.side_task('ours', 'engine') == 'engine'
    assert bench.side_task('paddleseg', 'export') == 'export'
    monkeypatch.setattr(bench, 'usable_cpu_count', lambda: 8)
    args = argparse.Namespace(threads=None)
    assert bench.case_threads(args, 'engine') == 8
    assert bench.case_threads(args, 'eval') == bench.DEFAULT_THREADS == 2
    cases = bench.plan(True)
    assert bench.threads_text(args, cases) == '2 threads (engine cases: 8)'
    assert bench.threads_text(args, quick) == '8 threads'
    args.threads = 3
    assert bench.case_threads(args, 'engine') == 3 and bench.case_threads(args, 'train') == 3
    assert bench.threads_text(args, cases) == '3 threads'


def test_engine_agreement_and_miou_difference_of_the_worker():
    """bench_worker's measure: equal maps agree fully with no mIoU change;
    changed pixels lower the agreement by their share and move the mIoU
    against the synthetic labels (the reference with 10% random classes)."""
    import bench_worker
    from paddleseg.utils.metrics import confusion_matrix, metrics_from_confusion
    reference = np.kron(np.arange(4).reshape(2, 2), np.ones((50, 50), np.int32))[None]
    labels = bench_worker.noisy_labels(reference)
    assert labels.shape == reference.shape
    changed = float((labels != reference).mean())
    assert 0.08 < changed < 0.1  # 10% redrawn, 1 in 19 to the same class
    assert np.array_equal(labels, bench_worker.noisy_labels(reference))  # fixed generator
    assert bench_worker.engine_agreement(reference.copy(), reference, labels) == (1.0, 0.0)
    other = reference.copy()
    other[0, :10, :10] = 3  # 100 of 10000 pixels
    agreement, diff = bench_worker.engine_agreement(other, reference, labels)
    assert agreement == 0.99

    def miou(pred):
        return metrics_from_confusion(confusion_matrix(pred, labels, 19))['miou']
    assert diff == pytest.approx(abs(miou(other) - miou(reference))) and diff > 0
    x = bench_worker.structured_inputs(1, 32, 64)
    assert x.shape == (1, 3, 32, 64) and x.dtype == np.float32
    assert np.array_equal(x, bench_worker.structured_inputs(1, 32, 64))


def test_write_appends_to_the_tables_in_benchmarks():
    """``--write`` appends to benchmarks/BENCHMARKS.md, the one file of
    measured tables (docs/performance.md explains them)."""
    here = os.path.dirname(os.path.abspath(bench.__file__))
    assert bench.REPORT == os.path.join(here, 'BENCHMARKS.md')
    assert os.path.basename(here) == 'benchmarks' and os.path.isfile(bench.REPORT)
    root = os.path.dirname(here)
    assert not os.path.exists(os.path.join(root, 'BENCHMARKS.md'))



def test_rows_name_the_cpu_its_instruction_sets_and_each_sides_mkl_path(monkeypatch, tmp_path):
    """Every row label carries the CPU model, its ISA and both sides' MKL
    paths; on AMD, --mkl both measures PaddleSeg on ours and on its own."""
    import machine
    from paddleseg import mkl_dispatch as md
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\nflags\t\t: '
                       'sse avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl '
                       'avx512_vnni avx512_bf16\n')
    read = md.read_cpuinfo
    monkeypatch.setattr(md, 'read_cpuinfo', lambda path=None: read(str(cpuinfo)))
    assert machine.cpu_model(str(cpuinfo)) == 'AMD EPYC 9654'
    monkeypatch.setattr(bench, 'cpu_model', lambda: 'AMD EPYC 9654')
    monkeypatch.setattr(bench, 'ENV_BEFORE', {'PATH': '/bin'})
    assert bench.mkl_modes('both') == ['same', 'as_run']
    assert bench.mkl_modes('as_run') == ['as_run']
    same, as_run = bench.row_label('eval X', 'same'), bench.row_label('eval X', 'as_run')
    isa = 'AVX2, FMA, AVX-512F, AVX-512BW, AVX-512 VNNI, AVX-512 BF16; no AMX'
    assert same == ('eval X · AMD EPYC 9654 ({}) · ours MKL AVX-512 (MKL_DEBUG_CPU_TYPE=7); '
                    'PaddleSeg MKL AVX-512 (MKL_DEBUG_CPU_TYPE=7)'.format(isa))
    assert as_run.endswith('PaddleSeg MKL generic SSE path (MKL_DEBUG_CPU_TYPE unset), '
                           'as it runs')
    intel = tmp_path / 'intel'
    intel.write_text('vendor_id\t: GenuineIntel\nflags\t\t: avx2 fma avx512f\n')
    monkeypatch.setattr(md, 'read_cpuinfo', lambda path=None: read(str(intel)))
    assert bench.mkl_modes('both') == ['same']  # MKL picks Intel's path either way
    assert machine.isa_text({'avx2', 'fma', 'amx_tile', 'amx_int8'}) == 'AVX2, FMA, AMX, AMX-INT8'
    assert machine.mkl_path_text(None, 'GenuineIntel') == "MKL's own choice for this CPU"
