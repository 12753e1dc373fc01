"""Training, evaluation, inference and prediction loops."""

from paddleseg.core.infer import aug_inference, inference, slide_inference
from paddleseg.core.train import train
from paddleseg.core.options import TrainOptions
from paddleseg.core.trainer import Trainer
from paddleseg.core.val import evaluate
