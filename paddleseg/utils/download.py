"""Downloading and unpacking pretrained weights.

:func:`download_file` fetches one URL, :func:`extract_archive` unpacks a
.tar/.tar.gz/.tgz/.zip safely, and :func:`fetch_pretrained` combines them with
a cache folder so each archive is downloaded once.

Several processes (the ranks of ``paddle.distributed.launch`` on one
machine, or two jobs) asking for the same URL download it once: each takes
an exclusive ``flock`` on ``<cache>/.<file name>.lock`` first; the first
downloads (to a temporary name, renamed when complete) and unpacks, the
others wait and then find the completed file in the cache.
"""

import contextlib
import errno
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib

from tqdm import tqdm

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

from paddleseg.errors import CheckpointError
from paddleseg.utils import logger

ARCHIVE_SUFFIXES = ('.tar.gz', '.tgz', '.tar', '.zip')
DEFAULT_CACHE_DIR = os.path.join('~', '.paddleseg', 'pretrained_model')
_CHUNK = 1 << 16


def is_url(path):
    """Return True when ``path`` is an http(s) URL."""
    return urllib.parse.urlparse(str(path)).scheme in ('http', 'https')


def download_file(url, dest_path, timeout=30):
    """Download ``url`` to ``dest_path`` with a progress bar and return ``dest_path``.

    The data is written to a hidden temporary file in the destination folder
    and renamed over ``dest_path`` only when complete, so ``dest_path`` never
    holds a partial download. ``timeout`` (default 30) is in seconds per
    network operation.

    Raises:
        CheckpointError: on an HTTP error, a network error, a timeout or a
            truncated transfer; the message names the URL.
    """
    folder = os.path.dirname(os.path.abspath(dest_path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        dir=folder, prefix='.' + os.path.basename(dest_path) + '.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as out:
            _copy_url(url, out, timeout)
        os.replace(tmp_path, dest_path)
    except BaseException:
        os.remove(tmp_path)
        raise
    return dest_path


def _copy_url(url, out, timeout):
    """Stream ``url`` into the open binary file ``out``, showing progress."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get('Content-Length') or 0) or None
            received = _copy_with_progress(response, out, total, url)
    except urllib.error.HTTPError as exc:
        raise CheckpointError(
            f'Cannot download {url}: HTTP {exc.code} {exc.reason}') from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, 'reason', exc)
        raise CheckpointError(f'Cannot download {url}: {reason}') from exc
    if total is not None and received != total:
        raise CheckpointError(
            f'Cannot download {url}: got {received} of {total} bytes')


def _copy_with_progress(response, out, total, url):
    """Copy ``response`` to ``out`` in chunks; return the byte count."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or url
    received = 0
    with tqdm(total=total, unit='B', unit_scale=True, desc=name) as bar:
        while True:
            chunk = response.read(_CHUNK)
            if not chunk:
                return received
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))


def archive_stem(name):
    """Return ``name`` without its archive suffix, or None if it is not an archive."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return None


def extract_archive(path, dest_dir):
    """Unpack the .tar, .tar.gz, .tgz or .zip file ``path`` into ``dest_dir``.

    Every member is checked before anything is written: a member with an
    absolute path, a path that leaves ``dest_dir`` (through ``..``), or a
    symbolic or hard link whose target lies outside ``dest_dir`` rejects the
    whole archive. Tar links that escape only through other links (``a ->
    .`` then ``b -> a/..``) are caught during extraction by tarfile's
    ``data`` filter, after the members before them were written inside
    ``dest_dir``. Returns ``dest_dir`` as an absolute path.

    Raises:
        CheckpointError: for an unsafe member (the message names it), an
            unreadable archive or an unsupported suffix.
    """
    dest_dir = os.path.abspath(dest_dir)
    os.makedirs(dest_dir, exist_ok=True)
    lower = str(path).lower()
    try:
        if lower.endswith('.zip'):
            _extract_zip(path, dest_dir)
        elif lower.endswith(('.tar', '.tar.gz', '.tgz')):
            _extract_tar(path, dest_dir)
        else:
            raise CheckpointError(
                f'Cannot unpack {path}: expected one of {", ".join(ARCHIVE_SUFFIXES)}')
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise CheckpointError(f'Cannot unpack {path}: {exc}') from exc
    return dest_dir


def _extract_tar(path, dest_dir):
    """Check every tar member, then extract them with the ``data`` filter."""
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        for member in members:
            _check_tar_member(path, member, dest_dir)
        # The 'data' filter re-checks each member against what is already on
        # disk, which catches escapes through chains of links.
        tar.extractall(dest_dir, members=members, filter='data')


def _check_tar_member(path, member, dest_dir):
    """Raise CheckpointError if the tar ``member`` could write outside ``dest_dir``."""
    target = _inside(path, member.name, dest_dir)
    if member.issym():
        link = os.path.join(os.path.dirname(target), member.linkname)
    elif member.islnk():
        link = os.path.join(dest_dir, member.linkname)
    elif member.isfile() or member.isdir():
        return
    else:
        raise CheckpointError(
            f"Refusing to unpack {path}: member '{member.name}' is not a "
            'regular file, folder or link')
    if os.path.isabs(member.linkname) or not _is_within(link, dest_dir):
        raise CheckpointError(
            f"Refusing to unpack {path}: member '{member.name}' links to "
            f"'{member.linkname}' outside {dest_dir}")


def _extract_zip(path, dest_dir):
    """Check every zip member name, then extract them."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            _inside(path, name, dest_dir)
        archive.extractall(dest_dir)


def _inside(path, name, dest_dir):
    """Return where member ``name`` lands in ``dest_dir``; raise if it escapes."""
    posix_name = name.replace('\\', '/')
    target = os.path.normpath(os.path.join(dest_dir, posix_name))
    if posix_name.startswith('/') or os.path.isabs(name) or not _is_within(target, dest_dir):
        raise CheckpointError(
            f"Refusing to unpack {path}: member '{name}' would be written "
            f'outside {dest_dir}')
    return target


def _is_within(path, folder):
    """Return True when the normalised ``path`` is ``folder`` or below it."""
    path = os.path.normpath(path)
    return os.path.commonpath([path, folder]) == folder


def cache_folder(cache_dir=None):
    """Return the pretrained-weights cache folder.

    The first of ``cache_dir``, the ``SEG_CACHE_DIR`` environment variable and
    ``~/.paddleseg/pretrained_model`` that is set wins.
    """
    folder = cache_dir or os.environ.get('SEG_CACHE_DIR') or DEFAULT_CACHE_DIR
    return os.path.abspath(os.path.expanduser(folder))


def fetch_pretrained(url_or_path, cache_dir=None):
    """Return the local path of the weights file ``url_or_path`` refers to.

    A local path is returned unchanged. A URL is downloaded once into the
    cache folder (see :func:`cache_folder`; ``cache_dir`` defaults to None)
    under its file name and reused afterwards, also by processes that ask
    for it at the same time (they wait on :func:`cache_lock`). An archive
    (.tar/.tar.gz/.tgz/.zip) is unpacked into a folder named after it, the
    archive itself is deleted, and the ``model.pdparams`` inside (or the only
    ``.pdparams`` file) is returned.

    Raises:
        CheckpointError: the local file is missing, the download or unpacking
            fails, or the archive holds no single weights file.
    """
    if not is_url(url_or_path):
        if not os.path.exists(url_or_path):
            raise CheckpointError(f'Weights file not found: {url_or_path}')
        return url_or_path
    name = os.path.basename(urllib.parse.urlparse(url_or_path).path)
    if not name:
        raise CheckpointError(f'Cannot tell the file name of {url_or_path}')
    folder = cache_folder(cache_dir)
    stem = archive_stem(name)
    with cache_lock(folder, name):
        if stem is None:
            return _cached_file(url_or_path, os.path.join(folder, name))
        return find_weights(_cached_archive(url_or_path, folder, name, stem))


def lock_path(folder, name):
    """The lock file of cache entry ``name`` in ``folder``."""
    return os.path.join(folder, '.{}.lock'.format(name))


@contextlib.contextmanager
def cache_lock(folder, name):
    """Hold an exclusive lock on cache entry ``name`` of ``folder``.

    ``fcntl.flock`` on :func:`lock_path` (created if missing and left in
    place: deleting a lock file another process waits on would let a third
    one lock a new file). Blocks until the lock is free, logging once that
    it waits. The lock goes with the file descriptor, so a process that
    dies releases it. Where locking is impossible (no ``fcntl``, a
    filesystem without ``flock``, a read-only cache), a warning is logged
    and the block runs unlocked: downloads still land under a temporary
    name renamed when complete.
    """
    os.makedirs(folder, exist_ok=True)
    path = lock_path(folder, name)
    fd = None
    if fcntl is not None:
        try:
            # read-only is enough for flock (and works on a lock file of another user)
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError as exc:
            logger.warning('Cannot create the lock file %s (%s); fetching %s unlocked',
                           path, exc, name)
    try:
        if fd is not None:
            _lock(fd, path, name)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _lock(fd, path, name):
    """flock ``fd`` exclusively, waiting (with a log line) if it is taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            logger.warning('Cannot lock %s (%s); fetching %s unlocked', path, exc, name)
            return
    logger.info('Waiting for another process to finish fetching %s', name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        logger.warning('Cannot lock %s (%s); fetching %s unlocked', path, exc, name)


def _cached_file(url, path):
    """Return ``path``, downloading ``url`` there first if it is missing."""
    if os.path.exists(path):
        logger.info('Using cached %s', path)
        return path
    logger.info('Downloading %s to %s', url, path)
    return download_file(url, path)


def _cached_archive(url, folder, name, stem):
    """Return the unpacked folder of the archive ``url``, fetching it if needed.

    Unpacking happens in a temporary folder that is renamed into place when
    complete, so an interrupted run never leaves a half-unpacked cache entry.
    """
    unpacked = os.path.join(folder, stem)
    if os.path.isdir(unpacked):
        logger.info('Using cached %s', unpacked)
        return unpacked
    archive = _cached_file(url, os.path.join(folder, name))
    tmp_dir = tempfile.mkdtemp(dir=folder, prefix='.' + stem + '.')
    try:
        extract_archive(archive, tmp_dir)
        os.rename(tmp_dir, unpacked)
    except CheckpointError:
        _remove_quietly(archive)  # a bad archive must not stay cached
        raise
    except OSError:
        if not os.path.isdir(unpacked):  # not just a concurrent process finishing first
            raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    _remove_quietly(archive)
    return unpacked


def _remove_quietly(path):
    """Delete the file ``path`` unless it is already gone."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def find_weights(folder):
    """Return ``model.pdparams`` under ``folder``, else its only ``.pdparams`` file.

    Raises:
        CheckpointError: no ``model.pdparams`` and zero or several ``.pdparams``.
    """
    found = []
    for root, _, files in sorted(os.walk(folder)):
        found += [os.path.join(root, f) for f in sorted(files) if f.endswith('.pdparams')]
    preferred = [p for p in found if os.path.basename(p) == 'model.pdparams']
    if preferred:
        return min(preferred, key=lambda p: p.count(os.sep))
    if len(found) == 1:
        return found[0]
    raise CheckpointError(
        f'Expected model.pdparams or a single .pdparams file in {folder}, '
        f'found {len(found)} .pdparams files')
