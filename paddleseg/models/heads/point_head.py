"""PointRend's point head: an MLP on fine-grained + coarse point features."""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.models import point_features as pf
from paddleseg.models.heads.fpn import _check_input_transform
from paddleseg.models.layers import ConvReLU
from paddleseg.models.layers.conv import conv_dims


class PointHead(nn.Layer):
    """Predicts class logits at points from fine features and coarse logits.

    Training (``self.training``) picks points by uncertainty with randomness
    and returns their logits; inference refines the coarse logits by adaptive
    subdivision: ``subdivision_steps`` times, upsample by ``scale_factor``
    and re-predict the ``subdivision_num_points`` most uncertain cells.

    Args:
        num_classes (int, optional): Classes. Default: 19.
        num_fcs (int, optional): Hidden point-wise layers (1x1 conv + ReLU).
            Default: 3.
        in_channels (list[int], optional): Channels of the fine feature maps
            used. Default: [256].
        out_channels (int, optional): Width of the hidden layers. Default: 256.
        in_index (list[int], optional): Which inputs are the fine feature maps.
            Default: [0].
        num_points (int, optional): Training points per image. Default: 2048.
        oversample_ratio (float, optional): Training oversampling k. Default: 3.
        importance_sample_ratio (float, optional): Share of uncertain training
            points. Default: 0.75.
        scale_factor (int, optional): Upsampling per subdivision step. Default: 2.
        subdivision_steps (int, optional): Subdivision steps at inference. Default: 2.
        subdivision_num_points (int, optional): Points re-predicted per step
            (PaddleSeg's default, 8196, is kept for identical results). Default: 8196.
        dropout_ratio (float, optional): Dropout before the classifier (0: none).
            Default: 0.1.
        coarse_pred_each_layer (bool, optional): Concatenate the coarse point
            logits to the input of every layer. Default: True.
        conv_cfg (str, optional): Must be 'Conv1D'. Default: 'Conv1D'.
        input_transform (str, optional): Only 'multiple_select'. Default: 'multiple_select'.
        align_corners (bool, optional): Of the point sampling and upsampling.
            Default: False.

    Shapes:
        ``forward(inputs, prev_output)``: ``inputs`` the feature maps
        ``[N, C_i, H_i, W_i]``, ``prev_output`` a list whose first item is the
        coarse logits ``[N, num_classes, H, W]``. Training returns
        ``[point_logits [N, num_classes, num_points], points [N, num_points, 2]]``;
        inference returns ``[refined logits [N, num_classes, H * s^k, W * s^k]]``
        with ``s = scale_factor``, ``k = subdivision_steps``.

    The MLP is :meth:`point_mlp`, written once for every layout of the
    point features: dygraph applies its ``Conv1D`` layers to ``[N, C, P]``
    (PaddleSeg's numerics, bit for bit); an export applies them as matrix
    products on point-major rows (the export point head, deploy/adapters.py).

    Mixed precision: the points are float32 and the subdivision's indices
    int64 whatever the dtype of the maps; the features and coarse logits
    are sampled in float32 (see :mod:`paddleseg.models.point_features`),
    and the MLP runs in whatever precision ``paddle.amp.auto_cast`` gives
    it, so the point logits may be float16 (the loss casts them to
    float32). The refined logits keep the dtype of the upsampled coarse
    logits.
    """

    def __init__(self, num_classes=19, num_fcs=3, in_channels=(256,),
                 out_channels=256, in_index=(0,), num_points=2048,
                 oversample_ratio=3, importance_sample_ratio=0.75,
                 scale_factor=2, subdivision_steps=2,
                 subdivision_num_points=8196, dropout_ratio=0.1,
                 coarse_pred_each_layer=True, conv_cfg='Conv1D',
                 input_transform='multiple_select', align_corners=False):
        super().__init__()
        if conv_dims(conv_cfg, 'point_conv_cfg') != 1:
            raise ValueError("point_conv_cfg must be 'Conv1D', got {!r}".format(
                conv_cfg))
        _check_input_transform(input_transform, 'point_input_transform')
        if len(in_channels) != len(in_index):
            raise ValueError('point_in_channels {} and point_in_index {} differ in '
                             'length'.format(in_channels, in_index))
        self.num_classes = num_classes
        self.in_index = list(in_index)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.scale_factor = scale_factor
        self.subdivision_steps = subdivision_steps
        self.subdivision_num_points = subdivision_num_points
        self.coarse_pred_each_layer = coarse_pred_each_layer
        self.align_corners = align_corners

        extra = num_classes if coarse_pred_each_layer else 0
        c_in = sum(in_channels) + num_classes
        self.fcs = nn.LayerList()
        for _ in range(num_fcs):
            self.fcs.append(ConvReLU(c_in, out_channels, 1, dims=1))
            c_in = out_channels + extra
        self.fc_seg = nn.Conv1D(c_in, num_classes, kernel_size=1)
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else None

    def point_logits(self, fine_maps, coarse_logits, points):
        """Logits at ``points`` ``[N, P, 2]`` -> ``[N, num_classes, P]``."""
        fine = [pf.point_sample(m, points, align_corners=self.align_corners)
                for m in fine_maps]
        coarse = pf.point_sample(coarse_logits, points,
                                 align_corners=self.align_corners)
        return self.point_mlp(paddle.concat(fine + [coarse], axis=1), coarse,
                              _apply_conv, axis=1)

    def point_mlp(self, x, coarse, apply, axis):
        """The point MLP on point features, in the layout the caller chose.

        Each hidden layer is ``relu(apply(fc.conv, x))`` followed (with
        ``coarse_pred_each_layer``) by the coarse point logits concatenated
        along ``axis``; then the dropout and ``apply(fc_seg, x)``.

        Args:
            x (Tensor): Fine + coarse point features, channels along ``axis``:
                ``[N, C, P]`` (``axis=1``, :meth:`point_logits`) or
                point-major rows ``[N*P, C]`` (``axis=-1``).
            coarse (Tensor): The coarse point logits in the same layout.
            apply (callable): ``apply(conv, x)`` applies a kernel-1
                ``nn.Conv1D`` (``weight [C_out, C_in, 1]``, ``bias``) to ``x``
                in that layout: ``conv(x)`` for ``[N, C, P]``.
            axis (int): The channel axis of ``x``.

        Returns:
            Tensor: The point logits, ``num_classes`` along ``axis``.
        """
        for fc in self.fcs:
            x = F.relu(apply(fc.conv, x))
            if self.coarse_pred_each_layer:
                x = paddle.concat([x, coarse], axis=axis)
        if self.dropout is not None:
            x = self.dropout(x)
        return apply(self.fc_seg, x)

    def forward(self, inputs, prev_output):
        coarse = prev_output[0]
        fine_maps = [inputs[i] for i in self.in_index]
        if self.training:
            with paddle.no_grad():
                # PaddleSeg samples the logits for the uncertainty with
                # align_corners=False whatever the config; kept for parity.
                points = pf.get_uncertain_point_coords_with_randomness(
                    coarse, self.num_points, self.oversample_ratio,
                    self.importance_sample_ratio, align_corners=False)
            return [self.point_logits(fine_maps, coarse, points), points]
        return [self.subdivide(fine_maps, coarse)]

    def subdivide(self, fine_maps, coarse):
        """Adaptive subdivision inference; returns the refined logits."""
        refined = coarse
        for _ in range(self.subdivision_steps):
            refined = self._upsample(refined)
            idx, points = pf.get_uncertain_point_coords_on_grid(
                pf.calculate_uncertainty(refined), self.subdivision_num_points)
            refined = pf.scatter_point_logits(
                refined, idx, self.point_logits(fine_maps, coarse, points))
        return refined

    def _upsample(self, logits):
        """Bilinear upsample by ``scale_factor``. An integer factor is given
        as the output size (the same arithmetic, bit for bit): an exported
        program then has no list-of-float ``scale`` attribute, which
        paddle2onnx 2.1.0 cannot convert."""
        s = self.scale_factor
        if float(s).is_integer():
            size = [logits.shape[2] * int(s), logits.shape[3] * int(s)]
            return F.interpolate(logits, size, mode='bilinear',
                                 align_corners=self.align_corners)
        return F.interpolate(logits, scale_factor=s, mode='bilinear',
                             align_corners=self.align_corners)


def _apply_conv(conv, x):
    """:meth:`PointHead.point_mlp`'s ``apply`` for ``[N, C, P]`` features."""
    return conv(x)
