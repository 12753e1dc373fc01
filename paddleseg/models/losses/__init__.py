from paddleseg.models.losses.cross_entropy_loss import CrossEntropyLoss
from paddleseg.models.losses.point_cross_entropy_loss import PointCrossEntropyLoss

__all__ = ['CrossEntropyLoss', 'PointCrossEntropyLoss']
