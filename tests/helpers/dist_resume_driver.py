"""Run by tests/test_dist.py under ``paddle.distributed.launch`` (CPU, gloo).

Each rank takes a save_dir, agrees on a seed with
:func:`paddleseg.utils.dist.shared_seed` and asks
:func:`paddleseg.utils.dist.resolve_resume` what to resume, then writes
``<out>/rank<N>.json`` with what it got (``resume`` and ``seed``, or
``error``). A CheckpointError exits 2 with one ``dist_resume_driver: error:``
line on stderr, as the entry scripts do.

Usage: ``dist_resume_driver.py OUT SAVE_DIR RESUME [OUT SAVE_DIR RESUME ...]``
where SAVE_DIR and RESUME may hold ``{rank}``: one folder per rank simulates
machines without a shared disk (the same path on each machine, different
contents). Several triples are several scenarios, run in order in the same
launch (each with its own OUT); the error line is printed for each that
fails, and the exit (2 if any failed) waits until every rank has written
all its records.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import paddle  # noqa: E402

from paddleseg.errors import CheckpointError  # noqa: E402
from paddleseg.utils import dist  # noqa: E402
from paddleseg.cli.build import setup_device  # noqa: E402


def scenario(out, save_dir, resume):
    """One scenario: writes ``out/rank<N>.json``; returns the record."""
    rank = paddle.distributed.get_rank()
    save_dir = save_dir.format(rank=rank)
    record = {'rank': rank, 'world': dist.world_size()}
    record['seed'] = dist.shared_seed(None)
    record['given_seed'] = dist.shared_seed(17)
    try:
        record['resume'] = dist.resolve_resume(save_dir, resume.format(rank=rank))
    except CheckpointError as exc:
        record['error'] = str(exc)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'rank{}.json'.format(rank)), 'w') as f:
        json.dump(record, f)
    if 'error' in record:
        print('dist_resume_driver: error: {}'.format(record['error']), file=sys.stderr)
    return record


def main(args):
    setup_device('cpu')
    records = [scenario(*args[i:i + 3]) for i in range(0, len(args) - 2, 3)]
    dist.all_gather_objects(None)  # every rank has written its records
    if any('error' in record for record in records):
        sys.exit(2)


if __name__ == '__main__':
    main(sys.argv[1:])
