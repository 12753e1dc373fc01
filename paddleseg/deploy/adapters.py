"""Export implementations, swapped into a model for the time of an export.

Owns what a saved program runs in place of the model's own code, kept apart
from the model (``paddleseg.models`` has one code path, for dygraph):

* :class:`ExportedModel`: the model in eval mode plus the output op
  (``argmax`` through :func:`paddleseg.deploy.legacy_ops.argmax_int32`).
* :class:`ExportPointHead`: PointRend's point head as exported. Its points
  are sampled with grid sample (``[N, P, 1, 2]`` grid, ``[N, C, P, 1]``
  features; the ``grid_sampler`` op in an old-IR program), never the CPU
  gather of dygraph, whose shapes a dynamic-size program does not know and
  whose pattern oneDNN's passes do not take; and its MLP
  (:meth:`~paddleseg.models.heads.PointHead.point_mlp`, written once) runs
  each kernel-1 ``Conv1D`` as a matrix product ``x[N*P, C_in] @ W^T + b``
  (``F.linear``) on point-major rows, transposed in once and out once: the
  same products and sums as the convolutions, where Paddle Inference would
  run each as an unsqueeze / conv2d / squeeze on a ``[N, C, 1, P]`` map, and
  ONNX Runtime gets MatMul instead of Conv. (Paddle 3.3.1's new-IR oneDNN
  fusions mistype the results of several reshape chains here;
  ``build_config`` leaves out ``operator_reshape_onednn_fuse_pass`` for
  that format.)
* :func:`export_adapters`: the context in which every point head of a model
  is its :class:`ExportPointHead` (the same sub-layers and parameters), put
  back on exit, so the user's model is left as it was.
"""

import contextlib

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.deploy import legacy_ops
from paddleseg.deploy.deploy_file import OUTPUT_OPS
from paddleseg.errors import DeployError
from paddleseg.models import point_features as pf
from paddleseg.models.heads import PointHead


class ExportedModel(nn.Layer):
    """The model in eval mode plus the output op.

    Args:
        model (nn.Layer): Returns a list whose first item is the logits
            ``[N, C, H, W]`` at the input size.
        output_op (str): 'argmax' (``int32 [N, H, W]`` class ids), 'softmax'
            (``float32 [N, C, H, W]`` probabilities) or 'none' (the logits).
    """

    def __init__(self, model, output_op='argmax'):
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise DeployError('output_op must be one of {}, got {!r}'.format(
                OUTPUT_OPS, output_op))
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        out = self.model(x)
        logits = out[0] if isinstance(out, (list, tuple)) else out
        if self.output_op == 'argmax':
            return legacy_ops.argmax_int32(logits)
        if self.output_op == 'softmax':
            return F.softmax(logits, axis=1)
        return logits


def _as_linear(conv, rows):
    """A kernel-1 ``Conv1D`` applied to point-major rows ``[R, C_in]`` ->
    ``[R, C_out]``: ``F.linear`` with its ``[C_out, C_in, 1]`` weight as
    ``[C_in, C_out]``."""
    c_out, c_in = conv.weight.shape[:2]
    weight = conv.weight.transpose([1, 0, 2]).reshape([c_in, c_out])
    return F.linear(rows, weight, conv.bias)


class ExportPointHead(PointHead):
    """A :class:`~paddleseg.models.heads.PointHead` as exported (see the
    module's doc); made by :meth:`view_of`, never trained."""

    @classmethod
    def view_of(cls, head):
        """An ExportPointHead that shares everything with ``head``: its
        sub-layers (so its parameters) and settings."""
        view = cls.__new__(cls)
        view.__dict__.update(vars(head))
        return view

    def point_logits(self, fine_maps, coarse_logits, points):
        """Logits at ``points`` ``[N, P, 2]`` -> ``[N, num_classes, P]``."""
        grid = points.unsqueeze(2)  # [N, P, 1, 2]
        size = paddle.shape(points)  # N, P, 2

        def rows(maps):  # [N, C, H, W] -> samples [N, C, P, 1] -> [N*P, C]
            t = pf.grid_sample_points(maps, grid, align_corners=self.align_corners,
                                      grid_sample=legacy_ops.grid_sample)
            return t.transpose([0, 2, 3, 1]).reshape([-1, t.shape[1]])

        coarse = rows(coarse_logits)
        x = paddle.concat([rows(m) for m in fine_maps] + [coarse], axis=-1)
        out = self.point_mlp(x, coarse, _as_linear, axis=-1)  # [N*P, K]
        return out.reshape([size[0], size[1], self.num_classes]).transpose([0, 2, 1])


@contextlib.contextmanager
def export_adapters(model):
    """Within: every :class:`~paddleseg.models.heads.PointHead` of ``model``
    is replaced by its :meth:`ExportPointHead.view_of`; on exit (also on an
    error) the heads are put back. Yields ``model``."""
    swapped = []
    try:
        for parent in [model] + list(model.sublayers()):
            for name, child in list(parent.named_children()):
                if isinstance(child, PointHead) and not isinstance(child, ExportPointHead):
                    setattr(parent, name, ExportPointHead.view_of(child))
                    swapped.append((parent, name, child))
        yield model
    finally:
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)
