"""Run by test_process_hygiene.py in a fresh interpreter: imports paddleseg,
builds a model, runs a forward pass and then paddleseg.core.train several
ways (to the end with loader workers and evaluations, stopped by SIGTERM,
stopped by a NaN loss, with the library's own stall watchdog), and prints
as JSON what each of them changed in the process: environment variables,
the SIGINT/SIGTERM/SIGCHLD handlers, threading/sys excepthooks, OpenMP's
block time, watchdog threads, and calls of mallopt or kmp_set_blocktime.
Last, as a control, what ``tune_process(training=True)`` changes."""

import ctypes
import json
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(HERE)), HERE]

import cv2  # noqa: E402,F401  (third-party imports change the environment themselves)
import numpy as np  # noqa: E402
import paddle  # noqa: E402

CALLS = []


class _RecordingCDLL(ctypes.CDLL):
    """Records the lookup of the process-tuning C functions."""

    def __getattr__(self, name):
        if name in ('mallopt', 'kmp_set_blocktime'):
            CALLS.append(name)
        return super().__getattr__(name)


ctypes.CDLL = _RecordingCDLL
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)


def blocktime():
    try:
        return ctypes.cdll.LoadLibrary('libiomp5.so').kmp_get_blocktime()
    except OSError:
        return None


def snapshot():
    return {'env': dict(os.environ),
            'handlers': {s: signal.getsignal(s) for s in SIGNALS},
            'hooks': (threading.excepthook, sys.excepthook),
            'blocktime': blocktime(), 'calls': len(CALLS)}


def changes(before):
    after = snapshot()
    env = sorted(k for k in set(before['env']) | set(after['env'])
                 if before['env'].get(k) != after['env'].get(k))
    return {'env': env,
            'handlers': [signal.Signals(s).name for s in SIGNALS
                         if after['handlers'][s] is not before['handlers'][s]],
            'hooks': [name for name, a, b in zip(('threading', 'sys'), after['hooks'],
                                                 before['hooks']) if a is not b],
            'blocktime': [before['blocktime'], after['blocktime']],
            'calls': CALLS[before['calls']:],
            'watchdogs': [t.name for t in threading.enumerate()
                          if t.name == 'paddleseg-watchdog']}


class Trap:
    """A dataset that sends SIGTERM to the training process at its
    ``at``-th item, or is slow (``sleep`` s) there."""

    def __init__(self, dataset, at, sleep=0.0):
        self.dataset, self.at, self.sleep = dataset, at, sleep
        self.num_classes = dataset.num_classes
        self.parent, self.count = os.getpid(), 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.count += 1
        if self.count == self.at:
            if self.sleep:
                import time
                time.sleep(self.sleep)
            else:
                os.kill(self.parent, signal.SIGTERM)
        return self.dataset[index]


def main(base):
    from robust_helpers import make_data, write_config
    env0 = dict(os.environ)
    import paddleseg  # noqa: F401
    from paddleseg.core import train
    from paddleseg.cvlibs import Config, builder, manager
    manager.LOSSES.add_component(NaNLoss, name='NaNLoss')
    root = make_data(os.path.join(base, 'cs'))
    cfg_path = write_config(os.path.join(base, 'tiny.yml'), root, iters=3)
    cfg = Config(cfg_path, for_training=True).dic
    model = builder.build_model(cfg, cfg_path)
    model.eval()
    with paddle.no_grad():
        model(paddle.rand([1, 3, 32, 64]))
    report = {'import_build_forward_env': sorted(
        k for k in set(env0) | set(os.environ) if env0.get(k) != os.environ.get(k))}
    train_set = builder.build_dataset(cfg, 'train_dataset', cfg_path)
    val_set = builder.build_dataset(cfg, 'val_dataset', cfg_path)
    # paddle's own SIGCHLD handler comes with its first multi-process loader
    for _ in paddle.io.DataLoader(train_set, batch_size=1, num_workers=1):
        break

    def run(name, dataset=train_set, expect=None, **kwargs):
        model = builder.build_model(cfg, cfg_path)
        opt = builder.build_optimizer(cfg, model, builder.build_lr_scheduler(cfg, 3, cfg_path),
                                      cfg_path)
        losses = builder.build_losses(cfg, cfg_path)
        before = snapshot()
        raised = None
        try:
            train(model, dataset, losses=losses, optimizer=opt, iters=3, batch_size=1,
                  save_dir=os.path.join(base, name), log_iters=1, seed=1, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raised = type(exc).__name__
        except KeyboardInterrupt as exc:
            raised = type(exc).__name__
        report[name] = dict(changes(before), raised=raised)

    run('full', val_dataset=val_set, do_eval=True, eval_interval=2, num_workers=1,
        use_vdl=True)
    run('sigterm', dataset=Trap(train_set, at=2), num_workers=1)
    run('stalled', dataset=Trap(train_set, at=2, sleep=2.5), stall_timeout=0.5)
    cfg['loss']['types'][0]['type'] = 'NaNLoss'
    run('nan')
    before = snapshot()
    from paddleseg.utils.env import tune_process
    tune_process(training=True)
    report['tune_process'] = changes(before)
    print('REPORT ' + json.dumps(report))


class NaNLoss(paddle.nn.Layer):
    def forward(self, logits, label):
        return logits.mean() * float('nan')


if __name__ == '__main__':
    main(sys.argv[1])
