"""Models, backbones, heads and losses; importing registers them."""

from paddleseg.models import backbones, losses
from paddleseg.models.pointrend import PointRend
