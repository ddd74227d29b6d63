"""The training worker: a child process that trains and talks in JSON lines.

``python -m engine.worker RUN.yaml [--resume] [--KEY VALUE ...]`` (or ``finetune-studio
worker``). Events go to stdout, one JSON object per line; commands come on stdin
(``{"cmd": "stop"}``, ``{"cmd": "save"}``). Whatever libraries print goes to stderr, so
the event stream stays parseable. Training in a child process keeps the GUI responsive
and returns all GPU memory on exit (measured: ../shared/notes/engineering.md).
If the GUI goes away, the worker keeps training and keeps writing its run folder.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.errors import StudioError
from engine.events import ERROR, FINISHED, EventWriter


def cli_worker(args: Any) -> int:
    # Keep the real stdout for events only; anything printed by libraries goes to stderr.
    events_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    writer = EventWriter(events_out)
    from engine.adapters import quiet_loading
    from engine.train import Commands, run_training

    quiet_loading()  # no "Loading weights" bar: the log is line-based

    commands = Commands()
    threading.Thread(target=commands.read_stdin_forever, daemon=True, name="commands").start()
    # SIGTERM (a polite kill from the client or the OS) = stop with a checkpoint.
    signal.signal(signal.SIGTERM, lambda *_: commands.put("stop"))
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # survive the GUI's terminal closing
    try:
        cfg = RunConfig.load(args.config, args.overrides)
    except StudioError as e:
        writer.emit(ERROR, **e.to_dict(), errors=[x.to_dict() for x in getattr(e, "errors", [])])
        writer.emit(FINISHED, status="failed", error=e.to_dict())
        return 2
    finally:
        if getattr(args, "config_is_temp", False):  # the client's hand-over file; run.yaml is the record
            Path(args.config).unlink(missing_ok=True)
    full = None
    if getattr(args, "probe_steps", 0):
        from engine.probe import probe_config

        # The client made the probe's own run folder and put it in output_dir.
        full, cfg = cfg, probe_config(cfg, args.probe_steps, output_dir=cfg.output_dir)
    result = run_training(cfg, writer, resume=args.resume, commands=commands, probe_of=full)
    if cfg.output_dir and getattr(args, "config_is_temp", False):
        _drop_unborn_run(Path(cfg.output_dir))
    return {"completed": 0, "stopped": 0}.get(result.get("status"), 1)


def _drop_unborn_run(folder: Path) -> None:
    """A run the client made a folder for but that failed its checks before writing run.yaml (a
    dataset path that doesn't exist): the folder is not a run and is never listed, so it goes,
    unless the worker's log has something in it to read."""
    if (folder / "run.yaml").exists():
        return
    log = folder / "worker.log"  # this process's stderr
    sys.stderr.flush()
    try:
        if log.exists() and log.stat().st_size == 0:
            log.unlink()
        folder.rmdir()  # only if nothing else is in it
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    from engine.cli import main as cli_main

    return cli_main(["worker", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
