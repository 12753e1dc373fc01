"""From an entry script's flags to what it runs: the :class:`Config` of
``--config`` with the flags and ``--opts`` (:func:`config_from_args`), the
device (:func:`setup_device`), the model of ``--model_path``
(:func:`model_for_inference`) and val.py's evaluation arguments
(:func:`eval_kwargs`). Every object is built by
:class:`~paddleseg.cvlibs.SegBuilder`.
"""

__all__ = ['setup_device', 'without_pretrained', 'config_from_args',
           'build_for_inference', 'model_for_inference', 'eval_kwargs']


def setup_device(device=None, cpu_threads=None):
    """Select the device and, on CPU, use every core (or ``cpu_threads``).

    ``device`` is ``cpu``, ``gpu``, ``xpu``, ``npu`` (or another custom
    device type), optionally ``:index``; None picks ``gpu`` when paddle is
    built with CUDA and sees a GPU, else ``cpu``. A device this PaddlePaddle
    build cannot use (``gpu`` on a CPU-only build, ``xpu`` without XPU
    support, ``npu`` without its plugin, none visible) raises one
    :class:`~paddleseg.errors.ConfigError` line naming it
    (:func:`paddleseg.utils.dist.resolve_device`).

    Returns:
        int|None: The CPU thread count set (see ``set_cpu_threads``).
    """
    import paddle
    from paddleseg.utils.dist import resolve_device
    from paddleseg.utils.env import set_cpu_threads
    paddle.set_device(resolve_device(device))
    return set_cpu_threads(cpu_threads)


def without_pretrained(cfg):
    """Drop ``pretrained`` from the model and its backbone of the config
    dict ``cfg`` (in place; returned): val.py, predict.py and export.py load
    a whole trained model, so fetching ImageNet weights first would be
    wasted (and needs the network)."""
    model = cfg.get('model') or {}
    model.pop('pretrained', None)
    if isinstance(model.get('backbone'), dict):
        model['backbone'].pop('pretrained', None)
    return cfg


def config_from_args(args, for_training=False, opts=()):
    """The :class:`~paddleseg.cvlibs.Config` of ``args.config`` with the
    flags ``--iters``, ``--batch_size``, ``--learning_rate`` (those the
    script has), then ``opts`` and ``--opts`` (which has the last word).

    Args:
        for_training (bool): Require the training keys; when False the
            model's ``pretrained`` weights are dropped
            (:func:`without_pretrained`).
        opts (list[str], optional): Overrides the script derives from its
            own flags, applied before ``--opts``.

    Raises:
        ConfigError: one line starting with the config's path.
    """
    from paddleseg.cvlibs import Config
    cfg = Config(args.config, learning_rate=getattr(args, 'learning_rate', None),
                 batch_size=getattr(args, 'batch_size', None),
                 iters=getattr(args, 'iters', None),
                 opts=list(opts) + list(args.opts or []),
                 for_training=for_training)
    if not for_training:
        without_pretrained(cfg.dic)
    return cfg


def model_for_inference(args, builder, cpu_threads=None):
    """The model val.py, predict.py and export.py run: ``builder.model``
    with the weights of ``--model_path``, or, with ``--engine
    inference|onnx``, the export there
    (:func:`paddleseg.cli.engine_args.load_exported`)."""
    if getattr(args, 'engine', 'dygraph') == 'dygraph':
        from paddleseg.utils.checkpoint import load_entire_model
        model = builder.model
        load_entire_model(model, args.model_path)
        return model
    from paddleseg.cli.engine_args import load_exported
    return load_exported(args, builder.config, cpu_threads)


def build_for_inference(args):
    """:func:`config_from_args`, the device (:func:`setup_device`) and
    :func:`model_for_inference`.

    Returns:
        tuple: ``(builder, model)``: the :class:`SegBuilder` of the config
        (``builder.config``) and the model to run.
    """
    from paddleseg.cvlibs import SegBuilder
    builder = SegBuilder(config_from_args(args))
    threads = setup_device(args.device, args.cpu_threads)
    return builder, model_for_inference(args, builder, threads)


def eval_kwargs(args, cfg):
    """val.py's keyword arguments of :func:`paddleseg.core.evaluate_details`:
    the config's ``test_config`` (checked by the schema), then the flags
    given (``--aug_eval``, ``--scales``, ``--flip_horizontal``,
    ``--flip_vertical``, ``--is_slide``, ``--crop_size``, ``--stride``),
    which override it."""
    from paddleseg.core.val import details_kwargs
    kwargs = details_kwargs(cfg.test_config)
    given = dict(aug_eval=args.aug_eval or None, scales=args.scales,
                 flip_horizontal=args.flip_horizontal or None,
                 flip_vertical=args.flip_vertical or None,
                 is_slide=args.is_slide or None, crop_size=args.crop_size,
                 stride=args.stride)
    kwargs.update({key: value for key, value in given.items()
                   if value is not None})
    return kwargs
