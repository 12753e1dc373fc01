"""docs/training_hooks.md: its example script runs as written, and the hook
it adds to ``paddleseg.core.train`` is called at each iteration and reads
the run's state (the step's loss, the evaluation's result)."""

import math
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, 'docs', 'training_hooks.md')


def _example():
    with open(DOC, encoding='utf-8') as f:
        blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
    assert len(blocks) == 1, 'docs/training_hooks.md should hold one python example'
    return blocks[0]


def test_the_documented_example_runs_and_its_hook_reads_the_state(capsys):
    namespace = {'__name__': '__doc_example__'}
    exec(compile(_example(), DOC, 'exec'), namespace)
    recorder, best, lr = namespace['recorder'], namespace['best'], namespace['lr']
    # called after every step, with the step's own iteration and loss
    assert sorted(recorder.losses) == [1, 2, 3, 4]
    assert all(math.isfinite(v) and v > 0 for v in recorder.losses.values())
    # the evaluations ran at save_interval and at the last iteration, and
    # the hook read each one's result from the state's storage
    assert sorted(recorder.mious) == [2, 4]
    assert all(0.0 <= v <= 1.0 for v in recorder.mious.values())
    assert best['miou'] == max(recorder.mious.values())
    assert best['iter'] in recorder.mious
    assert lr.last_epoch == 4  # the scheduler passed was stepped once per iteration
    out = capsys.readouterr().out
    assert 'losses {1: ' in out and 'mIoU at {2: ' in out
