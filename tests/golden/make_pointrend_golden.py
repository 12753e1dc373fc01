"""Make the golden fixtures from PyPI paddleseg 2.8.0's PointRend.

Run it with the Python of a throw-away venv that has paddleseg 2.8.0 (see
``tests/golden/README.md``; ``bash tests/golden/make_golden.sh`` does it all).
Writes, next to this file:

* ``pointrend_r18_golden.npz``: for PointRend + ResNet18_vd (os 8, 19
  classes) filled by :func:`golden_weights.fill_state_dict`, the seed, the
  inputs, the eval-mode (subdivision) logits of two images with what each
  subdivision step kept, and for a seeded training pass the coarse logits,
  the point logits and points, and what the points were drawn from (the
  point head's coarse logits, the oversampled candidates and their
  uncertainty); the README lists the arrays.
* ``paddleseg_state_dict_shapes.json``: every state-dict key and shape of
  PaddleSeg's ResNet{18,34,50,101,152}_vd (os 8) and of PointRend on
  ResNet101_vd, to check that ours have exactly the same.

The extra records are taken by wrapping two methods of the reference's point
head (:class:`recorder`); its results are not changed, and
:func:`check_training_record` checks that the record explains its points.
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


class recorder:
    """Record what PaddleSeg's point head ranks, without changing its results.

    Inside this context, on ``model.pointhead``:

    * ``get_points_train`` keeps its input (the coarse logits at the point
      head's resolution), every ``paddle.rand`` draw it makes (the
      oversampled candidates, then the uniform points) and the uncertainty
      its ``uncertainty_func`` returns for the candidates;
    * ``get_points_test`` keeps, per subdivision step, the grid's height and
      width, how many cells it re-predicts and the gap between the last kept
      and the first dropped uncertainty (``inf`` when every cell is kept),
      and the flat indices of the cells it keeps (sorted).

    The originals are called with the same arguments and their results are
    returned unchanged.
    """

    def __init__(self, model):
        self.head = model.pointhead
        self.train = {}
        self.steps = []
        self.kept = []

    def __enter__(self):
        head, train, steps, kept_cells = self.head, self.train, self.steps, self.kept
        get_train, get_test = head.get_points_train, head.get_points_test
        rand = self._rand = paddle.rand

        def spy_train(seg_logits, uncertainty_func):
            draws = []

            def spy_rand(*args, **kwargs):
                out = rand(*args, **kwargs)
                draws.append(out.numpy())
                return out

            def spy_uncertainty(logits):
                out = uncertainty_func(logits)
                train['uncertainty'] = out.numpy()[:, 0]
                return out
            paddle.rand = spy_rand
            try:
                points = get_train(seg_logits, spy_uncertainty)
            finally:
                paddle.rand = rand
            train['head_logits'] = seg_logits.numpy()
            train['draws'] = draws
            return points

        def spy_test(seg_logits, uncertainty_func):
            index, coords = get_test(seg_logits, uncertainty_func)
            u = np.sort(uncertainty_func(seg_logits).numpy().reshape(
                [seg_logits.shape[0], -1]), axis=1)[:, ::-1]
            h, w = seg_logits.shape[2:]
            kept = index.shape[1]
            gap = np.inf if kept == h * w else float((u[:, kept - 1] - u[:, kept]).min())
            steps.append([h, w, kept, gap])
            kept_cells.append(np.sort(index.numpy(), axis=1).astype('int32'))
            return index, coords

        head.get_points_train, head.get_points_test = spy_train, spy_test
        return self

    def __exit__(self, *exc):
        paddle.rand = self._rand
        del self.head.get_points_train, self.head.get_points_test


def run_eval(model, x, name, final=True):
    """Eval-mode outputs of ``x`` as fixture arrays named after ``name``:
    the logits (``final``: the model's output; else the point head's
    refined logits, before the resize to the input, a quarter of the size),
    the per-step table of :class:`recorder` (float ``[steps, 4]``: height,
    width, cells kept, boundary gap) and, for the steps that do not keep
    every cell, the sorted kept cells ``[N, kept]``."""
    model.eval()
    refined = []
    hook = model.pointhead.register_forward_post_hook(
        lambda layer, inputs, output: refined.append(output[0].numpy()))
    try:
        with paddle.no_grad(), concat_of_scalars_as_vectors(), recorder(model) as rec:
            logits = model(paddle.to_tensor(x))[0].numpy()
    finally:
        hook.remove()
    out = {name + ('_logits' if final else '_refined_logits'):
           logits if final else refined[0],
           name + '_steps': np.array(rec.steps, dtype='float64')}
    for i, ((h, w, kept, _), cells) in enumerate(zip(rec.steps, rec.kept)):
        if kept < h * w:
            out['{}_kept{}'.format(name, i)] = cells
    return out


def run_reference(model, eval_x, train_x, eval2_x):
    outputs = dict(run_eval(model, eval_x, 'eval'),
                   **run_eval(model, eval2_x, 'eval2', final=False))
    model.train()
    paddle.seed(SEED)
    with paddle.no_grad(), recorder(model) as rec:
        coarse, (point_logits, points) = model(paddle.to_tensor(train_x))
    candidates, uniform = rec.train['draws']
    points = points.numpy()
    check_training_record(points, candidates, uniform, rec.train['uncertainty'])
    outputs.update({
        'train_coarse_logits': coarse.numpy(),
        'train_point_logits': point_logits.numpy(),
        'train_points': points,
        'train_head_logits': rec.train['head_logits'],
        'train_candidates': candidates,
        'train_candidate_uncertainty': rec.train['uncertainty']})
    return outputs


def check_training_record(points, candidates, uniform, uncertainty):
    """Fail unless the record explains PaddleSeg's points: the first ones are
    distinct candidates whose recorded uncertainties are the highest ones, in
    descending order (exact ties may come in any order), the rest are the
    uniform draw."""
    k = points.shape[1] - uniform.shape[1]
    assert uncertainty.shape == candidates.shape[:2]
    np.testing.assert_array_equal(points[:, k:], uniform)
    for n in range(points.shape[0]):
        where = {tuple(c): i for i, c in enumerate(candidates[n].tolist())}
        idx = np.array([where[tuple(p)] for p in points[n, :k].tolist()])
        assert len(set(idx.tolist())) == k
        np.testing.assert_array_equal(uncertainty[n, idx],
                                      np.sort(uncertainty[n])[::-1][:k])


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
    paddleseg = golden_weights.require_reference()
    paddle.set_device('cpu')
    print('reference: paddleseg', paddleseg.__version__, 'at', paddleseg.__file__,
          'paddle', paddle.__version__, file=sys.stderr)
    eval_x, train_x = golden_weights.make_inputs(SEED)
    eval2_x = golden_weights.make_eval2_input(SEED)
    model = golden_weights.fill_state_dict(build_reference(), SEED)
    outputs = run_reference(model, eval_x, train_x, eval2_x)
    for name in ('eval_steps', 'eval2_steps'):
        print(name, '(height, width, kept, gap):', outputs[name].tolist(),
              file=sys.stderr)
    np.savez_compressed(os.path.join(HERE, 'pointrend_r18_golden.npz'),
                        seed=np.array(SEED), eval_x=eval_x, train_x=train_x,
                        eval2_x=eval2_x, **outputs)
    with open(os.path.join(HERE, 'paddleseg_state_dict_shapes.json'), 'w') as f:
        json.dump(state_dict_shapes(), f, indent=0, sort_keys=True)
    print('wrote fixtures to', HERE, file=sys.stderr)


if __name__ == '__main__':
    main()
