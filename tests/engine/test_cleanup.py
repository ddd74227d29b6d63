"""``runs delete`` and ``runs prune``: disk given back, never a training run's, never a run's only result."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.cleanup import carry_out, delete_plan, prune_plan
from engine.cli import main
from engine.errors import StudioError
from engine.files import folder_bytes
from engine.runs import checkpoints, list_runs
from tests.engine.test_train import make_cfg, train


@pytest.fixture
def finished_run(tiny_model_dir, small_dataset, tmp_path):
    """A completed run with checkpoint-2, -4, -6 and final/."""
    out = tmp_path / "run"
    cfg = make_cfg(tiny_model_dir, small_dataset, out, max_steps=6, save_steps=2, save_total_limit=0)
    assert train(cfg)[0]["status"] == "completed"
    return out


def test_prune_keeps_the_newest_checkpoint_and_final_and_frees_what_it_says(finished_run, capsys):
    from engine.rewind import rewind

    rewind(finished_run, 4)  # checkpoint-6 and final/ move to superseded-*/; resumed, it writes final/ again
    (aside,) = finished_run.glob("superseded-*")
    plan = prune_plan(finished_run)
    assert [p.name for p in plan.folders] == ["checkpoint-2", aside.name] and plan.kept == ["checkpoint-4"]
    expected = folder_bytes(finished_run / "checkpoint-2") + folder_bytes(aside)
    assert plan.bytes == expected > 0
    before = folder_bytes(finished_run)
    assert main(["runs", "prune", str(finished_run), "--yes"]) == 0
    assert capsys.readouterr().out.startswith(f"removed checkpoint-2, {aside.name} from run (")
    assert [c.name for c in checkpoints(finished_run)] == ["checkpoint-4"] and not aside.exists()
    assert folder_bytes(finished_run) == before - expected
    assert (finished_run / "metrics.jsonl").exists() and (finished_run / "run.yaml").exists()
    # Nothing more to remove: said, and exit 0.
    assert main(["runs", "prune", str(finished_run), "--yes"]) == 0
    assert "nothing to remove in run: it keeps checkpoint-4" in capsys.readouterr().out


def test_prune_keep_0_only_where_final_holds_the_result(finished_run, capsys):
    plan = prune_plan(finished_run, keep=0)
    assert [p.name for p in plan.folders] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"] and plan.kept == []
    carry_out(plan)
    assert checkpoints(finished_run) == [] and (finished_run / "final" / "adapter_model.safetensors").exists()
    # Without final/, the checkpoints are all the run trained: --keep 0 is refused, --keep 1 is fine.
    other = finished_run.parent / "no-final"
    (other / "checkpoint-3").mkdir(parents=True)
    (other / "checkpoint-3" / "adapter_model.safetensors").write_bytes(b"x" * 10)
    (other / "run.yaml").write_text("model: demo\n")
    with pytest.raises(StudioError, match="no final/: its checkpoints are all it trained"):
        prune_plan(other, keep=0)
    assert main(["runs", "prune", str(other), "--keep", "0", "--yes"]) == 2
    assert "--keep 0 would delete the run's result" in capsys.readouterr().err
    assert (other / "checkpoint-3").exists() and prune_plan(other, keep=1).folders == []


def test_delete_asks_first_and_never_touches_a_training_run(finished_run, capsys, monkeypatch):
    from engine.runs import remember_run_folder

    remember_run_folder(finished_run)  # listed by runs list, as a run with its own output_dir
    assert [r.path for r in list_runs()] == [finished_run.resolve()]
    # No one to answer (a script, stdin not a terminal) and no --yes: not deleted.
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(["runs", "delete", str(finished_run)]) == 2
    assert "not done without a confirmation" in capsys.readouterr().err and finished_run.exists()
    # A terminal that answers no: kept; yes: deleted.
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["runs", "delete", str(finished_run)]) == 1 and finished_run.exists()
    # Training (its worker alive): refused, whatever --yes says.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (finished_run / "worker.pid").write_text(str(sleeper.pid))
        with pytest.raises(StudioError, match=rf"run is training \(worker process {sleeper.pid}\)"):
            delete_plan(finished_run)
        assert main(["runs", "delete", str(finished_run), "--yes"]) == 2 and finished_run.exists()
        assert main(["runs", "prune", str(finished_run), "--yes"]) == 2
        assert len(checkpoints(finished_run)) == 3
    finally:
        sleeper.kill()
        sleeper.wait()
    capsys.readouterr()
    size = folder_bytes(finished_run)
    assert main(["runs", "delete", str(finished_run), "--yes", "--json"]) == 0
    (said,) = json.loads(capsys.readouterr().out)
    assert said["whole_run"] and said["bytes"] == size and not finished_run.exists()
    assert list_runs() == []


def test_a_folder_that_is_no_run_is_never_deleted(tmp_path, capsys):
    keep = tmp_path / "thesis"
    keep.mkdir()
    (keep / "chapter1.tex").write_text("...")
    assert main(["runs", "delete", str(keep), "--yes"]) != 0
    assert keep.exists() and (keep / "chapter1.tex").exists()
