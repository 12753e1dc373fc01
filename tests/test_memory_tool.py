"""utils/measure_train_memory.py, the CPU measurement behind the memory
table of docs/training.md, on the small demo model."""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'utils'))
import measure_train_memory  # noqa: E402


def test_activation_bytes_grow_with_the_pixels_and_are_extrapolated(capsys):
    measure_train_memory.main([
        '--config', os.path.join(ROOT, 'configs', 'demo', 'pointrend_resnet18_os8_demo.yml'),
        '--sizes', '32x64', '64x128', '--batch', '2', '--target', '1x128x256'])
    out = capsys.readouterr().out
    assert 'batch 2' in out
    saved = [float(v) for v in re.findall(r'saved +([\d.]+) MB', out)]
    assert len(saved) == 2 and 0 < saved[0] < saved[1]
    fit = re.search(r'fit saved   : (-?\d+) B \+ ([\d.]+) B/pixel -> ([\d.]+) GB at 1x128x256',
                    out)
    a, b, at = float(fit.group(1)), float(fit.group(2)), float(fit.group(3))
    # the line through both measured points (2 x 32 x 64 and 2 x 64 x 128 pixels)
    assert abs(a + b * 2 * 64 * 128 - saved[1] * 2 ** 20) < 0.1 * 2 ** 20  # printed to 0.1 MB
    assert abs(at * 2 ** 30 - (a + b * 128 * 256)) < 0.01 * 2 ** 30
