"""The finetune-studio command: parsing, overrides, help and honest errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine import __version__
from engine.cli import build_parser, main
from engine.errors import StudioError


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_train_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for key in ("--lora_r", "--load_in", "--mixed_precision", "--max_steps", "--gradient_checkpointing"):
        assert key in out
    assert "LoRA rank" in out  # the help text comes from the config's metadata


def test_unknown_override_suggests(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "x.yaml", "--max_step", "3"])
    assert e.value.code == 2
    assert "did you mean '--max_steps'" in capsys.readouterr().err


def test_an_override_given_twice_is_refused_under_its_commands_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["estimate", "x.yaml", "--max_steps", "5", "--max-steps=6"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "option '--max_steps' is given twice (5 and 6); give it once" in err
    assert err.startswith("usage: finetune-studio estimate ")  # not the top-level usage
    with pytest.raises(SystemExit):
        main(["queue", "add", "x.yaml", "--max_stepz", "5"])
    assert capsys.readouterr().err.startswith("usage: finetune-studio queue add ")


def test_a_list_option_whose_brackets_do_not_close_is_refused_not_taken_as_a_name(capsys):
    """`--add_tokens '[<a>'` trained the token '[<a>'; `--lora_target_modules '[q_proj'` looked for that module."""
    with pytest.raises(SystemExit) as e:
        main(["train", "x.yaml", "--add_tokens", "[<a>"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: finetune-studio train ")
    assert err.endswith("finetune-studio train: error: --add_tokens '[<a>' is not a YAML list (expected ',' or ']', "
                        "but got '<stream end>'); write the list whole in brackets, e.g. [q_proj, v_proj], or the "
                        "names with commas: q_proj,v_proj\n")
    with pytest.raises(SystemExit):
        main(["estimate", "x.yaml", "--lora_target_modules", "[q_proj"])
    assert "error: --lora_target_modules '[q_proj' is not a YAML list" in capsys.readouterr().err
    from engine.runqueue import parse_grid  # a grid value that pairs its brackets but isn't YAML either

    with pytest.raises(StudioError) as refused:
        parse_grid(["add_tokens=[a: b: c],x"])
    assert str(refused.value).startswith("--grid add_tokens: '[a: b: c]' is not a YAML list")


def test_a_common_shorthand_for_a_key_gets_the_key(capsys):
    with pytest.raises(SystemExit):
        main(["train", "x.yaml", "--lr", "1e-4"])
    assert "unknown option '--lr'; did you mean '--learning_rate'?" in capsys.readouterr().err


def test_override_needs_value(capsys):
    with pytest.raises(SystemExit):
        main(["train", "x.yaml", "--max_steps"])
    assert "needs a value" in capsys.readouterr().err
    # Another option right after: it is not the value (this said "unexpected argument 'ia3'").
    with pytest.raises(SystemExit):
        main(["train", "x.yaml", "--max_steps", "--method", "ia3"])
    err = capsys.readouterr().err
    assert "option '--max_steps' needs a value (the next argument is the option '--method'" in err
    assert "unexpected" not in err
    # A negative number and a value written with = are still values.
    from engine.cli import _split_overrides, build_parser

    assert _split_overrides(build_parser(), ["--max_steps", "-1", "--run_name=--x"]) == {"max_steps": -1,
                                                                                         "run_name": "--x"}


def test_bad_config_is_an_error_not_a_traceback(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("method: full\nload_in: nf4\n")
    rc = main(["train", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "can't be trained when they are loaded quantized" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [["train"], ["estimate"], ["queue", "add"], ["export-launch"]])
def test_an_empty_config_file_is_refused_by_every_command_that_reads_one(tmp_path, studio_home, capsys, command):
    """`train empty.yaml` trained the demo, `estimate` estimated it and `queue add` queued it."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("# TODO\n\n")
    assert main([*command, str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: the file holds no keys (it is empty, or only blank lines and comments): a run config names at " \
           "least the model and the dataset to train" in err
    assert "Traceback" not in err
    assert not (studio_home / "runs").exists() or not any((studio_home / "runs").iterdir())


def test_an_eval_file_on_the_command_line_replaces_the_configs_eval_split(tmp_path, capsys):
    import json

    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: demo\neval_split: 0.05\n")
    assert main(["estimate", str(cfg), "--eval_dataset", str(tmp_path / "eval.jsonl"), "--json"]) == 0
    json.loads(capsys.readouterr().out)  # valid: eval_split became 0
    # Both given: the user's eval_split stands, and the conflict is named.
    assert main(["estimate", str(cfg), "--eval_dataset", str(tmp_path / "eval.jsonl"), "--eval_split", "0.1"]) == 2
    assert "eval_split" in capsys.readouterr().err


def test_bad_override_value(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("method: lora\n")
    rc = main(["train", str(cfg), "--method", "loar"])
    assert rc == 2
    assert "did you mean 'lora'" in capsys.readouterr().err


def test_every_subcommand_dispatches_to_a_real_function():
    import importlib

    from engine.cli import HANDLERS

    for name, target in HANDLERS.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_every_parser_command_has_a_handler_and_back():
    """A subcommand added to the parser but not to HANDLERS (or the reverse) would fail only when run."""
    import argparse

    from engine.cli import HANDLERS

    def leaves(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
        found = set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    key = f"{prefix} {name}".strip()
                    found |= leaves(sub, key) or {key}
        return found

    assert leaves(build_parser()) == set(HANDLERS) - {"self-check"}
    for cmd in ("data convert", "data preview", "data split", "adapters add", "adapters remove", "runs show",
                "runs compare"):
        assert cmd in HANDLERS


def test_parser_has_subcommands():
    p = build_parser()
    text = p.format_help()
    for cmd in ("train", "estimate", "data", "adapters", "generate", "merge", "export-launch", "runs"):
        assert cmd in text


def test_entry_point_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "engine", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def _a_run(name: str) -> None:
    """A finished run folder in the runs directory, as engine.train leaves it (no weights)."""
    import json

    from engine.config import RunConfig
    from engine.paths import runs_dir

    path = runs_dir() / name
    path.mkdir(parents=True)
    cfg = RunConfig(max_steps=10, output_dir=str(path))
    cfg.save(path / "run.yaml")
    (path / "summary.json").write_text(json.dumps({"status": "completed", "started": 1_790_000_000.0,
                                                   "finished": 1_790_000_065.0, "step": 10, "final_loss": 0.5,
                                                   "config": cfg.to_dict()}))


@pytest.mark.parametrize("args", [["runs", "show", "run-a"], ["runs", "list"], ["adapters", "list"],
                                  ["data", "check", "DATASET"]], ids=lambda a: " ".join(a[:2]))
def test_output_into_a_closed_pipe_ends_quietly(args, small_dataset):
    # `finetune-studio runs show RUN | head -1`: the reader goes away before the command writes.
    for name in ("run-a", "run-b"):
        _a_run(name)
    argv = [str(small_dataset) if a == "DATASET" else a for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "engine", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # before the interpreter has even started: every write meets a broken pipe
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err


def test_training_goes_on_when_its_output_pipe_closes(tiny_model_dir, small_dataset, tmp_path):
    # `finetune-studio train RUN.yaml | head -3`: the run must not die with the reader.
    from engine.config import RunConfig

    run_yaml = tmp_path / "run.yaml"
    RunConfig.from_dict({"model": str(tiny_model_dir), "dataset": str(small_dataset), "device": "cpu",
                         "load_in": "fp32", "mixed_precision": "no", "max_steps": 3, "seq_len": 64,
                         "batch_size": 4, "save_steps": 0, "output_dir": str(tmp_path / "run")}).save(run_yaml)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", str(run_yaml)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 3
    assert (tmp_path / "run" / "final" / "adapter_config.json").exists()



def test_the_command_tells_the_libraries_there_is_no_network(tmp_path):
    """Before huggingface_hub is imported, so its constants (read at import) say offline; the
    training and generation workers inherit it. A value the user set is kept."""
    code = ("import os, sys\n"
            "from engine.cli import main\n"
            "main(['data', 'hub', '--json'])\n"
            "from huggingface_hub import constants\n"
            "print('OFFLINE', constants.HF_HUB_OFFLINE, os.environ['TRANSFORMERS_OFFLINE'], "
            "os.environ['HF_DATASETS_OFFLINE'])\n")
    import os
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "OFFLINE True 1 1" in out
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env, "HF_DATASETS_OFFLINE": "0"}).stdout
    assert "OFFLINE True 1 0" in out


def test_a_fix_is_printed_as_the_option_to_type_for_each_command(tmp_path, capsys):
    """`fix: load_in='bf16'` was Python's repr, no option of any command; the pickle refusal's fix must
    be `--allow_pickle true` for train (a run-config key) but `--allow_pickle` for generate (a switch)."""
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    from engine.cli import _fix_text, main
    from tests.conftest import save_tiny_llama

    presets = Path(__file__).resolve().parents[2] / "resources" / "presets"
    assert main(["export-launch", str(presets / "demo.yaml"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "\n  fix: --device auto" in err and "device='auto'" not in err
    assert main(["export-launch", str(presets / "qlora.yaml"), "--zero", "3"]) == 2
    assert "\n  fix: --method lora --load_in bf16" in capsys.readouterr().err

    pickled = save_tiny_llama(tmp_path / "pickled")
    weights = pickled / "model.safetensors"
    torch.save(load_file(str(weights)), pickled / "pytorch_model.bin")
    weights.unlink()
    # The hint says what to do, the fix line how, once and in that command's own words: the hint
    # said "set allow_pickle: true" to generate and merge too, which take a --allow_pickle switch.
    refusal = (f"'{pickled}' holds only pickle weights (.bin), which can run arbitrary code when loaded\n"
               "  hint: Convert it to safetensors, or allow pickle weights only if you trust its source.\n"
               "  fix: ")
    assert main(["train", str(presets / "demo.yaml"), "--model", str(pickled), "--max_steps", "1"]) == 1
    err = capsys.readouterr().err
    assert refusal + "--allow_pickle true\n" in err and err.count("allow_pickle") == 1
    assert main(["generate", "--base", str(pickled), "--prompt", "hi"]) == 2
    assert capsys.readouterr().err == f"finetune-studio generate: {refusal}--allow_pickle\n"
    assert main(["merge", "--base", str(pickled), "--adapter", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err == f"finetune-studio merge: {refusal}--allow_pickle\n"
    # adapters export suggested "allow_pickle: true in the run config", which it has none of.
    adapter = tmp_path / "pickled-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    assert main(["adapters", "export", str(adapter), "--out", str(tmp_path / "exported")]) == 2
    assert capsys.readouterr().err.endswith("\n  fix: --allow_pickle\n")
    assert main(["adapters", "export", str(adapter), "--out", str(tmp_path / "exported"), "--allow_pickle"]) == 0
    assert (tmp_path / "exported" / "adapter_model.bin").read_bytes() == b"pickle"
    # A command with neither the switch nor run-config options: the line to write in the run config.
    assert _fix_text(build_parser(), "runs show")("allow_pickle", True) == "allow_pickle: true in the run config"
    assert _fix_text(build_parser(), "train")("lora_target_modules", ["q_proj", "v_proj"]) == \
        """--lora_target_modules '["q_proj", "v_proj"]'"""


def test_merge_refuses_an_unknown_combination_even_for_one_adapter(capsys):
    with pytest.raises(SystemExit) as e:
        main(["merge", "--base", "demo", "--adapter", "a", "--combination", "bogus", "--out", "o"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'bogus'" in err and "'cat', 'linear'" in err


def test_train_refuses_a_missing_data_file_before_torch_loads_with_exit_2(tmp_path):
    """A typo'd path is a bad value: told at once (no model load, no run folder), exit 2 as argparse's."""
    import os
    from pathlib import Path

    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: nope.jsonl\neval_split: 0\n", encoding="utf-8")
    code = ("import sys\n"
            "from engine.cli import main\n"
            f"rc = main(['train', {str(run_yaml)!r}])\n"
            "print('RC', rc, 'torch' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "FINETUNE_STUDIO_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "RC 2 False" in out.stdout, out.stderr
    assert "dataset 'nope.jsonl': no such file" in out.stderr and "hint: Give a JSON" in out.stderr
    assert not (tmp_path / "home" / "runs").exists()


@pytest.mark.parametrize(("model", "said"), [
    ("no-such-model-folder", "model 'no-such-model-folder': no such folder"),
    ("empty", "has no config.json"),
    ("someorg/not-cached-7b", "model 'someorg/not-cached-7b' is not in the local Hugging Face cache"),
    # A file where the folder goes said "no such folder", though it is there.
    ("empty/model.safetensors", "empty/model.safetensors' is a file, not a model folder\n  hint: Give the folder "
                                "that holds it: "),
    ("notes.txt", "notes.txt' is a file, not a model folder\n  hint: Give a folder with config.json"),
    ("llama.gguf", "llama.gguf' is a GGUF file: GGUF is for running a model (llama.cpp, Ollama), not for loading "
                   "it here"),
    # These two made a run folder and failed in it ("failed: ... --resume starts it over", exit 1).
    ("weights-only", "weights-only' has no tokenizer (sentencepiece.bpe.model, spiece.model, tokenizer.json"),
    ("no-weights", "no-weights' has no weights (.safetensors files)"),
])
def test_train_refuses_a_model_that_is_not_there_as_a_bad_value_before_anything_starts(tmp_path, studio_home,
                                                                                        capsys, model, said):
    """This failed inside the run, after 'failed: nothing was trained', with exit 1 as for a run that broke."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"")
    if model.startswith("empty/"):
        (tmp_path / "empty" / "config.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "llama.gguf").write_bytes(b"GGUF")
    for folder, files in (("weights-only", ("config.json", "model.safetensors")),
                          ("no-weights", ("config.json", "tokenizer.json"))):
        (tmp_path / folder).mkdir()
        for name in files:
            (tmp_path / folder / name).write_text("{}")
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(f"model: {model}\ndataset: demo\n", encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("finetune-studio train: ") and said in err and "hint: " in err
    assert "failed: nothing was trained" not in err
    assert not (studio_home / "runs").exists()


@pytest.mark.parametrize(("overrides", "said", "fix"), [
    (["--method", "freeze", "--freeze_trainable_layers", "10"],
     "'freeze_trainable_layers' is 10 but the model has only 4 decoder layers", "fix: --freeze_trainable_layers 4"),
    (["--method", "ia3", "--ia3_target_modules", "nope_proj"],
     "'ia3_target_modules': nope_proj matches no module of this model; its linear layers are down_proj", "hint: "),
])
def test_a_setting_the_model_cant_take_is_a_bad_value_before_a_run_folder_is_made(studio_home, capsys, overrides,
                                                                                  said, fix):
    """These made a run folder, loaded the model and failed in it ("failed: ... --resume starts it
    over", exit 1): a resume that could not help. Queue add queued them to fail unattended."""
    from pathlib import Path

    demo = str(Path(__file__).resolve().parents[2] / "resources" / "presets" / "demo.yaml")
    assert main(["train", demo, *overrides, "--max_steps", "2"]) == 2
    err = capsys.readouterr().err
    # Typed as an option, it is said by the option (as a bad value typed so is), not by a file's key.
    typed = said.replace("'freeze_trainable_layers'", "--freeze_trainable_layers")
    assert err.startswith(f"finetune-studio train: {typed}")
    assert fix in err and "--resume" not in err
    assert not (studio_home / "runs").exists()
    assert main(["queue", "add", demo, *overrides]) == 2
    assert typed in capsys.readouterr().err
    assert main(["queue", "add", demo, "--method", "lora", "--grid", "lora_target_modules=q_proj,nope"]) == 2
    assert "grid point lora_target_modules=nope: 'lora_target_modules': nope matches no module" in \
        capsys.readouterr().err
    assert main(["queue", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == []


def test_a_typo_in_a_local_model_path_names_the_model_folder_it_likely_meant(tmp_path, studio_home, monkeypatch,
                                                                             capsys):
    """`model: models/my-modle` said it was not in the Hugging Face cache and advised `hf download
    models/my-modle`, though the folder models/ is right there."""
    (tmp_path / "models" / "my-model").mkdir(parents=True)
    (tmp_path / "models" / "my-model" / "config.json").write_text("{}")
    (tmp_path / "models" / "notes").mkdir()  # a folder that holds no model is no suggestion
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("model: models/my-modle\ndataset: demo\n", encoding="utf-8")
    assert main(["train", "run.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio train: run.yaml:1:1: model 'models/my-modle': no such folder in {tmp_path / 'models'}; "
                          "did you mean 'models/my-model'?\n  hint: Give a folder with config.json")
    assert "hf download" not in err
    assert main(["train", "run.yaml", "--model", str(tmp_path / "models" / "my-mdl")]) == 2
    assert f"no such folder; did you mean '{tmp_path / 'models' / 'my-model'}'?" in capsys.readouterr().err
    assert main(["train", "run.yaml", "--model", "models/note"]) == 2
    assert f"model 'models/note': no such folder in {tmp_path / 'models'}\n" in capsys.readouterr().err
    assert not (studio_home / "runs").exists()


def test_a_typo_in_a_model_path_relative_to_a_yaml_elsewhere_names_that_folders_model(tmp_path, studio_home,
                                                                                     monkeypatch, capsys):
    """`model: models/tiny-qwn2` in /x/run.yaml, run from another folder, was taken for a hub id: "not in
    the local Hugging Face cache ... hf download models/tiny-qwn2", though /x/models/tiny-qwen2 is there."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "models" / "tiny-qwen2").mkdir(parents=True)
    (project / "models" / "tiny-qwen2" / "config.json").write_text("{}")
    (project / "run.yaml").write_text("model: models/tiny-qwn2\ndataset: demo\n", encoding="utf-8")
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", str(project / "run.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio train: {project / 'run.yaml'}:1:1: model '{project / 'models' / 'tiny-qwn2'}': no such folder; "
                          f"did you mean '{project / 'models' / 'tiny-qwen2'}'?\n")
    assert "hf download" not in err
    # A models/ folder here too, with nothing close in it: the YAML's folder still holds the likely one.
    (elsewhere / "models" / "other").mkdir(parents=True)
    (elsewhere / "models" / "other" / "config.json").write_text("{}")
    assert main(["train", str(project / "run.yaml")]) == 2
    assert f"did you mean '{project / 'models' / 'tiny-qwen2'}'?" in capsys.readouterr().err
    # The close one only here (the YAML's models/ has none): the message names this folder's.
    (project / "models" / "tiny-qwen2").rename(project / "models" / "unrelated")
    (elsewhere / "models" / "tiny-qwen2").mkdir()
    (elsewhere / "models" / "tiny-qwen2" / "config.json").write_text("{}")
    assert main(["train", str(project / "run.yaml")]) == 2
    assert (f"model 'models/tiny-qwn2': no such folder in {elsewhere / 'models'}; did you mean 'models/tiny-qwen2'?"
            in capsys.readouterr().err)
    assert not (studio_home / "runs").exists()


@pytest.mark.parametrize(("argv", "said"), [
    # `data check --seq-len -5` reported "366 truncated to seq_len -5" and exited 0.
    (["data", "check", "d.jsonl", "--seq-len", "-5"], "argument --seq-len: must be at least 1, got -5"),
    (["data", "check", "d.jsonl", "--seq-len", "0"], "argument --seq-len: must be at least 1, got 0"),
    # These were taken silently: -1 samples as none, batch 0 as 1, after the models loaded.
    (["adapters", "compare", "a", "--dataset", "demo", "--samples", "-1"],
     "argument --samples: must be 0 (none) or more, got -1"),
    (["adapters", "compare", "a", "--dataset", "demo", "--batch_size", "0"],
     "argument --batch_size: must be at least 1, got 0"),
    (["adapters", "compare", "a", "--dataset", "demo", "--max_new_tokens", "0"],
     "argument --max_new_tokens: must be at least 1, got 0"),
    (["adapters", "compare", "a", "--dataset", "demo", "--seq-len", "-1"],
     "argument --seq-len: must be at least 1, got -1"),
    (["runs", "audit", "r", "--batch_size", "-2"], "argument --batch_size: must be at least 1, got -2"),
    # Declared in both spellings, `--batch` was "ambiguous option: --batch could match --batch_size, --batch-size".
    (["runs", "audit", "r", "--batch", "0"], "argument --batch_size: must be at least 1, got 0"),
    # "limit must be 0 (all records) or more; got -2", after the adapters were looked up: no flag named.
    (["adapters", "compare", "a", "--dataset", "demo", "--limit", "-2"],
     "argument --limit: must be 0 (all) or more, got -2"),
    # "error: --gpu-memory must be ...", unlike every other command; inf ended in an OverflowError traceback.
    (["estimate", "demo.yaml", "--gpu-memory", "-3"], "argument --gpu-memory: must be a positive number of GiB, got -3"),
    (["estimate", "demo.yaml", "--gpu-memory", "inf"], "argument --gpu-memory: must be a positive number of GiB, got inf"),
    (["estimate", "demo.yaml", "--gpu-memory", "nan"], "argument --gpu-memory: must be a positive number of GiB, got nan"),
    (["estimate", "demo.yaml", "--gpu-memory", "lots"], "argument --gpu-memory: expected a number of GiB, got 'lots'"),
    # A seed torch can't take ended in a traceback ("Overflow when unpacking long long"); one below 0 split the
    # data as no run (whose seed is 0 or more) would.
    (["generate", "--base", "demo", "--prompt", "hi", "--seed", str(2**64)],
     f"argument --seed: must be 0 to 4294967295, got {2**64}"),
    (["data", "split", "demo", "--eval-ratio", "0.1", "--out-dir", "o", "--seed", "-1"],
     "argument --seed: must be 0 to 4294967295, got -1"),
    (["adapters", "compare", "a", "--dataset", "demo", "--seed", "x"], "argument --seed: expected a whole number, got 'x'"),
    # A NaN weight merged a model of NaNs.
    (["merge", "--base", "demo", "--adapter", "a", "--adapter", "b", "--out", "o", "--weights", "1", "nan"],
     "argument --weights: must be a finite number, got nan"),
    # "--keep must be 0 or more" came only once the run was found.
    (["runs", "prune", "r", "--keep", "-1"], "argument --keep: must be 0 (none) or more, got -1"),
    # The engine's check named the setting, not the flag: "generation setting 'temperature' must be in ...".
    (["generate", "--base", "demo", "--prompt", "hi", "--temperature", "-1"],
     "argument --temperature: must be in [0.0, 5.0], got -1"),
    (["generate", "--base", "demo", "--prompt", "hi", "--temperature", "nan"],
     "argument --temperature: must be in [0.0, 5.0], got nan"),
    (["generate", "--base", "demo", "--prompt", "hi", "--top_p", "0"], "argument --top_p: must be in (0, 1.0], got 0"),
    (["generate", "--base", "demo", "--prompt", "hi", "--top-p", "2"], "argument --top_p: must be in (0, 1.0], got 2"),
    (["generate", "--base", "demo", "--prompt", "hi", "--repetition_penalty", "0.1"],
     "argument --repetition_penalty: must be in [0.5, 5.0], got 0.1"),
    (["generate", "--base", "demo", "--prompt", "hi", "--max_new_tokens", "0"],
     "argument --max_new_tokens: must be in [1, 32768], got 0"),
    (["generate", "--base", "demo", "--prompt", "hi", "--max_new_tokens", "40000"],
     "argument --max_new_tokens: must be in [1, 32768], got 40000"),
    (["generate", "--base", "demo", "--prompt", "hi", "--max_new_tokens", "1.5"],
     "argument --max_new_tokens: expected a whole number, got '1.5'"),
])
def test_a_bad_number_is_refused_at_once_by_the_flag_it_was_given_to(capsys, tmp_path, monkeypatch, argv, said):
    monkeypatch.chdir(tmp_path)  # what a command let through would write lands there
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "said"), [
    # "'template' must be one of ...": a run-config key, and only once the tokenizer had loaded.
    (["data", "check", "demo", "--model", "demo", "--template", "chatlm"],
     "argument --template: must be one of auto, chat, alpaca, chatml, llama3, gemma, phi3 or a .jinja file, "
     "got 'chatlm'"),
    (["adapters", "compare", "a", "--dataset", "demo", "--template", "chatlm"], "argument --template: must be one of"),
    (["data", "preview", "demo", "--template", "chatlm"], "argument --template: must be one of"),
    # "<the dataset's path>: unknown dataset format 'jsnol'": as if the file were at fault.
    (["data", "check", "demo", "--format", "jsnol"], "argument --format: invalid choice: 'jsnol' (choose from 'auto', "),
    (["data", "preview", "demo", "--format", "jsnol"], "argument --format: invalid choice: 'jsnol'"),
    (["data", "split", "demo", "--eval-ratio", "0.1", "--out-dir", "o", "--format", "jsnol"],
     "argument --format: invalid choice: 'jsnol'"),
    (["adapters", "compare", "a", "--dataset", "demo", "--format", "jsnol"], "argument --format: invalid choice"),
    (["data", "convert", "demo", "o.jsonl", "--input-format", "jsnol"], "argument --input-format: invalid choice"),
])
def test_a_bad_name_is_refused_at_once_by_the_flag_it_was_given_to(capsys, tmp_path, monkeypatch, argv, said):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and said in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_every_flag_takes_either_spelling_and_help_shows_the_one_declared(capsys, tmp_path, monkeypatch):
    """`--top-p 2` was "unrecognized arguments: --top-p 2" and `data split --eval_ratio` "the following arguments
    are required: --eval-ratio", though the flags mix both spellings (--top_p, --no-base) and run-config
    options took either (--max-steps)."""
    import argparse

    def parsers(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    checked = 0
    for parser in parsers(build_parser()):
        for flag in (o for a in parser._actions for o in a.option_strings if o.startswith("--")):
            for typed in (f"--{flag[2:].replace('_', '-')}", f"--{flag[2:].replace('-', '_')}"):
                assert parser._as_declared([typed, f"{typed}=1"]) in ([flag, f"{flag}=1"], [typed, f"{typed}=1"])
                checked += typed != flag
    assert checked > 20

    args, rest = build_parser().parse_known_args(["generate", "--base", "demo", "--prompt", "hi", "--top-p", "0.5",
                                                  "--max-new-tokens=4", "--no_base", "--allow-pickle"])
    assert (args.top_p, args.max_new_tokens, args.no_base, args.allow_pickle, rest) == (0.5, 4, True, True, [])
    args, _ = build_parser().parse_known_args(["data", "split", "demo", "--eval_ratio", "0.2", "--out_dir", "o"])
    assert (args.eval_ratio, args.out_dir) == (0.2, "o")
    # After -- nothing is an option: a file named --top-p stays as typed.
    args, _ = build_parser().parse_known_args(["runs", "show", "--", "--top-p"])
    assert args.run == "--top-p"
    # export-launch's own flag, not a run-config key: this said "did you mean '--num_epochs'?".
    monkeypatch.chdir(tmp_path)
    from pathlib import Path

    preset = Path(__file__).resolve().parents[2] / "resources" / "presets" / "demo.yaml"
    assert main(["export-launch", str(preset), "--num_processes", "0"]) == 2
    assert "--num-processes must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    assert "--top_p P" in out and "--top-p" not in out and "--no_base" not in out


@pytest.mark.parametrize(("argv", "said"), [
    (["generate", "--base", "demo", "--prompt", "hi", "--temprature", "0.5"],
     "finetune-studio generate: error: unrecognized arguments: --temprature 0.5 (did you mean --temperature?)"),
    (["generate", "--base", "demo", "--prompt", "hi", "--temprature=0.5", "--topp", "1"],
     "unrecognized arguments: --temprature=0.5 --topp 1 (did you mean --temperature for --temprature, "
     "--top_p for --topp?)"),
    (["runs", "list", "--jsn"], "finetune-studio runs list: error: unrecognized arguments: --jsn (did you mean --json?)"),
    (["--demoo"], "finetune-studio: error: unrecognized arguments: --demoo (did you mean --demo?)"),
    # A hidden flag (for the GUI) is never suggested; nothing close: argparse's own words.
    (["adapters", "compare", "a", "--dataset", "demo", "--progresss"], "unrecognized arguments: --progresss\n"),
    (["queue", "list", "extra"], "finetune-studio queue list: error: unrecognized arguments: extra\n"),
    # Commands that take run-config keys suggest their own flags too.
    (["estimate", "x.yaml", "--gpu-mem", "8"], "unknown option '--gpu-mem'; did you mean '--gpu-memory'?"),
    (["export-launch", "x.yaml", "--num-proc", "2"], "unknown option '--num-proc'; did you mean '--num-processes'?"),
    (["train", "x.yaml", "--max_step", "3"], "unknown option '--max_step'; did you mean '--max_steps'?"),
    # A typo in a required flag: argparse stops at the missing flag before it lists what it didn't take.
    (["generate", "--base", "demo", "--promt", "hi"],
     "finetune-studio generate: error: the following arguments are required: --prompt "
     "(--promt: did you mean --prompt?)"),
    (["data", "split", "demo", "--eval-ratio", "0.1", "--outdir=x"],
     "the following arguments are required: --out-dir (--outdir: did you mean --out-dir?)"),
])
def test_an_unknown_flag_gets_the_flag_it_most_likely_means_under_its_commands_usage(capsys, argv, said):
    """argparse said only "finetune-studio: error: unrecognized arguments: --temprature 0.5", under the
    top-level usage."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and said in err
    command = " ".join(a for a in argv[:2] if a in ("generate", "runs", "list", "adapters", "compare", "queue",
                                                     "estimate", "export-launch", "train"))
    assert err.startswith(f"usage: finetune-studio {command}".rstrip() + " ")


def test_resume_of_a_name_that_is_no_run_says_where_it_looked_and_the_closest_run(studio_home, capsys):
    """This said only "- lora-2: no such run config file", as if a file had been meant."""
    run = studio_home / "runs" / "20260101-000000-lora"
    run.mkdir(parents=True)
    (run / "run.yaml").write_text(f"model: demo\noutput_dir: {run}\n", encoding="utf-8")
    (run / "summary.json").write_text(json.dumps({"status": "stopped", "run_name": "lora"}), encoding="utf-8")
    assert main(["train", "20260101-000000-lorra", "--resume"]) == 2
    err = capsys.readouterr().err
    assert (f"finetune-studio train: --resume '20260101-000000-lorra': no such run config file, run folder or run "
            f"name in {studio_home / 'runs'}\n  hint: Did you mean 20260101-000000-lora?") in err
    assert main(["train", "nope.yaml", "--resume"]) == 2  # a file name: the file is what is missing
    assert "nope.yaml: no such run config file" in capsys.readouterr().err


def test_one_config_problem_reads_as_itself_with_its_fix_not_as_a_list_of_one(tmp_path, studio_home, capsys):
    """A lone problem printed as '- run.yaml:3:1: ...' (a bullet of a one-item list), and lost its fix."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: demo\nmax_steps: [1\n", encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2
    assert capsys.readouterr().err == (f"finetune-studio train: {run_yaml}:4:1: invalid YAML: expected ',' or ']', "
                                       "but got '<stream end>'\n")
    run_yaml.write_text("model: demo\nmethod: qlora\nload_in: fp32\n", encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio train: {run_yaml}:3:1: method 'qlora' is LoRA on a 4-bit NF4 base") and \
        err.endswith("\n  fix: --load_in nf4\n")
    run_yaml.write_text("model: demo\nmax_step: 3\nlearning_rate: abc\n", encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2  # two: still a list
    assert f"\n- {run_yaml}:3:1: 'learning_rate' must be a number between 0.0 and 10.0, got 'abc'" in capsys.readouterr().err
    assert not (studio_home / "runs").exists()


def test_a_bad_value_typed_as_an_option_is_named_by_the_option_typed(tmp_path, studio_home, capsys):
    """`train RUN.yaml --max_steps x` said "'max_steps' must be a whole number": a key the user never wrote.
    The option as typed is named, with what is allowed; a bad value in the file still reads as the key at
    its line."""
    from engine.runqueue import RunQueue

    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: demo\nmax_steps: 2\n", encoding="utf-8")
    assert main(["train", str(run_yaml), "--max_steps", "x"]) == 2
    assert capsys.readouterr().err == "finetune-studio train: --max_steps must be a whole number between -1 and 1000000000, got 'x'\n"
    assert main(["estimate", str(run_yaml), "--batch_size", "two"]) == 2
    # estimate printed its errors as "error: ...", the only command that did not name itself
    assert capsys.readouterr().err == ("finetune-studio estimate: --batch_size must be a whole number between 1 and "
                                       "65536, got 'two'\n")
    assert main(["train", str(run_yaml), "--method", "loar"]) == 2  # the allowed values and the fix stay
    assert capsys.readouterr().err == (
        "finetune-studio train: --method must be one of full, freeze, lora, qlora, adapter, prefix, prompt, ia3; "
        "got 'loar' (did you mean 'lora'?)\n  fix: --method lora\n")
    assert main(["train", str(run_yaml), "--max_steps", "0"]) == 2  # a value the config's rules refuse
    assert capsys.readouterr().err.startswith("finetune-studio train: --max_steps must be -1 (use num_epochs)")
    assert main(["queue", "add", str(run_yaml), "--lora_r", "-3", "--eval_split", "lots"]) == 2
    assert capsys.readouterr().err == ("finetune-studio queue add: - --lora_r must be between 1 and 4096, got -3\n"
                                       "- --eval_split must be a number between 0.0 and 0.5, got 'lots'\n")
    assert RunQueue().entries() == []

    # From the file: its key at its line, beside an option's problem.
    run_yaml.write_text("model: demo\ndataset: demo\nmax_steps: x\n", encoding="utf-8")
    assert main(["train", str(run_yaml), "--batch_size", "two"]) == 2
    assert capsys.readouterr().err == (f"finetune-studio train: - {run_yaml}:3:1: 'max_steps' must be a whole "
                                       "number between -1 and 1000000000, got 'x'\n- --batch_size must be a whole number "
                                       "between 1 and 65536, got 'two'\n")
    assert main(["train", str(run_yaml)]) == 2
    assert capsys.readouterr().err == (f"finetune-studio train: {run_yaml}:3:1: 'max_steps' must be a whole number "
                                       "between -1 and 1000000000, got 'x'\n")
    assert not (studio_home / "runs").exists()


def test_a_yaml_1_1_word_is_quoted_as_typed_with_the_key_and_its_range(tmp_path, studio_home, capsys):
    """`--eval_split yes` (and `eval_split: yes`) said "... got True": YAML 1.1 reads yes as a boolean."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: demo\nmax_steps: 2\n", encoding="utf-8")
    assert main(["train", str(run_yaml), "--eval_split", "yes"]) == 2
    assert capsys.readouterr().err == "finetune-studio train: --eval_split must be a number between 0.0 and 0.5, " \
                                      "got 'yes'\n"
    run_yaml.write_text("model: demo\ndataset: demo\neval_split: yes\n", encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2
    assert capsys.readouterr().err == f"finetune-studio train: {run_yaml}:3:1: 'eval_split' must be a number between " \
                                      "0.0 and 0.5, got 'yes'\n"
    assert not (studio_home / "runs").exists()


def test_an_empty_model_or_dataset_on_the_command_line_is_refused_before_anything_runs(tmp_path, studio_home, capsys):
    """`train RUN.yaml --model ''` said "run '' has no final/ model or adapter"; `--dataset ''` failed a run
    that it had made, with ".: not a file"."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: demo\nmax_steps: 2\n", encoding="utf-8")
    assert main(["train", str(run_yaml), "--model", ""]) == 2
    assert capsys.readouterr().err == ("finetune-studio train: --model is empty: give a model folder (with "
                                       "config.json), a Hugging Face id from your cache, or 'demo'\n")
    assert main(["train", str(run_yaml), "--dataset", ""]) == 2
    assert capsys.readouterr().err.startswith("finetune-studio train: --dataset is empty: give a dataset file")
    assert not (studio_home / "runs").exists()


def test_an_unknown_key_in_a_file_is_fixed_by_removing_it_not_by_an_option(tmp_path, studio_home, capsys):
    """Its fix (remove the key) printed as "fix: --foo null": an option that is itself unknown."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\nfoo: 1\n", encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2
    assert capsys.readouterr().err == (f"finetune-studio train: {run_yaml}:2:1: unknown key 'foo' (no run-config key "
                                       "is close to it; `finetune-studio train --help` lists them)\n"
                                       "  fix: remove 'foo' from the run config\n")
    assert not (studio_home / "runs").exists()


def test_an_output_dir_that_is_a_file_or_a_missing_deepspeed_file_is_refused_before_anything_runs(
        tmp_path, studio_home, capsys):
    """Both failed the run as "training failed: FileExistsError: ..." (or NotADirectoryError, or the deepspeed
    package's PackageNotFoundError) with "This is a bug or an unexpected library error"."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: demo\nmax_steps: 2\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("x")
    assert main(["train", str(run_yaml), "--output_dir", str(tmp_path / "notes.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio train: --output_dir '{tmp_path / 'notes.txt'}' is a file, not a folder\n"
                          "  hint: Give a folder")
    assert main(["train", str(run_yaml), "--output_dir", str(tmp_path / "notes.txt" / "run")]) == 2
    assert capsys.readouterr().err.startswith(f"finetune-studio train: --output_dir '{tmp_path / 'notes.txt' / 'run'}' is "
                                              f"inside '{tmp_path / 'notes.txt'}', which is a file, not a folder")
    assert main(["train", str(run_yaml), "--deepspeed", str(tmp_path / "ds.json")]) == 2
    assert capsys.readouterr().err.startswith(f"finetune-studio train: --deepspeed '{tmp_path / 'ds.json'}': no such "
                                              "file\n  hint: Give the DeepSpeed config JSON")
    assert not (studio_home / "runs").exists()


def test_commands_do_not_print_the_kernels_offline_line(tmp_path):
    """`estimate` printed "Skipping publisher trust check for 'kernels-community/...' because Hugging
    Face Hub is in offline mode" (bitsandbytes' import, on CPUs with AVX512-BF16): every command is
    offline, so the line is no news. The kernels logger is quiet in any process the CLI starts."""
    import os
    from pathlib import Path

    code = ("import logging, sys\n"
            "from engine.cli import main\n"
            "rc = main(['estimate', 'demo.yaml', '--gpu-memory', '24'])\n"
            "print('RC', rc, logging.getLogger('kernels').getEffectiveLevel())\n")
    (tmp_path / "demo.yaml").write_text("model: demo\ndataset: demo\nmethod: lora\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "FINETUNE_STUDIO_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180,
                         cwd=tmp_path)
    assert "RC 0 40" in out.stdout, out.stderr
    assert "publisher trust" not in out.stdout + out.stderr


@pytest.mark.parametrize("command", [["train"], ["estimate"], ["queue", "add"]])
def test_a_problem_found_after_the_config_is_read_is_said_where_its_key_is_written(tmp_path, studio_home, capsys,
                                                                                   command):
    """A method's rule or a module the model lacks was said without the file, line and column that a
    bad value read from the file gets; typed as an option it names no file."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: demo\n# prefix tuning\nmethod: prefix\n"
                        "gradient_checkpointing: true\n", encoding="utf-8")
    assert main([*command, str(run_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio {' '.join(command)}: {run_yaml}:5:1: method 'prefix' can't be "
                          "combined with gradient checkpointing")
    assert "fix: --gradient_checkpointing false" in err
    run_yaml.write_text("model: demo\ndataset: demo\n", encoding="utf-8")
    assert main([*command, str(run_yaml), "--method", "freeze", "--freeze_trainable_layers", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio {' '.join(command)}: --freeze_trainable_layers is 9 but the model has "
                          "only 4 decoder layers")
    assert str(run_yaml) not in err and not (studio_home / "runs").exists()


def test_train_refuses_weights_cut_short_as_a_bad_model_before_a_run_folder_is_made(tmp_path, studio_home, capsys):
    """It made a run folder and failed in it: "training failed: SafetensorError: Error while deserializing
    header: incomplete metadata, file not fully covered", with "This is a bug or an unexpected library
    error" and a --resume that could not help (exit 1)."""
    from engine.demo import ensure_demo_model

    model = tmp_path / "model"
    model.mkdir()
    for f in ensure_demo_model().iterdir():
        data = f.read_bytes()
        (model / f.name).write_bytes(data[: len(data) // 3] if f.name == "model.safetensors" else data)
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(f"dataset: demo\nmodel: {model}\nmax_steps: 2\n", encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio train: {run_yaml}:2:1: weights in '{model}': model.safetensors is cut "
                          "short: ")
    assert "hint: An interrupted download or copy" in err and "bug" not in err and "--resume" not in err
    assert not (studio_home / "runs").exists()
    # config.json cut short: "training failed: OSError: ... is not a valid JSON file", told as a bug.
    (model / "model.safetensors").write_bytes((ensure_demo_model() / "model.safetensors").read_bytes())
    (model / "config.json").write_text('{"architectures": ["Llama', encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio train: {run_yaml}:2:1: {model / 'config.json'}:1:20: invalid JSON: "
                          "Unterminated string starting here (the file ends inside it: cut short)\n")
    assert not (studio_home / "runs").exists()


@pytest.mark.parametrize(("change", "said", "more"), [
    ({"model_type": "llama9"}, "model_type 'llama9' is no architecture transformers ", "hint: A model newer than"),
    ({"model_type": "t5"}, "a 't5' model has no causal language-model head in transformers", "hint: Pick a decoder"),
    ({"model_type": "llama9", "auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}},
     "the model ships its own code (modeling_x.XForCausalLM), which runs only with trust_remote_code: true",
     "fix: --trust_remote_code true"),
])
def test_a_model_transformers_cant_build_as_a_causal_lm_is_refused_before_a_run_folder(tmp_path, studio_home, capsys,
                                                                                       change, said, more):
    """These made a run folder and failed in it with transformers' paragraph ("... install Transformers
    from source with the command pip install git+https://github.com/...") and a --resume that could not help."""
    from engine.demo import ensure_demo_model

    model = tmp_path / "model"
    model.mkdir()
    for f in ensure_demo_model().iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    (model / "config.json").write_text(json.dumps({**config, **change}), encoding="utf-8")
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(f"model: {model}\ndataset: demo\nmax_steps: 2\n", encoding="utf-8")
    for command in (["train"], ["estimate"], ["queue", "add"]):
        assert main([command[0], str(run_yaml), *command[1:]] if command[0] != "queue" else
                    [*command, str(run_yaml)]) == 2
        err = capsys.readouterr().err
        assert f"{model / 'config.json'}: {said}" in err.splitlines()[0] and more in err, (command, err)
        assert "git+https" not in err
    assert not (studio_home / "runs").exists()


def test_a_parquet_dataset_cut_short_or_in_another_format_is_refused_before_a_run_folder(tmp_path, studio_home,
                                                                                         capsys):
    """It made a run folder and failed in it: "not a readable Parquet file: ... Parquet magic bytes not
    found in footer", with a --resume that could not help (exit 1)."""
    import pandas as pd

    good = tmp_path / "good.parquet"
    pd.DataFrame([{"instruction": f"Say {i}.", "output": str(i)} for i in range(40)]).to_parquet(good)
    data = good.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    (tmp_path / "lines.parquet").write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: cut.parquet\nmax_steps: 2\n", encoding="utf-8")
    assert main(["train", str(run_yaml)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio train: {run_yaml}:2:1: dataset '{tmp_path / 'cut.parquet'}': not a "
                          f"readable Parquet file: it ends without its footer ({len(data) // 2:,} bytes): cut short\n")
    assert main(["train", str(run_yaml), "--dataset", str(tmp_path / "lines.parquet")]) == 2
    err = capsys.readouterr().err
    assert "not a Parquet file (it doesn't start with PAR1)" in err and "its own extension: .jsonl" in err
    assert not (studio_home / "runs").exists()
