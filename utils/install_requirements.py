"""pip-install a requirements file without replacing an installed PaddlePaddle.

``requirements.txt`` names the CPU wheel (``paddlepaddle==3.3.1``). The GPU
and XPU builds (``paddlepaddle-gpu``, ``paddlepaddle-xpu``, ...) are other
distributions that install the same ``paddle`` package, so pip would put the
CPU build over them. This tool looks for any installed distribution that
provides ``paddle``; if there is one, it installs every other requirement and
leaves the ``paddlepaddle*`` lines out (with a one-line warning when that
build is not Paddle 3.x); if there is none, it installs the files as they are.

``bash run.sh install|demo|test|test-gpu`` and the notebook's install cell
use it. Only the standard library is needed (it runs before anything is
installed).

Examples::

    python utils/install_requirements.py                        # requirements.txt
    python utils/install_requirements.py requirements-dev.txt
    python utils/install_requirements.py --add matplotlib --dry-run
"""

import argparse
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = 'install_requirements.py'
PADDLE_PACKAGE = 'paddle'
PIP_OPTIONS = ['install', '-q', '--disable-pip-version-check']
_NAME = re.compile(r'^\s*([A-Za-z0-9][A-Za-z0-9._-]*)')


def canonical(name):
    """A project name as pip compares them (PEP 503)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_name(line):
    """The project name of a requirement line (``None`` for an option line)."""
    if line.startswith('-'):
        return None
    match = _NAME.match(line)
    return canonical(match.group(1)) if match else None


def is_paddle_build(line):
    """Whether a requirement names a PaddlePaddle build (``paddlepaddle``,
    ``paddlepaddle-gpu``, ``paddlepaddle-xpu``, ...)."""
    name = requirement_name(line)
    return name is not None and (name == 'paddlepaddle' or name.startswith('paddlepaddle-'))


def read_requirements(path, _seen=None):
    """The lines of a requirements file, without comments and blank lines,
    with ``-r FILE`` / ``--requirement FILE`` expanded (relative to the file
    that names it). Other option lines are kept as they are."""
    path = os.path.abspath(path)
    seen = set() if _seen is None else _seen
    if path in seen:
        raise ValueError('{}: included twice (-r cycle)'.format(path))
    seen.add(path)
    lines = []
    with open(path) as f:
        for raw in f:
            line = raw.split(' #')[0].split('\t#')[0].strip()
            if not line or line.startswith('#'):
                continue
            words = shlex.split(line)
            if words[0] in ('-r', '--requirement') and len(words) == 2:
                lines += read_requirements(os.path.join(os.path.dirname(path), words[1]), seen)
            elif words[0].startswith('--requirement='):
                lines += read_requirements(os.path.join(
                    os.path.dirname(path), words[0].split('=', 1)[1]), seen)
            else:
                lines.append(line)
    return lines


def _provides_paddle(dist):
    """Whether an installed distribution holds the ``paddle`` package: its
    RECORD lists ``paddle/__init__.py`` (or, without a RECORD, its
    top_level.txt names ``paddle``). Plugins that only add files below
    ``paddle/`` do not count."""
    top_level = (dist.read_text('top_level.txt') or '').split()
    files = dist.files
    if files is None:
        return PADDLE_PACKAGE in top_level
    if top_level and PADDLE_PACKAGE not in top_level:
        return False
    return any(f.as_posix() == PADDLE_PACKAGE + '/__init__.py' for f in files)


def installed_paddle(path=None):
    """``[(name, version), ...]`` of the installed distributions that
    provide the ``paddle`` package, looked up on ``path`` (default
    ``sys.path``) with importlib.metadata; ``[]`` when there is none."""
    found = {}
    for dist in importlib.metadata.distributions(path=sys.path if path is None else path):
        name = dist.metadata['Name']
        if not name or canonical(name) in found:
            continue  # the same project twice on the path: the first one wins
        if _provides_paddle(dist):
            found[canonical(name)] = (name, dist.version)
    return sorted(found.values())


def plan(requirements, installed):
    """Decide what pip installs.

    ``requirements``: requirement lines; ``installed``: the result of
    :func:`installed_paddle`. Returns ``(lines, messages)``: the lines to
    give pip, and the one-line notes to show (each ``(stream, text)`` with
    stream ``'out'`` or ``'err'``). With a paddle build installed the
    ``paddlepaddle*`` lines are left out; otherwise nothing changes.
    """
    if not installed:
        return list(requirements), []
    kept = ', '.join('{} {}'.format(name, version) for name, version in installed)
    dropped = [line for line in requirements if is_paddle_build(line)]
    messages = [('out', '{}: keeping the installed {} (provides `paddle`){}'.format(
        PROG, kept, '; not installing ' + ', '.join(dropped) if dropped else ''))]
    for name, version in installed:
        if not version.startswith('3.'):
            messages.append(('err', '{}: warning: {} {} is not PaddlePaddle 3.x; this '
                             'repository needs 3.x (see README, Install)'.format(
                                 PROG, name, version)))
    return [line for line in requirements if not is_paddle_build(line)], messages


def pip_command(lines, python=None):
    """The pip command line that installs ``lines`` with ``python``."""
    args = []
    for line in lines:
        args += shlex.split(line) if line.startswith('-') else [line]
    return [python or sys.executable, '-m', 'pip'] + PIP_OPTIONS + args


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split('\n')[0],
        epilog='An installed paddlepaddle, paddlepaddle-gpu, paddlepaddle-xpu, ... '
               '(any distribution that provides `paddle`) is never replaced.')
    p.add_argument('files', nargs='*', metavar='FILE',
                   help='requirements files (default: requirements.txt of the repository)')
    p.add_argument('--add', action='append', default=[], metavar='REQ',
                   help='one more requirement (repeatable), e.g. --add matplotlib')
    p.add_argument('--dry-run', action='store_true',
                   help='print the pip command instead of running it')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    files = args.files or [os.path.join(ROOT, 'requirements.txt')]
    try:
        requirements = [line for path in files for line in read_requirements(path)]
    except (OSError, ValueError) as e:
        print('{}: error: {}'.format(PROG, e), file=sys.stderr)
        return 2
    lines, messages = plan(requirements + args.add, installed_paddle())
    for stream, text in messages:
        print(text, file=sys.stdout if stream == 'out' else sys.stderr, flush=True)
    if not lines:
        return 0
    cmd = pip_command(lines)
    if args.dry_run:
        print(' '.join(shlex.quote(c) for c in cmd))
        return 0
    return subprocess.call(cmd)


if __name__ == '__main__':
    sys.exit(main())
