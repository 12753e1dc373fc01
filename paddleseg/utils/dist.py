"""Devices and several processes: which device to run on, and decisions
that every process of a ``paddle.distributed.launch`` job must share.

Devices. :func:`resolve_device` checks a ``--device`` value (``cpu``,
``gpu``, ``xpu``, ``npu`` or another custom device, optionally ``:index``)
against what this PaddlePaddle build can do and raises one
:class:`~paddleseg.errors.ConfigError` line naming the device when it
cannot (paddle's own error for a CPU-only build says only "The device
should not be 'gpu'"). :func:`device_kind` names the current device
(``'cpu'``, ``'gpu'``, ``'xpu'``, ``'npu'``, ...) without folding XPUs and
custom devices into ``'cpu'``; :func:`parse_device` is the one reading of
a device string's ``kind:index``.

Shared decisions. Under ``paddle.distributed.launch`` rank 0 decides and
the other ranks follow, through one ``broadcast_object_list`` (works on
CPU/gloo and GPU/NCCL alike):

* :func:`shared_seed`: rank 0's random seed when none was given;
* :func:`resolve_resume`: what ``--resume_model auto`` resumes. Rank 0
  picks the newest complete checkpoint of its ``save_dir``; every rank then
  checks that it sees the same folder at the same iteration (machines
  without a shared disk each have their own ``save_dir``) and, if one does
  not, every rank raises the same :class:`~paddleseg.errors.CheckpointError`
  naming the host, the folder and what to do, instead of some ranks
  training from scratch while others resume.

Cross-rank arithmetic. :func:`max_over_ranks` (the training loop's stop
flags), :func:`sum_over_ranks` (evaluation's confusion matrix),
:func:`all_gather_objects` and :func:`broadcast_object` are the only
collectives the toolkit calls outside paddle's DataParallel; each starts
the parallel environment first (:func:`init_distributed`).

Seeds. :func:`derive_seed` is the one way a seed is derived from the run's
seed and a position (an iteration, a sample), so a resumed run draws what
the uninterrupted run would have.

Every helper is a no-op (or the single-process answer) with one process.
"""

import os
import socket

import numpy as np
import paddle

from paddleseg.errors import CheckpointError, ConfigError

KNOWN_DEVICES = ('cpu', 'gpu', 'xpu')
"""Device kinds paddle knows natively; any other kind (``npu``, ``mlu``,
``intel_hpu``, ...) is a custom device, registered by a plugin package."""


# -- devices -------------------------------------------------------------------


def parse_device(device):
    """``(kind, index)`` of a device string: ``'gpu:1'`` -> ``('gpu', 1)``,
    ``'cpu'`` -> ``('cpu', None)``; the kind lower case.

    Raises:
        ConfigError: an index that is not a number (``'gpu:x'``).
    """
    kind, _, index = str(device).strip().lower().partition(':')
    if not index:
        return kind, None
    if not index.isdigit():
        raise ConfigError('--device {}: expected {} or {}:N'.format(device, kind, kind))
    return kind, int(index)


def device_kind(device=None):
    """The kind of ``device`` (default: paddle's current device).

    Args:
        device (str|Place, optional): A device string as ``paddle.get_device()``
            returns it (``'cpu'``, ``'gpu:0'``, ``'xpu:1'``, ``'npu:0'``), or
            a tensor's place (``tensor.place``; pinned host memory is the
            CPU). Default: the current device.

    Returns:
        str: ``'cpu'``, ``'gpu'``, ``'xpu'`` or the custom device type
        (``'npu'``, ...): an XPU or NPU is not ``'cpu'``.
    """
    if device is None:
        device = paddle.device.get_device()
    if hasattr(device, 'is_cpu_place'):
        return _place_kind(device)
    return parse_device(device)[0]


def _place_kind(place):
    """:func:`device_kind` of a ``paddle`` Place."""
    if place.is_cpu_place() or place.is_cuda_pinned_place():
        return 'cpu'
    if place.is_gpu_place():
        return 'gpu'
    if place.is_xpu_place():
        return 'xpu'
    if place.is_custom_place():
        return place.custom_device_type()
    return 'other'


def _custom_device_types():
    """The custom device types registered in this process (a list, maybe
    empty; paddle documents ``None`` for "none")."""
    try:
        return list(paddle.device.get_all_custom_device_type() or [])
    except Exception:  # a build without custom-device support
        return []


def _build_name():
    """'PaddlePaddle 3.3.1 (CPU-only build)' or with what it was built for."""
    built = []
    if paddle.is_compiled_with_cuda():
        built.append('ROCm' if paddle.is_compiled_with_rocm() else 'CUDA')
    if paddle.is_compiled_with_xpu():
        built.append('XPU')
    built += _custom_device_types()
    return 'PaddlePaddle {} ({})'.format(
        paddle.__version__, 'built for ' + ', '.join(built) if built else 'CPU-only build')


def device_count(kind):
    """How many devices of ``kind`` paddle sees (0 when it cannot tell)."""
    try:
        if kind == 'gpu':
            return int(paddle.device.cuda.device_count())
        if kind == 'xpu':
            return int(paddle.device.xpu.device_count())
        return sum(1 for d in (paddle.device.get_available_custom_device() or [])
                   if d.split(':', 1)[0] == kind)
    except Exception:
        return 0


def resolve_device(device=None):
    """Check ``device`` against this PaddlePaddle build; return the string to
    pass to ``paddle.set_device``.

    Args:
        device (str, optional): ``cpu``, ``gpu``, ``xpu``, ``npu`` or another
            custom device type, optionally with ``:index``. Default: ``gpu``
            when paddle is built with CUDA and sees a GPU, else ``cpu``.

    Returns:
        str: ``device`` normalised (lower case).

    Raises:
        ConfigError: one line naming the device: paddle is not built for it
            (a CPU-only build asked for ``gpu``; no XPU support; no plugin
            registered for ``npu``), it sees none of them, or the index is
            out of range.
    """
    if device is None:
        cuda = paddle.is_compiled_with_cuda() and device_count('gpu') > 0
        return 'gpu' if cuda else 'cpu'
    device = str(device).strip().lower()
    kind, index = parse_device(device)
    if kind == 'cpu':
        if index is not None:
            raise ConfigError('--device {}: the CPU takes no index; use --device cpu'
                              .format(device))
        return 'cpu'
    if kind == 'gpu':
        built = paddle.is_compiled_with_cuda()
        how = ('install the GPU build (paddlepaddle-gpu, see README: Install)')
    elif kind == 'xpu':
        built = paddle.is_compiled_with_xpu()
        how = 'install the XPU build of PaddlePaddle'
    else:
        built = kind in _custom_device_types()
        how = ('install the PaddlePaddle custom-device plugin for {0} (for Ascend '
               'NPUs: paddle-custom-npu) so that it registers the device type '
               '{0!r}'.format(kind))
    if not built:
        raise ConfigError('--device {}: {} cannot run on {}; {}, or use --device cpu'
                          .format(device, _build_name(), kind, how))
    count = device_count(kind)
    if count == 0:
        raise ConfigError('--device {}: {} supports {} but sees no {} device (check the '
                          'driver and {}), or use --device cpu'.format(
                              device, _build_name(), kind, kind, _visible_var(kind)))
    if index is not None and index >= count:
        raise ConfigError('--device {}: only {} {} device(s) visible (indices 0-{})'
                          .format(device, count, kind, count - 1))
    return device


def _visible_var(kind):
    """The environment variable that selects the visible devices of ``kind``."""
    return {'gpu': 'CUDA_VISIBLE_DEVICES', 'xpu': 'XPU_VISIBLE_DEVICES'}.get(
        kind, '{}_VISIBLE_DEVICES'.format(kind.upper()))


# -- several processes -----------------------------------------------------------


def world_size():
    """Processes of the job (1 without ``paddle.distributed.launch``)."""
    return paddle.distributed.get_world_size()


def rank():
    """This process's rank (0 without ``paddle.distributed.launch``)."""
    return paddle.distributed.get_rank()


def init_distributed():
    """Start paddle's collective runtime when launched on several processes
    (once; later calls do nothing).

    Returns:
        tuple(int, int): ``(rank, world_size)``; ``(0, 1)`` for a single process.
    """
    world = world_size()
    if world > 1 and not paddle.distributed.is_initialized():
        paddle.distributed.init_parallel_env()
    return rank(), world


def broadcast_object(obj, src=0):
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` as given with
    one process). Every rank must call it (a collective)."""
    if world_size() == 1:
        return obj
    init_distributed()
    box = [obj]
    paddle.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj):
    """The picklable ``obj`` of every rank, in rank order (``[obj]`` with one
    process). Every rank must call it (a collective)."""
    if world_size() == 1:
        return [obj]
    init_distributed()
    gathered = []
    paddle.distributed.all_gather_object(gathered, obj)
    return gathered


def max_over_ranks(values):
    """Each of ``values`` (non-negative ints or bools) maxed over the ranks,
    as a list of ints, in one all-reduce; a single process keeps its own.
    Every rank must call it (a collective)."""
    values = [int(v) for v in values]
    if world_size() == 1:
        return values
    init_distributed()
    t = paddle.to_tensor(values, dtype='int32')
    paddle.distributed.all_reduce(t, op=paddle.distributed.ReduceOp.MAX)
    return [int(v) for v in t.numpy().tolist()]


def sum_over_ranks(array):
    """The integer ``array`` (any shape) summed over the ranks, as an int64
    numpy array of its shape, in one all-reduce; a single process gets its
    own. Every rank must call it (a collective)."""
    array = np.asarray(array, dtype=np.int64)
    if world_size() == 1:
        return array
    init_distributed()
    t = paddle.to_tensor(array.ravel())
    paddle.distributed.all_reduce(t)
    return t.numpy().reshape(array.shape)


def derive_seed(seed, *position):
    """A seed in ``[0, 2**31)`` drawn from ``(seed, *position)`` (ints), the
    same in every process: e.g. ``(seed, iteration, rank, 7)`` for paddle's
    generator at a training step, ``(seed, epoch, index)`` for a sample's
    augmentation (:mod:`paddleseg.core.sampler`)."""
    return int(np.random.default_rng([seed, *position]).integers(2 ** 31))


def shared_seed(seed=None):
    """``seed``, or when None a fresh random one, rank 0's on every rank.

    A given seed is returned as it is without any collective (every rank
    got the same flag); None draws one on rank 0 from the OS entropy and
    broadcasts it, so all ranks shuffle and augment alike.

    Returns:
        int: In ``[0, 2**31)`` when drawn.
    """
    if seed is not None:
        return int(seed)
    fresh = int(np.random.SeedSequence().entropy % (2 ** 31))
    return int(broadcast_object(fresh if rank() == 0 else None))


def _checkpoint_problem(path, expected_iter=None):
    """None if ``path`` is a complete checkpoint (at ``expected_iter`` when
    given) on this machine, else what is wrong, as text."""
    from paddleseg.utils.checkpoint import read_meta
    if not os.path.isdir(path):
        return 'does not exist'
    try:
        meta = read_meta(path)
    except CheckpointError:
        return 'is not a complete checkpoint (no readable meta.json)'
    missing = [f for f in meta.get('files', [])
               if not os.path.isfile(os.path.join(path, f))]
    if missing:
        return 'is not a complete checkpoint (missing {})'.format(', '.join(missing))
    if expected_iter is not None and int(meta.get('iter', -1)) != int(expected_iter):
        return 'holds iter {}, not iter {}'.format(meta.get('iter'), expected_iter)
    return None


def _rank0_choice(save_dir):
    """Rank 0's ``--resume_model auto`` decision: ``{'name', 'iter', 'host',
    'path'}``, ``None`` (nothing to resume) or ``{'error': text}``."""
    from paddleseg.utils.checkpoint import find_latest_checkpoint, read_meta
    try:
        latest = find_latest_checkpoint(save_dir)
        if latest is None:
            return None
        return {'name': os.path.basename(latest), 'iter': int(read_meta(latest)['iter']),
                'host': socket.gethostname(), 'path': os.path.abspath(latest)}
    except (CheckpointError, OSError, KeyError, ValueError, TypeError) as exc:
        return {'error': '--resume_model auto: rank 0 cannot read its newest checkpoint '
                         'in {}: {}'.format(save_dir, exc)}


def resolve_resume(save_dir, resume_model):
    """The checkpoint folder to resume from, the same on every rank, or None.

    Args:
        save_dir (str): This rank's ``--save_dir``.
        resume_model (str|None): ``--resume_model``: None/empty (start at
            iteration 0), a checkpoint folder, or ``'auto'`` (the newest
            complete ``iter_N`` of ``save_dir``).

    With one process, ``'auto'`` is
    :func:`paddleseg.utils.checkpoint.find_latest_checkpoint` and a folder
    is returned as given. With several, ``'auto'`` is rank 0's choice: its
    folder name and iteration are broadcast, and each rank returns
    ``<its save_dir>/<that name>``; a folder given explicitly is used as
    given by every rank. Either way every rank then checks that the folder
    is on its disk, complete, and (for ``'auto'``) at rank 0's iteration,
    and the ranks exchange the results, so all of them go on or all fail.
    Every rank must call it (collectives) when ``resume_model`` is set.

    Returns:
        str|None: The folder (this rank's path), or None to start from scratch.

    Raises:
        CheckpointError: on every rank when a rank lacks the folder (e.g.
            machines without a shared disk), has it incomplete or at another
            iteration; one line naming rank, host, path and what to do.
    """
    if not resume_model:
        return None
    auto = resume_model == 'auto'
    if world_size() == 1:
        if not auto:
            return resume_model
        from paddleseg.utils.checkpoint import find_latest_checkpoint
        choice = find_latest_checkpoint(save_dir)
        if choice is None:
            _nothing_to_resume(save_dir)
        return choice
    choice = broadcast_object(_rank0_choice(save_dir) if rank() == 0 else None) \
        if auto else {'path': resume_model, 'iter': None}
    if choice is None:  # rank 0 has nothing to resume: nobody resumes
        _nothing_to_resume(save_dir)
        return None
    if 'error' in choice:
        raise CheckpointError(choice['error'])
    local = os.path.join(save_dir, choice['name']) if auto else resume_model
    problem = _checkpoint_problem(local, choice['iter'])
    reports = all_gather_objects((socket.gethostname(), os.path.abspath(local), problem))
    failed = [(r, host, path, what) for r, (host, path, what) in enumerate(reports) if what]
    if failed:
        raise CheckpointError(_resume_failure(resume_model, choice, failed))
    return local


def _nothing_to_resume(save_dir):
    from paddleseg.utils import logger
    logger.info('No checkpoint in {} to resume from; starting at iter 0'.format(save_dir))


def _resume_failure(resume_model, choice, failed):
    """One line: which ranks on which hosts lack which checkpoint, and what to do."""
    where = '; '.join('rank {} on host {}: {} {}'.format(r, host, path, what)
                      for r, host, path, what in failed)
    if resume_model == 'auto':
        head = ('--resume_model auto: rank 0 (host {}) resumes from {} (iter {}), but {}'
                .format(choice['host'], choice['path'], choice['iter'], where))
        source = "rank 0's {}".format(choice['path'])
    else:
        head = '--resume_model {}: {}'.format(resume_model, where)
        source = 'the checkpoint folder'
    return ('{}; every process needs that checkpoint: copy {} to the path named above '
            'on {}, or put --save_dir on a disk shared by all machines, then start again'
            .format(head, source, ', '.join(sorted({h for _, h, _, _ in failed}))))
