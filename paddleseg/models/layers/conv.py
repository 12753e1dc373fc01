"""Convolution blocks shared by the backbones and heads.

The sub-layer names (``_conv``, ``_batch_norm``) are part of the checkpoint
format: they match PaddleSeg's so that its weights load unchanged.

BatchNorm is always ``nn.BatchNorm2D``; multi-GPU training converts it to
``nn.SyncBatchNorm`` in one place (``paddleseg.core.train``), which keeps the
parameter names.
"""

import paddle.nn as nn
import paddle.nn.functional as F

_CONV_BY_DIMS = {1: nn.Conv1D, 2: nn.Conv2D}


class ConvBNLayer(nn.Layer):
    """[AvgPool 2x2 ->] Conv (no bias) -> BatchNorm -> [ReLU]: ResNet_vd's unit.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Square kernel size; must be 3 when ``dilation`` > 1.
        stride (int, optional): Convolution stride. Default: 1.
        dilation (int, optional): Dilation; padding is ``dilation`` for a
            dilated 3x3 conv and ``(kernel_size - 1) // 2`` otherwise. Default: 1.
        groups (int, optional): Convolution groups. Default: 1.
        is_vd_mode (bool, optional): Average-pool by 2 (ceil mode) before the
            conv, the "vd" downsampling shortcut. Default: False.
        act (str|None, optional): ``'relu'`` or None. Default: None.
        data_format (str, optional): ``'NCHW'`` or ``'NHWC'``. Default: 'NCHW'.

    Shapes: ``[N, in_channels, H, W]`` -> ``[N, out_channels, H', W']``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 dilation=1, groups=1, is_vd_mode=False, act=None,
                 data_format='NCHW'):
        super().__init__()
        if dilation != 1 and kernel_size != 3:
            raise ValueError('a dilated ConvBNLayer needs kernel_size 3, got {}'
                             .format(kernel_size))
        if act not in (None, 'relu'):
            raise ValueError("act must be None or 'relu', got {!r}".format(act))
        self.is_vd_mode = is_vd_mode
        self.act = act
        self._pool2d_avg = nn.AvgPool2D(kernel_size=2, stride=2, padding=0,
                                        ceil_mode=True, data_format=data_format)
        padding = dilation if dilation != 1 else (kernel_size - 1) // 2
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size,
                               stride=stride, padding=padding, dilation=dilation,
                               groups=groups, bias_attr=False,
                               data_format=data_format)
        self._batch_norm = nn.BatchNorm2D(out_channels, data_format=data_format)

    def forward(self, x):
        if self.is_vd_mode:
            x = self._pool2d_avg(x)
        x = self._batch_norm(self._conv(x))
        return F.relu(x) if self.act == 'relu' else x


class ConvBNReLU(nn.Layer):
    """Conv -> BatchNorm -> ReLU.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size.
        padding (int|str, optional): Conv padding. Default: 'same'.
        **kwargs: Further ``nn.Conv2D`` arguments (e.g. ``bias_attr=False``).

    Shapes: ``[N, in_channels, H, W]`` -> ``[N, out_channels, H, W]`` (stride 1).
    """

    def __init__(self, in_channels, out_channels, kernel_size, padding='same',
                 **kwargs):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size,
                               padding=padding, **kwargs)
        self._batch_norm = nn.BatchNorm2D(
            out_channels, data_format=kwargs.get('data_format', 'NCHW'))

    def forward(self, x):
        return F.relu(self._batch_norm(self._conv(x)))


class ConvReLU(nn.Layer):
    """Conv (with bias) -> ReLU, in 1-D (point features) or 2-D (maps).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size.
        padding (int, optional): Conv padding. Default: 0.
        dims (int, optional): 1 for ``nn.Conv1D`` on ``[N, C, P]`` point
            features, 2 for ``nn.Conv2D`` on ``[N, C, H, W]``. Default: 2.
    """

    def __init__(self, in_channels, out_channels, kernel_size, padding=0,
                 dims=2):
        super().__init__()
        if dims not in _CONV_BY_DIMS:
            raise ValueError('dims must be 1 or 2, got {!r}'.format(dims))
        self._conv = _CONV_BY_DIMS[dims](in_channels, out_channels, kernel_size,
                                         padding=padding)

    @property
    def conv(self):
        """The convolution (its ``weight`` ``[C_out, C_in, k...]`` and
        ``bias``), for code that applies it another way (an export)."""
        return self._conv

    def forward(self, x):
        return F.relu(self._conv(x))


def conv_dims(conv_cfg, key):
    """Map a PaddleSeg ``conv_cfg`` string ('Conv1D'/'Conv2D') to 1 or 2."""
    dims = {'Conv1D': 1, 'Conv2D': 2}.get(conv_cfg)
    if dims is None:
        raise ValueError("{} must be 'Conv1D' or 'Conv2D', got {!r}".format(
            key, conv_cfg))
    return dims
