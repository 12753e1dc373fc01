"""Make the golden fixtures from PyPI paddleseg 2.8.0's PointRend.

Run it with the Python of a throw-away venv that has paddleseg 2.8.0 (see
``tests/golden/README.md``; ``bash tests/golden/make_golden.sh`` does it all).
Writes, next to this file:

* ``pointrend_r18_golden.npz``: seed, inputs, the eval-mode (subdivision)
  logits, the training-mode coarse logits, and the training-mode point
  logits with their points, of PointRend + ResNet18_vd (os 8, 19 classes)
  filled by :func:`golden_weights.fill_state_dict`.
* ``paddleseg_state_dict_shapes.json``: every state-dict key and shape of
  PaddleSeg's ResNet{18,34,50,101,152}_vd (os 8) and of PointRend on
  ResNet101_vd, to check that ours have exactly the same.
"""

import json
import os
import sys

import numpy as np
import paddle

import golden_weights

SEED = 2020
HERE = os.path.dirname(os.path.abspath(__file__))


def build_reference():
    from paddleseg.models import PointRend
    from paddleseg.models.backbones import ResNet18_vd
    return PointRend(num_classes=19, backbone=ResNet18_vd(output_stride=8),
                     backbone_indices=[0, 1, 2, 3],
                     fpn_inplanes=[64, 128, 256, 512])


class concat_of_scalars_as_vectors:
    """Work around paddleseg 2.8.0's eval path on paddle 3.

    Its PointHead.get_points_test takes ``min(concat([h * w, num_points]))``
    of two 0-d tensors, one int64 and one int32, which paddle 3 rejects
    (0-d tensors cannot be concatenated; dtypes differ). Inside this context
    ``paddle.concat`` of 0-d integer tensors makes them 1-d int64 first, the
    meaning paddle 2 gave it; every other call is passed through unchanged.
    """

    def __enter__(self):
        self._concat = paddle.concat
        original = self._concat

        def concat(x, axis=0, name=None):
            if (isinstance(x, (list, tuple)) and x
                    and all(isinstance(t, paddle.Tensor) and t.ndim == 0 for t in x)):
                x = [t.reshape([1]).astype('int64') for t in x]
            return original(x, axis=axis, name=name)
        paddle.concat = concat
        return self

    def __exit__(self, *exc):
        paddle.concat = self._concat


def run_reference(model, eval_x, train_x):
    model.eval()
    with paddle.no_grad(), concat_of_scalars_as_vectors():
        eval_logits = model(paddle.to_tensor(eval_x))[0].numpy()
    model.train()
    paddle.seed(SEED)
    with paddle.no_grad():
        coarse, (point_logits, points) = model(paddle.to_tensor(train_x))
    return {'eval_logits': eval_logits, 'train_coarse_logits': coarse.numpy(),
            'train_point_logits': point_logits.numpy(),
            'train_points': points.numpy()}


def state_dict_shapes():
    from paddleseg.models import PointRend
    from paddleseg.models import backbones as bb
    shapes = {}
    for name in ['ResNet18_vd', 'ResNet34_vd', 'ResNet50_vd', 'ResNet101_vd',
                 'ResNet152_vd']:
        net = getattr(bb, name)(output_stride=8)
        shapes[name] = {k: list(v.shape) for k, v in net.state_dict().items()}
    model = PointRend(num_classes=19, backbone=bb.ResNet101_vd(output_stride=8),
                      backbone_indices=[0, 1, 2, 3])
    shapes['PointRend_ResNet101_vd'] = {
        k: list(v.shape) for k, v in model.state_dict().items()}
    return shapes


def main():
    paddle.set_device('cpu')
    import paddleseg
    print('reference: paddleseg', paddleseg.__version__, 'paddle',
          paddle.__version__, file=sys.stderr)
    eval_x, train_x = golden_weights.make_inputs(SEED)
    model = golden_weights.fill_state_dict(build_reference(), SEED)
    outputs = run_reference(model, eval_x, train_x)
    np.savez_compressed(os.path.join(HERE, 'pointrend_r18_golden.npz'),
                        seed=np.array(SEED), eval_x=eval_x, train_x=train_x,
                        **outputs)
    with open(os.path.join(HERE, 'paddleseg_state_dict_shapes.json'), 'w') as f:
        json.dump(state_dict_shapes(), f, indent=0, sort_keys=True)
    print('wrote fixtures to', HERE, file=sys.stderr)


if __name__ == '__main__':
    main()
