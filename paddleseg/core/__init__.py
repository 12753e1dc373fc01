"""Training, evaluation, inference and prediction loops.

As in PaddleSeg 2.8, ``paddleseg.core.train``, ``paddleseg.core.evaluate``
and ``paddleseg.core.predict`` are functions (``paddleseg.core.predict``
hides the module of the same name: ``from paddleseg.core.predict import
predict_images`` still reaches it). ``evaluate_details`` and
``predict_images`` are this repository's richer forms.
"""

from paddleseg.core import infer  # noqa: F401
from paddleseg.core.infer import aug_inference, inference, slide_inference  # noqa: F401
from paddleseg.core.train import train  # noqa: F401
from paddleseg.core.options import TrainOptions  # noqa: F401
from paddleseg.core.trainer import Trainer  # noqa: F401
from paddleseg.core.val import evaluate, evaluate_details  # noqa: F401
from paddleseg.core.predict import predict, predict_images  # noqa: F401

__all__ = ['train', 'evaluate', 'predict', 'evaluate_details', 'predict_images',
           'TrainOptions', 'Trainer', 'inference', 'aug_inference', 'slide_inference']
