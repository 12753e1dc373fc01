"""A long-ish run, cheap enough for CI: 200 iterations on 32x64 images with
an evaluation every 50, a checkpoint every 20 and 2 kept. The process's
memory stays flat after warm-up, exactly the kept checkpoints remain and
every log line is there. Marked ``soak`` (about 30 s on 2 CPU cores; run by
.ci/run like every test, ``-m 'not soak'`` leaves it out)."""

import json
import os
import re
import statistics
import time

import pytest

from robust_helpers import make_data, start_cli, train_args, write_config

ITERS = 200


def _rss_mb(pid):
    with open('/proc/{}/status'.format(pid)) as f:
        return int(re.search(r'VmRSS:\s+(\d+) kB', f.read()).group(1)) / 1024


@pytest.mark.soak
def test_soak_200_iterations(tmp_path):
    root = make_data(tmp_path / 'cs', n_train=4, n_val=1)
    cfg = write_config(tmp_path / 'soak.yml', root, iters=ITERS)
    out = tmp_path / 'out'
    log = tmp_path / 'train.log'
    proc = start_cli('train.py', *train_args(
        cfg, out, '--save_interval', 20, '--eval_interval', 50, '--do_eval',
        '--keep_checkpoint_max', 2, '--use_vdl'), stdout_path=log)
    samples = []  # (iteration logged last, RSS in MB)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        logged = re.findall(r'\[TRAIN\] iter: (\d+)/', log.read_text())
        try:
            samples.append((int(logged[-1]) if logged else 0, _rss_mb(proc.pid)))
        except (OSError, AttributeError):  # exiting
            pass
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    text = log.read_text()

    # memory: flat once the first evaluation and saves are behind
    early = [mb for it, mb in samples if 60 <= it < 100]
    late = [mb for it, mb in samples if 150 <= it < ITERS]
    assert len(early) > 5 and len(late) > 5, samples
    growth = statistics.median(late) - statistics.median(early)
    assert growth < 40, 'RSS grew by {:.0f} MB: {}'.format(growth, samples)

    # the folder: the 2 newest checkpoints and best_model, nothing half-done
    assert sorted(os.listdir(out)) == ['best_model', 'iter_180', 'iter_200', 'vdl']
    assert json.load(open(out / 'best_model' / 'meta.json'))['iter'] in (50, 100, 150, 200)
    assert os.listdir(out / 'vdl')

    # the log: every line, once
    logged = [int(i) for i in re.findall(r'\[TRAIN\] iter: (\d+)/200', text)]
    assert logged == list(range(1, ITERS + 1))
    saved = [int(i) for i in re.findall(r'Saved \S+/iter_(\d+)\n', text)]
    assert saved == list(range(20, ITERS + 1, 20))
    assert len(re.findall(r'\[EVAL\] #Images: 1 mIoU', text)) == 4
    assert len(re.findall(r'\[EVAL\] The model with the best validation mIoU', text)) == 4
