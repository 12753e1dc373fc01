"""Tests of paddleseg.utils.env."""

import random

import numpy as np
import paddle
import pytest

from paddleseg.errors import ConfigError
from paddleseg.utils import env


def _draw():
    return random.random(), np.random.rand(3).tolist(), paddle.rand([3]).numpy().tolist()


def test_seed_everything_is_deterministic():
    env.seed_everything(7)
    first = _draw()
    env.seed_everything(7)
    assert _draw() == first
    env.seed_everything(8)
    assert _draw() != first


@pytest.fixture
def thread_calls(monkeypatch):
    """Record the counts passed to paddle's set_num_threads instead of applying them."""
    calls = []
    monkeypatch.setattr(paddle.base.core, 'set_num_threads', calls.append)
    monkeypatch.delenv(env.THREADS_ENV, raising=False)
    return calls


def test_threads_default_to_all_usable_cores_on_cpu(thread_calls, monkeypatch):
    monkeypatch.setattr(env, 'get_device', lambda: 'cpu')
    assert env.set_cpu_threads() == env.usable_cpu_count()
    assert thread_calls == [env.usable_cpu_count()]


def test_threads_honour_env_var_and_argument(thread_calls, monkeypatch):
    monkeypatch.setenv(env.THREADS_ENV, '3')
    assert env.set_cpu_threads() == 3
    assert env.set_cpu_threads(5) == 5
    assert thread_calls == [3, 5]


def test_threads_env_var_must_be_positive(thread_calls, monkeypatch):
    for bad in ('0', 'two', '-1'):
        monkeypatch.setenv(env.THREADS_ENV, bad)
        with pytest.raises(ConfigError, match=env.THREADS_ENV):
            env.set_cpu_threads()
    assert thread_calls == []


def test_threads_untouched_on_gpu_without_request(thread_calls, monkeypatch):
    monkeypatch.setattr(env, 'get_device', lambda: 'gpu')
    assert env.set_cpu_threads() is None
    monkeypatch.setenv(env.THREADS_ENV, '2')
    assert env.set_cpu_threads() == 2
    assert thread_calls == [2]


def test_real_call_and_device():
    assert env.get_device() in ('cpu', 'gpu')
    assert env.set_cpu_threads(1) == 1
    env.set_cpu_threads(env.usable_cpu_count())
