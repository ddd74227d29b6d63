"""The run queue: frozen configs, grid sweeps, one runner, failures don't stop it, stops keep the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from engine.config import RunConfig
from engine.errors import ConfigErrors, StudioError
from engine.runqueue import RunQueue, parse_grid
from tests.engine.test_train import make_cfg


def test_a_grid_queues_every_combination_with_names_that_say_what_changed(tmp_path, small_dataset):
    cfg = make_cfg(Path("demo"), small_dataset, tmp_path / "out", run_name="medical")
    q = RunQueue(tmp_path / "queue")
    added = q.add(cfg, grid=parse_grid(["learning_rate=1e-4,3e-4", "lora_r=8,16"]))
    assert [e.name for e in added] == ["medical-lr1e-4-r8", "medical-lr1e-4-r16", "medical-lr3e-4-r8",
                                       "medical-lr3e-4-r16"]
    frozen = [RunConfig.load(e.config) for e in added]
    assert [(c.learning_rate, c.lora_r) for c in frozen] == [(1e-4, 8), (1e-4, 16), (3e-4, 8), (3e-4, 16)]
    assert all(c.output_dir == "" for c in frozen)  # each trains in a run folder of its own
    assert added[3].changes == {"learning_rate": 3e-4, "lora_r": 16}
    assert len({e.id for e in added}) == 4 and [e.state for e in q.entries()] == ["pending"] * 4

    # Methods in a grid lead the name when there is no run_name.
    named = q.add(cfg.replace(run_name=""), grid=parse_grid(["method=lora,ia3"]))
    assert [e.name for e in named] == ["lora", "ia3"]


def test_bad_grids_are_refused_with_the_key_and_nothing_is_queued(tmp_path, small_dataset):
    with pytest.raises(ConfigErrors) as e:
        parse_grid(["lora_rr=8,16", "learning_rate", "seq_len=64", "seq_len=128"])
    messages = [x.message for x in e.value.errors]
    assert "did you mean 'lora_r'?" in messages[0] and "write KEY=V1,V2" in messages[1]
    assert "'seq_len' is given twice" in messages[2]

    q = RunQueue(tmp_path / "queue")
    cfg = make_cfg(Path("demo"), small_dataset, tmp_path / "out")
    with pytest.raises(ConfigErrors) as e:
        q.add(cfg, grid=parse_grid(["lora_r=8,lots"]))
    assert e.value.errors[0].message.startswith("grid point lora_r=lots: ") and e.value.errors[0].key == "lora_r"
    assert q.entries() == []  # the valid point was not queued either


def test_grid_values_split_outside_brackets_and_repeats_are_queued_once():
    # Splitting on every comma made "[q_proj" and "v_proj]" two values.
    notes: list[str] = []
    grid = parse_grid(["lora_target_modules=[q_proj,v_proj],all-linear", "lora_r=8,8,16",
                       "learning_rate=1e-4,0.0001"], notes=notes)
    assert grid == {"lora_target_modules": [["q_proj", "v_proj"], "all-linear"], "lora_r": [8, 16],
                    "learning_rate": ["1e-4"]}
    assert notes == ["--grid lora_r: 8 is the same as an earlier value; queued once",
                     "--grid learning_rate: 0.0001 is the same as an earlier value; queued once"]


def test_a_grid_value_with_unpaired_brackets_or_quotes_is_refused_with_the_accepted_form(tmp_path, studio_home,
                                                                                        capsys):
    """`--grid "lora_target_modules=[q_proj,v_proj"` was queued with the literal text as the value."""
    from engine.cli import main

    with pytest.raises(ConfigErrors) as e:
        parse_grid(["lora_target_modules=q_proj,v_proj]", "lora_r=8,16", "run_name='a,b", "ia3_target_modules=[k}"])
    assert [x.message.split(";")[0] for x in e.value.errors] == [
        "--grid lora_target_modules: ']' without '[' before it in 'q_proj,v_proj]'",
        "--grid run_name: a ' quote without its closing ' in \"'a,b\"",
        "--grid ia3_target_modules: '[' closed by '}' in '[k}'"]
    assert [x.key for x in e.value.errors] == ["lora_target_modules", "run_name", "ia3_target_modules"]
    # An apostrophe inside a word opens no quote; paired brackets and quotes still keep a value whole.
    assert parse_grid(["run_name=bob's,x", "lora_target_modules=['q,k', v],all-linear"]) == {
        "run_name": ["bob's", "x"], "lora_target_modules": [["q,k", "v"], "all-linear"]}

    source = tmp_path / "run.yaml"
    source.write_text("model: demo\nmax_steps: 2\n", encoding="utf-8")
    assert main(["queue", "add", str(source), "--grid", "lora_target_modules=[q_proj,v_proj"]) == 2
    assert capsys.readouterr().err == (
        "finetune-studio queue add: --grid lora_target_modules: '[' without ']' in '[q_proj,v_proj'; write a list "
        "value whole in brackets, e.g. --grid \"lora_target_modules=[q_proj,v_proj],all-linear\"\n")
    assert RunQueue().entries() == []


def test_an_unknown_grid_key_gets_the_closest_one_even_for_a_common_shorthand():
    with pytest.raises(ConfigErrors) as e:
        parse_grid(["lr=1e-4,3e-4", "epochs=1,2"])
    assert [x.message for x in e.value.errors] == ["--grid: unknown key 'lr'; did you mean 'learning_rate'?",
                                                   "--grid: unknown key 'epochs'; did you mean 'num_epochs'?"]


def test_a_grid_over_methods_builds_each_point_as_if_the_method_were_written_in_the_config(tmp_path, studio_home,
                                                                                            capsys):
    from engine.cli import main

    source = tmp_path / "run.yaml"
    source.write_text("model: demo\nmax_steps: 2\nrun_name: sweep\n")  # no load_in: each method's own
    assert main(["queue", "add", str(source), "--grid", "method=lora,qlora,full"]) == 0
    frozen = [RunConfig.load(e.config) for e in RunQueue().entries()]
    assert [(c.method, c.load_in) for c in frozen] == [("lora", "bf16"), ("qlora", "nf4"), ("full", "bf16")]
    assert [c.learning_rate for c in frozen] == [2e-4, 2e-4, 2e-5]  # and its own learning rate
    assert "note:" not in capsys.readouterr().err
    # A rate given for every point, far from one method's usual: said when queued, not at 3 a.m.
    assert main(["queue", "add", str(source), "--grid", "method=lora,full", "--learning_rate", "2e-4"]) == 0
    err = capsys.readouterr().err
    assert "note: sweep-full: learning rate 0.0002 is 10x above Full fine-tuning's usual 2e-5 (Stanford" in err
    assert "sweep-lora" not in err
    RunQueue().remove([e.id for e in RunQueue().entries()[3:]])
    # The user's load_in stands for every point, as in a config file, and the refusal says where it comes from.
    source.write_text("model: demo\nload_in: fp32\nmixed_precision: 'no'\n")
    assert main(["queue", "add", str(source), "--grid", "method=full,qlora"]) == 2
    err = capsys.readouterr().err
    assert "grid point method=qlora: method 'qlora' is LoRA on a 4-bit NF4 base, but load_in is 'fp32'" in err
    assert "load_in is set in the config, the form or as --load_in, so every grid point keeps it" in err
    assert len(RunQueue().entries()) == 3  # nothing more queued
    # A repeated value is queued once, and the command says so.
    assert main(["queue", "add", str(source), "--grid", "lora_r=8,8"]) == 0
    assert "note: --grid lora_r: 8 is the same as an earlier value; queued once" in capsys.readouterr().err
    assert len(RunQueue().entries()) == 4


def test_a_relative_path_in_a_grid_is_the_current_folder_s_and_is_frozen_absolute(tmp_path, small_dataset,
                                                                                   monkeypatch):
    # The frozen config lives in the queue folder, which a relative path would be read against.
    (tmp_path / "a.jsonl").write_bytes(small_dataset.read_bytes())
    monkeypatch.chdir(tmp_path)
    q = RunQueue(tmp_path / "queue")
    [entry] = q.add(make_cfg(Path("demo"), small_dataset, ""), grid=parse_grid(["dataset=a.jsonl"]))
    monkeypatch.chdir(tmp_path / "queue")  # the runner may run from anywhere
    assert RunConfig.load(entry.config).dataset == str(tmp_path / "a.jsonl")


def test_what_is_queued_is_frozen_and_removal_keeps_ids_unique(tmp_path, small_dataset):
    source = tmp_path / "run.yaml"
    make_cfg(Path("demo"), small_dataset, tmp_path / "out", max_steps=3).save(source)
    q = RunQueue(tmp_path / "queue")
    first, second = q.add(RunConfig.load(source)), q.add(RunConfig.load(source))
    make_cfg(Path("demo"), small_dataset, tmp_path / "out", max_steps=99).save(source)  # edited afterwards
    assert RunConfig.load(first[0].config).max_steps == 3
    q.remove([first[0].id])
    assert not Path(first[0].config).exists()
    third = q.add(RunConfig.load(source))
    assert third[0].id != second[0].id and [e.id for e in q.entries()] == [second[0].id, third[0].id]
    q.move(third[0].id, -1)
    assert [e.id for e in q.entries()] == [third[0].id, second[0].id]
    with pytest.raises(StudioError, match="no queued run 'nope'"):
        q.remove(["nope"])

    # A queue written by a newer version (an extra key) still reads.
    data = json.loads((tmp_path / "queue" / "queue.json").read_text())
    data["entries"][0]["priority"] = 3
    (tmp_path / "queue" / "queue.json").write_text(json.dumps(data))
    assert [e.id for e in q.entries()] == [third[0].id, second[0].id]


def test_the_queue_trains_in_order_and_a_failure_does_not_stop_it(tmp_path, tiny_model_dir, small_dataset,
                                                                   studio_home, capsys):
    from engine.cli import main

    doomed = tmp_path / "doomed.jsonl"
    doomed.write_bytes(small_dataset.read_bytes())
    q = RunQueue()
    q.add(make_cfg(tiny_model_dir, small_dataset, "", max_steps=2, run_name="one"))
    q.add(make_cfg(tiny_model_dir, doomed, "", max_steps=2, run_name="two"))
    q.add(make_cfg(tiny_model_dir, small_dataset, "", max_steps=2, run_name="three"))
    doomed.unlink()  # gone by the time it trains

    assert main(["queue", "run"]) == 1  # one run failed
    out = capsys.readouterr().out
    entries = q.entries()
    assert [e.state for e in entries] == ["completed", "failed", "completed"]
    assert "doomed.jsonl" in entries[1].message and entries[1].message.startswith("failed: ")
    assert entries[0].message == "completed at step 2, final loss " + entries[0].message.rsplit(" ", 1)[1]
    for e in (entries[0], entries[2]):
        assert (Path(e.run_dir) / "final" / "adapter_config.json").exists()
        assert Path(e.run_dir).parent == studio_home / "runs"
    assert out.index("== " + entries[0].id) < out.index("== " + entries[1].id) < out.index("== " + entries[2].id)
    assert "queue: 3 run(s) trained (2 completed, 1 failed); 0 still pending" in out
    assert "compare them: finetune-studio runs compare " in out
    assert q.runner_pid() is None

    # It failed before its run folder was made: the list names none (it named a folder that never was).
    assert entries[1].run_dir is None
    assert main(["queue", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(listed) if line.startswith(entries[1].id))
    assert listed[at + 2].strip() == "no run folder: it failed before its run began"
    # Its config is checked again at retry, as train checks it: the dataset is still gone.
    assert main(["queue", "retry", entries[1].id]) == 2
    err = capsys.readouterr().err
    assert f"'{entries[1].id}' (two) can't be retried: dataset '{doomed}': no such file" in err
    assert "The queued config is frozen" in err and len(q.entries()) == 3
    doomed.write_bytes(small_dataset.read_bytes())
    assert main(["queue", "retry", entries[1].id]) == 0  # failed: from the start
    assert "(from the start)" in capsys.readouterr().out and q.entries()[-1].resume is None
    q.remove([q.entries()[-1].id])

    assert main(["queue", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["state"] for e in listed["entries"]] == ["completed", "failed", "completed"]
    assert main(["queue", "remove", "--ended"]) == 0 and q.entries() == []


def test_one_runner_at_a_time(tmp_path, small_dataset):
    q = RunQueue(tmp_path / "queue")
    q.add(make_cfg(Path("demo"), small_dataset, ""))
    (tmp_path / "queue").mkdir(exist_ok=True)
    # Another process holds the runner lock (a lock held in this process would be re-entered).
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               f"l = FileLock({str(tmp_path / 'queue' / 'runner.lock')!r}); l.acquire(); "
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StudioError, match="already being trained"):
            q.run()
    finally:
        holder.kill()
        holder.wait()
    assert FileLock(str(tmp_path / "queue" / "runner.lock")).acquire(timeout=5)  # let go when its holder died


def test_stop_now_stops_the_current_run_with_a_checkpoint_and_keeps_the_rest(tmp_path, tiny_model_dir,
                                                                             small_dataset):
    q = RunQueue(tmp_path / "queue")
    q.add(make_cfg(tiny_model_dir, small_dataset, "", max_steps=40, save_steps=0, eval_split=0.0))
    q.add(make_cfg(tiny_model_dir, small_dataset, "", max_steps=2))
    steps = []

    def on_event(entry, event):
        if event.type == "step":
            steps.append(event["step"])

    done = q.run(on_event=on_event, stop_now=lambda: len(steps) >= 3)
    assert [e.state for e in done] == ["stopped"] and done[0].message.startswith("stopped at step")
    [ckpt] = list(Path(done[0].run_dir).glob("checkpoint-*"))  # stopped with a checkpoint
    assert [e.state for e in q.entries()] == ["stopped", "pending"]

    # Retried, it continues in its own folder from that checkpoint, after the rest of the queue.
    with pytest.raises(StudioError, match="only a stopped, interrupted or failed run can be retried"):
        q.retry(q.entries()[1].id)
    again = q.retry(done[0].id)
    assert again.resume == done[0].run_dir and again.name == done[0].name
    steps.clear()
    ended = q.run(on_event=on_event)
    assert [e.state for e in ended] == ["completed", "completed"]
    assert ended[1].run_dir == done[0].run_dir
    stop_step = int(ckpt.name.split("-")[1])
    assert steps == [1, 2, *range(stop_step + 1, 41)]  # the 2-step run, then the retried one continued
    assert (Path(done[0].run_dir) / "final" / "adapter_config.json").exists()


def test_a_stop_request_ends_the_queue_after_the_current_run(tmp_path, tiny_model_dir, small_dataset):
    q = RunQueue(tmp_path / "queue")
    assert q.request_stop() is None and not q.stop_requested()  # no runner: nothing to stop
    q.add(make_cfg(tiny_model_dir, small_dataset, "", max_steps=2))
    q.add(make_cfg(tiny_model_dir, small_dataset, "", max_steps=2))
    asked = []

    def on_entry(entry):
        if entry.state == "running" and not asked:
            asked.append(q.request_stop())  # as `queue stop` from another terminal would

    done = q.run(on_entry=on_entry)
    assert asked[0].id == done[0].id  # it named the run training then
    assert [e.state for e in done] == ["completed"] and [e.state for e in q.entries()] == ["completed", "pending"]
    assert not q.stop_requested()  # cleared: the next runner starts the rest


def test_a_runner_that_died_leaves_its_run_to_the_next_one(tmp_path, small_dataset, studio_home):
    """The entry it was training is marked from the run's own summary, then the queue goes on."""
    q = RunQueue(tmp_path / "queue")
    [entry] = q.add(make_cfg(Path("demo"), small_dataset, ""))
    run_dir = studio_home / "runs" / "20261202-120000-lora"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"status": "running", "config": {"method": "lora"}}))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / "worker.pid").write_text(str(dead.pid))
    q._update(entry.id, state="running", run_dir=str(run_dir))  # as the dead runner left it

    done = q.run()
    assert [e.state for e in done] == ["interrupted"]
    assert f"train {run_dir / 'run.yaml'} --resume" in done[0].message


def test_the_next_run_waits_for_a_run_trained_outside_the_queue(tmp_path, small_dataset, studio_home):
    import os
    import threading

    q = RunQueue(tmp_path / "queue")
    q.add(make_cfg(Path("demo"), small_dataset, ""))
    busy = studio_home / "runs" / "20261202-130000-full"
    busy.mkdir(parents=True)
    (busy / "summary.json").write_text(json.dumps({"status": "running", "config": {"method": "full"}}))
    (busy / "worker.pid").write_text(str(os.getpid()))  # alive: this very process
    waited = []

    def on_wait(run):
        waited.append(run.name)
        threading.Timer(0.3, q.request_stop).start()  # a stop while waiting ends the wait

    assert q.run(on_wait=on_wait, wait_poll_s=0.05) == []
    assert waited == [busy.name] and [e.state for e in q.entries()] == ["pending"]


def test_the_runner_keeps_the_computer_awake_between_runs(tmp_path, small_dataset, studio_home, monkeypatch):
    """The gap while the next run loads its model is covered by the runner's own lock."""
    import os
    import threading

    from engine import keepawake

    class Held:
        def __init__(self, why):
            self.why, self.released = why, False

        def release(self):
            self.released = True

    held: list[Held] = []
    monkeypatch.setattr(keepawake, "keep_awake", lambda why, **kw: held.append(Held(why)) or held[-1])
    q = RunQueue(tmp_path / "queue")
    q.add(make_cfg(Path("demo"), small_dataset, "", keep_awake=False))
    busy = studio_home / "runs" / "20261202-130000-full"
    busy.mkdir(parents=True)
    (busy / "summary.json").write_text(json.dumps({"status": "running", "config": {"method": "full"}}))
    (busy / "worker.pid").write_text(str(os.getpid()))
    q.run(on_wait=lambda run: threading.Timer(0.1, q.request_stop).start(), wait_poll_s=0.05)
    assert held == []  # no queued run asks for it

    q.add(make_cfg(Path("demo"), small_dataset, ""))  # keep_awake defaults to on
    during = []
    q.run(on_wait=lambda run: (during.append(list(held)), threading.Timer(0.1, q.request_stop).start()),
          wait_poll_s=0.05)
    assert len(held) == 1 and during[0] == held and held[0].released
    assert held[0].why == "training a queue of 2 run(s)"


def test_queue_run_piped_into_head_trains_on(tmp_path, tiny_model_dir, small_dataset, studio_home):
    """`queue run | head -1`: the reader goes away after a line; the queue still trains it all."""
    q = RunQueue()
    q.add(make_cfg(tiny_model_dir, small_dataset, "", max_steps=3, logging_steps=1))
    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run(f"{sys.executable} -m engine queue run | head -1", shell=True, cwd=root,
                           capture_output=True, text=True, timeout=300)
    assert shown.stdout.startswith("== ") and "Traceback" not in shown.stderr
    assert [e.state for e in q.entries()] == ["completed"] and q.runner_pid() is None


def test_queue_add_refuses_a_config_whose_model_or_data_is_not_there_and_queues_nothing(tmp_path, studio_home,
                                                                                         small_dataset, capsys):
    """These were queued, and each failed when the runner reached it, unattended."""
    from engine.cli import main

    source = tmp_path / "run.yaml"
    source.write_text(f"model: demo\ndataset: {small_dataset}\nmax_steps: 2\n", encoding="utf-8")
    assert main(["queue", "add", str(source), "--dataset", "typo.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "finetune-studio queue add: --dataset 'typo.jsonl': no such file" in err and "hint: Give a JSON" in err
    assert main(["queue", "add", str(source), "--model", str(tmp_path / "no-model")]) == 2
    assert f"model '{tmp_path / 'no-model'}': no such folder" in capsys.readouterr().err
    # A model saved without its tokenizer was queued, and failed when the runner reached it.
    (tmp_path / "weights-only").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "weights-only" / name).write_text("{}")
    assert main(["queue", "add", str(source), "--model", str(tmp_path / "weights-only")]) == 2
    assert f"model folder '{tmp_path / 'weights-only'}' has no tokenizer (" in capsys.readouterr().err
    # In a grid, the error names the point, and the good points are not queued either.
    assert main(["queue", "add", str(source), "--grid", f"dataset={small_dataset},typo.jsonl"]) == 2
    assert "grid point dataset=typo.jsonl: dataset 'typo.jsonl': no such file" in capsys.readouterr().err
    assert main(["queue", "add", str(source), "--grid", "model=demo,someorg/not-cached-7b"]) == 2
    assert "grid point model=someorg/not-cached-7b: model 'someorg/not-cached-7b' is not in the local Hugging " \
           "Face cache" in capsys.readouterr().err
    assert RunQueue().entries() == []
    assert main(["queue", "add", str(source)]) == 0  # the same config with its files there
    assert len(RunQueue().entries()) == 1


def test_a_key_given_both_as_an_option_and_in_the_grid_is_refused(tmp_path, studio_home, capsys):
    """`--grid lora_r=8,16 --lora_r 4` queued r8 and r16 and dropped the 4 without a word."""
    from engine.cli import main

    source = tmp_path / "run.yaml"
    source.write_text("model: demo\nmax_steps: 2\n", encoding="utf-8")
    assert main(["queue", "add", str(source), "--grid", "lora_r=8,16", "--lora_r", "4"]) == 2
    err = capsys.readouterr().err
    assert "finetune-studio queue add: --lora_r 4 and --grid lora_r=... both set 'lora_r'; give its values in one " \
           "place\n  hint: To queue it with 4 too, add that value to the grid." in err
    assert RunQueue().entries() == []


def test_queue_list_says_how_far_the_run_in_training_is(studio_home):
    """queue.json changes only when a run starts or ends: ``queue list`` (and the Queue tab, which
    shows the same words) said nothing of the run in training between the two."""
    import os

    from engine.runqueue import RUNNING, Entry, format_queue, progress
    from tests.engine.test_runs_cli import make_run

    path = make_run("20261128-100000-sweep-lr3e-3", steps=5)
    summary = json.loads((path / "summary.json").read_text())
    summary["config"]["max_steps"] = 8
    summary.update(status="running", finished=None, step=4)  # checkpoint-4; step 5 logged since
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "worker.pid").write_text(str(os.getpid()))
    training = Entry(id="20261128-095959-002", name="sweep-lr3e-3", config="x.yaml", state=RUNNING,
                     run_dir=str(path))
    waiting = Entry(id="20261128-095959-003", name="sweep-lr1e-2", config="y.yaml")
    assert progress(training) == "step 5 of 8" and progress(waiting) == ""
    listed = format_queue([training, waiting], runner=os.getpid()).splitlines()
    assert listed[2].split() == ["step", "5", "of", "8"] and listed[3].strip() == str(path)
