"""The agent's HTTP client for the control plane's agent contract (``docs/agent-protocol.md``, ``/v1/agent``).

Every call returns the decoded JSON answer or raises :class:`ControlPlaneError` carrying the contract's error
``code`` (``stale_fencing_token``, ``stale_lease_epoch``, ``lease_lost`` ...) so the agent can act on it, or
:class:`Unreachable` when no answer came (server down, timeout, or a simulated partition). A *partition flag*
file, when it exists, makes every call fail as unreachable without sending anything: ``superfactory chaos
partition-agent`` uses it to cut one agent off the control plane while its jobs keep running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from superfactory.errors import SuperfactoryError

__all__ = ["ControlPlane", "ControlPlaneError", "Unreachable"]


class ControlPlaneError(SuperfactoryError):
    """The control plane answered with an error: ``status``, ``code`` (from the contract) and its message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"control plane answered {status} {code}: {message}")
        self.status = status
        self.code = code


class Unreachable(ControlPlaneError):
    """No answer from the control plane (connection refused, timeout, partitioned)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "unreachable", message)


class ControlPlane:
    """A thin client of ``/v1/agent/*`` bound to one factory's agent token."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 5.0,
                 partition_flag: Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.partition_flag = partition_flag
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self.partition_flag is not None and self.partition_flag.exists():
            raise Unreachable(f"partitioned from {self.base_url} (flag {self.partition_flag} exists)")
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{method} {self.base_url}{path}: {exc.__class__.__name__}: {exc}") from None
        if resp.status_code >= 400:
            try:
                err = resp.json().get("error", {})
                code, message = str(err.get("code", "error")), str(err.get("message", resp.text))
            except ValueError:
                code, message = "error", resp.text[:500]
            if resp.status_code >= 500:
                raise Unreachable(f"{method} {path}: server error {resp.status_code}: {message}")
            raise ControlPlaneError(resp.status_code, code, message)
        return resp.json()

    def register(self, agent_id: str, nodes: list[dict[str, Any]] | None, down_nodes: list[int]) -> dict[str, Any]:
        """Start a lease; returns ``{factory_id, lease_epoch, suspect_after_s, lost_after_s, ...}``."""
        body: dict[str, Any] = {"agent_id": agent_id, "down_nodes": down_nodes}
        if nodes is not None:
            body["nodes"] = nodes
        return self._call("POST", "/v1/agent/register", body)

    def heartbeat(self, lease_epoch: int, down_nodes: list[int]) -> dict[str, Any]:
        """Renew the lease; ``assignments_changed`` says whether to fetch assignments now."""
        return self._call("POST", "/v1/agent/heartbeat", {"lease_epoch": lease_epoch, "down_nodes": down_nodes})

    def assignments(self) -> list[dict[str, Any]]:
        """Every job the factory must act on (``action`` run or stop)."""
        return list(self._call("GET", "/v1/agent/assignments")["assignments"])

    def report(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Report a state transition and/or progress of one job (idempotent)."""
        return self._call("POST", f"/v1/agent/jobs/{job_id}/report", body)

    def commit_checkpoint(self, job_id: str, fencing_token: int, step: int, progress_s: float,
                          location: str, mesh: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record a committed checkpoint (what a requeued job resumes from); ``mesh``: what the agent measured
        of the save (:func:`superfactory.agent.meshwatch.checkpoint_facts`), for the control plane's metrics."""
        body: dict[str, Any] = {"fencing_token": fencing_token, "step": step, "progress_s": progress_s,
                                "location": location}
        if mesh:
            body["mesh"] = mesh
        return self._call("POST", f"/v1/agent/jobs/{job_id}/checkpoints", body)

    def mesh_status(self, lease_epoch: int, status: dict[str, Any]) -> dict[str, Any]:
        """Report the checkpoint replication the agent sees now (:func:`superfactory.agent.meshwatch.mesh_status`)."""
        return self._call("POST", "/v1/agent/mesh-status", {"lease_epoch": lease_epoch, **status})
