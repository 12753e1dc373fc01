"""Semantic FPN (Kirillov et al., "Panoptic Feature Pyramid Networks", 2019).

``FPNNeck`` builds the pyramid from backbone features; ``FPNHead`` merges it
into coarse class logits. Names and numerics follow PaddleSeg's PointRend
neck and head so that its checkpoints load and give the same logits.
"""

import math

import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.models.heads.fpn_tail import sparse_conv_tail, tail_factor
from paddleseg.models.layers import ConvBNReLU, ConvReLU
from paddleseg.models.layers.conv import conv_dims


class FPNNeck(nn.Layer):
    """Top-down feature pyramid.

    Args:
        fpn_inplanes (list[int], optional): Channels of the backbone features,
            finest first. Default: [256, 512, 1024, 2048].
        fpn_outplanes (int, optional): Channels of every pyramid level. Default: 256.

    Shapes: a list of ``len(fpn_inplanes)`` tensors ``[N, fpn_inplanes[i], H_i, W_i]``
    (finest first) -> a list of as many ``[N, fpn_outplanes, H_i, W_i]``
    tensors, COARSEST FIRST: ``[lateral(C_last), out(P_{last-1}), ..., out(P_0)]``.
    The coarsest level is the lateral projection alone; ``fpn_out[-1]`` exists
    (it is in released checkpoints) but is not used.
    """

    def __init__(self, fpn_inplanes=(256, 512, 1024, 2048), fpn_outplanes=256):
        super().__init__()
        # created in PaddleSeg's order (lateral i, then out i), so that paddle
        # gives the parameters the names PaddleSeg's model has
        lateral_convs, fpn_out = [], []
        for c in fpn_inplanes:
            lateral_convs.append(nn.Sequential(
                nn.Conv2D(c, fpn_outplanes, 1), nn.BatchNorm2D(fpn_outplanes), nn.ReLU()))
            fpn_out.append(nn.Sequential(
                ConvBNReLU(fpn_outplanes, fpn_outplanes, 3, bias_attr=False)))
        self.lateral_convs = nn.LayerList(lateral_convs)
        self.fpn_out = nn.LayerList(fpn_out)

    def forward(self, feats):
        top = self.lateral_convs[-1](feats[-1])
        outs = [top]
        for i in reversed(range(len(feats) - 1)):
            lateral = self.lateral_convs[i](feats[i])
            top = lateral + F.interpolate(top, lateral.shape[2:],
                                          mode='bilinear', align_corners=True)
            outs.append(self.fpn_out[i](top))
        return outs


class FPNHead(nn.Layer):
    """Semantic FPN head: per-level conv towers, upsampled and summed, then 1x1.

    Level ``i`` gets ``max(1, log2(feature_strides[i] / feature_strides[0]))``
    3x3 conv+ReLU blocks, each followed by a 2x bilinear upsample unless
    ``feature_strides[i] == feature_strides[0]``. The towers' outputs are
    resized (bilinear) to the size of tower 0's and summed.

    Args:
        num_class (int, optional): Classes. Default: 19.
        feature_strides (list[int], optional): Nominal stride of each input,
            the first the smallest. Default: [4, 8, 16, 32].
        in_channels (list[int], optional): Channels of each input.
            Default: [256, 256, 256, 256].
        channels (int, optional): Channels of the towers. Default: 128.
        in_index (list[int], optional): Which pyramid outputs to use, in the
            order of ``feature_strides``. Default: [0, 1, 2, 3].
        dropout_ratio (float, optional): 2-D dropout before the classifier
            (0 or None: none). Default: 0.1.
        conv_cfg (str, optional): Must be 'Conv2D'. Default: 'Conv2D'.
        input_transform (str, optional): Only 'multiple_select' (take the
            ``in_index`` inputs as a list) is supported. Default: 'multiple_select'.
        align_corners (bool, optional): Of the 2x upsamples and resizes. Default: False.

    Shapes: list of ``[N, in_channels[i], H_i, W_i]`` -> list with one
    ``[N, num_class, H_0, W_0]`` tensor (the size of input ``in_index[0]``).
    """

    def __init__(self, num_class=19, feature_strides=(4, 8, 16, 32),
                 in_channels=(256, 256, 256, 256), channels=128,
                 in_index=(0, 1, 2, 3), dropout_ratio=0.1, conv_cfg='Conv2D',
                 input_transform='multiple_select', align_corners=False):
        super().__init__()
        if len(feature_strides) != len(in_channels):
            raise ValueError('PFN_feature_strides and PFN_in_channels differ in '
                             'length: {} vs {}'.format(feature_strides, in_channels))
        if min(feature_strides) != feature_strides[0]:
            raise ValueError('PFN_feature_strides must start with the smallest, '
                             'got {}'.format(feature_strides))
        if conv_dims(conv_cfg, 'PFN_conv_cfg') != 2:
            raise ValueError("PFN_conv_cfg must be 'Conv2D', got {!r}".format(conv_cfg))
        _check_input_transform(input_transform, 'PFN_input_transform')
        self.feature_strides = list(feature_strides)
        self.in_index = list(in_index)
        self.align_corners = align_corners
        self.scale_heads = nn.LayerList()
        for stride, c_in in zip(feature_strides, in_channels):
            self.scale_heads.append(nn.Sequential(*self._tower(
                stride, c_in, channels)))
        self.conv_seg = nn.Conv2D(channels, num_class, kernel_size=1)
        self.dropout = nn.Dropout2D(dropout_ratio) if dropout_ratio else None
        self.exact_tail = True

    def _tower(self, stride, in_channels, channels):
        upsample = stride != self.feature_strides[0]
        length = max(1, int(math.log2(stride) - math.log2(self.feature_strides[0])))
        blocks = []
        for k in range(length):
            blocks.append(ConvReLU(in_channels if k == 0 else channels, channels,
                                   3, padding=1))
            if upsample:
                blocks.append(Upsample2x(self.align_corners))
        return blocks

    def forward(self, inputs):
        x = [inputs[i] for i in self.in_index]
        out = self.scale_heads[0](x[0])
        size = out.shape[2:]
        for tower, feat in zip(self.scale_heads[1:], x[1:]):
            out = out + self.tower_output(tower, feat, size)
        if self.dropout is not None:
            out = self.dropout(out)
        return [self.conv_seg(out)]

    def tower_output(self, tower, feat, size):
        """``resize(tower(feat), size)``, computing only what the resize reads.

        See :mod:`paddleseg.models.heads.fpn_tail`; falls back to the plain
        computation when the sizes or ``align_corners`` do not allow the
        shortcut or ``self.exact_tail`` is False.
        """
        layers = list(tower)
        ups = sum(isinstance(layer, nn.Upsample) for layer in layers)
        g = self._tail_factor(feat.shape[2:], ups, size)
        if g is None:
            return self.reference_tower_output(tower, feat, size)
        if g == 2:  # run the tower but its last upsample; pool instead
            return F.avg_pool2d(_run(layers[:-1], feat), 2, 2)
        # up to the previous block's ReLU, then the last block where it is read
        return sparse_conv_tail(_run(layers[:-3], feat), layers[-2]._conv, g, size)

    def _tail_factor(self, in_size, ups, size):
        if not self.exact_tail or self.align_corners:
            return None
        if not all(isinstance(v, int) for v in list(in_size) + list(size)):
            return None  # sizes unknown until run time (static graph export)
        g = [tail_factor(i, ups, o) for i, o in zip(in_size, size)]
        return g[0] if g[0] is not None and g[0] == g[1] else None

    def reference_tower_output(self, tower, feat, size):
        """The plain computation: the whole tower, then the bilinear resize."""
        return F.interpolate(tower(feat), size, mode='bilinear',
                             align_corners=self.align_corners)


class Upsample2x(nn.Upsample):
    """``nn.Upsample(scale_factor=2, mode='bilinear')`` that passes the
    output size instead of the factor: the same arithmetic, bit for bit,
    and an exported program without the list-of-float ``scale`` attribute
    that paddle2onnx 2.1.0 cannot convert."""

    def __init__(self, align_corners=False):
        super().__init__(scale_factor=2, mode='bilinear',
                         align_corners=align_corners)

    def forward(self, x):
        return F.interpolate(x, [x.shape[2] * 2, x.shape[3] * 2],
                             mode='bilinear', align_corners=self.align_corners)


def _run(layers, x):
    """Apply ``layers`` in order (a plain loop that to_static can convert)."""
    for layer in layers:
        x = layer(x)
    return x


def _check_input_transform(value, key):
    if value != 'multiple_select':
        raise ValueError("{} must be 'multiple_select', got {!r}".format(key, value))
