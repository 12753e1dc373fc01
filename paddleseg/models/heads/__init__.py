from paddleseg.models.heads.fpn import FPNHead, FPNNeck
from paddleseg.models.heads.point_head import PointHead

__all__ = ['FPNNeck', 'FPNHead', 'PointHead']
