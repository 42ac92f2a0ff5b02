"""Storage backends: one small interface over a local directory or any fsspec URL.

Paths handed to a backend are relative, ``/``-separated (``<mesh>/<checkpoint-id>/frag-0003.bin``).

How a commit is atomic on each backend:

* :class:`LocalBackend` (POSIX directory; the default, and how tests stand for sites): every object is
  written to ``<name>.tmp-<random>``, ``fsync``-ed, then ``rename``-d over its final name and the directory is
  ``fsync``-ed. ``rename`` is atomic on POSIX, so a reader sees the whole object or none of it, and after the
  directory fsync the name survives a crash.
* :class:`FsspecBackend` (object stores and anything fsspec speaks): objects are written straight to their
  final key; on object stores a PUT (or the completion of a multipart upload) makes an object appear whole or
  not at all. Fragments are therefore never half-visible, and the checkpoint as a whole becomes visible only
  when its ``MANIFEST`` — the commit marker — is written, strictly after its quorum of fragments is durable.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, BinaryIO

import fsspec

from superfactory.mesh.errors import StorageError

__all__ = ["Backend", "FragmentSink", "FsspecBackend", "LocalBackend", "open_backend"]


class FragmentSink(abc.ABC):
    """A streaming writer for one object; nothing is visible under the final name before :meth:`commit`."""

    @abc.abstractmethod
    def write(self, data: Any) -> None:
        """Append a bytes-like object (written in full)."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Make the object durable and visible under its final name."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the partial object; safe to call more than once and after a failure."""


class Backend(abc.ABC):
    """A storage location rooted at ``url``."""

    url: str

    @abc.abstractmethod
    def open_write(self, path: str) -> FragmentSink:
        """Start writing ``path``; see the module docstring for when it becomes visible."""

    @abc.abstractmethod
    def put_atomic(self, path: str, data: bytes) -> None:
        """Write a small object (manifest, intent) so that it appears whole or not at all."""

    @abc.abstractmethod
    def get(self, path: str) -> bytes:
        """Whole object; StorageError (with ``missing=True``) if absent."""

    @abc.abstractmethod
    def open_read(self, path: str) -> BinaryIO:
        """A seekable binary reader supporting ``readinto``; StorageError if absent."""

    @abc.abstractmethod
    def list_dir(self, path: str) -> list[str]:
        """Names directly under ``path`` (empty if it does not exist)."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""

    @abc.abstractmethod
    def delete_tree(self, path: str) -> None:
        """Remove ``path`` and everything under it; no error if absent."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove one object; no error if absent."""


def _fail(op: str, url: str, path: str, exc: BaseException) -> StorageError:
    err = StorageError(
        f"cannot {op} {path!r} on target at {url}: {exc}. Check that the location exists, is writable "
        f"and has free space."
    )
    err.missing = isinstance(exc, FileNotFoundError)  # type: ignore[attr-defined]
    return err


def _load_sync_file_range() -> Any:
    """libc's sync_file_range (Linux), or None: used to start writeback early, like RocksDB's bytes_per_sync."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2
#: start writeback of a fragment file every this many bytes, so the final fsync has little left to flush
WRITEBACK_EVERY_BYTES = 8 * 1024 * 1024


class _LocalSink(FragmentSink):
    __slots__ = ("_closed", "_dir", "_fd", "_final", "_fsync", "_kicked", "_tmp", "_written")

    def __init__(self, final: Path, fsync: bool) -> None:
        self._final = final
        self._dir = final.parent
        self._tmp = final.with_name(f"{final.name}.tmp-{secrets.token_hex(4)}")
        self._fsync = fsync
        self._dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._closed = False
        self._written = 0
        self._kicked = 0

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            written = os.write(self._fd, view)
            view = view[written:]
            self._written += written
        if self._fsync and _SYNC_FILE_RANGE is not None and self._written - self._kicked >= WRITEBACK_EVERY_BYTES:
            # asynchronous: queues the dirty range for writeback and returns; the disk stays busy during the
            # save instead of receiving everything at the final fsync
            _SYNC_FILE_RANGE(self._fd, self._kicked, self._written - self._kicked, _SYNC_FILE_RANGE_WRITE)
            self._kicked = self._written

    def commit(self) -> None:
        if self._fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._closed = True
        os.rename(self._tmp, self._final)
        if self._fsync:
            _fsync_dir(self._dir)

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend(Backend):
    """A POSIX directory. Commit = write temp file, fsync, rename, fsync directory."""

    def __init__(self, root: str | Path, fsync: bool = True) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.fsync = fsync

    def _p(self, path: str) -> Path:
        return self.root / path

    def open_write(self, path: str) -> FragmentSink:
        try:
            return _LocalSink(self._p(path), self.fsync)
        except OSError as exc:
            raise _fail("create", self.url, path, exc) from exc

    def put_atomic(self, path: str, data: bytes) -> None:
        sink = self.open_write(path)
        try:
            sink.write(data)
            sink.commit()
        except OSError as exc:
            sink.abort()
            raise _fail("write", self.url, path, exc) from exc

    def get(self, path: str) -> bytes:
        try:
            return self._p(path).read_bytes()
        except OSError as exc:
            raise _fail("read", self.url, path, exc) from exc

    def open_read(self, path: str) -> BinaryIO:
        try:
            return open(self._p(path), "rb", buffering=0)
        except OSError as exc:
            raise _fail("open", self.url, path, exc) from exc

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._p(path)))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _fail("list", self.url, path, exc) from exc

    def exists(self, path: str) -> bool:
        return self._p(path).exists()

    def delete_tree(self, path: str) -> None:
        try:
            shutil.rmtree(self._p(path))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fail("delete", self.url, path, exc) from exc

    def delete(self, path: str) -> None:
        try:
            os.unlink(self._p(path))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fail("delete", self.url, path, exc) from exc


class _FsspecSink(FragmentSink):
    __slots__ = ("_fh", "_fs", "_path")

    def __init__(self, fs: Any, path: str) -> None:
        self._fs = fs
        self._path = path
        self._fh = fs.open(path, "wb")

    def write(self, data: Any) -> None:
        self._fh.write(memoryview(data).cast("B"))

    def commit(self) -> None:
        # closing completes the PUT / multipart upload: the object appears whole, under its final key
        self._fh.close()

    def abort(self) -> None:
        try:
            if hasattr(self._fh, "discard"):
                self._fh.discard()
            else:
                self._fh.close()
        finally:
            with contextlib.suppress(FileNotFoundError, OSError):
                self._fs.rm(self._path)


class FsspecBackend(Backend):
    """Any fsspec filesystem. Objects appear whole on close; the MANIFEST marker, written last, commits."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")

    def _p(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    def open_write(self, path: str) -> FragmentSink:
        try:
            parent = self._p(path).rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            return _FsspecSink(self.fs, self._p(path))
        except OSError as exc:
            raise _fail("create", self.url, path, exc) from exc

    def put_atomic(self, path: str, data: bytes) -> None:
        try:
            parent = self._p(path).rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            self.fs.pipe_file(self._p(path), bytes(data))
        except OSError as exc:
            raise _fail("write", self.url, path, exc) from exc

    def get(self, path: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self._p(path)))
        except (OSError, KeyError) as exc:
            missing = FileNotFoundError(str(exc)) if isinstance(exc, KeyError) else exc
            raise _fail("read", self.url, path, missing) from exc

    def open_read(self, path: str) -> BinaryIO:
        try:
            return self.fs.open(self._p(path), "rb")  # type: ignore[no-any-return]
        except (OSError, KeyError) as exc:
            missing = FileNotFoundError(str(exc)) if isinstance(exc, KeyError) else exc
            raise _fail("open", self.url, path, missing) from exc

    def list_dir(self, path: str) -> list[str]:
        try:
            entries = self.fs.ls(self._p(path), detail=False)
        except (FileNotFoundError, KeyError):
            return []
        except OSError as exc:
            raise _fail("list", self.url, path, exc) from exc
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._p(path)))

    def delete_tree(self, path: str) -> None:
        try:
            self.fs.rm(self._p(path), recursive=True)
        except (FileNotFoundError, KeyError):
            return
        except OSError as exc:
            raise _fail("delete", self.url, path, exc) from exc

    def delete(self, path: str) -> None:
        try:
            self.fs.rm(self._p(path))
        except (FileNotFoundError, KeyError):
            return
        except OSError as exc:
            raise _fail("delete", self.url, path, exc) from exc


def open_backend(url: str, fsync: bool = True) -> Backend:
    """A backend for ``url``: a plain path (or ``file://``) is local, anything else goes through fsspec."""
    if url.startswith("file://"):
        return LocalBackend(url[len("file://") :], fsync=fsync)
    if "://" not in url:
        return LocalBackend(url, fsync=fsync)
    return FsspecBackend(url)
