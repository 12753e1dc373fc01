"""Cross entropy on PointRend's point logits."""

from paddleseg.cvlibs import manager
from paddleseg.models.losses.cross_entropy_loss import _WeightedCE
from paddleseg.models.point_features import as_float32, point_sample


@manager.LOSSES.add_component
class PointCrossEntropyLoss(_WeightedCE):
    """Cross entropy at the points the point head was trained on.

    The label is sampled at the points with nearest-neighbour sampling (a point
    outside the image reads 0, as ``grid_sample`` pads with zeros; the points
    are drawn inside ``[0, 1]``), then the loss is that of
    :class:`CrossEntropyLoss` over the points.

    Args:
        weight (list[float], optional): Per-class weights: the loss is
            ``sum w[y] ce / sum w[y]``. Default: None.
        ignore_index (int, optional): Ignored label. Default: 255.
        top_k_percent_pixels (float, optional): Default: 1.0.
        data_format (str, optional): Only 'NCHW'. Default: 'NCHW'.
        align_corners (bool, optional): Of the label sampling; must match the
            model's. Default: False.

    Shapes: ``forward([point_logits [N, C, P], points [N, P, 2]],
    label [N, H, W] or [N, 1, H, W])`` -> scalar.

    Mixed precision: the label is sampled at float32 coordinates and the
    cross entropy computed in float32 with autocast off, whatever the dtype
    of the point logits and points.
    """

    def __init__(self, weight=None, ignore_index=255, top_k_percent_pixels=1.0,
                 data_format='NCHW', align_corners=False):
        super().__init__(weight, ignore_index, top_k_percent_pixels, data_format)
        self.align_corners = align_corners

    def forward(self, logits, label):
        point_logits, points = logits
        if label.ndim == 3:
            label = label.unsqueeze(1)
        # float32 coordinates and label values (a float16 label would lose
        # no class id below 2048, but its coordinates would lose pixels)
        point_label = point_sample(label.astype('float32'), as_float32(points),
                                   align_corners=self.align_corners,
                                   mode='nearest')
        return self._loss(point_logits, point_label.squeeze(1).astype('int64'))
