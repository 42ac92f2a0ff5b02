"""Warm job starts: a helper interpreter that has already imported the job's heavy modules (PyTorch, the mesh)
forks each job process instead of a fresh ``python`` importing them again.

Why: a fresh Python process importing torch costs ~3 CPU-seconds, which on a shared, loaded machine is 5-20 s
of wall time and varies with the load. That start time is most of a job's recovery time after a failure, and
its variance is what kept the twin's recovery model from predicting live ETTR (``twin_fidelity_bench``). A fork
of a warm interpreter starts training in a fraction of a second.

Contract (what :class:`~superfactory.agent.executor.ProcessExecutor` relies on):

* :class:`Zygote` starts ``python -m superfactory.agent.zygote --preload MOD,...`` with two pipes (requests in,
  replies out; its own stdout goes to its stderr, so a chatty import cannot corrupt the protocol). It answers
  ``{"ready": true}`` once the preloads are imported; until then :meth:`Zygote.ready` is False and the
  executor starts jobs cold.
* :meth:`Zygote.spawn` asks for one job process: ``module`` (run as ``__main__``, like ``python -m``), its
  arguments, environment, working directory, log file and rlimits. The child makes itself a session and
  process group of its own (``setsid``), applies the limits, points stdin at /dev/null and stdout/stderr at the
  log, replaces its environment, restores default signal handlers, and runs the module. The reply is the pid.
* The zygote reaps its children and reports ``{"exit": pid, "status": s}`` (``s`` as :class:`subprocess.Popen`
  gives it: negative = killed by that signal); :meth:`Zygote.exit_status` returns it.
* The zygote lives as long as its agent: it exits when its request pipe closes (the agent ended, however it
  ended). Its job processes are their own sessions and outlive it, like cold-started ones.

Limits: a job's environment variables that its libraries read only at import time (``OMP_NUM_THREADS``,
``PYTHONHASHSEED``) are the zygote's, not the job's; the built-in job fixes its threads itself. Only commands of
the form ``{python} -m MODULE ...`` start warm; anything else starts cold. ``/proc/PID/environ`` of a warm job
shows the zygote's start environment (the kernel's copy), so tools that identify job processes should use the
process's working directory, the job's incarnation folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PRELOAD", "Zygote", "ZygoteError", "main"]

#: what the built-in job imports: torch (and torch._inductor, which ``use_deterministic_algorithms`` imports:
#: 2 of its 3 CPU-seconds of start), the mesh and its torch codec, the KMS client, the job module
DEFAULT_PRELOAD = ("torch", "torch._inductor", "superfactory.mesh", "superfactory.mesh.torch_state",
                   "superfactory.agent.kms", "superfactory.agent.examples.mlp")

SPAWN_TIMEOUT_S = 10.0
EXIT_GRACE_S = 2.0  # a dead child's exit status may take this long to arrive (the zygote reaps every 20 ms)


class ZygoteError(OSError):
    """The zygote could not start a job (not ready, gone, or no answer in time)."""


class Zygote:
    """The agent's handle on its zygote process (see the module docstring)."""

    def __init__(self, preload: tuple[str, ...] = DEFAULT_PRELOAD, log_path: Path | None = None) -> None:
        self.preload = tuple(preload)
        req_r, self._req_w = os.pipe()
        self._rep_r, rep_w = os.pipe()
        log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 (owned by the child)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "superfactory.agent.zygote", "--preload", ",".join(self.preload),
                 "--fd-in", str(req_r), "--fd-out", str(rep_w)],
                stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL,
                pass_fds=(req_r, rep_w), close_fds=True,
                # no agent secrets in the zygote's (and so its children's /proc) start environment
                env={k: v for k, v in os.environ.items() if not k.startswith("SUPERFACTORY_")},
            )
        finally:
            os.close(req_r)
            os.close(rep_w)
            if log is not None:
                log.close()
        self._ready = threading.Event()
        self._lock = threading.Lock()  # one request at a time
        self._replies: dict[int, dict[str, Any]] = {}
        self._reply_cv = threading.Condition()
        self._exits: dict[int, int] = {}
        self._dead_seen: dict[int, float] = {}
        self._seq = 0
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()

    # -- replies -------------------------------------------------------------------------------------------
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._rep_r, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("ready"):
                    self._ready.set()
                elif "exit" in msg:
                    with self._reply_cv:
                        self._exits[int(msg["exit"])] = int(msg["status"])
                elif "id" in msg:
                    with self._reply_cv:
                        self._replies[int(msg["id"])] = msg
                        self._reply_cv.notify_all()
        self._ready.clear()
        with self._reply_cv:
            self._reply_cv.notify_all()
        with contextlib.suppress(OSError):
            os.close(self._rep_r)

    def ready(self) -> bool:
        """Whether the zygote has imported its preloads and is alive."""
        return self._ready.is_set() and self.proc.poll() is None

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until ready (or ``timeout_s``); tests and benchmarks that want every start warm use it."""
        return self._ready.wait(timeout_s) and self.proc.poll() is None

    # -- requests ------------------------------------------------------------------------------------------
    def spawn(self, module: str, args: list[str], env: dict[str, str], cwd: Path, log_path: Path,
              limits: dict[str, int | None]) -> int:
        """Fork one job process running ``module``; its pid. ZygoteError if the zygote cannot."""
        if not self.ready():
            raise ZygoteError("the zygote is not ready")
        with self._lock:
            self._seq += 1
            rid = self._seq
            req = {"id": rid, "module": module, "args": args, "env": env, "cwd": str(cwd), "log": str(log_path),
                   "limits": limits}
            try:
                os.write(self._req_w, (json.dumps(req) + "\n").encode())
            except OSError as exc:
                raise ZygoteError(f"the zygote is gone ({exc})") from None
            deadline = time.monotonic() + SPAWN_TIMEOUT_S
            with self._reply_cv:
                while rid not in self._replies:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._reader.is_alive():
                        break
                    self._reply_cv.wait(left)
                rep = self._replies.pop(rid, None)
        if rep is None:
            # no answer: never guess whether a child exists; this zygote is not used again
            self.close(kill=True)
            raise ZygoteError(f"the zygote did not answer within {SPAWN_TIMEOUT_S:g} s")
        if "error" in rep:
            raise ZygoteError(f"the zygote could not start {module}: {rep['error']}")
        pid = int(rep["pid"])
        with self._reply_cv:
            self._exits.pop(pid, None)  # a status left by an earlier child with the same pid
            self._dead_seen.pop(pid, None)
        return pid

    def exit_status(self, pid: int) -> int | None:
        """The exit status of child ``pid`` once it was reaped; None while unknown (the caller decides when
        'dead but no status' means unknown, see :data:`EXIT_GRACE_S`)."""
        with self._reply_cv:
            return self._exits.pop(pid, None)

    def settled(self, pid: int) -> bool:
        """For a child seen dead: whether its status will not come any more (zygote gone or grace passed)."""
        first = self._dead_seen.setdefault(pid, time.monotonic())
        return self.proc.poll() is not None or time.monotonic() - first > EXIT_GRACE_S

    def close(self, kill: bool = False) -> None:
        """End the zygote (its job processes live on)."""
        with contextlib.suppress(OSError):
            os.close(self._req_w)
        if kill and self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the zygote process ------------------------------------------------------------------------------------

def _child(req: dict[str, Any], fds: tuple[int, int], started_w: int) -> None:
    """In the forked child: become the job process (never returns)."""
    code = 1
    try:
        for fd in fds:
            os.close(fd)
        os.setsid()
        from superfactory.agent.executor import ResourceLimits

        ResourceLimits(**req["limits"]).apply()
        os.chdir(req["cwd"])
        os.write(started_w, b"1")  # the parent answers only now: a group kill right after the start reaches us,
        os.close(started_w)  # and the process shows its job's working directory
        log = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        nul = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nul, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(nul)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (line-buffered, like -u)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = [req["module"], *req["args"]]
        sys.modules.pop(req["module"], None)  # preloaded as a module; it runs afresh as __main__
        import runpy

        runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:  # report anything, then exit like python would
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(preload: list[str], fd_in: int, fd_out: int) -> None:
    """The zygote's loop: import ``preload``, then fork a child per request and report exits."""
    os.dup2(2, 1)  # our stdout is the agent's log, never the protocol
    for mod in preload:
        try:
            importlib.import_module(mod)
        except Exception as exc:  # a missing preload makes starts slower, not impossible
            print(f"zygote: preload {mod} failed: {exc}", file=sys.stderr)

    def send(msg: dict[str, Any]) -> None:
        os.write(fd_out, (json.dumps(msg) + "\n").encode())

    send({"ready": True, "pid": os.getpid()})
    buf = b""
    while True:
        r, _, _ = select.select([fd_in], [], [], 0.02)
        if r:
            chunk = os.read(fd_in, 1 << 20)
            if not chunk:
                return  # the agent is gone
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                started_r, started_w = os.pipe()
                try:
                    pid = os.fork()
                except OSError as exc:
                    os.close(started_r)
                    os.close(started_w)
                    send({"id": req["id"], "error": str(exc)})
                    continue
                if pid == 0:
                    os.close(started_r)
                    _child(req, (fd_in, fd_out), started_w)
                os.close(started_w)
                select.select([started_r], [], [], 5.0)  # the child is its own session (or died) by now
                os.close(started_r)
                send({"id": req["id"], "pid": pid})
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            send({"exit": pid, "status": os.waitstatus_to_exitcode(status)})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="superfactory.agent.zygote")
    ap.add_argument("--preload", default="")
    ap.add_argument("--fd-in", type=int, required=True)
    ap.add_argument("--fd-out", type=int, required=True)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C at the agent's terminal: the agent ends, then we do
    serve([m for m in args.preload.split(",") if m], args.fd_in, args.fd_out)
    os._exit(0)  # skip tearing down torch (seconds on a loaded machine): the agent may be waiting for us


if __name__ == "__main__":
    main()
