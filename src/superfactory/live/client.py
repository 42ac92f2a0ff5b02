"""A small HTTP client for the control plane, and where the CLI finds the server and its token.

Resolution order for the server URL and the token: explicit arguments (CLI flags), then the environment
(``SUPERFACTORY_SERVER``, ``SUPERFACTORY_TOKEN``), then the config file ``serve`` writes on first start
(``$SUPERFACTORY_CONFIG``, else ``./.superfactory/config.json``). The config file holds the admin token, so it
is written with mode 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from superfactory.live.errors import ApiError

DEFAULT_URL = "http://127.0.0.1:8787"
DEFAULT_STATE_DIR = Path(".superfactory")


def config_path() -> Path:
    env = os.environ.get("SUPERFACTORY_CONFIG")
    return Path(env) if env else DEFAULT_STATE_DIR / "config.json"


def read_config(path: Path | None = None) -> dict[str, Any]:
    p = path or config_path()
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise ApiError(400, "bad_config", f"{p}: unreadable config ({e}); delete it and restart `serve`") from None
    return data if isinstance(data, dict) else {}


def write_config(path: Path, url: str, token: str | None) -> None:
    """Write (or update the URL of) the CLI config; the file is created with mode 0600."""
    data = read_config(path)
    data["url"] = url
    if token is not None:
        data["token"] = token
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(path, 0o600)


class Client:
    """Calls the API; every non-2xx answer is raised as :class:`ApiError` with the server's code and message."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout_s: float = 30.0) -> None:
        cfg = read_config() if (url is None or token is None) else {}
        self.url = (url or os.environ.get("SUPERFACTORY_SERVER") or cfg.get("url") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("SUPERFACTORY_TOKEN") or cfg.get("token")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.ConnectError:
            raise ApiError(400, "no_server", f"no control plane at {self.url}; start one with `superfactory serve` "
                           "or point --server / SUPERFACTORY_SERVER at it") from None
        except httpx.HTTPError as e:
            raise ApiError(400, "transport_error", f"{method} {self.url}{path}: {e}") from None
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, err["code"], err["message"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", f"{method} {path}: HTTP {r.status_code}") from None
        return r.json()

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
