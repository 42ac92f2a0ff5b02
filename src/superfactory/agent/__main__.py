"""``python -m superfactory.agent --config agent.yaml``: run one factory agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from superfactory.agent.config import load_agent_config
from superfactory.agent.daemon import Agent
from superfactory.errors import SuperfactoryError


def main(argv: list[str] | None = None) -> None:
    """Run the agent of ``--config``; exit 2 with one message on a bad config."""
    ap = argparse.ArgumentParser(prog="superfactory.agent")
    ap.add_argument("--config", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the agent's own log
    try:
        agent = Agent(load_agent_config(args.config))
    except SuperfactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    run_until_signalled(agent)


def run_until_signalled(agent: Agent) -> None:
    """Run ``agent`` in this (main) thread until SIGTERM or SIGINT, then shut it down gracefully."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.run(stop)


if __name__ == "__main__":
    main()
