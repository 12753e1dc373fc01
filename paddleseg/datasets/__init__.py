"""Datasets (registered in ``manager.DATASETS``)."""

from paddleseg.datasets.dataset import Dataset
from paddleseg.datasets.cityscapes import Cityscapes
