"""ResNet_vd ("Bag of Tricks", He et al. 2019) with dilation for dense prediction.

Parameter names and shapes are those of PaddleSeg's ResNet_vd (stem
``conv1_1..conv1_3``, blocks ``bb_<stage>_<block>`` with ``conv0``,
``conv1``, [``conv2``], [``short``]), so ImageNet ``resnet*_vd`` weights and
PaddleSeg checkpoints load with no missing or unexpected keys.
"""

import inspect

import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager
from paddleseg.models.layers import ConvBNLayer
from paddleseg.utils.checkpoint import load_pretrained_model

DEPTHS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3],
          101: [3, 4, 23, 3], 152: [3, 8, 36, 3], 200: [3, 12, 48, 3]}
# stage index -> dilation; the stages that keep their stride 1 instead of 2
DILATIONS = {8: {2: 2, 3: 4}, 16: {3: 2}, 32: {}}


class BasicBlock(nn.Layer):
    """Two 3x3 ConvBNLayers plus shortcut (ResNet18/34).

    Shapes: ``[N, in_channels, H, W]`` -> ``[N, out_channels, H/stride, W/stride]``.
    """
    expansion = 1

    def __init__(self, in_channels, out_channels, stride, dilation=1,
                 shortcut=True, if_first=False, data_format='NCHW'):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, out_channels, 3, stride=stride,
                                 dilation=dilation, act='relu',
                                 data_format=data_format)
        self.conv1 = ConvBNLayer(out_channels, out_channels, 3,
                                 dilation=dilation, data_format=data_format)
        self.short = None if shortcut else _projection(
            in_channels, out_channels, stride, if_first, data_format)

    def forward(self, x):
        y = self.conv1(self.conv0(x))
        return F.relu(y + (x if self.short is None else self.short(x)))


class BottleneckBlock(nn.Layer):
    """1x1 -> 3x3 -> 1x1 (x4 channels) ConvBNLayers plus shortcut (ResNet50+).

    Shapes: ``[N, in_channels, H, W]`` -> ``[N, 4 * out_channels, H/stride, W/stride]``.
    """
    expansion = 4

    def __init__(self, in_channels, out_channels, stride, dilation=1,
                 shortcut=True, if_first=False, data_format='NCHW'):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, out_channels, 1, act='relu',
                                 data_format=data_format)
        self.conv1 = ConvBNLayer(out_channels, out_channels, 3, stride=stride,
                                 dilation=dilation, act='relu',
                                 data_format=data_format)
        self.conv2 = ConvBNLayer(out_channels, out_channels * 4, 1,
                                 data_format=data_format)
        self.short = None if shortcut else _projection(
            in_channels, out_channels * 4, stride, if_first, data_format)

    def forward(self, x):
        y = self.conv2(self.conv1(self.conv0(x)))
        return F.relu(y + (x if self.short is None else self.short(x)))


def _projection(in_channels, out_channels, stride, if_first, data_format):
    """The vd shortcut: 2x2 average pool then a 1x1 conv when downsampling."""
    return ConvBNLayer(in_channels, out_channels, 1,
                       is_vd_mode=not (if_first or stride == 1),
                       data_format=data_format)


class ResNet_vd(nn.Layer):
    """ResNet_vd backbone returning the outputs of its four stages.

    Args:
        layers (int, optional): Depth, one of 18, 34, 50, 101, 152, 200. Default: 50.
        output_stride (int, optional): Stride of the last stage's output, 8, 16
            or 32; 8 and 16 replace strides by dilation. Default: 8.
        multi_grid (tuple, optional): Extra dilation factors of the last
            stage's blocks. Default: (1, 1, 1).
        in_channels (int, optional): Image channels. Default: 3.
        pretrained (str, optional): Path or URL of ImageNet weights. Default: None.
        data_format (str, optional): 'NCHW' or 'NHWC'. Default: 'NCHW'.

    Shapes: ``[N, in_channels, H, W]`` -> a list of 4 tensors
    ``[N, feat_channels[i], H / s_i, W / s_i]`` with ``s = (4, 8, 16, 32)``
    capped at ``output_stride``.

    Attributes:
        feat_channels (list[int]): Channels of the four outputs:
            ``[64, 128, 256, 512]`` for 18/34, ``[256, 512, 1024, 2048]`` for 50+.
    """

    def __init__(self, layers=50, output_stride=8, multi_grid=(1, 1, 1),
                 in_channels=3, pretrained=None, data_format='NCHW'):
        super().__init__()
        if layers not in DEPTHS:
            raise ValueError('ResNet_vd layers must be one of {}, got {}'.format(
                sorted(DEPTHS), layers))
        if output_stride not in DILATIONS:
            raise ValueError('output_stride must be 8, 16 or 32, got {}'.format(
                output_stride))
        self.layers = layers
        self.data_format = data_format
        self.pretrained = pretrained
        block = BottleneckBlock if layers >= 50 else BasicBlock
        widths = [64, 128, 256, 512]
        self.feat_channels = [w * block.expansion for w in widths]

        self.conv1_1 = ConvBNLayer(in_channels, 32, 3, stride=2, act='relu',
                                   data_format=data_format)
        self.conv1_2 = ConvBNLayer(32, 32, 3, act='relu', data_format=data_format)
        self.conv1_3 = ConvBNLayer(32, 64, 3, act='relu', data_format=data_format)
        self.pool2d_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1,
                                       data_format=data_format)
        self.stage_list = []
        channels = 64
        dilations = DILATIONS[output_stride]
        for stage, depth in enumerate(DEPTHS[layers]):
            blocks = []
            for i in range(depth):
                dilation = dilations.get(stage, 1)
                if stage == 3:
                    dilation *= multi_grid[i]
                stride = 2 if i == 0 and stage != 0 and dilation == 1 else 1
                blocks.append(self.add_sublayer(
                    'bb_{}_{}'.format(stage, i),
                    block(channels, widths[stage], stride, dilation=dilation,
                          shortcut=i > 0, if_first=stage == 0 and i == 0,
                          data_format=data_format)))
                channels = widths[stage] * block.expansion
            self.stage_list.append(blocks)
        if pretrained:
            load_pretrained_model(self, pretrained)

    def forward(self, x):
        x = self.conv1_3(self.conv1_2(self.conv1_1(x)))
        x = self.pool2d_max(x)
        feats = []
        for blocks in self.stage_list:
            for block in blocks:
                x = block(x)
            feats.append(x)
        return feats


def _variant(layers):
    def build(**kwargs):
        return ResNet_vd(layers=layers, **kwargs)
    build.__name__ = 'ResNet{}_vd'.format(layers)
    build.__doc__ = ('ResNet_vd with {} layers; keyword arguments as '
                     ':class:`ResNet_vd`.'.format(layers))
    # the config checker reads this: ResNet_vd's arguments but ``layers``
    signature = inspect.signature(ResNet_vd)
    build.__signature__ = signature.replace(parameters=[
        p for p in signature.parameters.values() if p.name != 'layers'])
    return manager.BACKBONES.add_component(build)


ResNet18_vd = _variant(18)
ResNet34_vd = _variant(34)
ResNet50_vd = _variant(50)
ResNet101_vd = _variant(101)
ResNet152_vd = _variant(152)
