"""A recording ``paddle.inference.Config`` for the tests of the configs
:func:`paddleseg.deploy.build_config` builds (test_predictor_config,
test_trt_config).

What a CPU-only paddle 3.3.1 does with the GPU calls (measured, and read in
Paddle's analysis_config.cc): ``enable_use_gpu`` logs "Please use
PaddlePaddle with GPU version." and drops the call; ``enable_tensorrt_engine``
raises RuntimeError ("(PreconditionNotMet) To use Paddle-TensorRT, please
compile with TENSORRT first.") once pybind has accepted its arguments (wrong
ones are a TypeError before that); the other TensorRT setters are kept. So
:class:`RecordingConfig` records every method call with its arguments and
forwards it to the real method, keeping a RuntimeError in the record instead
of raising it; :func:`check_calls` checks that each recorded method exists on
the real class, that its keyword names are those of its pybind signature and
that the real method took the arguments.

:class:`TinySeg` and :func:`export_tiny_seg` are the tiny model those tests
export and the folders they build configs on.
"""

import os
import re

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import inference

REAL_CONFIG = inference.Config
TRT_BUILT = tuple(inference.get_trt_compile_version()) != (0, 0, 0)


class Call:
    def __init__(self, name, args, kwargs):
        self.name, self.args, self.kwargs, self.error = name, args, kwargs, None

    def __repr__(self):
        return '{}{}{}'.format(self.name, self.args, self.kwargs)


class RecordingConfig(REAL_CONFIG):
    """The real Config; every method call is recorded in ``calls`` and
    forwarded; a RuntimeError of the real method is kept in the record."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = []

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name.startswith('_') or name == 'calls' or not callable(attr):
            return attr
        calls = super().__getattribute__('calls')

        def record(*args, **kwargs):
            call = Call(name, args, kwargs)
            calls.append(call)
            try:
                return attr(*args, **kwargs)
            except RuntimeError as exc:  # a TypeError is raised: wrong arguments
                call.error = exc
                return None
        return record


def signature_names(name):
    """The parameter names in the pybind signature (the docstring's first line)."""
    first = (getattr(REAL_CONFIG, name).__doc__ or '').strip().splitlines()[0]
    assert first.startswith(name + '('), first
    return set(re.findall(r'(\w+): ', first)) - {'self'}


def check_calls(calls):
    """Each call is of a method of the real Config, with keywords of its
    signature, taken by the real method (a RuntimeError only for TensorRT
    on a paddle without it)."""
    for call in calls:
        assert callable(getattr(REAL_CONFIG, call.name, None)), call
        assert set(call.kwargs) <= signature_names(call.name), (
            call, signature_names(call.name))
        if call.error is not None:
            assert call.name == 'enable_tensorrt_engine' and not TRT_BUILT, (call, call.error)
            assert 'compile with TENSORRT' in str(call.error), call.error




STATIC_SHAPE = [2, 3, 32, 48]
"""The input shape of the fixed-size export of :func:`export_tiny_seg`."""


class TinySeg(nn.Layer):
    """Three classes at the input size: conv (stride 2), ReLU, 1x1 conv,
    bilinear resize; returns ``[logits]`` as the toolkit's models do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 8, 3, stride=2, padding=1)
        self.cls = nn.Conv2D(8, 3, 1)

    def forward(self, x):
        logits = self.cls(F.relu(self.conv(x)))
        return [F.interpolate(logits, size=paddle.shape(x)[2:], mode='bilinear',
                              align_corners=False)]


def export_tiny_seg(base, formats=('paddle_legacy',)):
    """A :class:`TinySeg` (seed 5) exported under ``base``: with a dynamic
    input once per format in ``formats`` and once as paddle_legacy with
    :data:`STATIC_SHAPE`. Returns ``{'model': layer, <format>: dir, ...,
    'static': dir}``."""
    from paddleseg.deploy import export
    paddle.seed(5)
    model = TinySeg()
    model.eval()
    dirs = {'model': model}
    for fmt in formats:
        dirs[fmt] = os.path.join(str(base), fmt)
        export(model, dirs[fmt], format=fmt)
    dirs['static'] = os.path.join(str(base), 'static')
    export(model, dirs['static'], input_shape=STATIC_SHAPE, format='paddle_legacy')
    return dirs
