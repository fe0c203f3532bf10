"""Run directories: made without collisions, checked writable, locked for one run.

Two runs writing one directory interleave ``metrics.jsonl``, and a directory that
cannot be written used to be found out only after training. So a run's directory is
opened before any work: created (default names with ``os.mkdir``, which is atomic, so
runs started in the same second still get distinct names), probed with a write, and
locked (an exclusive, non-blocking ``filelock`` on ``DIR/.lock``, with the holder's
pid beside it in ``DIR/.lock.pid``) until the run ends. :func:`atomic_write` replaces
a file whole or not at all, so a crash or a full disk never leaves half a file.

Errors: a path the user got wrong (a file, a directory that already holds a run, one
that cannot be created or written) is a :class:`~fedcluster.config.ConfigError`; a
directory held by another run, or a write that fails during a run, is a
:class:`RunDirError`. Torch-free.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .config import ConfigError

if TYPE_CHECKING:  # imported when a directory is locked: the CLI imports this module early
    from filelock import FileLock

__all__ = ["HELD_ENV", "RUN_MARKERS", "RunDir", "RunDirError", "atomic_write",
           "held_by_launcher", "new_run", "resume_run", "unique_run_path"]

#: files whose presence means a directory already holds a run
RUN_MARKERS = ("metrics.jsonl", "checkpoint.safetensors", "summary.json")
LOCK_NAME = ".lock"
PID_NAME = ".lock.pid"
#: set by a launcher that holds a run directory for the workers it starts
HELD_ENV = "FEDCLUSTER_HELD_RUN_DIR"


class RunDirError(Exception):
    """A run directory is in use by another run, or a write into it failed."""


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform can open directories)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot
            raise
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (str: UTF-8) whole or not at all.

    Writes a temporary file beside ``path``, flushes it to disk, renames it over
    ``path`` and syncs the directory. On any failure the old file is left as it was,
    the temporary file is removed, and the OSError is raised.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _create_probe(directory: Path) -> None:
    """Create, write and remove a small file in ``directory``; raises OSError when it cannot."""
    probe = directory / f".write-test-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        os.write(fd, b"fedcluster")
    finally:
        os.close(fd)
        os.unlink(probe)


def _check_writable(directory: Path, label: str) -> None:
    try:
        _create_probe(directory)
    except OSError as e:
        raise ConfigError(f"{label} {directory}: cannot write there ({_reason(e)}); "
                          "choose a directory you can write") from None


def _host() -> str:
    import socket

    return socket.gethostname()


def _holder(directory: Path) -> str:
    """``pid N`` (and the host, when not this one) of the run holding ``directory``."""
    try:
        pid, _, host = (directory / PID_NAME).read_text(encoding="utf-8").strip().partition(" ")
    except OSError:
        return "pid unknown"
    if not pid:
        return "pid unknown"
    return f"pid {pid}" if host in ("", _host()) else f"pid {pid} on {host}"


class RunDir:
    """A run directory this process holds locked; ``with`` it, or call :meth:`release`.

    Made by :func:`new_run` and :func:`resume_run`. On release the pid file goes; a
    directory this object created that still holds nothing but its lock is removed,
    so a run that failed before writing anything leaves no empty directory behind.
    """

    def __init__(self, path: Path, lock: FileLock, created: bool) -> None:
        self.path = path
        self.created = created
        self._lock = lock
        self._lent = False

    @classmethod
    def _acquire(cls, path: Path, created: bool) -> RunDir:
        from filelock import FileLock, Timeout

        lock = FileLock(str(path / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunDirError(f"run directory {path} is in use by another fedcluster run "
                              f"({_holder(path)}); wait for it to end or choose another "
                              "directory") from None
        except OSError as e:
            raise RunDirError(f"run directory {path}: cannot lock {LOCK_NAME} "
                              f"({_reason(e)})") from None
        held = cls(path, lock, created)
        try:
            atomic_write(path / PID_NAME, f"{os.getpid()} {_host()}\n")
        except OSError as e:
            held.release()
            raise RunDirError(f"run directory {path}: cannot write {PID_NAME} "
                              f"({_reason(e)})") from None
        return held

    def lend_to_workers(self) -> Path:
        """Tell the worker processes this one starts (through the environment they
        inherit) that it holds the directory for them; returns the path."""
        os.environ[HELD_ENV] = str(self.path.resolve())
        self._lent = True
        return self.path

    def release(self) -> None:
        """Unlock the directory (idempotent)."""
        if not self._lock.is_locked:
            return
        if self._lent and os.environ.get(HELD_ENV) == str(self.path.resolve()):
            del os.environ[HELD_ENV]
        with contextlib.suppress(OSError):
            (self.path / PID_NAME).unlink()
        if self.created:
            self._remove_if_empty()
        self._lock.release()

    def _remove_if_empty(self) -> None:
        with contextlib.suppress(OSError):
            if {p.name for p in self.path.iterdir()} <= {LOCK_NAME}:
                (self.path / LOCK_NAME).unlink(missing_ok=True)
                self.path.rmdir()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, locked={self._lock.is_locked})"


def unique_run_path(root: Path | str, name: str, stamp: str | None = None) -> Path:
    """Create and return a new directory ``root/<name>-<stamp>`` (``-2``, ``-3``, ... when
    taken). ``stamp`` defaults to the local time, ``YYYYmmdd-HHMMSS``. Each name is
    claimed with ``os.mkdir``, so processes racing for the same name get distinct ones.

    Raises ConfigError when ``root`` cannot be created or written.
    """
    root = Path(root)
    stamp = stamp if stamp is not None else time.strftime("%Y%m%d-%H%M%S")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"run.out = {str(root)!r}: cannot create it ({_reason(e)})") from None
    n = 1
    while True:
        path = root / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1
        except OSError as e:
            raise ConfigError(f"run.out = {str(root)!r}: cannot create {path.name} there "
                              f"({_reason(e)})") from None


def _make_dir(path: Path, label: str) -> bool:
    """Create ``path`` (and its parents) unless it is a directory; True when created."""
    if path.is_dir():
        return False
    if path.exists():
        raise ConfigError(f"{label} {path}: it is a file, expected a directory for the run")
    try:
        path.mkdir(parents=True)
    except FileExistsError:  # another process made it just now
        if not path.is_dir():
            raise ConfigError(f"{label} {path}: it is a file, expected a directory for the "
                              "run") from None
        return False
    except OSError as e:
        raise ConfigError(f"{label} {path}: cannot create the directory ({_reason(e)})") from None
    return True


def new_run(out: Path | str | None, root: Path | str = "runs", name: str = "run",
            label: str = "--out") -> RunDir:
    """Open the directory of a new run, before any training, and lock it.

    ``out`` (given by the user) is created if missing and refused when it is a file or
    already holds a run (:data:`RUN_MARKERS`); without it a new ``root/<name>-<time>``
    is made. Either way a probe file must be writable there. Raises ConfigError for
    those, RunDirError when another run holds the directory. ``label`` names the path
    in messages.
    """
    if out is None:
        path, created = unique_run_path(root, name), True
    else:
        path = Path(out)
        created = _make_dir(path, label)
    _check_writable(path, label)
    held = RunDir._acquire(path, created)
    found = [m for m in RUN_MARKERS if (path / m).exists()]
    if found:
        held.release()
        raise ConfigError(f"{label} {path}: it already holds a run ({', '.join(found)}); "
                          "refusing to overwrite it, choose another directory")
    return held


def resume_run(path: Path | str, label: str = "--resume") -> RunDir:
    """Open an existing run's directory (it must hold ``config.toml``) to resume it, and
    lock it. Raises ConfigError when there is no run there or it cannot be written,
    RunDirError when the run (or another) still holds it."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{label} {path}: no such directory, expected a run directory")
    if not (path / "config.toml").is_file():
        raise ConfigError(f"{label} {path}: no run there (config.toml is missing)")
    _check_writable(path, label)
    return RunDir._acquire(path, created=False)


def held_by_launcher(path: Path | str) -> bool:
    """Whether the launcher that started this process holds ``path`` for it (see
    :meth:`RunDir.lend_to_workers`): a worker then writes there without locking."""
    return os.environ.get(HELD_ENV) == str(Path(path).resolve())
