"""Run a script in this process and record its exit status (test helper).

    python record_exit.py STATUS_DIR SCRIPT [ARGS...]

runs ``SCRIPT ARGS...`` as ``__main__`` and, when it ends by returning or
by ``sys.exit``/an exception, writes the status it exits with to
``STATUS_DIR/exit_<rank>`` (``PADDLE_TRAINER_ID``, 0 if unset) before
exiting with it. Under ``paddle.distributed.launch`` this shows each
rank's own status, which the launcher does not report when it is itself
stopped by a signal. ``os._exit`` (the stall watchdog) bypasses it.
"""

import os
import runpy
import sys


def _status(code):
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main():
    status_dir, script = sys.argv[1], os.path.abspath(sys.argv[2])
    sys.argv = [script] + sys.argv[3:]
    sys.path[0] = os.path.dirname(script)
    status = 1  # an exception other than SystemExit
    try:
        runpy.run_path(script, run_name='__main__')
        status = 0
    except SystemExit as exc:
        status = _status(exc.code)
        raise
    finally:
        path = os.path.join(status_dir, 'exit_{}'.format(
            os.environ.get('PADDLE_TRAINER_ID', '0')))
        with open(path, 'w') as f:
            f.write(str(status))


if __name__ == '__main__':
    main()
