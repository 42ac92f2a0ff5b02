"""An agent's configuration: its site (nodes, accelerators, NVLink domains, power and cooling), the control
plane to talk to, checkpoint storage, how to run jobs and its timeouts. Read from YAML (:func:`load_agent_config`),
validated with pydantic; a bad file is one :class:`AgentConfigError` naming the field.

On a CPU-only machine the accelerators are *logical slots*: a node declares ``gpus: 8`` and the agent hands
slot numbers to job processes in ``SUPERFACTORY_DEVICES`` (``CUDA_VISIBLE_DEVICES`` too when ``real_gpus``).

Example::

    factory: texas
    server: http://127.0.0.1:8787
    token_file: .superfactory/tokens/texas      # or token: sft_..., or $SUPERFACTORY_AGENT_TOKEN
    state_dir: .superfactory/agents/texas
    power_w: 30e6                                # declared site figures (sent as labels)
    cooling_w: 32e6
    nodes:                                       # or omit: taken from the factory the server declares
      - {index: 0, accelerator: H100, gpus: 8, domain: 0}
    storage:                                     # checkpoint targets: this site's and other sites'
      - {name: texas-a, url: /data/ckpt/a, region: us-south, jurisdiction: US, site: texas}
    keyring: .superfactory/keys/keyring.json
    job: {seconds_per_step: 0.1, checkpoint_interval_steps: 10}
    timeouts: {hang_s: 60, stop_grace_s: 30}
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from superfactory.agent.executor import ResourceLimits
from superfactory.agent.meshconf import StorageTarget
from superfactory.errors import SuperfactoryError

__all__ = ["AgentConfig", "AgentConfigError", "load_agent_config"]


class AgentConfigError(SuperfactoryError):
    """The agent configuration is invalid or incomplete."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeConfig(_Strict):
    index: int = Field(ge=0)
    accelerator: str
    gpus: int = Field(gt=0)
    domain: int = Field(ge=0, description="NVLink domain")


class StorageConfig(_Strict):
    name: str
    url: str
    region: str
    jurisdiction: str = "US"
    site: str = ""


class LimitsConfig(_Strict):
    address_space_bytes: int | None = Field(default=None, gt=0)
    cpu_time_s: int | None = Field(default=None, gt=0)
    open_files: int | None = Field(default=None, gt=0)


class JobConfig(_Strict):
    command: list[str] = Field(default_factory=lambda: ["{python}", "-m", "superfactory.agent.examples.mlp"])
    seconds_per_step: float = Field(default=0.1, gt=0, description="productive seconds one step stands for")
    step_wall_s: float | None = Field(default=None, ge=0, description="wall time of one step (default: "
                                      "seconds_per_step; smaller compresses time, e.g. a day of work in a minute)")
    checkpoint_interval_steps: int = Field(default=10, ge=1, description="when the spec has no checkpoint")
    max_steps: int = Field(default=100_000, ge=1)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    real_gpus: bool = False
    warm_start: bool = Field(default=True, description="fork `{python} -m MODULE` commands from a zygote that "
                             "has imported `preload` (agent.zygote): starts in well under a second, not seconds")
    preload: list[str] | None = Field(default=None, description="modules the zygote imports (default: torch, "
                                      "the mesh, the built-in job)")


class TimeoutsConfig(_Strict):
    hang_s: float = Field(default=60.0, gt=0, description="no progress for this long: the job is hung")
    startup_s: float = Field(default=300.0, gt=0, description="until its first report a job may take this long")
    stop_grace_s: float = Field(default=30.0, ge=0, description="SIGTERM -> SIGKILL")
    tick_s: float = Field(default=0.2, gt=0)
    report_interval_s: float = Field(default=1.0, gt=0, description="progress reports, at most this often")
    request_s: float = Field(default=5.0, gt=0)
    heartbeat_interval_s: float | None = Field(default=None, gt=0, description="override the server's")


class AgentConfig(_Strict):
    """A validated agent configuration (see the module docstring)."""

    factory: str
    server: str = "http://127.0.0.1:8787"
    token: str | None = None
    token_file: Path | None = None
    agent_id: str | None = None
    state_dir: Path = Path(".superfactory/agent")
    power_w: float | None = Field(default=None, gt=0)
    cooling_w: float | None = Field(default=None, gt=0)
    nodes: list[NodeConfig] | None = None
    storage: list[StorageConfig] = Field(default_factory=list)
    sovereignty: dict[str, list[str]] = Field(default_factory=dict)
    keyring: Path = Path(".superfactory/keys/keyring.json")
    keys: Literal["server", "local"] = Field(
        default="server", description="server: checkpoint keys and the commit ledger come from the control plane "
        "(/v1/kms); local: the keyring file (single-machine use only)")
    mesh_fsync: bool = True
    job: JobConfig = Field(default_factory=JobConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)

    def resolved_token(self) -> str:
        """The agent token: ``token``, else ``token_file``, else ``$SUPERFACTORY_AGENT_TOKEN``."""
        if self.token:
            return self.token
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise AgentConfigError(f"cannot read token_file {self.token_file}: {exc.strerror}") from None
        env = os.environ.get("SUPERFACTORY_AGENT_TOKEN")
        if env:
            return env
        raise AgentConfigError(f"no agent token for factory {self.factory}: set token, token_file or "
                               f"$SUPERFACTORY_AGENT_TOKEN (an admin mints one: superfactory factories token "
                               f"{self.factory})")

    def resolved_agent_id(self) -> str:
        return self.agent_id or f"{self.factory}@{socket.gethostname()}"

    def storage_targets(self) -> list[StorageTarget]:
        return [StorageTarget(s.name, s.url, s.region, s.jurisdiction, s.site) for s in self.storage]

    def limits(self) -> ResourceLimits:
        lim = self.job.limits
        return ResourceLimits(lim.address_space_bytes, lim.cpu_time_s, lim.open_files)

    def labels(self) -> dict[str, str]:
        out = {"executor": "process"}
        if self.power_w is not None:
            out["power_w"] = f"{self.power_w:g}"
        if self.cooling_w is not None:
            out["cooling_w"] = f"{self.cooling_w:g}"
        return out

    def node_dicts(self) -> list[dict[str, Any]] | None:
        return None if self.nodes is None else [n.model_dump() for n in self.nodes]


def agent_config_from_dict(raw: dict[str, Any], base_dir: Path, source: str = "<dict>") -> AgentConfig:
    """Validate a mapping; relative paths resolve against ``base_dir``."""
    try:
        cfg = AgentConfig.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise AgentConfigError(f"{source}: {details}") from None
    fix = lambda p: p if p is None or p.is_absolute() else (base_dir / p)  # noqa: E731
    updates: dict[str, Any] = {"state_dir": fix(cfg.state_dir), "keyring": fix(cfg.keyring),
                               "token_file": fix(cfg.token_file)}
    storage = []
    for s in cfg.storage:
        local = "://" not in s.url
        storage.append(s.model_copy(update={"url": str(fix(Path(s.url))) if local else s.url}))
    updates["storage"] = storage
    if cfg.nodes is not None:
        idx = [n.index for n in cfg.nodes]
        if len(set(idx)) != len(idx):
            raise AgentConfigError(f"{source}: nodes: node indices must be unique, got {idx}")
    return cfg.model_copy(update=updates)


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read an agent config YAML file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AgentConfigError(f"cannot read agent config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise AgentConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise AgentConfigError(f"{path}: the top level must be a mapping (factory:, server:, ...)")
    return agent_config_from_dict(raw, path.parent.resolve(), str(path))


__all__ += ["agent_config_from_dict"]
