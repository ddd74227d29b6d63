"""`adapters compare`: the base and several adapters scored on the same records, held-out first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.cli import main as cli_main
from engine.compare import Comparison, compare_adapters, format_comparison
from engine.errors import ConfigError
from engine.generate import BASE
from tests.engine.conftest import ANSWERS, QUESTIONS
from tests.engine.test_audit import reference_losses
from tests.engine.test_train import METHOD_SETTINGS, make_cfg, train


def base_losses(model_dir: Path, dataset: Path, seq_len: int) -> dict[int, float | None]:
    """Each record's answer loss under the plain base model, one record at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.data.formats import load_dataset_file
    from engine.data.tokenize import render_record

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    out = {}
    for number, rec in enumerate(load_dataset_file(dataset).records, start=1):
        row = {k: v[:seq_len] for k, v in render_record(rec.messages(), tok, "auto").items()}
        if all(x == -100 for x in row["labels"]):
            out[number] = None
            continue
        with torch.no_grad():
            out[number] = float(model(input_ids=torch.tensor([row["input_ids"]]),
                                      labels=torch.tensor([row["labels"]])).loss)
    return out


def qa_file(path: Path, answer: str) -> Path:
    rows = [{"instruction": q, "input": "", "output": answer} for q in QUESTIONS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_each_models_scores_are_its_own_loss_and_training_records_are_held_back(tmp_path, tiny_model_dir,
                                                                                 small_dataset):
    # A LoRA and an IA3 run on the same file: two adapter types, which can't share one PEFT model.
    runs = {}
    for method in ("lora", "ia3"):
        result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / method, method=method,
                                      eval_split=0.25, **METHOD_SETTINGS.get(method, {})))
        runs[method] = Path(result["output_dir"])
    c = compare_adapters([runs["lora"], runs["ia3"] / "final"], small_dataset, load_in="fp32", device="cpu",
                         batch_size=5, samples=2, max_new_tokens=5)
    assert c.base == str(tiny_model_dir) and c.seq_len == 64  # both from the runs
    names = [m.name for m in c.models]
    assert names[0] == BASE and len(names) == 3
    refs = {BASE: base_losses(tiny_model_dir, small_dataset, 64),
            names[1]: reference_losses(runs["lora"], tiny_model_dir, "lora", small_dataset, 64),
            names[2]: reference_losses(runs["ia3"], tiny_model_dir, "ia3", small_dataset, 64)}
    assert sorted(r.record for r in c.records) == sorted(n for n, v in refs[BASE].items() if v is not None)
    for r in c.records:
        for name in names:
            assert r.losses[name] == pytest.approx(refs[name][r.record], rel=1e-4, abs=1e-5), (name, r.record)

    # The held-out records are exactly the runs' eval split (same seed, same records).
    split = json.loads((runs["lora"] / "dataset.json").read_text())
    held = [r for r in c.records if r.held_out]
    assert len(held) == split["eval"] and c.held_out == split["eval"]
    assert all(sorted(r.trained_by) == sorted(names[1:]) for r in c.records if not r.held_out)
    for m in c.models:
        assert m.trained_on == (0 if m.name == BASE else len(c.records) - len(held))
        want = sum(r.losses[m.name] * r.tokens for r in held) / sum(r.tokens for r in held)
        assert m.mean_loss == pytest.approx(want, rel=1e-4)
        assert m.perplexity == pytest.approx(torch.tensor(m.mean_loss).exp().item(), rel=1e-4)
    assert sum(m.best_on for m in c.models) == len(held)

    # Samples: the held-out records where the models differ most, answered by each model.
    assert len(c.samples) == 2
    widest = sorted(held, key=lambda r: -r.spread)[:2]
    assert [s.record for s in c.samples] == [r.record for r in widest]
    assert all(list(s.answers) == names for s in c.samples)
    assert (f"over the {len(held)} records no compared model trained on (the other {len(c.records) - len(held)} "
            "are in a training split)") in format_comparison(c)
    # The result survives its JSON form.
    again = Comparison.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again.models == c.models and again.records == c.records and again.samples == c.samples


def test_the_adapter_trained_for_the_data_wins_and_answers_like_it(runs_home, tmp_path):
    data = qa_file(tmp_path / "medical-test.jsonl", ANSWERS["medical"])
    c = compare_adapters(["medical", "legal"], data, load_in="fp32", device="cpu", samples=1, max_new_tokens=12)
    base, medical, legal = c.models
    assert (medical.name, legal.name) == ("medical", "legal") and base.name == BASE
    assert medical.best_on == len(QUESTIONS) and legal.best_on == 0
    assert medical.mean_loss < 0.5 * legal.mean_loss and medical.vs_base(base) < -0.5
    # These runs' datasets aren't on disk: which records they trained on is unknown, and said.
    assert not medical.train_split_known and sum("unknown" in n for n in c.notes) == 2
    assert c.held_out == len(QUESTIONS)
    [sample] = c.samples
    assert sample.reference == ANSWERS["medical"]
    assert sample.answers["medical"].startswith("Rest, drink water")
    assert sample.answers["legal"].startswith("Read the contract")
    text = format_comparison(c)
    row = next(ln for ln in text.splitlines() if ln.strip().startswith("medical "))
    assert row.split()[-2:] == [str(len(QUESTIONS)), "?"]  # best on all, training records unknown


def test_limit_scores_a_seeded_sample(runs_home, tmp_path):
    data = tmp_path / "many.jsonl"
    rows = [{"instruction": f"{q} ({i})", "input": "", "output": ANSWERS["legal"]}
            for i in range(5) for q in QUESTIONS]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    a = compare_adapters(["legal"], data, load_in="fp32", device="cpu", limit=6, samples=0)
    b = compare_adapters(["legal"], data, load_in="fp32", device="cpu", limit=6, samples=0)
    c = compare_adapters(["legal"], data, load_in="fp32", device="cpu", limit=6, samples=0, seed=1)
    assert len(a.records) == 6 and [r.record for r in a.records] == [r.record for r in b.records]
    assert [r.record for r in a.records] != [r.record for r in c.records]
    assert any("random 6 of the 20" in n for n in a.notes) and not a.samples
    # How to score them all is each surface's to say (the GUI has no "limit"): the CLI names its flag.
    assert a.sampled_from == 20 and not any("limit" in n for n in a.notes)
    assert "note: --limit 0 scores all 20 usable records" in format_comparison(a)
    assert Comparison.from_dict(json.loads(json.dumps(a.to_dict()))).sampled_from == 20


def test_cli_prints_the_table_and_writes_json(runs_home, tmp_path, capsys):
    data = qa_file(tmp_path / "legal-test.jsonl", ANSWERS["legal"])
    out = tmp_path / "cmp.json"
    assert cli_main(["adapters", "compare", "medical", "legal", "--dataset", str(data), "--samples", "0",
                     "--load_in", "fp32", "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "answer loss (lower is better) over all records" in text and f"all scores: {out}" in text
    saved = json.loads(out.read_text())
    assert saved["schema_version"] == 1 and [m["name"] for m in saved["models"]] == [BASE, "medical", "legal"]
    assert min(saved["models"], key=lambda m: m["mean_loss"])["name"] == "legal"
    # The same --out again: refused before anything loads, the file kept; --force replaces it.
    before = out.read_bytes()
    assert cli_main(["adapters", "compare", "legal", "--dataset", str(data), "--out", str(out)]) == 2
    assert f"--out '{out}' already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert cli_main(["adapters", "compare", "legal", "--dataset", str(data), "--samples", "0", "--device", "cpu",
                     "--out", str(out), "--force"]) == 0
    assert [m["name"] for m in json.loads(out.read_text())["models"]] == [BASE, "legal"]
    capsys.readouterr()

    assert cli_main(["adapters", "compare", "legal", "--dataset", str(data), "--json", "--samples", "0",
                     "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["records"][0]["losses"].keys() == {BASE, "legal"}


def test_bad_requests_say_what_is_wrong(runs_home, tmp_path, tiny_model_dir, capsys):
    data = qa_file(tmp_path / "d.jsonl", "x")
    cases = [
        (["legal", "--dataset", str(tmp_path / "missing.jsonl")], "missing.jsonl"),
        (["legal", str(runs_home["legal"]), "--dataset", str(data)], "the same adapter is given twice"),
        (["no-such-adapter", "--dataset", str(data)], "Known adapters"),
        (["legal", "--dataset", str(data), "--base", str(tiny_model_dir), "--device", "cpu"],
         "can't be used with this base"),
    ]
    for args, message in cases:
        assert cli_main(["adapters", "compare", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    # The CLI's --limit refuses -1 itself (test_cli); a caller of the function is still told.
    with pytest.raises(ConfigError, match="limit must be 0"):
        compare_adapters(["legal"], data, limit=-1)


def test_a_run_as_the_base_brings_its_adapter_and_unreadable_files_are_named(runs_home, tmp_path, capsys):
    data = qa_file(tmp_path / "d.jsonl", ANSWERS["legal"])
    # --base RUN, as `generate` takes it: the run's base model, with its adapter compared.
    c = compare_adapters(["medical"], data, base="legal", load_in="fp32", device="cpu", samples=0)
    assert [m.name for m in c.models] == [BASE, "legal", "medical"]
    assert c.models[1].vs_base(c.models[0]) < -0.5  # no record held back by a known split: over all
    # A file with no readable record says so, with the first broken line.
    yaml_like = tmp_path / "run.yaml"
    yaml_like.write_text("model: demo\nmethod: lora\n", encoding="utf-8")
    assert cli_main(["adapters", "compare", "legal", "--dataset", str(yaml_like)]) == 2
    err = capsys.readouterr().err
    assert "no record of" in err and f"{yaml_like}:1:" in err and "2 broken" in err


def test_full_and_freeze_runs_compare_as_whole_models_beside_adapters(tmp_path, tiny_model_dir, small_dataset):
    runs = {}
    for method in ("full", "lora"):
        result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / method, method=method,
                                      eval_split=0.25, **METHOD_SETTINGS.get(method, {})))
        runs[method] = Path(result["output_dir"])
    c = compare_adapters([runs["full"], runs["lora"]], small_dataset, load_in="fp32", device="cpu", batch_size=5,
                         samples=1, max_new_tokens=4)
    assert c.base == str(tiny_model_dir)  # from the full run's run.yaml
    full_name, lora_name = "full", "lora"  # the run folders' names
    assert [m.name for m in c.models] == [BASE, full_name, lora_name]
    assert c.model(full_name).path == str((runs["full"] / "final").resolve())
    refs = {full_name: reference_losses(runs["full"], tiny_model_dir, "full", small_dataset, 64),
            lora_name: reference_losses(runs["lora"], tiny_model_dir, "lora", small_dataset, 64),
            BASE: base_losses(tiny_model_dir, small_dataset, 64)}
    for r in c.records:
        for name, ref in refs.items():
            assert r.losses[name] == pytest.approx(ref[r.record], rel=1e-4, abs=1e-5), (name, r.record)
    split = json.loads((runs["full"] / "dataset.json").read_text())
    assert c.held_out == split["eval"]
    assert c.model(full_name).trained_on == len(c.records) - split["eval"]
    [sample] = c.samples
    assert set(sample.answers) == {BASE, full_name, lora_name}
    assert any("loaded a second time" in n for n in c.notes)


def test_a_whole_model_with_another_tokenizer_is_refused(tmp_path, tiny_model_dir, small_dataset):
    import shutil

    from transformers import AutoTokenizer

    from engine.errors import ModelError

    other = tmp_path / "other-vocab"
    shutil.copytree(tiny_model_dir, other)
    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<extra-token>"])
    tok.save_pretrained(other)
    with pytest.raises(ModelError, match="another tokenizer"):
        compare_adapters([other], small_dataset, base=str(tiny_model_dir), load_in="fp32", device="cpu")


def test_every_comparison_is_kept_and_can_be_shown_again(runs_home, tmp_path, capsys):
    from engine.compare import comparisons_dir

    data = qa_file(tmp_path / "legal-test.jsonl", ANSWERS["legal"])
    assert cli_main(["adapters", "comparisons"]) == 0
    assert "no comparisons yet" in capsys.readouterr().out
    args = ["adapters", "compare", "legal", "--dataset", str(data), "--samples", "0", "--device", "cpu"]
    assert cli_main(args) == 0 and cli_main([*args, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    kept = sorted(comparisons_dir().glob("*.json"))
    assert len(kept) == 2 and f"all scores: {kept[0]}" in out
    assert cli_main(["adapters", "comparisons", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 2 and "best: legal" in listed[0]["line"] and "(2 records)" in listed[0]["line"]
    assert cli_main(["adapters", "comparisons", "--show", "2"]) == 0  # the older: all 4 records
    shown = capsys.readouterr().out
    assert "4 records of" in shown and f"from {listed[1]['path']}" in shown
    assert cli_main(["adapters", "comparisons", "--show", "3"]) == 2
    assert "there are 2 kept comparison(s)" in capsys.readouterr().err
    assert cli_main(["adapters", "comparisons", "--show", str(data)]) == 2
    assert "is not a comparison" in capsys.readouterr().err


def test_a_limited_sample_takes_the_held_out_records_first(tmp_path, tiny_model_dir, small_dataset):
    result, _, _ = train(make_cfg(tiny_model_dir, small_dataset, tmp_path / "run", eval_split=0.25))
    run = Path(result["output_dir"])
    n_eval = json.loads((run / "dataset.json").read_text())["eval"]
    whole = compare_adapters([run], small_dataset, load_in="fp32", device="cpu", samples=0)
    held = {r.record for r in whole.records if r.held_out}
    c = compare_adapters([run], small_dataset, load_in="fp32", device="cpu", samples=0, limit=n_eval + 3)
    assert len(c.records) == n_eval + 3 and c.held_out == n_eval
    assert {r.record for r in c.records if r.held_out} == held
    assert any(f"{n_eval} of the {n_eval} no compared model trained on, then 3 of the others" in n for n in c.notes)
    small = compare_adapters([run], small_dataset, load_in="fp32", device="cpu", samples=0, limit=3)
    assert small.held_out == 3  # all from the held-out records


def test_answer_matching_rules():
    from engine.compare import answer_matches, token_f1

    # JSON answers compare as values: key order and spacing don't count, values do.
    assert answer_matches('{"people": ["Kim"], "date": "2024-07-06"}', '{"date":"2024-07-06","people":["Kim"]}')
    assert not answer_matches('{"people": ["Kim"], "date": "2024-07-07"}', '{"date":"2024-07-06","people":["Kim"]}')
    assert not answer_matches("people: Kim", '{"people": ["Kim"]}')  # not JSON where JSON is expected
    # Labels: case, surrounding and inner whitespace and a final full stop don't count.
    assert answer_matches("  Negative.\n", "negative") and answer_matches("中性。", "中性")
    assert not answer_matches("negative sentiment", "negative")
    # Token F1 as SQuAD counts it: overlap with multiplicity; CJK characters count one by one.
    assert token_f1("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("东京是首都", "首都是东京") == 1.0
    assert token_f1("东京", "北京") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("a b", "c d") == 0.0


def test_answers_are_scored_against_the_references(runs_home, tmp_path, capsys):
    """--answer: each model answers the held-out records greedily; the adapter trained to give
    these exact answers matches them all, the base and the other adapter none."""
    data = qa_file(tmp_path / "legal-test.jsonl", ANSWERS["legal"])
    c = compare_adapters(["medical", "legal"], data, load_in="fp32", device="cpu", samples=1, answer=-1,
                         max_new_tokens=16)
    base, medical, legal = c.models
    assert [m.answered for m in c.models] == [len(QUESTIONS)] * 3
    assert legal.exact == 1.0 and legal.f1 == 1.0
    assert medical.exact == 0.0 and base.exact == 0.0
    assert 0.0 <= medical.f1 < 0.5 and base.f1 < 0.5
    assert len(c.samples) == 1  # the samples' answers come from the same pass
    again = Comparison.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again.model("legal").exact == 1.0
    text = format_comparison(c)
    assert f"greedy answers to {len(QUESTIONS)} held-out records" in text
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("greedy answers to"))
    row = next(ln for ln in lines[start:] if ln.strip().startswith("legal "))
    assert row.split()[-2:] == ["100%", "1.000"]
    # A count: the first N held-out records; the CLI takes N or "all", nothing else.
    two = compare_adapters(["legal"], data, load_in="fp32", device="cpu", samples=0, answer=2, max_new_tokens=16)
    assert [m.answered for m in two.models] == [2, 2]
    # Said in words both the GUI ("Max new tokens:") and the CLI (--max_new_tokens) read.
    cut = compare_adapters(["legal"], data, load_in="fp32", device="cpu", samples=0, answer=1, max_new_tokens=3)
    assert any("longer than the max new tokens (3)" in n for n in cut.notes)
    assert not any("max_new_tokens" in n for n in cut.notes)
    assert cli_main(["adapters", "compare", "legal", "--dataset", str(data), "--answer", "some"]) == 2
    assert "--answer takes a number of records or 'all'" in capsys.readouterr().err
    # Older kept comparisons (no answer figures) still load.
    old = c.to_dict()
    for m in old["models"]:
        for key in ("answered", "exact", "f1"):
            m.pop(key)
    assert Comparison.from_dict(old).model("legal").exact is None


def scored(losses: dict[str, float], notes: list[str] | None = None) -> Comparison:
    """A comparison of these answer losses over one record (the first is the base), without a model."""
    from engine.compare import ModelScore, RecordScores

    models = [ModelScore(name, None, loss, None, loss, 1.0) for name, loss in losses.items()]
    return Comparison(base="demo", dataset="data.jsonl", device="cpu", load_in="fp32", template="auto",
                      seq_len=512, seconds=1.0, models=models,
                      records=[RecordScores(record=1, line=1, instruction="q", tokens=3, losses=dict(losses))],
                      notes=notes or [])


@pytest.mark.parametrize(("change", "text"), [
    (-0.0046, "-0.5%"), (0.49, "+49%"), (-0.4, "-40%"), (0.0995, "+10%"), (0.0949, "+9.5%"),
    (0.0, "±0.0%"), (-0.0004, "-<0.1%"), (0.0004, "+<0.1%"), (None, "–"), (float("nan"), "–")])
def test_a_change_against_the_base_is_printed_honestly(change, text):
    from engine.compare import format_change

    assert format_change(change) == text


def test_the_cli_table_prints_a_small_change_with_a_decimal():
    """A 0.5% lower loss read "-0%" in the vs base column."""
    text = format_comparison(scored({BASE: 2.0, "legal": 1.99, "medical": 2.0}))
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ")}
    assert rows["legal"][3] == "-0.5%" and rows["medical"][3] == "±0.0%" and rows[BASE][3] == "–"


def test_a_kept_comparisons_old_sample_note_loses_the_cli_flag():
    """Comparisons kept before ``sampled_from`` ended their sample note in "give limit 0 for all"."""
    old = scored({BASE: 2.0, "legal": 1.0}, notes=[
        "legal: its run's dataset 'legal.jsonl' is gone, so which records it trained on is unknown",
        "scored 6 of the 20 usable records (seed 0): 2 of the 4 no compared model trained on, then 4 of the "
        "others; give limit 0 for all"]).to_dict()
    del old["sampled_from"]
    kept = Comparison.from_dict(old)
    assert kept.sampled_from == 20 and kept.notes[0] == old["notes"][0]
    assert kept.notes[1].endswith("then 4 of the others")
