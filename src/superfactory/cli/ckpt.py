"""``superfactory ckpt``: save, restore, list, verify, gc, rotate keys and shred checkpoints on a mesh.

Every command takes ``--config mesh.yaml`` (format in docs/mesh.md; default ``$SUPERFACTORY_MESH_CONFIG``
or ``./mesh.yaml``). Transfers show a progress bar on stderr; ``--json`` prints pure JSON on stdout (warnings
go to stderr). User errors (bad config, missing checkpoint, wrong key, not enough fragments …) print one
paragraph on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from superfactory.errors import SuperfactoryError
from superfactory.mesh import CheckpointMesh, MeshError, load_config

app = typer.Typer(
    name="ckpt",
    help="Erasure-coded, encrypted, quorum-replicated checkpoints (the checkpoint mesh).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="SUPERFACTORY_MESH_CONFIG", help="mesh config YAML (docs/mesh.md)"),
]
StepOpt = Annotated[int | None, typer.Option(help="checkpoint step, 0 to 10**12-1 (default: newest)")]
IdOpt = Annotated[str | None, typer.Option("--id", help="checkpoint id (see `ckpt ls`)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON on stdout")]


def _friendly(fn: F) -> F:
    """Turn SuperfactoryError into one paragraph on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SuperfactoryError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _mesh(config: Path) -> CheckpointMesh:
    return CheckpointMesh(load_config(config))


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null (``json.dumps`` would print invalid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    """Pure JSON on stdout (no colour, no wrapping), one document."""
    sys.stdout.write(json.dumps(_clean(value), indent=2, sort_keys=True, allow_nan=False) + "\n")
    sys.stdout.flush()


def _warn(lines: list[str] | tuple[str, ...]) -> None:
    for line in lines:
        err.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def _parse_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise MeshError(f"--mode must be octal permission bits such as 600 or 640, got {text!r}.")
    return mode


@contextmanager
def _bar(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    if not enabled or total < 64 * 2**20:  # small transfers finish before a bar is worth drawing
        yield None
        return
    progress = Progress(
        TextColumn(f"[bold]{escape(label)}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)


@app.command()
@_friendly
def save(
    source: Annotated[Path, typer.Argument(help="file to checkpoint")],
    step: Annotated[int, typer.Option(help="training step this checkpoint belongs to")],
    config: ConfigOpt = Path("mesh.yaml"),
    data_class: Annotated[
        str, typer.Option(help="critical | recomputable | ephemeral | custom")
    ] = "critical",
    sovereignty: Annotated[list[str] | None, typer.Option(help="sovereignty class (repeatable)")] = None,
    tier: Annotated[
        list[str] | None, typer.Option(help="tier to write (repeatable; default: due tiers)")
    ] = None,
    fencing_token: Annotated[
        int | None, typer.Option(help="refuse the commit if the mesh's fence is higher (job fencing)")
    ] = None,
    json_out: JsonOpt = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar for large transfers")] = True,
) -> None:
    """Erasure-code, encrypt and spread a file over the mesh; print the receipt."""
    mesh = _mesh(config)
    try:
        size = source.stat().st_size
        data = np.memmap(source, dtype=np.uint8, mode="r") if size else b""
    except OSError as exc:
        raise MeshError(
            f"cannot read {source}: {exc.strerror}. Pass an existing file to checkpoint."
        ) from None
    with _bar(f"saving step {step}", size, progress and not json_out) as bar:
        receipt = mesh.save(
            data,
            step,
            data_class=data_class,
            sovereignty=sovereignty or (),
            tiers=tier,
            progress=bar,
            fencing_token=fencing_token,
        )
    if json_out:
        _print_json(receipt.to_dict())
        return
    out.print(
        f"[green]committed[/] {receipt.checkpoint_id}  step {receipt.step}  {receipt.data_class}  "
        f"{receipt.payload_bytes:,} B in {receipt.total_s:.2f} s ({receipt.input_rate_gbps:.2f} GB/s)  "
        f"durable {receipt.durable_fragments}/{len({f.index for f in receipt.fragments})} fragments, "
        f"est. recovery {receipt.estimated_recovery_s:.2f} s"
    )
    for f in receipt.fragments:
        state = "durable" if f.durable else f"[red]failed: {escape(f.error or '')}[/]"
        out.print(f"  fragment {f.index} → {f.target} ({f.tier})  {f.size_bytes:,} B  {state}")


@app.command()
@_friendly
def restore(
    output: Annotated[Path, typer.Option("--out", "-o", help="where to write the restored bytes")],
    config: ConfigOpt = Path("mesh.yaml"),
    step: StepOpt = None,
    checkpoint_id: IdOpt = None,
    mode: Annotated[str, typer.Option(help="permission bits of the restored file, octal")] = "600",
    json_out: JsonOpt = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar for large transfers")] = True,
) -> None:
    """Rebuild a checkpoint (newest by default) from its fastest authentic fragments.

    The file is written atomically with mode 0600 unless --mode says otherwise.
    """
    file_mode = _parse_mode(mode)
    mesh = _mesh(config)
    total = 0
    if progress and not json_out:
        total = mesh.catalog.resolve(checkpoint_id, step)[0].manifest.payload_bytes
    with _bar("restoring", total, progress and not json_out) as bar:
        restored = mesh.restore(step=step, checkpoint_id=checkpoint_id, progress=bar)
    try:
        restored.write_file(output, file_mode)
    except OSError as exc:
        raise MeshError(
            f"cannot write {output}: {exc.strerror or exc}. Pass --out with a writable file path."
        ) from None
    _warn([f"skipped {note}" for note in restored.skipped])
    if json_out:
        _print_json({**restored.to_dict(), "path": str(output), "mode": f"{file_mode:04o}"})
        return
    out.print(
        f"[green]restored[/] {restored.manifest.checkpoint_id} (step {restored.manifest.step}) → "
        f"{escape(str(output))}  {restored.manifest.payload_bytes:,} B in {restored.duration_s:.2f} s, "
        f"{restored.decoded_stripes} stripe(s) rebuilt from parity, mode {file_mode:04o}"
    )


@app.command("ls")
@_friendly
def list_checkpoints(
    config: ConfigOpt = Path("mesh.yaml"),
    all_: Annotated[bool, typer.Option("--all", help="include incomplete and damaged checkpoints")] = False,
    keys: Annotated[bool, typer.Option("--keys", help="list key-encryption keys instead")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List checkpoints (or keys)."""
    mesh = _mesh(config)
    if keys:
        infos = mesh.keys.keys()
        if json_out:
            _print_json(
                [
                    {
                        "id": k.key_id,
                        "created_at_unix_s": k.created_at_unix_s,
                        "destroyed": k.destroyed,
                        "current": k.current,
                    }
                    for k in infos
                ]
            )
            return
        for k in infos:
            flags = " [green]current[/]" if k.current else (" [red]destroyed[/]" if k.destroyed else "")
            out.print(f"{k.key_id}{flags}")
        return
    infos = mesh.list(include_incomplete=all_)
    _warn(mesh.catalog.notes)
    rollback = mesh.rollback_problem()
    if rollback:
        _warn([rollback])
    if json_out:
        _print_json(
            [
                {
                    "id": i.checkpoint_id,
                    "step": i.step,
                    "state": i.state,
                    "created_at_unix_s": i.created_at_unix_s,
                    "data_class": i.data_class,
                    "bytes": i.payload_bytes,
                    "tiers": list(i.tiers),
                    "kek_id": i.kek_id,
                }
                for i in infos
            ]
        )
        return
    table = Table("id", "step", "state", "class", "bytes", "tiers", "key")
    for i in infos:
        table.add_row(
            i.checkpoint_id,
            str(i.step),
            i.state,
            i.data_class,
            f"{i.payload_bytes:,}",
            ",".join(i.tiers),
            i.kek_id,
        )
    out.print(table)


@app.command()
@_friendly
def verify(
    config: ConfigOpt = Path("mesh.yaml"),
    step: StepOpt = None,
    checkpoint_id: IdOpt = None,
    repair: Annotated[bool, typer.Option(help="rebuild damaged or missing fragments and manifests")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Re-read and authenticate every fragment; report (and optionally repair) what is missing or damaged.

    Exit code 0 when healthy or repaired, 1 when damage remains.
    """
    mesh = _mesh(config)
    report = mesh.verify(step=step, checkpoint_id=checkpoint_id, repair=repair)
    if json_out:
        _print_json(report.to_dict())
    else:
        table = Table("fragment", "target", "tier", "status", "bad stripes")
        for c in report.fragments:
            colour = "green" if c.status == "ok" else "red"
            table.add_row(
                str(c.index),
                c.target,
                c.tier,
                f"[{colour}]{c.status}[/]",
                ",".join(map(str, c.bad_stripes[:10])),
            )
        out.print(table)
        bad_manifests = {t: s for t, s in report.manifests.items() if s != "ok"}
        out.print(
            f"{report.checkpoint_id}: {'healthy' if report.healthy else 'DAMAGED'}; "
            f"restorable: {report.restorable}; manifests not ok: {bad_manifests or 'none'}"
        )
        for problem in report.manifest_problems:
            out.print(f"  manifest {escape(problem)}", soft_wrap=True)
        for r in report.repaired:
            out.print(f"[green]repaired[/] {r}")
        _warn(report.notes)
    if not report.healthy and not report.repaired:
        raise typer.Exit(1)


@app.command()
@_friendly
def gc(
    keep: Annotated[int, typer.Option(min=1, help="committed checkpoints to keep (newest)")],
    config: ConfigOpt = Path("mesh.yaml"),
    incomplete_grace_s: Annotated[
        float, typer.Option(min=0.0, help="delete unfinished saves without a lease older than this")
    ] = 3600.0,
    json_out: JsonOpt = False,
) -> None:
    """Delete all but the newest KEEP committed checkpoints, shredded ones, and abandoned saves.

    A save in flight (live lease), a damaged checkpoint and the commit record's newest are never deleted.
    """
    report = _mesh(config).gc(keep, incomplete_grace_s)
    if json_out:
        _print_json(report.to_dict())
        return
    out.print(f"deleted {len(report.deleted)} checkpoint(s)" + "".join(f"\n  {d}" for d in report.deleted))
    for cid in report.kept_in_flight:
        out.print(f"kept {cid}: its save is in flight (live lease)")
    _warn(report.notes)


@app.command("rotate-keys")
@_friendly
def rotate_keys(
    config: ConfigOpt = Path("mesh.yaml"),
    rewrap: Annotated[bool, typer.Option(help="re-wrap existing checkpoints under the new key")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Start a new key-encryption key; old checkpoints stay restorable with their keys.

    Exit code 1 when --rewrap could not rewrite every copy (each is listed): do not shred the old key yet.
    """
    report = _mesh(config).rotate_keys(rewrap=rewrap)
    if json_out:
        _print_json(report.to_dict())
    else:
        out.print(
            f"new current key {report.key_id}"
            + (f"; re-wrapped {len(report.rewrapped)} checkpoint(s)" if rewrap else "")
        )
    if not report.complete:
        err.print(
            f"[bold red]incomplete:[/] {len(report.failed_copies)} manifest copy(ies) could not be re-wrapped "
            f"and still depend on the older key; do not shred it until `ckpt rotate-keys --rewrap` succeeds:",
            soft_wrap=True,
        )
        for failure in report.failed_copies:
            err.print(f"  {escape(failure)}", soft_wrap=True)
        raise typer.Exit(1)


@app.command()
@_friendly
def shred(
    config: ConfigOpt = Path("mesh.yaml"),
    key: Annotated[
        str | None, typer.Option(help="destroy this key: its checkpoints become unrecoverable")
    ] = None,
    checkpoint_id: IdOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    force: Annotated[
        bool, typer.Option(help="destroy the key even when a target cannot be checked")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Crypto-shred: destroy a key (every checkpoint only it wraps) or delete one checkpoint everywhere.

    A key is refused while a target cannot be checked (unless --force); stale copies of checkpoints that were
    re-wrapped under a newer key are rewritten first, so they stay restorable.
    """
    if (key is None) == (checkpoint_id is None):
        raise MeshError("shred needs exactly one of --key KEY_ID or --id CHECKPOINT_ID.")
    mesh = _mesh(config)
    what = f"key {key}" if key else f"checkpoint {checkpoint_id}"
    if not yes and not typer.confirm(f"Irrevocably destroy {what}?", err=True):
        raise typer.Exit(1)
    report = mesh.shred_key(key, force=force) if key is not None else mesh.shred_checkpoint(str(checkpoint_id))
    if json_out:
        _print_json(report.to_dict())
    elif key is not None:
        out.print(
            f"destroyed key {key}; {len(report.unrecoverable)} checkpoint(s) are now unrecoverable"
            + "".join(f"\n  {a}" for a in report.unrecoverable)
        )
        for copy in report.rewritten_copies:
            out.print(f"rewrote stale copy {copy} under the newer key")
    else:
        out.print(f"shredded {checkpoint_id}")
    _warn(report.problems)
