"""``superfactory --version`` and typer's shell completion (with built-in scenario and policy names)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from superfactory.cli.main import complete_policies, complete_scenarios


def sf(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "superfactory.cli.main", *args], capture_output=True, text=True,
                          timeout=120, check=False, env=env)


def test_version() -> None:
    r = sf("--version")
    assert r.returncode == 0 and r.stdout == f"superfactory {version('superfactory')}\n"


def test_completion_script_and_names() -> None:
    # typer's --show-completion is a flag: it finds the shell among the process's ancestors (shellingham), so it is
    # run under a bash here; ``; exit $?`` keeps bash from exec-ing the command in its place. Run straight from
    # pytest, the ancestry may hold no shell at all (make started by nohup, CI runners) and typer says "Shell  not
    # supported".
    r = subprocess.run(["bash", "-c", '"$0" -m superfactory.cli.main --show-completion; exit $?', sys.executable],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "complete" in r.stdout and "superfactory" in r.stdout.lower()
    assert "default" in complete_scenarios("def") and "llama3-405b" not in complete_scenarios("def")
    assert complete_policies("ge") == ["geo"]
