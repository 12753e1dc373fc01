"""Tests of paddleseg.utils.download against a local HTTP server."""

import hashlib
import io
import multiprocessing
import os
import tarfile
import zipfile

import numpy as np
import paddle
import pytest

from paddleseg.errors import CheckpointError
from paddleseg.utils import download


def _linear_weights(path):
    """Save a tiny Linear's state dict to ``path``; return it as numpy arrays."""
    paddle.seed(1)
    state = paddle.nn.Linear(3, 2).state_dict()
    paddle.save(state, str(path))
    return {k: v.numpy() for k, v in state.items()}


def _make_tar_gz(path, files):
    """Write a .tar.gz at ``path`` holding ``{arcname: local file}``."""
    with tarfile.open(path, 'w:gz') as tar:
        for arcname, local in files.items():
            tar.add(str(local), arcname=arcname)


def _tar_with(path, members):
    """Write a .tar at ``path`` from ``(TarInfo, bytes or None)`` pairs."""
    with tarfile.open(path, 'w') as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _unlocked_entries(folder):
    """The entries of ``folder`` but the cache's lock files."""
    return sorted(n for n in os.listdir(folder) if not n.endswith('.lock'))


def _file(name, data=b'payload'):
    return tarfile.TarInfo(name), data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None



def test_fetch_archive_downloads_once_and_returns_weights(server, tmp_path):
    expected = _linear_weights(tmp_path / 'model.pdparams')
    _make_tar_gz(server.root / 'lin_w.tar.gz', {'lin_w/model.pdparams': tmp_path / 'model.pdparams'})
    cache = tmp_path / 'cache'

    path = download.fetch_pretrained(server.url + '/lin_w.tar.gz', cache_dir=str(cache))

    assert path == str(cache / 'lin_w' / 'lin_w' / 'model.pdparams')
    loaded = paddle.load(path)
    assert all(np.array_equal(loaded[k].numpy(), v) for k, v in expected.items())
    assert server.requests == ['/lin_w.tar.gz']
    # archive removed, no temp folder; the (empty) lock file stays
    assert sorted(os.listdir(cache)) == ['.lin_w.tar.gz.lock', 'lin_w']

    again = download.fetch_pretrained(server.url + '/lin_w.tar.gz', cache_dir=str(cache))
    assert again == path
    assert len(server.requests) == 1


def test_cache_dir_from_environment(server, tmp_path, monkeypatch):
    _linear_weights(server.root / 'lin.pdparams')
    monkeypatch.setenv('SEG_CACHE_DIR', str(tmp_path / 'env_cache'))

    path = download.fetch_pretrained(server.url + '/lin.pdparams')
    assert path == str(tmp_path / 'env_cache' / 'lin.pdparams')
    download.fetch_pretrained(server.url + '/lin.pdparams')
    assert server.requests == ['/lin.pdparams']


def test_single_pdparams_with_other_name_is_found(server, tmp_path):
    _linear_weights(tmp_path / 'weights.pdparams')
    _make_tar_gz(server.root / 'w.tgz', {'weights.pdparams': tmp_path / 'weights.pdparams'})
    path = download.fetch_pretrained(server.url + '/w.tgz', cache_dir=str(tmp_path / 'c'))
    assert path == str(tmp_path / 'c' / 'w' / 'weights.pdparams')


def test_local_path_is_returned_as_is(tmp_path):
    local = tmp_path / 'm.pdparams'
    local.write_bytes(b'')
    assert download.fetch_pretrained(str(local)) == str(local)
    with pytest.raises(CheckpointError, match='nope.pdparams'):
        download.fetch_pretrained(str(tmp_path / 'nope.pdparams'))


def test_download_file_is_complete_and_leaves_no_temp(server, tmp_path):
    (server.root / 'blob.bin').write_bytes(os.urandom(200_000))
    dest = tmp_path / 'out' / 'blob.bin'
    assert download.download_file(server.url + '/blob.bin', str(dest)) == str(dest)
    assert dest.read_bytes() == (server.root / 'blob.bin').read_bytes()
    assert os.listdir(dest.parent) == ['blob.bin']


def test_http_404_names_the_url(server, tmp_path):
    url = server.url + '/missing.tar.gz'
    with pytest.raises(CheckpointError, match=f'{url}.*404'):
        download.fetch_pretrained(url, cache_dir=str(tmp_path / 'cache'))
    assert _unlocked_entries(tmp_path / 'cache') == []


def test_truncated_transfer_is_an_error(server, tmp_path):
    url = server.url + '/truncated.pdparams'
    with pytest.raises(CheckpointError, match=url):
        download.download_file(url, str(tmp_path / 't.pdparams'))
    assert os.listdir(tmp_path) == ['www']


def test_timeout_names_the_url(server, tmp_path):
    url = server.url + '/slow'
    with pytest.raises(CheckpointError, match=f'{url}.*timed out'):
        download.download_file(url, str(tmp_path / 'slow'), timeout=0.3)
    assert os.listdir(tmp_path) == ['www']


def test_safe_archive_with_inner_link_extracts(tmp_path):
    archive = tmp_path / 'ok.tar'
    _tar_with(archive, [_file('data/a.txt', b'hello'), _link('alias', 'data/a.txt')])
    dest = tmp_path / 'dest'
    download.extract_archive(str(archive), str(dest))
    assert (dest / 'alias').read_bytes() == b'hello'


@pytest.mark.parametrize('member, bad_name', [
    (_file('../evil'), '../evil'),
    (_file('sub/../../evil'), 'sub/../../evil'),
    (_link('link', '../evil'), 'link'),
    (_link('hard', '../evil', tarfile.LNKTYPE), 'hard'),
])
def test_tar_member_escaping_is_rejected(tmp_path, member, bad_name):
    archive = tmp_path / 'bad.tar'
    _tar_with(archive, [_file('fine.txt'), member])
    dest = tmp_path / 'dest'
    with pytest.raises(CheckpointError, match=f"member '{bad_name}'"):
        download.extract_archive(str(archive), str(dest))
    assert sorted(os.listdir(tmp_path)) == ['bad.tar', 'dest']
    assert os.listdir(dest) == []


def test_tar_absolute_paths_are_rejected(tmp_path):
    outside = tmp_path / 'outside'
    for i, member in enumerate([_file(str(outside / 'abs_evil')),
                                _link('abs_link', str(outside))]):
        archive = tmp_path / f'abs{i}.tar'
        _tar_with(archive, [member, _file('abs_link/payload')] if i else [member])
        with pytest.raises(CheckpointError, match="member '"):
            download.extract_archive(str(archive), str(tmp_path / 'dest'))
    assert not outside.exists()
    assert os.listdir(tmp_path / 'dest') == []


def test_link_chain_escape_is_rejected(tmp_path):
    # 'here' -> '.' and 'up' -> 'here/..' both look inside until resolved.
    archive = tmp_path / 'chain.tar'
    _tar_with(archive, [_link('here', '.'), _link('up', 'here/..'), _file('up/evil')])
    with pytest.raises(CheckpointError, match='chain.tar'):
        download.extract_archive(str(archive), str(tmp_path / 'dest'))
    assert not (tmp_path / 'evil').exists()


def test_zip_escape_is_rejected(tmp_path):
    archive = tmp_path / 'bad.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        zf.writestr('ok.txt', 'x')
        zf.writestr('../evil', 'x')
    with pytest.raises(CheckpointError, match="member '../evil'"):
        download.extract_archive(str(archive), str(tmp_path / 'dest'))
    assert not (tmp_path / 'evil').exists()
    assert os.listdir(tmp_path / 'dest') == []


def test_bad_archive_is_not_cached(server, tmp_path):
    _tar_with(server.root / 'evil.tar', [_file('../evil')])
    cache = tmp_path / 'cache'
    with pytest.raises(CheckpointError, match="'../evil'"):
        download.fetch_pretrained(server.url + '/evil.tar', cache_dir=str(cache))
    assert _unlocked_entries(cache) == []
    assert not (tmp_path / 'evil').exists()


# -- several processes fetching the same URL at once ----------------------------------
PROCESSES = 4


def _fetch_after_barrier(url, cache, barrier, results):
    """In a child process: wait for the others, fetch, report (path, sha256)."""
    try:
        barrier.wait(30)
        path = download.fetch_pretrained(url, cache_dir=cache)
        with open(path, 'rb') as f:
            results.put((os.getpid(), path, hashlib.sha256(f.read()).hexdigest()))
    except BaseException as exc:  # reported to the test, not lost in the child
        results.put((os.getpid(), 'error', repr(exc)))


def _fetch_concurrently(url, cache):
    """Start :data:`PROCESSES` forked processes that fetch ``url`` into
    ``cache`` at the same moment; return their ``(pid, path, sha256)``."""
    ctx = multiprocessing.get_context('fork')  # the children use no paddle kernel
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_fetch_after_barrier, args=(url, cache, barrier, results))
             for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    try:
        out = [results.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
    assert all(proc.exitcode == 0 for proc in procs), [p.exitcode for p in procs]
    return out


def test_concurrent_processes_download_a_file_once(server, tmp_path):
    payload = os.urandom(24 << 20)  # long enough that the others arrive mid-download
    (server.root / 'big.pdparams').write_bytes(payload)
    cache = tmp_path / 'cache'

    out = _fetch_concurrently(server.url + '/big.pdparams', str(cache))

    assert server.requests == ['/big.pdparams']
    expected = hashlib.sha256(payload).hexdigest()
    assert [(path, digest) for _, path, digest in out] == \
        [(str(cache / 'big.pdparams'), expected)] * PROCESSES
    assert sorted(os.listdir(cache)) == ['.big.pdparams.lock', 'big.pdparams']


def test_concurrent_processes_unpack_an_archive_once(server, tmp_path):
    weights = tmp_path / 'model.pdparams'
    _linear_weights(weights)
    with open(weights, 'ab') as f:  # a big member: unpacking takes a while too
        f.write(os.urandom(16 << 20))
    _make_tar_gz(server.root / 'pack.tar.gz', {'pack/model.pdparams': weights})
    cache = tmp_path / 'cache'

    out = _fetch_concurrently(server.url + '/pack.tar.gz', str(cache))

    assert server.requests == ['/pack.tar.gz']
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert [(path, digest) for _, path, digest in out] == \
        [(str(cache / 'pack' / 'pack' / 'model.pdparams'), expected)] * PROCESSES
    assert _unlocked_entries(cache) == ['pack']  # archive removed, no temp folders


def test_a_held_lock_makes_fetch_wait(server, tmp_path):
    """While another process holds the entry's lock, fetch_pretrained waits
    and then uses what that process put in the cache (no request)."""
    import fcntl
    _linear_weights(server.root / 'w.pdparams')
    cache = tmp_path / 'cache'
    cache.mkdir()
    holder = os.open(download.lock_path(str(cache), 'w.pdparams'),
                     os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    ctx = multiprocessing.get_context('fork')
    barrier, results = ctx.Barrier(1), ctx.Queue()
    child = ctx.Process(target=_fetch_after_barrier,
                        args=(server.url + '/w.pdparams', str(cache), barrier, results))
    child.start()
    try:
        child.join(1.0)
        assert child.is_alive()  # waiting on the lock
        (cache / 'w.pdparams').write_bytes(b'made by the lock holder')
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    _, path, digest = results.get(timeout=60)
    child.join(30)
    assert path == str(cache / 'w.pdparams')
    assert digest == hashlib.sha256(b'made by the lock holder').hexdigest()
    assert server.requests == []
