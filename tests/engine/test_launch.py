"""Beyond one GPU: export-launch files, and a real 2-process DDP run (gloo) on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.cli import main
from engine.config import RunConfig
from engine.launch import AUTO_FROM_TRAINER, deepspeed_config

REPO = Path(__file__).resolve().parents[2]


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


@pytest.fixture
def run_yaml(tmp_path) -> Path:
    path = tmp_path / "run.yaml"
    RunConfig.from_dict({"model": "demo", "method": "lora", "output_dir": str(tmp_path / "out"),
                         "lr_scheduler": "cosine"}).save(path)
    return path


@pytest.mark.parametrize("zero,offload", [(2, False), (2, True), (3, False), (3, True)])
def test_deepspeed_config_shape(zero, offload):
    ds = deepspeed_config(zero, offload)
    z = ds["zero_optimization"]
    assert z["stage"] == zero
    assert ("offload_optimizer" in z) == offload
    assert ("offload_param" in z) == (offload and zero == 3)
    if offload:
        assert z["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    for key in AUTO_FROM_TRAINER:  # Trainer fills every one of these from the run config
        assert _get(ds, key) == "auto", key
    assert "scheduler" not in ds  # the run's own lr_scheduler stays in charge
    if zero == 3:
        assert z["stage3_gather_16bit_weights_on_model_save"] is True


def test_export_launch_writes_loadable_files(run_yaml, tmp_path, capsys):
    from accelerate.commands.config.config_args import load_config_from_file

    out = tmp_path / "launch"
    assert main(["export-launch", str(run_yaml), "--out", str(out), "--zero", "3", "--offload",
                 "--num-processes", "4", "--max_steps", "7"]) == 0
    ds_path = out / "ds_zero3_offload.json"
    ds = json.loads(ds_path.read_text())
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"

    acc = yaml.safe_load((out / "accelerate_config.yaml").read_text())
    assert acc["distributed_type"] == "DEEPSPEED" and acc["num_processes"] == 4
    assert Path(acc["deepspeed_config"]["deepspeed_config_file"]) == ds_path
    assert acc["deepspeed_config"]["zero3_init_flag"] is True
    cluster = load_config_from_file(str(out / "accelerate_config.yaml"))  # accelerate's own validation
    assert cluster.num_processes == 4 and str(cluster.distributed_type).endswith("DEEPSPEED")

    cfg = RunConfig.load(out / "run.yaml")
    assert cfg.deepspeed == str(ds_path) and cfg.max_steps == 7 and cfg.output_dir == str(tmp_path / "out")

    script = out / "launch.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert 'launch --config_file "$HERE/accelerate_config.yaml" -m engine.train "$HERE/run.yaml" "$@"' in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "launch.sh" in capsys.readouterr().out


def test_export_launch_defaults_to_the_run_folder_and_refuses_impossible_setups(run_yaml, tmp_path, capsys):
    assert main(["export-launch", str(run_yaml)]) == 0
    assert (tmp_path / "out" / "launch" / "ds_zero2.json").exists()
    assert main(["export-launch", str(run_yaml), "--zero", "3", "--method", "qlora", "--load_in", "nf4"]) == 2
    assert "ZeRO-3" in capsys.readouterr().err
    assert main(["export-launch", str(run_yaml), "--device", "cpu"]) == 2
    assert "--multi_gpu" in capsys.readouterr().err


@pytest.mark.parametrize("preset,options,said", [
    ("demo.yaml", ["--num-processes", "0"], "--num-processes must be at least 1"),
    ("demo.yaml", ["--device", "cpu"], "DeepSpeed needs GPUs"),
    ("qlora.yaml", ["--zero", "3"], "ZeRO-3 shards every parameter"),
])
def test_a_refused_export_launch_makes_no_run_folder(preset, options, said, studio_home, capsys):
    """Each refusal left an empty run folder behind: the folder was made before the checks."""
    assert main(["export-launch", str(REPO / "resources" / "presets" / preset), *options]) == 2
    assert said in capsys.readouterr().err
    assert not (studio_home / "runs").exists() or not any((studio_home / "runs").iterdir())


def test_the_fix_of_a_refused_zero3_launch_passes(tmp_path):
    """export-launch qlora.yaml --zero 3 suggested load_in bf16, which qlora refuses (it is nf4)."""
    from engine.errors import ConfigError
    from engine.launch import check_launch

    for preset, overrides in (("qlora.yaml", {}), ("demo.yaml", {"load_in": "int8", "device": "auto"})):
        cfg = RunConfig.load(REPO / "resources" / "presets" / preset, overrides)
        with pytest.raises(ConfigError) as e:
            check_launch(cfg, zero=3)
        assert e.value.fix and "--zero 2" in e.value.hint
        check_launch(RunConfig.from_dict({**cfg.to_dict(), **e.value.fix}), zero=3)  # validates, and passes
        check_launch(cfg, zero=2)
    assert e.value.fix == {"load_in": "bf16"}


def test_export_launch_without_an_output_dir_makes_the_run_folder_it_writes_into(tmp_path, studio_home, monkeypatch):
    # It wrote beside the config (resources/presets/launch/ for a shipped preset), not <output_dir>/launch.
    cfg_dir = tmp_path / "presets"
    cfg_dir.mkdir()
    RunConfig.from_dict({"model": "demo", "run_name": "multi"}).save(cfg_dir / "run.yaml")
    assert main(["export-launch", str(cfg_dir / "run.yaml")]) == 0
    assert sorted(p.name for p in cfg_dir.iterdir()) == ["run.yaml"]
    [run_dir] = (studio_home / "runs").iterdir()
    assert run_dir.name.endswith("-multi") and (run_dir / "launch" / "launch.sh").exists()
    assert RunConfig.load(run_dir / "launch" / "run.yaml").output_dir == str(run_dir)
    # --out typed relative: the current folder.
    monkeypatch.chdir(tmp_path)
    assert main(["export-launch", str(cfg_dir / "run.yaml"), "--out", "mine"]) == 0
    assert (tmp_path / "mine" / "launch.sh").exists()



def test_export_launch_refuses_a_model_or_dataset_that_is_not_there_and_makes_no_run_folder(tmp_path, studio_home,
                                                                                            capsys):
    """It wrote the launch files into a new run folder, and the launch failed on every GPU when started."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(f"model: {tmp_path / 'no-model'}\n", encoding="utf-8")
    assert main(["export-launch", str(run_yaml)]) == 2
    err = capsys.readouterr().err
    assert f"finetune-studio export-launch: {run_yaml}:1:1: model '{tmp_path / 'no-model'}': no such folder\n  hint: " in err
    run_yaml.write_text("model: demo\ndataset: typo.jsonl\n", encoding="utf-8")
    assert main(["export-launch", str(run_yaml), "--out", str(tmp_path / "launch")]) == 2
    assert f"finetune-studio export-launch: {run_yaml}:2:1: dataset 'typo.jsonl': no such file" in capsys.readouterr().err
    assert not (studio_home / "runs").exists() and not (tmp_path / "launch").exists()
    # --out naming a file said only "File exists: ...".
    run_yaml.write_text("model: demo\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["export-launch", str(run_yaml), "--out", str(tmp_path / "notes.txt")]) == 2
    assert f"--out '{tmp_path / 'notes.txt'}' is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_one_run(tiny_model_dir, small_dataset, tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` with device cpu: gloo DDP, one run folder.

    (``accelerate launch --cpu --num_processes 2`` is not DDP: without an MPI hostfile
    accelerate's CPU launcher starts a single process.)
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    run_yaml = tmp_path / "run.yaml"
    RunConfig.from_dict({"model": str(tiny_model_dir), "dataset": str(small_dataset), "method": "lora",
                         "load_in": "fp32", "mixed_precision": "no", "device": "cpu", "max_steps": 4,
                         "seq_len": 64, "batch_size": 2, "save_steps": 2, "learning_rate": 0.01,
                         "output_dir": str(out)}).save(run_yaml)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "engine.train", str(run_yaml)],
                          capture_output=True, text=True, timeout=400, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["step"] == 4
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds.count("started") == 1 and kinds.count("finished") == 1  # rank 0 only
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]
    assert proc.stdout.count("training lora on") == 1
    assert (out / "checkpoint-2" / "rng_state_1.pth").exists()  # each rank's RNG is checkpointed
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, out / "final")
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all()


@pytest.mark.parametrize(("body", "said", "fix"), [
    ("method: prefix\ngradient_checkpointing: true\n",
     "run.yaml:4:1: method 'prefix' can't be combined with gradient checkpointing", "fix: --gradient_checkpointing false"),
    ("method: freeze\nfreeze_trainable_layers: 40\n",
     "run.yaml:4:1: 'freeze_trainable_layers' is 40 but the model has only 4 decoder layers",
     "fix: --freeze_trainable_layers 4"),
])
def test_export_launch_refuses_what_the_method_or_the_model_cant_take_where_it_is_written(tmp_path, studio_home,
                                                                                          capsys, body, said, fix):
    """It wrote launch files for settings train refuses on every machine: the launch failed on every GPU."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: demo\n" + body, encoding="utf-8")
    assert main(["export-launch", str(run_yaml), "--out", str(tmp_path / "launch")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"finetune-studio export-launch: {tmp_path / said}") and fix in err
    assert not (tmp_path / "launch").exists() and not (studio_home / "runs").exists()


def test_export_launch_plans_an_nf4_run_this_machine_cant_train(tmp_path, studio_home, capsys):
    """What only this machine lacks (a CUDA GPU for nf4) is no reason: the launch is for the GPU machine."""
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("model: demo\ndataset: demo\nmethod: qlora\nload_in: nf4\n", encoding="utf-8")
    assert main(["export-launch", str(run_yaml), "--out", str(tmp_path / "launch")]) == 0
    assert (tmp_path / "launch" / "launch.sh").is_file()
