"""Where batches run: Ray (a local instance started on demand, or a cluster by address) or local processes.

Both runners execute the same function, :func:`superfactory.sweep.worker.run_batch_in_subprocess`, so a batch
gives the same rows wherever it runs; both run at most ``slots`` batches at once.

- :class:`RayRunner`: ``ray.init`` with ``num_cpus`` = the machine's cores, a capped object store, no dashboard, a
  private temporary folder (two sweeps or two test processes never share one), worker output kept off the
  driver's stdout; ``address`` connects to a cluster instead (``ray://head:10001``), whose nodes need superfactory
  installed and the scenario's referenced files at the same paths. Shut down by :meth:`close`.
- :class:`ProcessRunner`: ``concurrent.futures`` threads, each starting a fresh worker process per batch; the
  fallback when Ray is not installed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

from superfactory.sweep.spec import SweepError
from superfactory.sweep.worker import run_batch_in_subprocess

OBJECT_STORE_BYTES = 256 * 1024**2  # batches and rows are small; don't let Ray reserve a third of RAM


class Runner(Protocol):
    """Runs batches; ``wait`` returns finished handles with their rows or the exception that ended them."""

    name: str
    slots: int

    def submit(self, batch: dict[str, Any], timeout_s: float | None) -> Any: ...

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, list[dict[str, Any]] | BaseException]]:
        ...

    def close(self) -> None: ...


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class ProcessRunner:
    """Batches on local processes: ``slots`` threads, each running one worker process at a time."""

    name = "local processes"

    def __init__(self, slots: int | None = None) -> None:
        self.slots = slots or cores()
        self._pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="sweep")

    def submit(self, batch: dict[str, Any], timeout_s: float | None) -> Future[list[dict[str, Any]]]:
        return self._pool.submit(run_batch_in_subprocess, batch, timeout_s)

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, list[dict[str, Any]] | BaseException]]:
        done, _ = wait(handles, timeout=timeout_s, return_when=FIRST_COMPLETED)
        return [(f, f.exception() or f.result()) for f in done]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayRunner:
    """Batches as Ray tasks (one CPU each); starts a local Ray unless ``address`` names a cluster."""

    def __init__(self, address: str | None = None, slots: int | None = None) -> None:
        import logging

        import ray

        self._ray = ray
        self._tmp: str | None = None
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING, "configure_logging": True}
        if address is None:
            # a short private folder: Ray's socket paths must stay under 107 characters
            self._tmp = tempfile.mkdtemp(prefix="sfray", dir="/tmp" if os.path.isdir("/tmp") else None)
            kwargs.update(address="local", num_cpus=slots or cores(), object_store_memory=OBJECT_STORE_BYTES,
                          _temp_dir=self._tmp)
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except Exception as e:
            self._cleanup()
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise SweepError(f"could not start or reach {where}: {type(e).__name__}: {e}") from None
        self.slots = slots or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.name = f"Ray cluster {address}" if address else "local Ray"
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_batch_in_subprocess)

    def submit(self, batch: dict[str, Any], timeout_s: float | None) -> Any:
        return self._remote.remote(batch, timeout_s)

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, list[dict[str, Any]] | BaseException]]:
        ray = self._ray
        done, _ = ray.wait(handles, num_returns=1, timeout=timeout_s)
        out: list[tuple[Any, list[dict[str, Any]] | BaseException]] = []
        for ref in done:
            try:
                out.append((ref, ray.get(ref)))
            except Exception as e:
                cause = getattr(e, "cause", None)
                out.append((ref, cause if isinstance(cause, BaseException) else e))
        return out

    def close(self) -> None:
        try:
            self._ray.shutdown()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def make_runner(kind: str = "auto", address: str | None = None, slots: int | None = None,
                note: Any = None) -> Runner:
    """A runner: ``ray``, ``local`` or ``auto`` (Ray if it can be imported, else local processes, said on
    ``note`` — a callable taking one line, default stderr; also when a local Ray fails to start).

    Raises:
        SweepError: ``ray`` asked for (or an ``address`` given) but Ray is not installed; an unknown kind.
    """
    say = note or (lambda line: print(line, file=sys.stderr, flush=True))
    if kind not in ("auto", "ray", "local"):
        raise SweepError(f"--runner {kind!r}: expected auto, ray or local")
    if address is not None and kind == "local":
        raise SweepError("--address names a Ray cluster; it cannot be used with --runner local")
    if kind in ("auto", "ray") or address is not None:
        try:
            import ray  # noqa: F401
        except ImportError:
            if kind == "ray" or address is not None:
                raise SweepError("Ray is not installed: pip install 'superfactory[ray]' "
                                 "(or run with --runner local)") from None
            runner = ProcessRunner(slots)
            say(f"sweep: Ray is not installed; running on {runner.slots} local processes instead "
                "(pip install 'superfactory[ray]' to use Ray)")
            return runner
        if kind == "ray" or address is not None:
            return RayRunner(address, slots)
        try:
            return RayRunner(None, slots)
        except SweepError as e:  # auto: a machine where Ray cannot start (no /dev/shm, ...) still sweeps
            runner = ProcessRunner(slots)
            say(f"sweep: {e}; running on {runner.slots} local processes instead")
            return runner
    return ProcessRunner(slots)
