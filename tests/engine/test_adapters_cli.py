"""``finetune-studio adapters add|remove``: the library's "Add folder…" and "Remove" from the command line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.adapters import cli_add, cli_list, cli_remove, resolve_adapter
from engine.cli import main
from engine.errors import ModelError
from engine.paths import runs_dir

REPO = Path(__file__).resolve().parents[2]


def fake_adapter(folder: Path, r: int = 4) -> Path:
    """An adapter folder as PEFT writes it; the library reads files only, so the weights can be empty."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": str(REPO / "resources" / "demo" / "model")}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder.resolve()  # the library keeps resolved paths


def listed(capsys) -> dict[str, str]:
    """``adapters list --json`` as {path: source}."""
    capsys.readouterr()
    assert cli_list(argparse.Namespace(json=True)) == 0
    return {c["path"]: c["source"] for c in json.loads(capsys.readouterr().out)}


def ns(path) -> argparse.Namespace:
    return argparse.Namespace(path=str(path))


def test_add_then_remove_changes_the_list(tmp_path, capsys):
    folder = fake_adapter(tmp_path / "medical")
    assert listed(capsys) == {}
    assert cli_add(ns(folder)) == 0
    assert capsys.readouterr().out.startswith(f"added medical, lora on demo - {folder}")
    assert listed(capsys) == {str(folder): "added"}
    assert cli_add(ns(folder)) == 0  # twice: listed once
    assert "already in the library (added)" in capsys.readouterr().out
    assert listed(capsys) == {str(folder): "added"}
    assert cli_remove(ns(folder)) == 0
    assert "its files are kept" in capsys.readouterr().out
    assert listed(capsys) == {}
    assert (folder / "adapter_config.json").exists()


def test_remove_by_the_listed_name(tmp_path, capsys):
    keep, drop = fake_adapter(tmp_path / "a" / "keep"), fake_adapter(tmp_path / "b" / "legal")
    cli_add(ns(keep))
    cli_add(ns(drop))
    assert cli_remove(ns("legal")) == 0
    assert listed(capsys) == {str(keep): "added"}


def test_remove_explains_what_it_cannot_remove(tmp_path):
    run = runs_dir() / "20261128-100000-lora"
    fake_adapter(run / "final")
    (run / "summary.json").write_text(json.dumps({"status": "completed"}))
    with pytest.raises(ModelError, match="is the adapter of run '20261128-100000-lora'") as e:
        cli_remove(ns(run))
    assert str(run) in e.value.hint
    other = fake_adapter(tmp_path / "never-added")
    with pytest.raises(ModelError, match="is not an added adapter folder"):
        cli_remove(ns(other))


def test_add_takes_a_run_by_its_name(tmp_path, capsys, monkeypatch):
    """`adapters add medical` said "there is no folder '<cwd>/medical'", though generate, export-gguf and adapters
    compare all take a run by its name."""
    run = runs_dir() / "20261129-033950-medical"
    fake_adapter(run / "final")
    (run / "summary.json").write_text(json.dumps({"status": "completed", "config": {"run_name": "medical"}}))
    (run / "run.yaml").write_text("run_name: medical\n")
    monkeypatch.chdir(tmp_path)
    assert main(["adapters", "add", "medical"]) == 0
    assert capsys.readouterr().out.startswith("already in the library (run): ")
    assert main(["adapters", "add", "medicl"]) == 2  # no run of that name: the path it looked for
    assert f"there is no folder '{tmp_path / 'medicl'}'" in capsys.readouterr().err


def test_add_refuses_a_folder_without_adapter_config(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["adapters", "add", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "has no adapter_config.json" in err and "Traceback" not in err
    assert listed(capsys) == {}


def test_an_adapter_given_as_a_file_is_called_a_file_wherever_an_adapter_goes(tmp_path, capsys):
    """`generate --adapter notes.yaml` said "no adapter folder (with adapter_config.json), run or library entry
    of that name", though the file is there; `adapters add` said it was a file."""
    notes = tmp_path / "notes.yaml"
    notes.write_text("x: 1\n")
    for argv in (["generate", "--base", "demo", "--adapter", str(notes), "--prompt", "hi"],
                 ["adapters", "export", str(notes), "--out", str(tmp_path / "out")],
                 ["merge", "--base", "demo", "--adapter", str(notes), "--out", str(tmp_path / "out")]):
        assert main(argv) == 2
        command = argv[0] if argv[0] != "adapters" else "adapters export"
        assert capsys.readouterr().err == (f"finetune-studio {command}: '{notes}' is a file, not an adapter folder\n"
                                           "  hint: Give the folder that holds adapter_config.json and the adapter's "
                                           "weights, or a run folder with final/.\n"), argv
    assert not (tmp_path / "out").exists()
    adapter = fake_adapter(tmp_path / "ad")
    assert resolve_adapter(adapter / "adapter_config.json") == adapter  # its file names the folder, as add takes it


def test_export_to_a_file_says_it_is_a_file(tmp_path, capsys):
    """`adapters export A --out FILE` said "already exists and is not an empty folder", as if FILE were a folder."""
    adapter = fake_adapter(tmp_path / "ad")
    out = tmp_path / "adapter.safetensors"
    out.write_text("keep me")
    assert main(["adapters", "export", str(adapter), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"finetune-studio adapters export: --out '{out}' is a file; the export is "
                                       "written to a new folder\n  hint: Choose a new folder.\n")
    assert out.read_text() == "keep me"


def test_add_says_what_a_file_or_an_unfinished_run_is_instead_of_no_adapter_config(tmp_path, capsys):
    """A file said "is not an adapter folder: it has no adapter_config.json"; so did a run with no final/ yet."""
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert main(["adapters", "add", str(notes)]) == 2
    assert capsys.readouterr().err == (f"finetune-studio adapters add: '{notes}' is a file, not an adapter folder\n"
                                       "  hint: Give the folder that holds adapter_config.json and the adapter's "
                                       "weights, or a run folder with final/.\n")
    adapter = fake_adapter(tmp_path / "ad")
    assert main(["adapters", "add", str(adapter / "adapter_config.json")]) == 0  # its file names the folder
    assert listed(capsys) == {str(adapter): "added"}
    run = runs_dir() / "20261128-100000-lora"
    (run / "checkpoint-5").mkdir(parents=True)
    (run / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (run / "checkpoint-5" / "adapter_config.json").write_text("{}")
    (run / "summary.json").write_text(json.dumps({"status": "stopped", "step": 7}))
    assert main(["adapters", "add", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("finetune-studio adapters add: run '20261128-100000-lora' has no final/ model or adapter "
                          "(stopped at step 7); a run writes its result there when it completes\n")
    assert f"Use its newest checkpoint as the adapter on its base: {run / 'checkpoint-5'} (step 5)" in err


def test_add_and_remove_run_as_commands(tmp_path):
    folder = fake_adapter(tmp_path / "medical")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", "adapters", *argv], capture_output=True,
                              text=True, cwd=REPO)

    assert run("add", str(folder)).returncode == 0
    assert json.loads(run("list", "--json").stdout)[0]["path"] == str(folder)
    assert run("remove", str(folder)).returncode == 0
    assert json.loads(run("list", "--json").stdout) == []
    bad = run("remove", str(folder))
    assert bad.returncode == 2 and "is not an added adapter folder" in bad.stderr
