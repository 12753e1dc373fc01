"""PointRend on a Semantic FPN ("PointRend: Image Segmentation as Rendering",
Kirillov et al., CVPR 2020), weight-compatible with PaddleSeg's ``PointRend``.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager
from paddleseg.models.heads import FPNHead, FPNNeck, PointHead
from paddleseg.utils.checkpoint import load_pretrained_model


class PointRend(nn.Layer):
    """Backbone -> FPN neck -> Semantic FPN head (coarse) -> point head (fine).

    Registered as ``PointRend`` (PaddleSeg's name) and ``PointRendFPN``; the
    constructor keys are PaddleSeg's, so its configs and checkpoints work.

    Args:
        num_classes (int): Classes.
        backbone (nn.Layer): A backbone returning a list of feature maps and
            exposing ``feat_channels``.
        backbone_indices (list[int]): Which backbone outputs feed the neck,
            finest first (e.g. [0, 1, 2, 3]).
        fpn_inplanes (list[int], optional): Channels of those outputs.
            Default: [256, 512, 1024, 2048] (ResNet50+; [64, 128, 256, 512] for
            ResNet18/34).
        fpn_outplanes (int, optional): Pyramid channels. Default: 256.
        point_in_channels (list[int], optional): Channels of the fine maps the
            point head samples. Default: [256].
        point_out_channels (int, optional): Point MLP width. Default: 256.
        point_in_index (list[int], optional): Which pyramid outputs (coarsest
            first, see :class:`FPNNeck`) are the fine maps. Default: [0].
        point_num_fcs (int, optional): Point MLP layers. Default: 3.
        point_num_points (int, optional): Training points per image. Default: 2048.
        point_oversample_ratio (float, optional): Default: 3.
        point_importance_sample_ratio (float, optional): Default: 0.75.
        point_scale_factor (int, optional): Subdivision upsampling. Default: 2.
        point_subdivision_steps (int, optional): Default: 2.
        point_subdivision_num_points (int, optional): Default: 8196.
        point_dropout_ratio (float, optional): Default: 0.
        point_coarse_pred_each_layer (bool, optional): Default: True.
        point_input_transform (str, optional): Default: 'multiple_select'.
        point_conv_cfg (str, optional): Default: 'Conv1D'.
        PFN_feature_strides (list[int], optional): Default: [4, 8, 16, 32].
        PFN_in_channels (list[int], optional): Default: [256, 256, 256, 256].
        PFN_channels (int, optional): Default: 128.
        PFN_in_index (list[int], optional): Default: [0, 1, 2, 3].
        PFN_dropout_ratio (float, optional): Default: 0.
        PFN_conv_cfg (str, optional): Default: 'Conv2D'.
        PFN_input_transform (str, optional): Default: 'multiple_select'.
        align_corners (bool, optional): Of every resize and point sample
            (the neck always uses True). Default: False.
        pretrained (str, optional): Path or URL of whole-model weights. Default: None.

    Shapes: ``[N, 3, H, W]`` ->
        training: ``[coarse logits [N, num_classes, H, W],
        [point logits [N, num_classes, P], points [N, P, 2]]]``;
        inference: ``[refined logits [N, num_classes, H, W]]``, float32
        also under mixed precision (the losses cast the training outputs
        to float32 themselves, and the points are always float32).
    """

    def __init__(self, num_classes, backbone, backbone_indices,
                 fpn_inplanes=(256, 512, 1024, 2048), fpn_outplanes=256,
                 point_in_channels=(256,), point_out_channels=256,
                 point_in_index=(0,), point_num_fcs=3, point_num_points=2048,
                 point_oversample_ratio=3, point_importance_sample_ratio=0.75,
                 point_scale_factor=2, point_subdivision_steps=2,
                 point_subdivision_num_points=8196, point_dropout_ratio=0,
                 point_coarse_pred_each_layer=True,
                 point_input_transform='multiple_select',
                 point_conv_cfg='Conv1D', PFN_feature_strides=(4, 8, 16, 32),
                 PFN_in_channels=(256, 256, 256, 256), PFN_channels=128,
                 PFN_in_index=(0, 1, 2, 3), PFN_dropout_ratio=0,
                 PFN_conv_cfg='Conv2D', PFN_input_transform='multiple_select',
                 align_corners=False, pretrained=None):
        super().__init__()
        self.backbone = backbone
        self.backbone_indices = list(backbone_indices)
        channels = [backbone.feat_channels[i] for i in self.backbone_indices]
        if list(fpn_inplanes) != channels:
            raise ValueError(
                'model.fpn_inplanes {} does not match the channels of the '
                'backbone outputs {} ({})'.format(list(fpn_inplanes),
                                                  self.backbone_indices, channels))
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.neck = FPNNeck(fpn_inplanes=fpn_inplanes, fpn_outplanes=fpn_outplanes)
        self.pointhead = PointHead(
            num_classes=num_classes, num_fcs=point_num_fcs,
            in_channels=point_in_channels, out_channels=point_out_channels,
            in_index=point_in_index, num_points=point_num_points,
            oversample_ratio=point_oversample_ratio,
            importance_sample_ratio=point_importance_sample_ratio,
            scale_factor=point_scale_factor,
            subdivision_steps=point_subdivision_steps,
            subdivision_num_points=point_subdivision_num_points,
            dropout_ratio=point_dropout_ratio,
            coarse_pred_each_layer=point_coarse_pred_each_layer,
            conv_cfg=point_conv_cfg, input_transform=point_input_transform,
            align_corners=align_corners)
        self.fpnhead = FPNHead(
            num_class=num_classes, feature_strides=PFN_feature_strides,
            in_channels=PFN_in_channels, channels=PFN_channels,
            in_index=PFN_in_index, dropout_ratio=PFN_dropout_ratio,
            conv_cfg=PFN_conv_cfg, input_transform=PFN_input_transform,
            align_corners=align_corners)
        self.pretrained = pretrained
        if pretrained:
            load_pretrained_model(self, pretrained)

    def forward(self, x):
        feats = self.backbone(x)
        pyramid = self.neck([feats[i] for i in self.backbone_indices])
        coarse = self.fpnhead(pyramid)
        points = self.pointhead(pyramid, coarse)
        size = x.shape[2:]
        if self.training:
            return [self._resize(coarse[0], size), points]
        refined = self._resize(points[0], size)
        # under mixed precision the logits may be float16; what callers
        # (evaluation, prediction, export) get is float32 either way
        return [refined if refined.dtype == paddle.float32
                else refined.astype('float32')]

    def _resize(self, logits, size):
        return F.interpolate(logits, size, mode='bilinear',
                             align_corners=self.align_corners)


manager.MODELS.add_component(PointRend)
manager.MODELS.add_component(PointRend, name='PointRendFPN')
