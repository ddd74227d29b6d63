"""The per-record loss audit (`runs audit`): right scores, right records, the planted mistake first."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from engine.audit import Audit, audit_run, format_audit, read_audit
from engine.errors import ModelError
from engine.runs import find_run
from tests.engine.test_train import METHOD_SETTINGS, make_cfg, train


def with_broken_line(src: Path, out: Path) -> Path:
    """``src`` with an unreadable line 3, so record numbers and usable-record indexes differ."""
    lines = src.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[:2] + ['{"instruction": "broken", "output": '] + lines[2:]) + "\n",
                   encoding="utf-8")
    return out


def reference_losses(run_dir: Path, model_dir: Path, method: str, dataset: Path, seq_len: int
                     ) -> dict[int, float | None]:
    """Each record's loss as the model computes it with labels, one record at a time."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data.formats import load_dataset_file
    from engine.data.tokenize import render_record

    if method in ("full", "freeze"):
        model = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    elif method == "adapter":
        from engine.methods import bottleneck

        model = bottleneck.load(AutoModelForCausalLM.from_pretrained(model_dir), run_dir / "final")
    else:
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), run_dir / "final")
    model.eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    out = {}
    for number, rec in enumerate(load_dataset_file(dataset).records, start=1):
        if rec.broken:
            continue
        row = {k: v[:seq_len] for k, v in render_record(rec.messages(), tok, "auto").items()}
        if all(x == -100 for x in row["labels"]):
            out[number] = None  # the prompt fills seq_len: nothing to score
            continue
        with torch.no_grad():
            out[number] = float(model(input_ids=torch.tensor([row["input_ids"]]),
                                      labels=torch.tensor([row["labels"]])).loss)
    return out


@pytest.mark.parametrize("method", ["lora", "prompt", "prefix", "ia3", "adapter", "freeze", "full"])
def test_scores_are_the_models_own_loss_for_each_record(method, tmp_path, tiny_model_dir, small_dataset):
    data = with_broken_line(small_dataset, tmp_path / "data.jsonl")
    extra = METHOD_SETTINGS.get(method, {})
    result, _, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run", method=method, eval_split=0.2, **extra))
    run_dir = Path(result["output_dir"])
    audit = audit_run(run_dir, batch_size=5)  # batches of unequal lengths: padding must not count

    ref = reference_losses(run_dir, tiny_model_dir, method, data, 64)
    # Every usable record, numbered from 1 as in the file; those with nothing to score listed.
    assert sorted(r.record for r in audit.records) == sorted(n for n, v in ref.items() if v is not None)
    assert sorted(s["record"] for s in audit.skipped) == sorted(n for n, v in ref.items() if v is None)
    assert 3 not in ref
    for r in audit.records:
        assert r.loss == pytest.approx(ref[r.record], rel=1e-4, abs=1e-5), r.record
    assert [r.loss for r in audit.records] == sorted((r.loss for r in audit.records), reverse=True)

    stats = json.loads((run_dir / "dataset.json").read_text())
    assert sum(r.split == "eval" for r in audit.records) == stats["eval"]  # the run's own split
    # Truncated records are the ones scored; those whose prompt alone filled seq_len were left out.
    assert 0 < sum(r.truncated for r in audit.records) == stats["truncated"]
    assert not audit.dataset_changed and audit.weights == str(run_dir / "final")


def test_records_point_at_the_right_rows_of_the_file(tmp_path, tiny_model_dir, small_dataset):
    from engine.data.formats import load_dataset_file

    data = with_broken_line(small_dataset, tmp_path / "data.jsonl")
    result, _, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run"))
    audit = audit_run(result["output_dir"])
    records = load_dataset_file(data).records
    for r in audit.records:
        assert records[r.record - 1].line == r.line
        first = " ".join(records[r.record - 1].messages()[0]["content"].split())
        assert first.startswith(r.instruction.rstrip("…"))


def test_a_planted_wrong_answer_ranks_first(tmp_path, tiny_model_dir):
    rng = random.Random(0)
    rows = [{"instruction": f"Is {n} a number? Reply yes.", "input": "", "output": "yes"} for n in range(40)]
    noise = " ".join("".join(rng.choice("qxzjvkwp") for _ in range(5)) for _ in range(3))
    rows.insert(17, {"instruction": "Is 99 a number? Reply yes.", "input": "", "output": noise})
    data = tmp_path / "planted.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # Full fine-tuning: a LoRA on this 32-wide random model learns too slowly for a 40-step test.
    result, _, _ = train(make_cfg(tiny_model_dir, data, tmp_path / "run", method="full", max_steps=40,
                                  eval_split=0.0, batch_size=8, learning_rate=1e-2, lr_scheduler="constant"))
    audit = audit_run(result["output_dir"])
    assert audit.records[0].record == 18  # rows[17], numbered from 1
    assert [r.record for r in audit.outliers()] == [18] and not audit.records[0].truncated
    text = format_audit(audit, top=3)
    assert "#18" in text.splitlines()[4] and "1 record scores 3x the median of its split" in text


def test_cli_prints_the_hardest_and_saves_every_score(tmp_path, tiny_model_dir, small_dataset, capsys):
    from engine.cli import main

    result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, "", run_name="medical"))
    run_dir = Path(result["output_dir"])
    assert main(["runs", "audit", "medical", "--top", "4"]) == 0  # found by its run_name
    out = capsys.readouterr().out
    table = out.split("instruction\n", 1)[1].split("\n\n", 1)[0].splitlines()
    saved = read_audit(run_dir)
    assert len(table) == 4 and [f"#{r.record}" for r in saved.records[:4]] == [row.split()[3] for row in table]
    assert len(saved.records) + len(saved.skipped) == json.loads((run_dir / "dataset.json").read_text())["records"]

    assert main(["runs", "audit", str(run_dir), "--json", "--batch_size", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["records"][0]["loss"] == pytest.approx(saved.records[0].loss, rel=1e-4)
    assert data["median"] == pytest.approx(saved.median, rel=1e-4) and "outliers" in data

    assert main(["runs", "audit", "no-such-run"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_changed_dataset_is_said(tmp_path, tiny_model_dir, small_dataset):
    result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run"))
    lines = small_dataset.read_text(encoding="utf-8").splitlines()
    small_dataset.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    audit = audit_run(result["output_dir"])
    assert audit.dataset_changed and any("dataset changed" in n for n in audit.notes)


def test_a_run_without_weights_is_refused(tmp_path, tiny_model_dir, small_dataset):
    cfg = make_cfg(tiny_model_dir, small_dataset, tmp_path / "run")
    (tmp_path / "run").mkdir()
    cfg.save(tmp_path / "run" / "run.yaml")
    with pytest.raises(ModelError, match="no trained weights yet"):
        audit_run(tmp_path / "run")


def test_find_run_by_run_name_takes_the_newest(studio_home):
    from engine.runs import runs_dir

    for name in ("20261101-120000-medical", "20261102-090000-medical", "20261103-080000-medical-2",
                 "20261104-080000-legal"):
        (runs_dir() / name).mkdir(parents=True)
        (runs_dir() / name / "run.yaml").write_text("method: lora\n")
    assert find_run("medical") == (runs_dir() / "20261103-080000-medical-2").resolve()
    assert find_run("legal").name == "20261104-080000-legal"
    assert find_run("edical") is None and find_run("") is None


def test_out_of_memory_halves_the_batch_and_scores_the_same(tmp_path, tiny_model_dir, small_dataset, monkeypatch):
    from transformers import LlamaForCausalLM

    result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run"))
    plain = audit_run(result["output_dir"], batch_size=8)
    forward = LlamaForCausalLM.forward
    sizes: list[int] = []

    def tight(self, input_ids=None, **kw):
        sizes.append(input_ids.shape[0])
        if input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, input_ids=input_ids, **kw)

    monkeypatch.setattr(LlamaForCausalLM, "forward", tight)
    squeezed = audit_run(result["output_dir"], batch_size=8)
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2
    by_record = {r.record: r.loss for r in plain.records}
    assert sorted(by_record) == sorted(r.record for r in squeezed.records)
    for r in squeezed.records:
        assert r.loss == pytest.approx(by_record[r.record], rel=1e-4)
    assert any("scored 2 record(s) at a time" in n for n in squeezed.notes)

    def none_fits(self, input_ids=None, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(LlamaForCausalLM, "forward", none_fits)
    from engine.errors import OutOfMemory

    with pytest.raises(OutOfMemory, match="scoring one record") as e:
        audit_run(result["output_dir"], batch_size=4)
    assert "--device cpu" in e.value.hint


@pytest.mark.parametrize("method", ["lora", "prompt", "full"])
def test_compare_base_scores_each_record_under_the_bare_base(method, tmp_path, tiny_model_dir, small_dataset):
    """PEFT runs switch the adapter off; full runs load the base on its own. Either way the
    base scores are the base model's own labels loss for each record."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data.formats import load_dataset_file
    from engine.data.tokenize import render_record

    extra = METHOD_SETTINGS.get(method, {})
    result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", method=method, **extra))
    audit = audit_run(result["output_dir"], batch_size=5, compare_base=True)
    plain = audit_run(result["output_dir"], batch_size=5)
    assert [(r.record, r.loss) for r in audit.records] == [(r.record, r.loss) for r in plain.records]

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    records = load_dataset_file(small_dataset).records
    for r in audit.records[:12]:
        row = {k: v[:64] for k, v in render_record(records[r.record - 1].messages(), tok, "auto").items()}
        with torch.no_grad():
            expected = float(base(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss)
        assert r.base_loss == pytest.approx(expected, rel=1e-4, abs=1e-5)
        assert r.fell == pytest.approx(r.base_loss - r.loss)
    data = audit.to_dict()
    assert data["base_median"] == pytest.approx(audit.base_median()) and "not_learned" in data
    text = format_audit(audit, top=3)
    assert "the base model's" in text and "fell by" in text.splitlines()[3]


def test_not_learned_lists_training_records_that_got_no_easier():
    from engine.audit import Audit, RecordLoss

    def rec(n, split, loss, base):
        return RecordLoss(record=n, line=n, split=split, loss=loss, tokens=5, truncated=False, instruction="x",
                          base_loss=base)

    audit = Audit(run_dir="r", weights="w", dataset="d", dataset_changed=False, device="cpu", seconds=1.0,
                  records=[rec(1, "train", 2.0, 1.5), rec(2, "train", 1.0, 4.0), rec(3, "eval", 3.0, 2.0),
                           rec(4, "train", 2.5, 2.5)])
    assert [r.record for r in audit.not_learned()] == [1, 4]  # the eval record is not trained on
    assert "2 training records did not get any easier than under the base model" in format_audit(audit)
    assert Audit.from_dict(json.loads(json.dumps(audit.to_dict()))).records[0].base_loss == 1.5


def test_a_bottleneck_checkpoint_is_refused_not_scored_as_the_bare_model(tmp_path, tiny_model_dir, small_dataset):
    result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", method="adapter",
                                  adapter_reduction_factor=4, max_steps=2, save_steps=1))
    run_dir = Path(result["output_dir"])
    assert audit_run(run_dir).weights == str(run_dir / "final")  # final/ is the adapter: fine
    with pytest.raises(ModelError, match="checkpoint of a bottleneck-adapter run"):
        audit_run(run_dir, checkpoint=run_dir / "checkpoint-1")


def _flagged_audit(dataset: Path, run_dir: Path, numbers: dict[int, float], split: str = "train",
                   digests: bool = True) -> Audit:
    """An audit of ``dataset`` whose records ``numbers`` (from 1) have the given losses; all others 1.0."""
    from engine.audit import RecordLoss, first_user_turn, record_digest
    from engine.data.formats import load_dataset_file

    records = [RecordLoss(record=n, line=n, split=split, loss=numbers.get(n, 1.0), tokens=4, truncated=False,
                          instruction=first_user_turn(r.messages()),
                          digest=record_digest(r.messages()) if digests else None)
               for n, r in enumerate(load_dataset_file(dataset).records, start=1)]
    return Audit(run_dir=str(run_dir), weights="w", dataset=str(dataset), dataset_changed=False, device="cpu",
                 seconds=0.1, records=records, audited_at=0.0)


def test_flagged_records_become_findings_on_the_file_as_it_is_now(tmp_path, small_dataset):
    from engine.audit import HARD_RULE, audit_findings
    from engine.data.formats import load_dataset_file

    audit = _flagged_audit(small_dataset, tmp_path / "medical", {5: 4.0, 30: 9.9})
    records = load_dataset_file(small_dataset).records
    found = audit_findings(audit, records)
    assert [(f.index, f.rule, f.severity, f.key, f.line) for f in found.findings] == [
        (4, HARD_RULE, "warning", "output", 5), (29, HARD_RULE, "warning", "output", 30)]
    assert "9.9x the train median (1.00) after run 'medical'" in found.findings[1].message
    assert found.lost == 0

    # Two records inserted above and record 30's answer rewritten: record 5 is found where it
    # moved to, record 30 is not reported (its score was for the old answer) but counted.
    edited = list(records)
    edited[29] = type(records[29])({**records[29].data, "output": "A corrected answer"}, None,
                                   schema=records[29].schema)
    edited[:0] = records[10:12]
    found = audit_findings(audit, edited)
    assert [f.index for f in found.findings] == [6] and found.lost == 1
    assert "1 more was edited or deleted since" in found.summary()

    # An audit saved before records had a digest goes by the first user turn.
    old = _flagged_audit(small_dataset, tmp_path / "medical", {5: 4.0, 30: 9.9}, digests=False)
    assert [f.index for f in audit_findings(old, edited).findings] == [6, 31]


def test_a_duplicated_instruction_is_not_guessed(tmp_path, small_dataset):
    from engine.audit import audit_findings
    from engine.data.formats import load_dataset_file

    audit = _flagged_audit(small_dataset, tmp_path / "run", {5: 4.0})
    records = load_dataset_file(small_dataset).records
    shifted = [records[4], records[0], *records[1:]]  # two copies of record 5, neither at its number
    found = audit_findings(audit, shifted)
    assert found.findings == [] and found.lost == 1


def test_not_learned_records_are_notes_and_the_sharper_rule_wins(tmp_path, small_dataset):
    from engine.audit import HARD_RULE, NOT_LEARNED_RULE, audit_findings
    from engine.data.formats import load_dataset_file

    audit = _flagged_audit(small_dataset, tmp_path / "run", {5: 4.0})
    for r in audit.records:
        r.base_loss = r.loss + 1.0
    audit.records[4].base_loss = 3.0  # flagged and not learned: reported once, as hard
    audit.records[8].base_loss = 0.5  # rose from 0.5 to 1.0
    found = audit_findings(audit, load_dataset_file(small_dataset).records)
    assert [(f.index, f.rule, f.severity) for f in found.findings] == [(4, HARD_RULE, "warning"),
                                                                       (8, NOT_LEARNED_RULE, "info")]
    assert "from 0.50 (base model) to 1.00" in found.findings[1].message


def test_data_check_adds_a_run_audits_findings(tmp_path, tiny_model_dir, capsys):
    from engine.cli import main

    rng = random.Random(0)
    rows = [{"instruction": f"Is {n} a number? Reply yes.", "input": "", "output": "yes"} for n in range(40)]
    rows.insert(17, {"instruction": "Is 99 a number? Reply yes.", "input": "",
                     "output": " ".join("".join(rng.choice("qxzjvkwp") for _ in range(5)) for _ in range(3))})
    data = tmp_path / "planted.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result, _, _ = train(make_cfg(tiny_model_dir, data, "", run_name="planted", method="full", max_steps=40,
                                  eval_split=0.0, batch_size=8, learning_rate=1e-2, lr_scheduler="constant"))
    assert main(["data", "check", str(data), "--audit"]) == 2  # nothing audited yet
    assert "no run that trained on" in capsys.readouterr().err
    assert main(["runs", "audit", "planted"]) == 0
    capsys.readouterr()

    assert main(["data", "check", str(data), "--audit", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    hard = [f for f in report["findings"] if f["rule"] == "hard-for-model"]
    assert [(f["index"], f["line"], f["key"]) for f in hard] == [(17, 18, "output")]
    assert report["counts"]["by_rule"]["hard-for-model"] == 1
    assert report["audit"].startswith(f"Audit of run '{Path(result['output_dir']).name}'")

    assert main(["data", "check", str(data), "--audit", "planted"]) == 0
    out = capsys.readouterr().out
    assert f"{data}:18: [record 18] the trained model still finds this answer unlikely" in out and "1 record the model still finds hard." in out

    other = tmp_path / "other.jsonl"
    other.write_text(data.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["data", "check", str(other), "--audit", "planted"]) == 2
    assert f"was audited on {data}, not {other}" in capsys.readouterr().err
