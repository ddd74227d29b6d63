"""``finetune-studio runs show|compare``: one run's summary, and runs side by side."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import RunConfig
from engine.errors import StudioError
from engine.paths import runs_dir
from engine.runs import cli_compare, cli_show, resolve_run

REPO = Path(__file__).resolve().parents[2]


def make_run(name: str, *, steps: int = 10, lr: float = 2e-4, final_loss: float = 0.5, best_eval: float = 0.7,
             status: str = "completed", peak: int | None = 3 * 2**30, checkpoints: tuple[int, ...] = (5, 10),
             error: str | None = None, **config) -> Path:
    """A run folder laid out as engine.train writes it: run.yaml, summary.json, metrics.jsonl, checkpoints."""
    path = runs_dir() / name
    path.mkdir(parents=True)
    cfg = RunConfig(max_steps=steps, learning_rate=lr, output_dir=str(path), **config)
    cfg.save(path / "run.yaml")
    started = 1_790_000_000.0
    summary = {"status": status, "started": started, "finished": started + 65, "step": steps,
               "final_loss": final_loss, "best_eval_loss": best_eval, "peak_gpu_device_bytes": peak,
               "dataset_hash": f"sha256:{'ab' * 32}", "dataset_records": 366, "config": cfg.to_dict()}
    if error:
        summary["error"] = {"kind": "oom", "message": error}
    (path / "summary.json").write_text(json.dumps(summary))
    rows = [{"step": i, "loss": 3.0 / i, "lr": lr} for i in range(1, steps + 1)]
    rows += [{"step": steps, "eval_loss": best_eval}]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for step in checkpoints:
        (path / f"checkpoint-{step}").mkdir()
    (path / "final").mkdir()
    return path


def show(run, as_json=True) -> argparse.Namespace:
    return argparse.Namespace(run=str(run), json=as_json)


def test_show_by_name_or_folder(capsys):
    path = make_run("20261128-100000-lora")
    for ref in ("20261128-100000-lora", path):
        assert cli_show(show(ref)) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["path"] == str(path.resolve()) and d["status"] == "completed" and d["duration_s"] == 65
        assert (d["final_loss"], d["best_eval_loss"], d["peak_gpu_bytes"]) == (0.5, 0.7, 3 * 2**30)
        assert d["dataset_hash"] == f"sha256:{'ab' * 32}" and d["dataset_records"] == 366
        assert [c["name"] for c in d["checkpoints"]] == ["checkpoint-5", "checkpoint-10"]  # step order
        assert d["metrics"]["lowest_loss"] == pytest.approx(0.3) and d["metrics"]["lowest_loss_step"] == 10
        assert d["metrics"]["train_rows"] == 10 and d["metrics"]["eval_rows"] == 1
        assert d["config"]["learning_rate"] == 2e-4 and d["config"]["max_steps"] == 10


def test_show_plain_text(capsys):
    make_run("20261128-100000-lora", status="failed", error="CUDA out of memory")
    assert cli_show(show("20261128-100000-lora", as_json=False)) == 0
    out = capsys.readouterr().out
    # The summary's last step only: a failed run's mean comes from its curve (steps 1-10 of 3/i).
    for line in ("status             failed", "duration           1 min 05 s",
                 f"final loss         {sum(3.0 / i for i in range(1, 11)) / 10:.4f} (mean of the last 10 steps; "
                 "last step 0.5000)",
                 "peak GPU memory    3.00 GiB", "checkpoints        checkpoint-5, checkpoint-10",
                 "error              CUDA out of memory", "config (run.yaml):", "  learning_rate: 0.0002",
                 "  trust_remote_code: false"):
        assert line in out


def test_the_final_loss_says_how_many_steps_its_mean_covers_when_logging_skips_steps(capsys):
    """With logging_steps 5, the mean of the last 10 logged losses (steps 11-60) read "the mean of the last 10
    steps", in `runs show` and at the end of `train`; and the last logged loss, of steps 56-60, "last step"."""
    from engine.events import FINISHED
    from engine.train import _print_event

    path = make_run("20261128-100000-every5", steps=60, logging_steps=5)
    losses = {step: 3.0 / step for step in range(5, 61, 5)}
    (path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in losses.items()))
    mean = sum(list(losses.values())[-10:]) / 10
    summary = json.loads((path / "summary.json").read_text())
    summary.update(final_loss=losses[60], final_loss_mean=mean, final_loss_window=10)
    (path / "summary.json").write_text(json.dumps(summary))
    assert cli_show(show(path, as_json=False)) == 0
    assert (f"final loss         {mean:.4f} (mean of the 10 losses logged over the last 50 steps; last logged "
            f"{losses[60]:.4f})\n") in capsys.readouterr().out
    _print_event(FINISHED, {"status": "completed", "output_dir": str(path), "final_loss_mean": mean,
                            "final_loss_window": 10}, sys.stdout)
    assert capsys.readouterr().out == (f"completed: {path} (final loss {mean:.4f}, the mean of the 10 losses logged "
                                       "over the last 50 steps)\n")


def test_show_names_the_eval_data(capsys):
    make_run("20261128-100000-lora")
    make_run("20261128-110000-lora", eval_split=0.05)
    make_run("20261128-120000-lora", eval_dataset="/data/held-out.jsonl")
    said = []
    for name in ("20261128-100000-lora", "20261128-110000-lora", "20261128-120000-lora"):
        cli_show(show(name, as_json=False))
        said += [line for line in capsys.readouterr().out.splitlines() if line.startswith("eval data")]
    assert said == ["eval data          none", "eval data          5% of the dataset held out",
                    "eval data          /data/held-out.jsonl"]
    cli_show(show("20261128-120000-lora"))
    assert json.loads(capsys.readouterr().out)["eval_dataset"] == "/data/held-out.jsonl"


def test_show_says_whether_resume_would_continue_anything(capsys):
    make_run("done", steps=10)  # completed at step 10 of 10
    make_run("cut", steps=10, status="stopped", checkpoints=(5,))
    (runs_dir() / "cut" / "final").rmdir()
    (runs_dir() / "cut" / "checkpoint-5" / "trainer_state.json").write_text("{}")  # complete: Trainer writes it last
    make_run("early", steps=10, status="failed", checkpoints=(), error="loss is NaN")
    verdicts = {}
    for name in ("done", "cut", "early"):
        assert cli_show(show(name)) == 0
        verdicts[name] = json.loads(capsys.readouterr().out)["resume"]
    assert not verdicts["done"]["ok"] and "nothing is left to train" in verdicts["done"]["reason"]
    (runs_dir() / "done" / "checkpoint-10" / "trainer_state.json").write_text("{}")
    assert cli_show(show("done", as_json=False)) == 0
    assert f"train {runs_dir() / 'done'}/run.yaml --resume --max_steps N, with N above 10." in \
        capsys.readouterr().out
    assert verdicts["cut"]["ok"] and "checkpoint-5 (step 5 of 10)" in verdicts["cut"]["reason"]
    assert not verdicts["early"]["ok"] and "before its first checkpoint" in verdicts["early"]["reason"]
    assert cli_show(show("cut", as_json=False)) == 0
    out = capsys.readouterr().out
    assert "resume             yes: Continue this stopped run from checkpoint-5" in out
    assert f"train {runs_dir() / 'cut'}/run.yaml --resume)" in out


def test_a_killed_run_reads_its_loss_steps_and_duration_from_what_it_wrote():
    from engine.runs import run_info

    path = make_run("killed", steps=6, status="running")
    summary = json.loads((path / "summary.json").read_text())
    summary.pop("finished")
    # An earlier leg's end, still in the summary of a resumed run that was then killed: stale.
    summary.update(final_loss=9.0, final_loss_mean=8.0, final_loss_window=10)
    summary["step"] = 4  # written at the last checkpoint; steps 5 and 6 were logged after it
    summary["pid"] = 2**22 + 12345  # no such process: the worker is gone
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "worker.pid").write_text(str(summary["pid"]))
    # Each metric row has its time, as the worker writes it; the last at 42 s. The summary
    # was last updated at the checkpoint, 30 s in.
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row["time"] = summary["started"] + 7 * row["step"]
    rows += [{"step": 3, "eval_loss": 0.75, "time": summary["started"] + 21},
             {"step": 5, "eval_loss": 0.5, "time": summary["started"] + 35}]  # the summary never got them
    rows.sort(key=lambda r: r["time"])
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.utime(path / "summary.json", (summary["started"] + 30, summary["started"] + 30))
    info = run_info(path)
    assert info.status == "interrupted" and info.best_eval_loss == 0.5
    assert info.steps == 6 and info.final_loss == pytest.approx(3.0 / 6)
    assert info.final_loss_mean == pytest.approx(sum(3.0 / i for i in range(1, 7)) / 6)
    assert info.duration_s == pytest.approx(42)
    from engine.runs import run_details

    assert run_details(path)["final_loss_window"] == 6  # the mean is of the 6 steps logged, not "10"


def failed_at(path: Path, step: int, *, summary_step: int | None = None) -> Path:
    """Make ``path``'s run one that failed at ``step``, as engine.train writes it: the error names the
    step, the step that failed logged nothing, and the summary's step is its last checkpoint's."""
    summary = json.loads((path / "summary.json").read_text())
    summary.update(status="failed", error={"kind": "nonfinite", "step": step,
                                           "message": f"the gradient norm became non-finite at step {step}"})
    for key in ("final_loss", "final_loss_mean"):
        summary.pop(key, None)
    if summary_step is not None:
        summary["step"] = summary_step
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_a_failed_runs_steps_say_the_last_one_logged_and_the_one_it_failed_at(capsys):
    """runs list said "4" and runs show "steps 4" beside "error ... at step 5": both right (the failing
    step logs no loss), but nothing said so."""
    failed_at(make_run("20261128-100000-lora", steps=4, status="failed", checkpoints=(4,)), 5)
    # Failed at a step it had logged (a callback failing after the step): nothing more to say.
    failed_at(make_run("20261128-110000-lora", steps=2, status="failed", checkpoints=(2,)), 2)
    make_run("20261128-120000-lora", steps=10)
    assert main(["runs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], {line.split()[0]: line for line in lines[1:]}
    assert rows["20261128-100000-lora"].split()[3:7] == ["4", "(failed", "at", "5)"]
    assert rows["20261128-110000-lora"].split()[3] == "2" and "failed at" not in rows["20261128-110000-lora"]
    steps_end = header.index("steps") + len("steps")  # the column stays right-aligned under its header
    assert all(row[:steps_end].endswith(("5)", " 2", "10")) for row in rows.values())
    assert main(["runs", "list", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert (listed["20261128-100000-lora"]["steps"], listed["20261128-100000-lora"]["failed_step"]) == (4, 5)
    assert listed["20261128-120000-lora"]["failed_step"] is None
    assert cli_show(show("20261128-100000-lora", as_json=False)) == 0
    out = capsys.readouterr().out
    assert "steps              4, the last step logged; the run failed at step 5, before logging it" in out
    assert "error              the gradient norm became non-finite at step 5" in out
    assert cli_show(show("20261128-110000-lora", as_json=False)) == 0
    assert "steps              2\n" in capsys.readouterr().out
    assert cli_compare(argparse.Namespace(runs=["20261128-100000-lora", "20261128-120000-lora"], json=False)) == 0
    (row,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("steps")]
    assert row.split()[1:] == ["4", "(failed", "at", "5)", "10"]


def test_a_failed_run_that_logged_nothing_says_so():
    from engine.runs import run_info, steps_detail, steps_text

    path = failed_at(make_run("oom", steps=1, status="failed", checkpoints=()), 1)
    (path / "metrics.jsonl").write_text("")
    summary = json.loads((path / "summary.json").read_text())
    summary.pop("step")
    (path / "summary.json").write_text(json.dumps(summary))
    info = run_info(path)
    assert (info.steps, info.failed_step) == (None, 1)
    assert steps_text(info.steps, info.failed_step) == "0 (failed at 1)"
    assert steps_detail(info.steps, info.failed_step) == "none logged; the run failed at step 1, before logging it"


def test_a_failed_runs_steps_are_its_last_logged_not_its_last_checkpoints():
    """A failed run's summary.json holds the step of its last checkpoint (written when it was saved):
    logged to step 7 after checkpoint-4, it read "4 (failed at 8)"."""
    from engine.runs import run_info

    path = failed_at(make_run("failed", steps=7, status="failed", checkpoints=(4,)), 8, summary_step=4)
    info = run_info(path)
    assert (info.steps, info.failed_step) == (7, 8)
    # A run resumed after failing keeps the old error in its summary: not a failed run's step.
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "status": "stopped", "step": 9}))
    assert (run_info(path).steps, run_info(path).failed_step) == (9, None)


def test_unknown_run_suggests_the_closest(capsys):
    make_run("20261128-100000-lora")
    with pytest.raises(StudioError, match="run '20261128-100000-lorb': no such folder") as e:
        cli_show(show("20261128-100000-lorb"))
    assert "20261128-100000-lora" in e.value.hint
    assert main(["runs", "show", "nope"]) == 2
    assert "run 'nope'" in capsys.readouterr().err


def test_compare_lists_losses_and_only_the_config_keys_that_differ(capsys):
    a = make_run("20261128-100000-lora", steps=10, lr=2e-4, final_loss=0.5, best_eval=0.7)
    b = make_run("20261128-110000-lora", steps=20, lr=1e-3, final_loss=0.3, best_eval=0.9, peak=None)
    assert cli_compare(argparse.Namespace(runs=[str(a), "20261128-110000-lora"], json=True)) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in out["runs"]] == [a.name, b.name]
    assert [r["final_loss"] for r in out["runs"]] == [0.5, 0.3]
    assert out["config_differences"] == {"learning_rate": [2e-4, 1e-3], "max_steps": [10, 20]}  # not output_dir
    assert out["same_config_keys"] == len(RunConfig.field_names()) - 3
    assert cli_compare(argparse.Namespace(runs=[a.name, b.name], json=False)) == 0
    lines = capsys.readouterr().out.splitlines()
    row = {line.split("  ")[0]: line.split() for line in lines}
    assert row["final loss"][-2:] == ["0.3000", "*"] and row["best eval loss"][-3:] == ["0.7000", "*", "0.9000"]
    assert row["learning_rate"][1:] == ["0.0002", "0.001"] and row["max_steps"][1:] == ["10", "20"]
    assert "config differences:" in lines and lines[-1].startswith("2 config key(s) differ")


def test_compare_says_how_many_legs_a_resumed_run_trained_in(capsys):
    a = make_run("20261128-100000-lora")
    b = make_run("20261128-110000-lora")
    summary = json.loads((b / "summary.json").read_text())
    (b / "summary.json").write_text(json.dumps({**summary, "legs": 2, "earlier_legs_s": 30.0}))
    assert cli_compare(argparse.Namespace(runs=[a.name, b.name], json=False)) == 0
    (row,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("duration")]
    assert row.split()[1:] == ["1", "min", "05", "s", "1", "min", "35", "s", "(2", "legs)"]


def test_compare_lists_the_keys_that_tell_runs_apart_before_their_names(capsys):
    """A sweep's run names always differ; listed first (config order) they pushed the swept key back."""
    a = make_run("20261128-100000-lora", lr=2e-4, run_name="sweep-lr2e-4", seed=1)
    b = make_run("20261128-110000-lora", lr=1e-3, run_name="sweep-lr1e-3", seed=2)
    assert cli_compare(argparse.Namespace(runs=[str(a), str(b)], json=True)) == 0
    assert list(json.loads(capsys.readouterr().out)["config_differences"]) == ["learning_rate", "seed", "run_name"]


def test_compare_says_when_the_eval_losses_were_measured_on_different_records(capsys):
    a = make_run("20261128-100000-lora", eval_split=0.1)
    b = make_run("20261128-110000-lora", eval_split=0.1)
    c = make_run("20261128-120000-lora", eval_dataset="/data/held-out.jsonl")
    assert cli_compare(argparse.Namespace(runs=[str(a), str(b)], json=True)) == 0
    assert json.loads(capsys.readouterr().out)["same_eval_data"] is True  # same dataset, share and seed
    assert cli_compare(argparse.Namespace(runs=[str(a), str(b)], json=False)) == 0
    assert "*" in next(x for x in capsys.readouterr().out.splitlines() if x.startswith("best eval loss"))
    assert cli_compare(argparse.Namespace(runs=[str(a), str(c)], json=False)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("note: the eval losses were measured on different")
    assert "*" not in next(x for x in out if x.startswith("best eval loss"))  # they don't rank the runs
    d = make_run("20261128-130000-lora", eval_split=0.1, seed=7)  # another seed holds out other records
    assert cli_compare(argparse.Namespace(runs=[str(a), str(d)], json=True)) == 0
    assert json.loads(capsys.readouterr().out)["same_eval_data"] is False


def test_compare_needs_two_runs():
    make_run("20261128-100000-lora")
    with pytest.raises(StudioError, match="needs two runs or more"):
        cli_compare(argparse.Namespace(runs=["20261128-100000-lora"], json=False))


def test_show_and_compare_run_as_commands():
    make_run("20261128-100000-lora")
    make_run("20261128-110000-lora", lr=1e-3)
    cmd = [sys.executable, "-m", "engine", "runs"]
    shown = subprocess.run([*cmd, "show", "20261128-100000-lora", "--json"], capture_output=True, text=True,
                           cwd=REPO)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "completed"
    compared = subprocess.run([*cmd, "compare", "20261128-100000-lora", "20261128-110000-lora"],
                              capture_output=True, text=True, cwd=REPO)
    assert compared.returncode == 0, compared.stderr
    assert "learning_rate" in compared.stdout and "1 config key(s) differ" in compared.stdout
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(1_790_000_000.0))
    text = subprocess.run([*cmd, "show", "20261128-100000-lora"], capture_output=True, text=True, cwd=REPO).stdout
    assert started in text


def test_final_loss_mean_follows_the_curve_a_resumed_run_ended_with(tmp_path):
    from engine.runs import final_loss_mean

    rows = [{"step": s, "loss": float(s)} for s in range(1, 13)]           # first session: steps 1-12
    rows += [{"step": 10, "eval_loss": 0.5}]
    rows += [{"step": s, "loss": 100.0 + s} for s in range(9, 15)]        # resumed from step 8: 9-14 again
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 15, "lo')
    mean, n = final_loss_mean(tmp_path, window=10)
    # the curve is 1..8 then 109..114: its last 10 are 5..8 and 109..114
    assert n == 10 and mean == pytest.approx((5 + 6 + 7 + 8 + sum(range(109, 115))) / 10)
    assert final_loss_mean(tmp_path / "missing") == (None, 0)


def test_a_killed_leg_counts_up_to_the_last_thing_it_wrote(tmp_path):
    # A leg killed with -9 never wrote "finished": its training time ends at its last event,
    # not at the resume (the wall gap) and not at zero.
    from engine.runs import RunInfo, training_time_so_far

    run = tmp_path / "run"
    run.mkdir()
    started = time.time() - 7200  # killed two hours ago
    (run / "summary.json").write_text(json.dumps({"status": "running", "started": started, "finished": None,
                                                  "earlier_legs_s": 30.0, "legs": 2}))
    os.utime(run / "summary.json", (started + 40, started + 40))
    events = [{"event": "step", "time": started + t, "step": i} for i, t in enumerate((10, 50, 70), 1)]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + '{"event": "st')  # torn
    (run / "metrics.jsonl").write_text(json.dumps({"step": 2, "loss": 1.0, "time": started + 50}) + "\n")
    assert training_time_so_far(run) == (pytest.approx(30.0 + 70), 2)
    assert training_time_so_far(tmp_path / "nothing") == (0.0, 0)
    info = RunInfo(path=run, name="r", status="completed", method="lora", model="demo", started=1000.0,
                   finished=1060.0, final_loss=None, best_eval_loss=None, final_loss_mean=None,
                   peak_gpu_bytes=None, steps=4, earlier_legs_s=100.0, legs=2)
    assert info.duration_s == 160.0 and info.to_dict()["legs"] == 2


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe{", b"null"])
def test_one_damaged_summary_does_not_break_the_history(capsys, content):
    make_run("20261128-100000-lora")
    bad = runs_dir() / "20261128-110000-garbage"
    bad.mkdir(parents=True)
    (bad / "summary.json").write_bytes(content)
    assert main(["runs", "list", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert "20261128-100000-lora" in names
    assert main(["runs", "show", str(bad), "--json"]) == 0


def test_pid_alive_never_signals_a_process_on_windows(monkeypatch):
    """On Windows os.kill(pid, 0) is TerminateProcess: asking whether a run's worker lives would
    kill it. The Windows path asks OpenProcess/GetExitCodeProcess instead (a stand-in kernel32 here)."""
    import ctypes

    from engine import runs

    class Kernel32:
        def __init__(self, handle, code, error=0):
            self.handle, self.code, self.error = handle, code, error

        def OpenProcess(self, access, inherit, pid):  # noqa: N802 - the Win32 names
            return self.handle

        def GetExitCodeProcess(self, handle, out):  # noqa: N802
            ctypes.cast(out, ctypes.POINTER(ctypes.c_ulong)).contents.value = self.code
            return 1

        def CloseHandle(self, handle):  # noqa: N802
            return 1

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(os, "kill", lambda *a: pytest.fail("os.kill on Windows terminates the process"))
    cases = [(Kernel32(7, 259), True), (Kernel32(7, 0), False), (Kernel32(0, 0, error=87), False),
             (Kernel32(0, 0, error=5), True)]
    for kernel, alive in cases:
        monkeypatch.setattr(ctypes, "WinDLL", lambda name, use_last_error=False, k=kernel: k, raising=False)
        monkeypatch.setattr(ctypes, "get_last_error", lambda k=kernel: k.error, raising=False)
        assert runs.pid_alive(1234) is alive


REGISTER = """\
import sys, time
from pathlib import Path
from engine.runs import remember_run_folder

root, who, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
while not go.exists():  # all start at once, so their read-modify-writes overlap
    time.sleep(0.005)
for i in range(15):
    remember_run_folder(root / f"{who}-{i}")
"""


def test_runs_starting_at_once_all_stay_in_the_run_folder_index(tmp_path):
    """run_folders.json is read, extended and written back by each run that starts: without a
    lock, two runs starting together each wrote the list they had read, and one entry was lost."""
    from engine.runs import run_folders_file

    script, go = tmp_path / "register.py", tmp_path / "go"
    script.write_text(REGISTER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), f"p{n}", str(go)], env=env)
             for n in range(4)]
    time.sleep(1.0)  # let them import and wait at the start line
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    folders = json.loads(run_folders_file().read_text())["folders"]
    expected = {str((tmp_path / "out" / f"p{n}-{i}").resolve()) for n in range(4) for i in range(15)}
    assert sorted(folders) == sorted(expected)


def test_a_resumed_runs_duration_reads_the_same_in_runs_list_and_show(capsys):
    """Training time of all the legs, said once by the engine (duration_text) for the CLI and the Runs area."""
    from engine.runs import cli_list, duration_text, run_info

    path = make_run("20261128-100000-lora")
    summary = json.loads((path / "summary.json").read_text())
    summary.update(earlier_legs_s=30.0, legs=2, first_started=summary["started"] - 3600)  # resumed an hour later
    (path / "summary.json").write_text(json.dumps(summary))
    make_run("20261128-110000-lora")
    assert duration_text(run_info(path)) == "1 min 35 s (2 legs)"  # 30 s + this leg's 65 s
    assert duration_text(run_info(runs_dir() / "20261128-110000-lora")) == "1 min 05 s"
    assert cli_list(argparse.Namespace(json=False)) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "duration" in listed[0]
    assert "1 min 35 s (2 legs)" in next(line for line in listed if line.startswith("20261128-100000-lora"))
    assert cli_show(show(path, as_json=False)) == 0
    assert "\nduration           1 min 35 s (2 legs)\n" in capsys.readouterr().out


def test_a_killed_leg_keeps_its_duration_when_the_run_is_promoted_or_rewound_later():
    """A killed leg ends at its last event or metric row: promoting a checkpoint or rewinding the
    run an hour later (both rewrite summary.json) added that hour to its training time, and a
    rewound killed run (stopped, never finished) showed no duration at all."""
    from engine.rewind import rewind
    from engine.runs import run_info, training_time_so_far

    path = make_run("killed", steps=6, status="running", checkpoints=(3, 6))
    summary = json.loads((path / "summary.json").read_text())
    summary.pop("finished")
    summary.update(earlier_legs_s=30.0, legs=2, pid=2**22 + 12345)  # no such process: the worker is gone
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "worker.pid").write_text(str(summary["pid"]))
    started = summary["started"]
    rows = [{"step": i, "loss": 3.0 / i, "time": started + 7 * i} for i in range(1, 7)]  # the last at 42 s
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "events.jsonl").write_text("".join(json.dumps({"event": "step", **r}) + "\n" for r in rows))
    for step in (3, 6):
        for name in ("trainer_state.json", "adapter_config.json"):
            (path / f"checkpoint-{step}" / name).write_text("{}")
    os.utime(path / "summary.json", (started + 3600, started + 3600))  # touched an hour later (runs promote)
    assert run_info(path).duration_s == pytest.approx(30 + 42)
    assert training_time_so_far(path) == (pytest.approx(30 + 42), 2)

    rewind(path, 3)
    assert json.loads((path / "summary.json").read_text())["finished"] == pytest.approx(started + 42)
    info = run_info(path)
    assert info.status == "stopped" and info.duration_s == pytest.approx(30 + 42)
    assert training_time_so_far(path) == (pytest.approx(30 + 42), 2)


def test_a_runs_own_file_names_the_run_and_another_file_is_said_to_be_a_file(tmp_path):
    path = make_run("20261128-100000-lora")
    assert resolve_run(path / "run.yaml") == path.resolve() == resolve_run(path / "summary.json")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(StudioError, match="is a file; a run is named by its folder or its name") as e:
        resolve_run(other)
    assert "runs list" in e.value.hint


CORRUPT_RUN_YAML = [
    ("model: demo\nlora_r: [\n", "run.yaml:3:1: invalid YAML: expected the node content, but found '<stream end>'"),
    ("model: demo\nrun_name: 'abc\n", "run.yaml:2:11: invalid YAML: this quote is never closed (the file ends inside it)"),
    ("- model\n- demo\n", "run.yaml: the top level must be a mapping of keys to values (key: value lines, e.g. "
                          "'model: demo'), got a list [model, demo]"),
    ("", "run.yaml: the file holds no keys (it is empty, or only blank lines and comments)"),
]


def test_an_emptied_run_yaml_is_said_to_be_the_runs_not_a_config_to_write_from_scratch(capsys):
    """A run's empty run.yaml got the advice for a hand-written config: "a run config names at least the model
    and the dataset to train, e.g. 'model: demo'", as if the user were to start one; the run had written its
    config there, and summary.json keeps the copy to put back."""
    path = make_run("cut", steps=10, status="stopped", checkpoints=(5,), lr=3e-4)
    (path / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (path / "run.yaml").write_text("# \n\n")
    said = (f"{path}/run.yaml: the file holds no keys (it is empty, or only blank lines and comments), though the run "
            "wrote its config there as it started: the file was emptied since")
    assert cli_show(show("cut", as_json=False)) == 0
    out = capsys.readouterr().out
    assert f"\nconfig: run.yaml can't be read: {said}\n" in out and "e.g. 'model: demo'" not in out
    assert main(["train", "cut", "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"finetune-studio train: {said}\n  hint: The config the run started with is kept in its summary.json "
        f"(`finetune-studio runs show {path}` prints it): write it back into run.yaml.\n")
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    assert main(["train", "cut", "--resume"]) == 2
    assert capsys.readouterr().err.endswith("\n  hint: The run kept no other copy of its config: write run.yaml "
                                            "again as the run was set up.\n")


@pytest.mark.parametrize("text,said", CORRUPT_RUN_YAML)
def test_a_corrupt_run_yaml_is_said_unreadable_where_and_why_and_the_rest_is_still_shown(capsys, text, said):
    """`runs show` said "config: none recorded", which was false: the run recorded one, in a file it can't read."""
    path = make_run("cut", steps=10, status="stopped", checkpoints=(5,), lr=3e-4)
    (path / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (path / "run.yaml").write_text(text)
    assert cli_show(show("cut", as_json=False)) == 0
    out = capsys.readouterr().out
    assert "none recorded" not in out
    assert f"\nconfig: run.yaml can't be read: {path}/{said}" in out
    # Everything else is still there: status, losses, peak, and the config the run started with.
    assert "\nstatus             stopped\n" in out and "\nfinal loss         0.8787 (mean" in out
    assert "\npeak GPU memory    3.00 GiB\n" in out
    assert "\nconfig (summary.json's copy, as the run started):\n" in out and "\n  learning_rate: 0.0003\n" in out
    # Resume would refuse the file with the same message: it is not offered.
    assert f"\nresume             no: Its run.yaml, which a resume continues with, can't be read: {path}/{said}" in out
    assert "Once the file is fixed: Continue this stopped run from checkpoint-5 (step 5 of 10).\n" in out
    assert main(["train", "cut", "--resume"]) == 2
    assert said in capsys.readouterr().err
    assert cli_show(show("cut")) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["config_source"] == "summary.json" and said in d["config_problem"] and not d["resume"]["ok"]


def test_a_corrupt_run_yaml_without_a_summary_copy_says_so_and_compare_and_list_go_on(capsys):
    make_run("ok-run", steps=10)
    path = make_run("bad-run", steps=10, lr=1e-3)
    (path / "run.yaml").write_text("model: demo\nlora_r: [\n")
    summary = json.loads((path / "summary.json").read_text())
    del summary["config"]
    (path / "summary.json").write_text(json.dumps(summary))
    assert cli_show(show("bad-run", as_json=False)) == 0
    out = capsys.readouterr().out
    assert out.endswith(f"config: run.yaml can't be read: {path / 'run.yaml'}:3:1: invalid YAML: expected the node "
                        "content, but found '<stream end>'\n")
    assert main(["runs", "compare", "ok-run", "bad-run"]) == 0
    out = capsys.readouterr().out
    assert f"note: bad-run: run.yaml can't be read: {path / 'run.yaml'}:3:1: invalid YAML: expected the node content, " \
           "but found '<stream end>'; its config is unknown\n" in out
    assert main(["runs", "list"]) == 0
    assert "bad-run" in capsys.readouterr().out


def test_a_run_whose_run_yaml_is_corrupt_names_the_file_when_its_base_model_is_asked_for():
    """generate/merge/export-gguf of such a run said "no 'model' in run.yaml" while the file held one."""
    from engine.errors import ModelError
    from engine.runs import run_model

    path = make_run("lora-run", steps=10)
    (path / "final" / "adapter_config.json").write_text("{}")
    (path / "run.yaml").write_text("model: /models/base\nlora_r: [\n")
    summary = json.loads((path / "summary.json").read_text())
    del summary["config"]
    (path / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ModelError) as e:
        run_model(path)
    assert e.value.message == (f"run 'lora-run' trained an adapter ({path / 'final'}) but records no base model "
                               f"(its run.yaml can't be read: {path / 'run.yaml'}:3:1: invalid YAML: expected the "
                               "node content, but found '<stream end>')")


@pytest.mark.parametrize("since_checkpoint", [None, 4])
def test_a_running_runs_steps_are_the_ones_it_has_logged(capsys, since_checkpoint):
    """The summary gets a step at each checkpoint only: a running run read "0" in ``runs list``,
    "-" in ``runs show`` and the Runs area until its first checkpoint, and its checkpoint's step
    after it, while the Train area showed it steps further on."""
    from engine.runs import cli_list, run_info

    path = make_run("20261128-100000-lora", steps=7)
    summary = json.loads((path / "summary.json").read_text())
    summary.update(status="running", finished=None, step=since_checkpoint)
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "worker.pid").write_text(str(os.getpid()))  # alive: still training
    assert run_info(path).status == "running" and run_info(path).steps == 7
    assert cli_list(argparse.Namespace(json=False)) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("20261128-100000-lora"))
    assert row.split()[1:4] == ["running", "lora", "7"]
    assert cli_show(show(path, as_json=True)) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 7
