"""Side-by-side benchmark against PyPI paddleseg 2.8.0.

    python benchmarks/run.py [--quick] [--rounds N] [--repeat N] [--only TEXT] [--mkl both|same|as_run]
                             [--threads N] [--device cpu|gpu] [--write]

Makes (or reuses) a throw-away venv with paddleseg 2.8.0
(``benchmarks/ref_venv.sh``), then runs every measurement in a fresh process
per side, alternating the sides, on identical weights and inputs
(``bench_worker.py``), and prints a table of times, peak memory, ratios and
the max abs difference of the logits. ``--rounds N`` repeats each case N
times (sides alternating) for the median and the range of the ratios, which
a shared machine's drift makes worth having. ``--write`` appends the table, with
the machine and date, to benchmarks/BENCHMARKS.md. Nothing here is a test: the targets
are printed next to the measured ratios.

The engine cases run our model in every engine of val.py / predict.py
``--engine`` (dygraph, the exported program in Paddle Inference without and
with oneDNN, in ONNX Runtime fp32 and INT8, and in OpenVINO fp32, bf16 where
the CPU has it, and INT8; ``bench_worker.ENGINE_RUNS``) against PaddleSeg's
dygraph eval on the same input, one table line per engine, so the
low-precision engines' ratios sit beside each other in one run.

Each row names the CPU model, its instruction sets and the MKL code path
of each side (``benchmarks/machine.py``). On an AMD CPU, where Paddle's MKL
takes its generic SSE path unless told otherwise, PaddleSeg is measured on
both paths by default (``--mkl both``): the one ours takes (``same``) and
its own as its users run it (``as_run``), a row each.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# as the user started us: our side's workers get MKL_DEBUG_CPU_TYPE as our
# entry scripts set it (paddleseg.utils.env.tune_process, see run_worker),
# the PaddleSeg side only with --mkl same
ENV_BEFORE = dict(os.environ)
sys.path.insert(0, ROOT)
from paddleseg import mkl_dispatch  # noqa: E402
from paddleseg.utils.env import DEFAULT_MMAP_THRESHOLD, usable_cpu_count  # noqa: E402
sys.path.insert(0, HERE)
from machine import cpu_model, isa_text, machine_line, mkl_path_text  # noqa: E402
WORKER = os.path.join(HERE, 'bench_worker.py')
REPORT = os.path.join(HERE, 'BENCHMARKS.md')  # the measured tables, --write appends
DEFAULT_THREADS = 2  # the cases other than 'engine', without --threads


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--ref_venv', default=None,
                   help="the PaddleSeg 2.8.0 venv (default: ref_venv.sh's, the test "
                        "suite's too: $SEG_REF_VENV, else under ~/.cache/pointrend-paddle)")
    p.add_argument('--threads', type=int, default=None,
                   help='CPU threads of each side (default: {} for every case but the '
                        'engine cases, which use all cores: {} here)'.format(
                            DEFAULT_THREADS, usable_cpu_count()))
    p.add_argument('--device', default='cpu', choices=['cpu', 'gpu'])
    p.add_argument('--quick', action='store_true',
                   help='R18 at 256x512 and the data/metric tasks only, one repeat')
    p.add_argument('--repeat', type=int, default=None,
                   help='timed runs per case and side after the warm-up (median; '
                        'default 3, 1 with --quick)')
    p.add_argument('--rounds', type=int, default=1,
                   help='run each case this many times, alternating the sides, and '
                        'report the median per side with the range of the ratios')
    p.add_argument('--only', default='',
                   help='run only the cases whose name contains this text (or one of '
                        'several, comma-separated), e.g. "R101"')
    p.add_argument('--mkl', choices=['both', 'same', 'as_run'], default='both',
                   help="MKL's code path (paddleseg.mkl_dispatch): 'same' gives the "
                        "PaddleSeg side the one ours picks on this CPU, 'as_run' leaves "
                        "it MKL's own choice there, as PaddleSeg runs for its users; "
                        "'both' (default) measures PaddleSeg both ways where they "
                        "differ (AMD), a row each")
    p.add_argument('--write', action='store_true', help='append to benchmarks/BENCHMARKS.md')
    args = p.parse_args()
    if args.rounds < 1:
        p.error('--rounds must be at least 1')
    return args


# (name, task, options, targets: {'speedup': x, 'memory': ratio, 'base': ratio,
#  engine cases also 'agreement': share, 'miou_diff': difference})
def plan(quick):
    eval_goal = {'speedup': 1.6, 'base': 1.5}
    r18_train_goal = {'speedup': 1.2, 'memory': 0.6}
    cases = [
        ('eval R18 256x512', 'eval', dict(backbone='ResNet18_vd', height=256, width=512), eval_goal),
        ('train R18 b2 256x512', 'train', dict(backbone='ResNet18_vd', height=256, width=512, batch=2),
         r18_train_goal),
        ('pipeline 1024x2048 (per image, 1 core)', 'pipeline', dict(repeat=10), {'speedup': 1.5}),
        ('confusion matrix 1024x2048', 'confusion', dict(repeat=5), {'speedup': 20}),
        ('exported R18 256x512', 'export', dict(backbone='ResNet18_vd', height=256, width=512), None),
    ]
    if not quick:
        r101_goal = {'speedup': 1.25, 'base': 1.5}
        r101_train_goal = {'speedup': 1.1, 'memory': 0.6}
        cases[1:1] = [
            ('eval R18 512x1024', 'eval', dict(backbone='ResNet18_vd', height=512, width=1024), eval_goal),
            ('eval R101 256x512', 'eval', dict(backbone='ResNet101_vd', height=256, width=512), r101_goal),
            ('eval R101 512x1024', 'eval', dict(backbone='ResNet101_vd', height=512, width=1024), r101_goal),
        ]
        cases.insert(-2, ('train R101 b1 256x512', 'train', dict(
            backbone='ResNet101_vd', height=256, width=512, batch=1), r101_train_goal))
        # like for like: both sides with the mmap threshold that our training
        # sets by default (paddleseg.utils.env.tune_host_allocator)
        for depth, batch, goal in ((18, 2, r18_train_goal), (101, 1, r101_train_goal)):
            cases.insert(-2, ('train R{} b{} 256x512, both sides 4 MiB mmap threshold'.format(
                depth, batch), 'train', dict(backbone='ResNet{}_vd'.format(depth), height=256,
                                             width=512, batch=batch,
                                             mmap_threshold=DEFAULT_MMAP_THRESHOLD), goal))
    # the deployment issue: our engines (bench_worker.task_engine) against
    # PaddleSeg's dygraph eval, same structured input, all cores by default
    engine_goal = {'speedup': 4, 'agreement': 0.999, 'miou_diff': 1e-3}  # fp32 engines
    sizes = [('ResNet18_vd', 256, 512)] if quick else \
        [('ResNet101_vd', 512, 1024), ('ResNet101_vd', 1024, 2048)]
    for backbone, height, width in sizes:
        cases.append(('engine R{} {}x{}'.format(backbone[6:-3], height, width), 'engine',
                      dict(backbone=backbone, height=height, width=width, input='structured'),
                      engine_goal))
    return cases


def ref_python(venv):
    out = subprocess.run(['bash', os.path.join(HERE, 'ref_venv.sh')] + ([venv] if venv else []),
                         check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def side_env(side, mode):
    """The environment of a worker as started (:func:`run_worker` adds to
    ours the MKL path that our entry scripts' ``tune_process`` picks);
    PaddleSeg's likewise, plus with ``mode == 'same'`` that path."""
    env = dict(ENV_BEFORE)
    if side == 'paddleseg' and mode == 'same':
        mkl_dispatch.set_mkl_code_path(env)
    return env


def mkl_modes(mode):
    """The PaddleSeg MKL modes to measure: ``--mkl both`` is ['same',
    'as_run'] where they differ (AMD), ['same'] where they do not."""
    if mode != 'both':
        return [mode]
    differ = side_env('paddleseg', 'same') != side_env('paddleseg', 'as_run')
    return ['same', 'as_run'] if differ else ['same']


def row_label(name, mode):
    """The case name with the CPU, its instruction sets and each side's MKL
    path: every row says what it was measured on."""
    vendor, flags = mkl_dispatch.read_cpuinfo()
    ours = mkl_dispatch.set_mkl_code_path(side_env('ours', mode))
    theirs = side_env('paddleseg', mode).get(mkl_dispatch.VARIABLE)
    return '{} · {} ({}) · ours {}; PaddleSeg {}'.format(
        name, cpu_model(), isa_text(flags), mkl_path_text(ours, vendor),
        mkl_path_text(theirs, vendor) + (', as it runs' if mode == 'as_run' else ''))


def mkl_path(mode):
    """'MKL_DEBUG_CPU_TYPE ours=7, PaddleSeg=7' for the report."""
    ours = mkl_dispatch.set_mkl_code_path(side_env('ours', mode))  # what run_worker sets
    theirs = side_env('paddleseg', mode).get(mkl_dispatch.VARIABLE)
    return '{} ours={}, PaddleSeg={}'.format(mkl_dispatch.VARIABLE, ours, theirs)


def case_threads(args, task):
    """The CPU threads of both sides of a case: ``--threads`` if given, else
    all usable cores for the engine cases (the deployment issue measures
    them so) and :data:`DEFAULT_THREADS` for the others."""
    if args.threads is not None:
        return args.threads
    return usable_cpu_count() if task == 'engine' else DEFAULT_THREADS


def threads_text(args, cases):
    """'2 threads' or '2 threads (engine cases: 8)' for the report."""
    used = {task: case_threads(args, task) for _, task, _, _ in cases}
    other = sorted({n for task, n in used.items() if task != 'engine'})
    engine = used.get('engine')
    if not other:
        return '{} threads'.format(engine)
    text = '{} threads'.format(', '.join(map(str, other)))
    if engine is not None and engine not in other:
        text += ' (engine cases: {})'.format(engine)
    return text


def selected(args):
    wanted = args.only.split(',')
    return [c for c in plan(args.quick) if any(w in c[0] for w in wanted)]


def side_task(side, task):
    """The worker task of ``side`` for a case: PaddleSeg's side of an engine
    case is its dygraph eval."""
    return 'eval' if task == 'engine' and side == 'paddleseg' else task


def run_worker(python, side, task, opts, args, out, mode=None):
    cmd = [python, WORKER, '--side', side, '--task', side_task(side, task), '--out', out,
           '--threads', str(case_threads(args, task)), '--device', args.device]
    for key, value in opts.items():
        cmd += ['--' + key, str(value)]
    if args.repeat and 'repeat' not in opts:
        cmd += ['--repeat', str(args.repeat)]
    elif args.quick and 'repeat' not in opts:
        cmd += ['--repeat', '1']
    env = side_env(side, mode or mkl_modes(args.mkl)[0])
    if side == 'ours':  # as train.py/val.py run: tune_process's MKL path
        mkl_dispatch.set_mkl_code_path(env)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd='/tmp', env=env)
    if proc.returncode:
        return {'error': (proc.stderr or proc.stdout).strip().splitlines()[-1]}
    with open(out) as f:
        return json.load(f)


def make_pipeline_data(folder):
    import cv2
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((1024, 2048, 3)) * 255).astype(np.uint8),
                           (9, 9), 3)
    label = np.kron(rng.integers(0, 19, (16, 32)), np.ones((64, 64))).astype(np.uint8)
    cv2.imwrite(os.path.join(folder, 'image.png'), img)
    cv2.imwrite(os.path.join(folder, 'label.png'), label)


def measure(args, ref, tmp):
    """Every selected case, each PaddleSeg MKL mode (:func:`mkl_modes`) a
    row against the same runs of ours; the rows printed as they come."""
    rows = []
    cases = selected(args)
    if not cases:
        raise SystemExit('run.py: error: --only {!r} matches no case'.format(args.only))
    modes = mkl_modes(args.mkl)
    for name, task, opts, target in cases:
        if task == 'pipeline':
            opts = dict(opts, model_dir=tmp)
        rounds = {mode: [] for mode in modes}
        tag0 = '{}_0'.format(len(rows))
        for r in range(args.rounds):
            tag = '{}_{}'.format(len(rows), r)
            ours = run_worker(sys.executable, 'ours', task, opts, args,
                              os.path.join(tmp, 'ours_{}.json'.format(tag)), modes[0])
            for mode in modes:  # the first mode's files keep the plain names
                prefix = 'paddleseg' if mode == modes[0] else 'paddleseg-' + mode
                res = {'ours': ours, 'paddleseg': run_worker(
                    ref, 'paddleseg', task, opts, args,
                    os.path.join(tmp, '{}_{}.json'.format(prefix, tag)), mode)}
                if task == 'eval':
                    res['base'] = run_worker(ref, 'paddleseg', 'backbone_neck', opts, args,
                                             os.path.join(tmp, 'base-{}_{}.json'.format(
                                                 mode, tag)), mode)
                rounds[mode].append(res)
        diff = _logit_diff(tmp, tag0) if task in ('eval', 'engine') else None
        for mode in modes:
            res = combine(rounds[mode])
            if task == 'engine':
                res['vs_paddleseg'] = _class_map_agreement(tmp, tag0)
            rows.append((row_label(name, mode), task, res, target, diff))
            print(format_row(rows[-1]), flush=True)
    return rows


def combine(rounds):
    """One result per side from several rounds: the median time and peak
    memory over the rounds (the rest from the first), plus ``speedups``, the
    per-round ratios PaddleSeg / ours."""
    out = {}
    for side in rounds[0]:
        runs = [r[side] for r in rounds]
        failed = [run for run in runs if 'error' in run]
        if failed:
            out[side] = failed[0]
            continue
        out[side] = dict(runs[0])
        for key in ('seconds', 'peak_mb'):
            if all(key in run for run in runs):
                out[side][key] = float(np.median([run[key] for run in runs]))
    out['speedups'] = [r['paddleseg']['seconds'] / r['ours']['seconds'] for r in rounds
                       if 'seconds' in r['paddleseg'] and 'seconds' in r['ours']]
    if 'engines' in out.get('ours', {}):
        out['ours']['engines'], out['engine_speedups'] = _combine_engines(rounds)
    return out


def _combine_engines(rounds):
    """Our side of an engine case over the rounds, per engine: the median
    time and peak memory, the worst agreement and mIoU difference, or the
    first error (or reason it was not run); and the per-round ratios
    PaddleSeg dygraph / engine."""
    runs = [r['ours']['engines'] for r in rounds]
    engines, speedups = {}, {}
    for name in runs[0]:
        got = [run.get(name, {'error': 'missing'}) for run in runs]
        failed = [g for g in got if 'seconds' not in g]
        if failed:
            engines[name] = dict(failed[0])
            continue
        engines[name] = dict(got[0])
        for key in ('seconds', 'peak_mb'):
            values = [g.get(key) for g in got]
            if all(isinstance(v, (int, float)) for v in values):
                engines[name][key] = float(np.median(values))
        engines[name]['agreement'] = min(g['agreement'] for g in got)
        engines[name]['miou_diff'] = max(g['miou_diff'] for g in got)
        speedups[name] = [r['paddleseg']['seconds'] / g['seconds']
                          for r, g in zip(rounds, got) if 'seconds' in r['paddleseg']]
    return engines, speedups


def _class_map_agreement(tmp, tag):
    """Share of pixels where the argmax of our dygraph logits equals
    PaddleSeg's (None without both)."""
    try:
        a = np.load(os.path.join(tmp, 'ours_{}.json.npy'.format(tag)))
        b = np.load(os.path.join(tmp, 'paddleseg_{}.json.npy'.format(tag)))
    except OSError:
        return None
    return float((a.argmax(1) == b.argmax(1)).mean())


def _logit_diff(tmp, tag):
    try:
        a = np.load(os.path.join(tmp, 'ours_{}.json.npy'.format(tag)))
        b = np.load(os.path.join(tmp, 'paddleseg_{}.json.npy'.format(tag)))
    except OSError:
        return None
    return float(np.abs(a - b).max())


HEADER = ('| case | ours s | PaddleSeg s | speedup | ours peak MB | PaddleSeg peak MB '
          '| memory ratio | ours / PaddleSeg backbone+neck | max abs logit diff | target |\n'
          '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')


def format_export(name, ours, ref):
    """Exported model: paddle.inference without / with oneDNN against dygraph."""
    def cell(side, key):
        if side.get(key):
            return '{:.3f} s ({:.2f}x dygraph)'.format(side[key], side['seconds'] / side[key])
        return 'fails: ' + side.get(key + '_error', side.get('export_error', '?'))
    parts = []
    for label, side in (('ours', ours), ('PaddleSeg', ref)):
        parts.append('{}: dygraph {:.3f} s; inference {}; oneDNN {}; oneDNN without '
                     'onednn_placement_pass {}'.format(
                         label, side['seconds'], cell(side, 'inference'),
                         cell(side, 'onednn'), cell(side, 'onednn_workaround')))
    return '| {} | {} |'.format(name, ' <br> '.join(parts))


def _speed_cell(speed, spread):
    """'2.00x', or '2.00x (1.50-2.50 in 2 rounds)' with several rounds."""
    return '{:.2f}x'.format(speed) + (' ({:.2f}-{:.2f} in {} rounds)'.format(
        min(spread), max(spread), len(spread)) if len(spread) > 1 else '')


def format_engines(name, res, target, diff):
    """An engine case: one table line per engine of ours against
    PaddleSeg's dygraph eval (its time in 'PaddleSeg s' on every line).

    The last cell holds the engine's agreement with our dygraph class map
    (share of equal pixels) and its mIoU difference (see
    ``bench_worker.task_engine``), then the verdicts. The dygraph line holds
    instead how its class map agrees with PaddleSeg's (argmax of PaddleSeg's
    logits), its logits' max abs difference, and how varied the map is."""
    ours, ref = res['ours'], res['paddleseg']
    target = target or {}
    ref_s = ref.get('seconds')
    ref_cell = '{:.4f}'.format(ref_s) if ref_s is not None else 'fails: ' + ref.get('error', '?')
    ref_mb = ref.get('peak_mb')
    lines = []
    for engine, r in ours['engines'].items():
        label = '{}: {}'.format(name, engine)
        if 'error' in r or 'not_run' in r:  # not run: not for this machine, no verdict
            failed = 'error' in r
            lines.append('| {} | {} | {} | | | {} | | | | {} |'.format(
                label, 'fails: ' + r['error'] if failed else 'not run: ' + r['not_run'],
                ref_cell, '' if ref_mb is None else '{:.0f}'.format(ref_mb),
                'NOT met (fails)' if target and failed else ''))
            continue
        speed = ref_s / r['seconds'] if ref_s else None
        speed_cell = '' if speed is None else _speed_cell(
            speed, res.get('engine_speedups', {}).get(engine, []))
        mem = ' | | '
        if r.get('peak_mb') is not None and ref_mb is not None:
            mem = '{:.0f} | {:.0f} | {:.2f}'.format(r['peak_mb'], ref_mb,
                                                    r['peak_mb'] / max(ref_mb, 1e-9))
        elif r.get('peak_mb') is not None:
            mem = '{:.0f} | | '.format(r['peak_mb'])
        if engine == 'dygraph':
            vs = res.get('vs_paddleseg')
            notes = ['reference class map']
            if vs is not None:
                notes.append('agreement with PaddleSeg {:.4%}'.format(vs))
            if 'classes_in_dygraph_map' in ours:
                notes.append('{} classes, largest {:.1%} of pixels'.format(
                    ours['classes_in_dygraph_map'], ours['largest_class_share']))
            goals = _engine_goals({'speedup': target['speedup']} if 'speedup' in target
                                  else {}, speed, r)
            logit = '' if diff is None else '{:.1e}'.format(diff)
        else:
            notes = ['agreement {:.4%}, mIoU diff {:.1e}'.format(r['agreement'], r['miou_diff'])]
            notes += [r['note']] if r.get('note') else []
            if r.get('precision', 'fp32') != 'fp32' and target:
                notes.append(LOW_PRECISION_NOTE)
                goals = _engine_goals(LOW_PRECISION_GOAL, speed, r)
            else:
                goals = _engine_goals(target, speed, r)
            logit = ''
        lines.append('| {} | {:.4f} | {} | {} | {} | | {} | {} |'.format(
            label, r['seconds'], ref_cell, speed_cell, mem, logit,
            '; '.join(notes + goals)))
    return '\n'.join(lines)


LOW_PRECISION_GOAL = {'speedup': 8, 'stretch': 12}
"""The low-precision engines' goal (issue 20): >= 8x PaddleSeg 2.8.0's
dygraph eval, 12x the stretch (set for a CPU with AMX). Their agreement is
judged on a trained model (:data:`LOW_PRECISION_NOTE`), not here."""

LOW_PRECISION_NOTE = ('random weights: near-ties everywhere, so no agreement verdict; '
                      'the trained model\'s is benchmarks/low_precision.py\'s')


def _engine_goals(target, speed, r):
    """'speedup >= 4x met', 'agreement >= 99.9% NOT met', 'mIoU diff <= 1e-3 met'
    ('stretch >= 12x met' where the target has a stretch)."""
    def verdict(ok):
        return 'met' if ok else 'NOT met'
    out = []
    for key, word in (('speedup', 'speedup'), ('stretch', 'stretch')):
        if key in target:
            out.append('{} >= {}x {}'.format(
                word, target[key], verdict(speed is not None and speed >= target[key])))
    if 'agreement' in target:
        out.append('agreement >= {:g}% {}'.format(
            100 * target['agreement'], verdict(r['agreement'] >= target['agreement'])))
    if 'miou_diff' in target:
        out.append('mIoU diff <= {:g} {}'.format(
            target['miou_diff'], verdict(r['miou_diff'] <= target['miou_diff'])))
    return out


def format_row(row):
    name, task, res, target, diff = row
    ours, ref = res['ours'], res['paddleseg']
    if task == 'engine' and 'engines' in ours:
        return format_engines(name, res, target, diff)
    if task == 'export' and 'error' not in ours and 'error' not in ref:
        return format_export(name, ours, ref)
    if 'error' in ours or 'error' in ref:
        return '| {} | {} | {} | | | | | | | |'.format(
            name, ours.get('error', ''), ref.get('error', ''))
    speed = ref['seconds'] / ours['seconds']
    mem = ''
    if 'peak_mb' in ours:
        mem = '{:.0f} | {:.0f} | {:.2f}'.format(ours['peak_mb'], ref['peak_mb'],
                                                ours['peak_mb'] / max(ref['peak_mb'], 1e-9))
    else:
        mem = ' | | '
    base = ''
    if 'base' in res and 'seconds' in res['base']:
        base = '{:.2f} (PaddleSeg: {:.2f})'.format(
            ours['seconds'] / res['base']['seconds'],
            ref['seconds'] / res['base']['seconds'])
    goal = '; '.join(_goals(target or {}, speed, ours, ref, res.get('base')))
    speed_cell = _speed_cell(speed, res.get('speedups', []))
    return '| {} | {:.4f} | {:.4f} | {} | {} | {} | {} | {} |'.format(
        name, ours['seconds'], ref['seconds'], speed_cell, mem, base,
        '' if diff is None else '{:.1e}'.format(diff), goal)


def _goals(target, speed, ours, ref, base):
    """'speed >= 1.6x met; memory <= 0.6 NOT met; ...' for the targets of a row."""
    def verdict(ok):
        return 'met' if ok else 'NOT met'
    out = []
    if 'speedup' in target:
        out.append('speed >= {}x {}'.format(target['speedup'], verdict(speed >= target['speedup'])))
    if 'memory' in target and 'peak_mb' in ours:
        ratio = ours['peak_mb'] / max(ref['peak_mb'], 1e-9)
        out.append('memory <= {} {}'.format(target['memory'], verdict(ratio <= target['memory'])))
    if 'base' in target and base and 'seconds' in base:
        ratio = ours['seconds'] / base['seconds']
        out.append('ours/backbone+neck <= {} {}'.format(target['base'], verdict(ratio <= target['base'])))
    return out


def machine():
    """The heading's machine: CPU model, instruction sets, cores, versions."""
    return machine_line()


def main():
    args = parse_args()
    ref = ref_python(args.ref_venv)
    with tempfile.TemporaryDirectory() as tmp:
        make_pipeline_data(tmp)
        print('{}; {}; {}'.format(machine(), ', '.join(
            mkl_path(m) for m in mkl_modes(args.mkl)), threads_text(args, selected(args))))
        print(HEADER)
        rows = measure(args, ref, tmp)
    table = '\n'.join([HEADER] + [format_row(r) for r in rows])
    if args.write:
        with open(REPORT, 'a') as f:
            f.write('\n## {} — {}, {}, {}, {}\n\n{}\n'.format(
                datetime.date.today().isoformat(), machine(),
                threads_text(args, selected(args)),
                args.device, ' / '.join(mkl_path(m) for m in mkl_modes(args.mkl)), table))
        print('appended to', os.path.relpath(REPORT, ROOT))


if __name__ == '__main__':
    main()
