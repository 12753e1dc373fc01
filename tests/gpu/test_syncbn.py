"""SyncBatchNorm on one GPU.

Multi-GPU training converts every BatchNorm of the model with
``paddle.nn.SyncBatchNorm.convert_sync_batchnorm`` (paddleseg.core.train).
In a single process (no communicator) paddle's GPU ``sync_batch_norm`` kernel
uses the statistics of its own batch, so the converted model must train and
compute what plain BatchNorm does.
"""

import numpy as np
import paddle
import paddle.nn as nn
from paddle.nn.layer.norm import _BatchNormBase  # what convert_sync_batchnorm converts


def _norms(model):
    """(names of the non-synchronised batch norms, names of the SyncBatchNorms)."""
    plain, sync = [], []
    for name, layer in model.named_sublayers():
        if isinstance(layer, nn.SyncBatchNorm):
            sync.append(name)
        elif isinstance(layer, (_BatchNormBase, nn.BatchNorm)):  # nn.BatchNorm: the legacy one
            plain.append(name)
    return plain, sync


def _with_grad(model):
    """Names of the batch norms (either kind) whose scale has a gradient."""
    return sorted(name for name, layer in model.named_sublayers()
                  if isinstance(layer, _BatchNormBase) and layer.weight.grad is not None)


def _state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_convert_sync_batchnorm_converts_every_batchnorm(tiny, tools, on_device):
    _, model = tools.build(tiny['cfg'])
    plain, sync = _norms(model)
    assert plain and not sync
    before = _state(model)

    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    plain_after, sync_after = _norms(converted)
    assert plain_after == [], 'not converted: {}'.format(plain_after)
    assert sorted(sync_after) == sorted(plain), 'every BatchNorm, in its place'
    assert len(sync_after) == len(plain)
    # same names and values: checkpoints load into either form
    after = _state(converted)
    assert list(after) == list(before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


def test_sync_batchnorm_training_steps_on_one_gpu(tiny, tools, on_device):
    from paddleseg.core.train import compute_losses
    from paddleseg.cvlibs import builder

    paddle.seed(5)
    cfg, model = tools.build(tiny['cfg'])
    _, reference = tools.build(tiny['cfg'])  # plain BatchNorm, the same weights
    reference.set_state_dict(model.state_dict())
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    sync_layers = [layer for layer in model.sublayers() if isinstance(layer, nn.SyncBatchNorm)]
    assert sync_layers
    losses = builder.build_losses(cfg, tiny['cfg'])
    lr = builder.build_lr_scheduler(cfg, cfg['iters'], tiny['cfg'])
    optimizer = builder.build_optimizer(cfg, model, lr, tiny['cfg'])

    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((2, 3, 64, 64)).astype('float32'))
    label = rng.integers(0, model.num_classes, (2, 64, 64))
    label[:, :4, :4] = 255  # some ignored pixels
    label = paddle.to_tensor(label.astype('int64'))
    model.train()
    reference.train()
    before = _state(model)

    # one process: the statistics of its own batch, as plain BatchNorm
    ref_out = reference(x)
    expected = ref_out[0].numpy()
    paddle.add_n(compute_losses(ref_out, label, losses)).backward()
    expect_grads = _with_grad(reference)  # (a few norms feed no output)
    assert expect_grads
    for step in range(2):
        outputs = model(x)
        if step == 0:
            # (a SyncBatchNorm that normalised with other statistics would
            # be off by the order of the logits themselves)
            coarse = outputs[0].numpy()
            error = np.linalg.norm(coarse - expected) / np.linalg.norm(expected)
            assert error < 1e-3, 'coarse logits differ from BatchNorm\'s by {:.3g}'.format(error)
        terms = compute_losses(outputs, label, losses)
        loss = paddle.add_n(terms)
        values = [float(t) for t in terms]
        assert np.isfinite(values).all(), 'step {}: loss terms {}'.format(step, values)
        loss.backward()
        assert _with_grad(model) == expect_grads, 'gradients through the norms'
        for layer in sync_layers:
            if layer.weight.grad is not None:
                assert np.isfinite(layer.weight.grad.numpy()).all()
        optimizer.step()
        optimizer.clear_grad()

    after = _state(model)
    trained = [k for k in before if not np.array_equal(before[k], after[k])]
    assert trained, 'the steps changed nothing'
    for key, value in after.items():
        assert np.isfinite(value).all(), key
    # the running statistics moved (SyncBatchNorm updates them in training)
    assert any(not np.array_equal(before[k], after[k])
               for k in before if k.endswith('_mean'))
