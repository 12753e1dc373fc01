"""Small things the in-process training tests share: a tiny two-class
dataset and a real GradScaler made on the CPU."""

import types

import numpy as np

from paddleseg.core import amp


class TinyData:
    """``n`` random 3x8x8 images with two-class labels (seeded)."""
    num_classes = 2
    ignore_index = 255

    def __init__(self, n=4):
        rng = np.random.default_rng(0)
        self.items = [{'img': rng.standard_normal((3, 8, 8)).astype('float32'),
                       'label': rng.integers(0, 2, (8, 8)).astype('int64')} for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return dict(self.items[index])


class _Gpu:
    def is_gpu_place(self):
        return True

    def is_xpu_place(self):
        return False

    def is_custom_place(self):
        return False


def gpu_grad_scaler(monkeypatch, **kwargs):
    """``amp.make_grad_scaler('fp16', **kwargs)`` made while paddle believes
    the place is a GPU (on a CPU place paddle disables every scaler)."""
    import paddle.amp.grad_scaler as grad_scaler
    with monkeypatch.context() as m:
        m.setattr(grad_scaler, '_dygraph_tracer',
                  lambda: types.SimpleNamespace(_expected_place=_Gpu()))
        scaler = amp.make_grad_scaler('fp16', **kwargs)
    assert scaler.is_enable()
    return scaler
