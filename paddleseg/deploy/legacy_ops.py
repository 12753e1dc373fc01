"""The hand-built old-IR ops of the ``paddle_legacy`` export.

Owns every op this project builds by hand: Paddle 3.3's ``F.grid_sample``
and ``paddle.argmax`` build new-IR ops only, so while an old-IR program is
being built (``FLAGS_enable_pir_api`` off, ``export --format
paddle_legacy``) the functions here append the old-IR op each stands for
(``grid_sampler``, ``arg_max``) through ``LayerHelper``; in dygraph and in
a new-IR program they are the paddle call itself. Used by the export
adapters (:mod:`paddleseg.deploy.adapters`) only: the models never see them.
"""

import paddle
import paddle.nn.functional as F


def in_old_ir_program():
    """Whether ops are being added to an old-IR static program."""
    return not paddle.in_dynamic_mode() and not paddle.framework.in_pir_mode()


def _append_op(type_name, inputs, out_dtype, out_name, attrs):
    from paddle.base.layer_helper import LayerHelper
    helper = LayerHelper(type_name)
    out = helper.create_variable_for_type_inference(out_dtype)
    helper.append_op(type=type_name, inputs=inputs, outputs={out_name: out}, attrs=attrs)
    return out


def grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=True):
    """``F.grid_sample`` (same arguments and result: ``x`` ``[N, C, H, W]``,
    ``grid`` ``[N, Hg, Wg, 2]`` in ``[-1, 1]`` -> ``[N, C, Hg, Wg]``); in an
    old-IR program, the ``grid_sampler`` op."""
    if not in_old_ir_program():
        return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode,
                             align_corners=align_corners)
    return _append_op('grid_sampler', {'X': x, 'Grid': grid}, x.dtype, 'Output',
                      {'mode': mode, 'padding_mode': padding_mode,
                       'align_corners': align_corners})


def argmax_int32(logits):
    """``paddle.argmax(logits, axis=1, dtype='int32')`` (``[N, C, H, W]`` ->
    ``int32 [N, H, W]``); in an old-IR program, the ``arg_max`` op."""
    if not in_old_ir_program():
        return paddle.argmax(logits, axis=1, dtype='int32')
    return _append_op('arg_max', {'X': logits}, paddle.int32, 'Out',
                      {'axis': 1, 'keepdims': False, 'flatten': False,
                       'dtype': int(paddle.base.core.VarDesc.VarType.INT32)})
