"""Run the control plane (issue 13's app) with the lease timeouts a local fleet or a test asks for.

``python -m superfactory.agent.controlplane --db sqlite:///… --port 8787 --config-out cfg.json
[--suspect-after-s 30 --lost-after-s 300 --heartbeat-interval-s 5 --cycle-s 2]`` — the same app as
``superfactory serve`` (first start mints the admin token and writes it to ``--config-out``, mode 0600), with
the :class:`~superfactory.live.context.Settings` exposed as flags so ``superfactory up`` and the fault tests
can use short timeouts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Parse flags, prepare the store and serve until killed."""
    ap = argparse.ArgumentParser(prog="superfactory.agent.controlplane", description=__doc__)
    ap.add_argument("--db", required=True)
    ap.add_argument("--port", type=int, default=8787)
    ap.add_argument("--config-out", type=Path, required=True)
    ap.add_argument("--suspect-after-s", type=float, default=30.0)
    ap.add_argument("--lost-after-s", type=float, default=300.0)
    ap.add_argument("--heartbeat-interval-s", type=float, default=5.0)
    ap.add_argument("--cycle-s", type=float, default=2.0)
    ap.add_argument("--policy", default=None, help="default placement policy (e.g. gang, geo)")
    args = ap.parse_args(argv)
    if not 0 < args.suspect_after_s <= args.lost_after_s:
        print("error: need 0 < --suspect-after-s <= --lost-after-s", file=sys.stderr)
        sys.exit(2)

    import uvicorn

    from superfactory.live.api.app import create_app, make_live
    from superfactory.live.client import write_config
    from superfactory.live.context import Settings
    from superfactory.live.services.auth import bootstrap_admin

    kw = {"suspect_after_s": args.suspect_after_s, "lost_after_s": args.lost_after_s,
          "heartbeat_interval_s": args.heartbeat_interval_s, "cycle_s": args.cycle_s}
    if args.policy:
        kw["default_policy"] = args.policy
    live = make_live(args.db, Settings(**kw))  # type: ignore[arg-type]
    token = bootstrap_admin(live.engine, time.time())
    write_config(args.config_out, f"http://127.0.0.1:{args.port}", token)
    uvicorn.run(create_app(live), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
