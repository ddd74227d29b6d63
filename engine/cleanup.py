"""Give disk back: delete a run, or the checkpoints of a run that it no longer needs.

A 7B full fine-tune writes tens of GB per checkpoint (weights and optimizer state), and a
researcher's runs pile up. ``finetune-studio runs delete RUN`` removes a run folder;
``finetune-studio runs prune RUN`` keeps the run (its curves, config, model card and
``final/``) and removes its older checkpoints, keeping the newest ``--keep`` (default 1, so the
run can still be resumed or trained further), and the ``superseded-*/`` folders a rewind left.
The Runs area's "Delete…" and "Free disk…" do the same, after saying how much each frees.

Neither touches a run that is training (its worker is alive), and neither deletes what a run
trained when it has no ``final/``: pruning then keeps at least its newest checkpoint.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.adapters import format_size
from engine.errors import StudioError
from engine.files import folder_bytes
from engine.runs import checkpoints, live_worker, resolve_run


@dataclass
class Removal:
    """What a delete or a prune removes (or removed), and the bytes it frees."""

    run_dir: Path
    folders: list[Path] = field(default_factory=list)
    bytes: int = 0
    kept: list[str] = field(default_factory=list)
    """The checkpoints a prune keeps (names)."""
    whole_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.run_dir), "removed": [str(p) for p in self.folders], "bytes": self.bytes,
                "kept": self.kept, "whole_run": self.whole_run}

    def describe(self, done: bool = True) -> str:
        """One line for a terminal or a dialog: what goes and what it frees."""
        if self.whole_run:
            return (f"{'deleted' if done else 'delete'} {self.run_dir} ({format_size(self.bytes)})")
        if not self.folders:
            return f"nothing to remove in {self.run_dir.name}: " + (
                f"it keeps {', '.join(self.kept)}" if self.kept else "it has no checkpoints")
        names = ", ".join(p.name for p in self.folders)
        kept = f"; kept {', '.join(self.kept)}" if self.kept else ""
        return f"{'removed' if done else 'remove'} {names} from {self.run_dir.name} ({format_size(self.bytes)}){kept}"


def _refuse_live(run_dir: Path, what: str) -> None:
    pid = live_worker(run_dir)
    if pid is not None:
        raise StudioError(f"{run_dir.name} is training (worker process {pid}): its folder can't be {what} now",
                          hint="Stop the run first (the Train area's Stop, or Ctrl-C in its terminal).")


def delete_plan(run: str | Path) -> Removal:
    """What ``runs delete RUN`` removes: the whole run folder.

    Raises:
        StudioError: no such run, or it is training.
    """
    run_dir = resolve_run(run)  # only ever a run folder: one without run files is never deleted
    _refuse_live(run_dir, "deleted")
    return Removal(run_dir, [run_dir], folder_bytes(run_dir), whole_run=True)


def prune_plan(run: str | Path, keep: int = 1, *, superseded: bool = True) -> Removal:
    """What ``runs prune RUN`` removes: the checkpoints but the newest ``keep``, and (with
    ``superseded``) the ``superseded-*/`` folders of earlier rewinds. ``final/`` always stays.

    Raises:
        StudioError: no such run; it is training; or ``keep`` is 0 while the run has no ``final/``
            (its checkpoints are all it trained), or below 0.
    """
    run_dir = resolve_run(run)
    _refuse_live(run_dir, "pruned")
    if keep < 0:
        raise StudioError(f"--keep must be 0 or more, got {keep}")
    ckpts = checkpoints(run_dir)  # oldest first
    has_final = (run_dir / "final").is_dir()
    if keep == 0 and ckpts and not has_final:
        raise StudioError(f"{run_dir.name} has no final/: its checkpoints are all it trained, so --keep 0 would "
                          "delete the run's result", hint="Keep at least the newest (--keep 1), or delete the "
                          "whole run with `finetune-studio runs delete`.")
    kept = ckpts[len(ckpts) - keep:] if keep else []
    gone = [c for c in ckpts if c not in kept]
    if superseded:
        gone += sorted(p for p in run_dir.glob("superseded-*") if p.is_dir())
    return Removal(run_dir, gone, sum(folder_bytes(p) for p in gone), kept=[c.name for c in kept])


def carry_out(plan: Removal) -> Removal:
    """Remove what ``plan`` lists (the run checked again: it may have started since).

    Raises:
        StudioError: the run started training since the plan, or a folder can't be removed.
    """
    _refuse_live(plan.run_dir, "deleted" if plan.whole_run else "pruned")
    for folder in plan.folders:
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StudioError(f"could not remove {folder}: {e.strerror or e}",
                              hint="Check the folder's permissions, or whether another program holds its files.") from e
    return plan


# ---- CLI

def _confirm(plan: Removal, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise StudioError(plan.describe(done=False) + ": not done without a confirmation",
                          hint="Add --yes to do it from a script.")
    what = plan.describe(done=False)
    answer = input(what[0].upper() + what[1:] + "? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cli_delete(args: Any) -> int:
    """``finetune-studio runs delete RUN... [--yes] [--json]``."""
    return _carry_out_all([delete_plan(r) for r in args.runs], args)  # every one checked before any goes


def cli_prune(args: Any) -> int:
    """``finetune-studio runs prune RUN... [--keep N] [--keep-superseded] [--yes] [--json]``."""
    return _carry_out_all([prune_plan(r, args.keep, superseded=not args.keep_superseded) for r in args.runs], args)


def _carry_out_all(plans: list[Removal], args: Any) -> int:
    """Each plan, once confirmed (one with nothing to remove is only said); 1 when one was declined."""
    done = []
    for plan in plans:
        if plan.folders and not _confirm(plan, args.yes):
            continue
        done.append(carry_out(plan) if plan.folders else plan)
        if not args.json:
            print(plan.describe())
    if args.json:
        print(json.dumps([d.to_dict() for d in done]))
    return 0 if len(done) == len(plans) else 1
