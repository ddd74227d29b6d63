"""The run config: defaults, YAML round trip, and the messages bad configs get."""

from __future__ import annotations

import pytest
import yaml

from engine.config import RunConfig
from engine.errors import ConfigErrors


def messages(exc: ConfigErrors) -> list[str]:
    return [e.message for e in exc.errors]


def test_every_field_has_a_default_and_help():
    meta = RunConfig.field_meta()
    assert len(meta) >= 40
    for name, m in meta.items():
        assert m["help"] and len(m["help"]) > 10, name
        assert "default" in m
    RunConfig()  # all defaults form a valid config


def test_public_keys_exist():
    public = """model dataset dataset_format output_dir method lora_r lora_alpha lora_dropout
    lora_target_modules use_dora use_rslora freeze_trainable_layers num_virtual_tokens
    adapter_reduction_factor load_in mixed_precision optimizer learning_rate lr_scheduler warmup_ratio
    weight_decay num_epochs max_steps batch_size gradient_accumulation_steps seq_len
    gradient_checkpointing eval_split save_steps logging_steps seed""".split()
    assert set(public) <= set(RunConfig.field_names())


def test_yaml_round_trip(tmp_path):
    cfg = RunConfig.from_dict({"method": "ia3", "lora_target_modules": "all-linear", "max_steps": 7,
                               "learning_rate": 1e-3})
    path = cfg.save(tmp_path / "run.yaml")
    text = path.read_text()
    assert "# Fine-tuning method" in text  # help travels as comments
    again = RunConfig.load(path)
    assert again.to_dict() == {**cfg.to_dict(), "output_dir": again.output_dir}
    assert again.method == "ia3" and again.max_steps == 7 and again.lora_target_modules == "all-linear"


def test_unknown_key_names_it_and_suggests_closest():
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"lora_rank": 8})
    assert "unknown key 'lora_rank'" in messages(e.value)[0]
    assert "did you mean 'lora_r'" in messages(e.value)[0]
    assert e.value.errors[0].key == "lora_rank"


def test_wrong_choice_lists_allowed_values():
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"method": "loraa"})
    msg = messages(e.value)[0]
    assert "'method' must be one of full, freeze, lora, qlora, adapter, prefix, prompt, ia3" in msg
    assert "did you mean 'lora'" in msg


@pytest.mark.parametrize("key,value,expect", [
    ("batch_size", "four", "'batch_size' must be a whole number"),
    ("batch_size", 0, "'batch_size' must be between 1 and"),
    ("learning_rate", -1, "'learning_rate' must be between 0.0 and"),
    ("eval_split", 0.9, "'eval_split' must be between 0.0 and 0.5"),
    ("gradient_checkpointing", "maybe", "'gradient_checkpointing' must be true or false"),
    ("lora_r", 2.5, "'lora_r' must be a whole number"),
    ("lora_target_modules", 5, "'lora_target_modules' must be 'all-linear' or a list"),
    # NaN compares False with every bound, so a plain range test lets it through.
    ("learning_rate", "nan", "'learning_rate' must be between 0.0 and 10.0, got nan"),
    ("warmup_ratio", float("nan"), "'warmup_ratio' must be between 0.0 and 0.5, got nan"),
    ("lora_dropout", yaml.safe_load(".nan"), "'lora_dropout' must be between 0.0 and 0.9, got nan"),
    ("learning_rate", "inf", "'learning_rate' must be between 0.0 and 10.0, got inf"),
    ("seed", "nan", "'seed' must be a whole number between 0 and 4294967295, got 'nan'"),
])
def test_wrong_type_or_range_names_key(key, value, expect):
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({key: value})
    assert expect in messages(e.value)[0]
    assert e.value.errors[0].key == key


@pytest.mark.parametrize("data,key,words", [
    ({"method": "full", "load_in": "nf4"}, "load_in", "can't be trained when they are loaded quantized"),
    ({"method": "freeze", "load_in": "int8"}, "load_in", "can't be trained"),
    ({"method": "qlora", "load_in": "bf16"}, "load_in", "4-bit NF4 base"),
    ({"method": "full", "load_in": "fp16", "mixed_precision": "fp16"}, "load_in", "fp16 master weights"),
    ({"load_in": "bf16", "mixed_precision": "fp16"}, "mixed_precision", "narrower-range fp16"),
    ({"optimizer": "adamw_8bit", "device": "cpu"}, "optimizer", "bitsandbytes CUDA optimizer"),
    ({"method": "prefix", "packing": True}, "packing", "virtual tokens"),
])
def test_impossible_combinations_explain_why(data, key, words):
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict(data)
    assert any(words in m for m in messages(e.value)), messages(e.value)
    assert any(err.key == key and err.fix for err in e.value.errors)


def test_qlora_implies_nf4():
    assert RunConfig.from_dict({"method": "qlora"}).load_in == "nf4"


def test_several_errors_reported_together():
    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"batch_size": -1, "optimzer": "sgd", "method": "x"})
    assert len(e.value.errors) == 3


def test_invalid_yaml_reports_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: lora\nlora_r: [8\nseed: 1\n")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    assert f"{path}:3:" in messages(e.value)[0] and "invalid YAML" in messages(e.value)[0]


def test_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    # It said "got list" (or "got str" for a file of plain text, such as a dataset given as the config).
    assert messages(e.value) == [f"{path}: the top level must be a mapping of keys to values (key: value lines, "
                                 "e.g. 'model: demo'), got a list [a, b]"]
    path.write_text("just some words\n")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    assert messages(e.value)[0].endswith("got the text 'just some words'")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(tmp_path / "nope.yaml")
    assert "no such run config file" in messages(e.value)[0]


def test_replace_validates():
    cfg = RunConfig()
    assert cfg.replace(batch_size=2).batch_size == 2
    with pytest.raises(ConfigErrors):
        cfg.replace(method="full", load_in="nf4")


def test_relative_paths_resolve_against_config_folder(tmp_path):
    (tmp_path / "data.jsonl").write_text("")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"dataset": "data.jsonl", "output_dir": "out"}))
    cfg = RunConfig.load(tmp_path / "run.yaml")
    assert cfg.dataset == str((tmp_path / "data.jsonl").resolve())
    assert cfg.output_dir == str((tmp_path / "out").resolve())


def test_paths_typed_on_the_command_line_resolve_against_the_current_folder_and_are_stored_absolute(
        tmp_path, monkeypatch):
    cfg_dir, work = tmp_path / "cfgdir", tmp_path / "work"
    cfg_dir.mkdir()
    work.mkdir()
    (work / "small.jsonl").write_text("")
    (cfg_dir / "small.jsonl").write_text("")
    (cfg_dir / "run.yaml").write_text("dataset: small.jsonl\noutput_dir: out\n")
    monkeypatch.chdir(work)
    # In the file: the file's folder, even when the current folder has a file of that name.
    cfg = RunConfig.load("../cfgdir/run.yaml")
    assert (cfg.dataset, cfg.output_dir) == (str(cfg_dir / "small.jsonl"), str(cfg_dir / "out"))
    # Typed: the current folder (output_dir landed beside the config before).
    cfg = RunConfig.load("../cfgdir/run.yaml", {"dataset": "small.jsonl", "output_dir": "out-rel"})
    assert (cfg.dataset, cfg.output_dir) == (str(work / "small.jsonl"), str(work / "out-rel"))


def test_a_yaml_path_found_only_in_the_current_folder_is_stored_absolute(tmp_path, monkeypatch):
    # It stayed relative, so run.yaml's --resume and `runs audit` from another folder lost the dataset.
    (tmp_path / "cfgdir").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "small.jsonl").write_text("")
    (tmp_path / "cfgdir" / "run.yaml").write_text("dataset: small.jsonl\n")
    monkeypatch.chdir(tmp_path / "work")
    assert RunConfig.load("../cfgdir/run.yaml").dataset == str(tmp_path / "work" / "small.jsonl")
    # Found nowhere: kept as written (a Hugging Face cache id, or a name its error can quote).
    (tmp_path / "cfgdir" / "run.yaml").write_text("dataset: org/name\nmodel: Qwen/Qwen2.5-0.5B\n")
    cfg = RunConfig.load("../cfgdir/run.yaml")
    assert (cfg.dataset, cfg.model) == ("org/name", "Qwen/Qwen2.5-0.5B")


def test_shipped_presets_load():
    from engine.paths import presets_dir

    presets = sorted(presets_dir().glob("*.yaml"))
    assert presets, "no presets shipped"
    for p in presets:
        RunConfig.load(p)


def test_readme_documents_every_key():
    """The README's key table is generated from the config; regenerate with
    `python -m engine.config --update-readme` after changing a key."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- config-table:start -->\n", "<!-- config-table:end -->"
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == RunConfig.markdown_table()


def test_value_errors_in_a_file_name_the_key_s_line_and_column(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: demo\n# a comment\nlora_r: abc\n  # indented comment\nbatch_sise: 4\n"
                    "method: full\nload_in: nf4\n")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    got = messages(e.value)
    assert got[0].startswith(f"{path}:3:1: 'lora_r' must be a whole number")
    assert got[1].startswith(f"{path}:5:1: unknown key 'batch_sise'")
    assert e.value.errors[1].key == "batch_sise"
    # A clash found after the values are read points at the key it names.
    path.write_text("model: demo\nmethod: full\nmixed_precision: fp16\nload_in: nf4\n")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    clash = [m for m in messages(e.value) if "loaded quantized" in m]
    assert clash and clash[0].startswith(f"{path}:4:1: method 'full'")
    # A value given on the command line is not in the file: no line for it.
    path.write_text("model: demo\n")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path, overrides={"lora_r": "abc"})
    assert messages(e.value) == ["'lora_r' must be a whole number between 1 and 4096, got 'abc'"]


def test_bare_no_in_yaml_and_on_the_command_line_means_the_choice_no(tmp_path):
    # YAML 1.1 reads `no` as false; for a choice that has "no" it must stay the choice.
    path = tmp_path / "run.yaml"
    path.write_text("mixed_precision: no\nmethod: lora\n", encoding="utf-8")
    assert RunConfig.load(path).mixed_precision == "no"
    from engine.config import parse_override
    assert RunConfig.from_dict({"mixed_precision": parse_override("mixed_precision", "no")}).mixed_precision == "no"
    with pytest.raises(ConfigErrors) as e:  # false is still not a valid method
        RunConfig.from_dict({"method": False})
    assert "'method'" in messages(e.value)[0]


@pytest.mark.parametrize("key,text,value", [
    # Text keys take the text as given; read as YAML these were a mapping, None, False and a list.
    ("prompt_init_text", "Classify: positive or negative", "Classify: positive or negative"),
    ("run_name", "#1 run", "#1 run"),
    ("run_name", "no", "no"),
    ("run_name", "[x]", "[x]"),
    ("run_name", "12", "12"),
    ("run_name", "", ""),
    ("run_name", "'quoted, as Copy as command writes'", "quoted, as Copy as command writes"),
    ("mixed_precision", "no", "no"),
    # Other keys are still YAML: lists, numbers, booleans.
    ("lora_target_modules", "[q_proj, v_proj]", ["q_proj", "v_proj"]),
    ("lora_r", "16", 16),
    ("packing", "yes", True),
])
def test_command_line_values_of_text_keys_are_taken_as_given(key, text, value):
    from engine.config import parse_override

    assert parse_override(key, text) == value
    assert getattr(RunConfig.from_dict({key: parse_override(key, text)}), key) == value


@pytest.mark.parametrize("line,key,value", [
    # Numbers as people write them, whatever YAML 1.1 makes of them: 1e-4 without a dot is text to
    # it, 017 octal 15, 0x10 hex.
    ("learning_rate: 1e-4", "learning_rate", 1e-4),
    ("learning_rate: 2e-5", "learning_rate", 2e-5),
    ("learning_rate: 5E-5", "learning_rate", 5e-5),
    ("learning_rate: .5", "learning_rate", 0.5),
    ("save_steps: 1_000", "save_steps", 1000),
    ("seed: 017", "seed", 17),
    ("seed: 0x10", "seed", 16),
    ("lora_r: 1e3", "lora_r", 1000),
    # Switches: YAML's words, and y/n, 1/0.
    ("packing: yes", "packing", True),
    ("packing: y", "packing", True),
    ("packing: n", "packing", False),
    ("packing: 1", "packing", True),
    ("packing: off", "packing", False),
    # Text is the text typed: YAML 1.1 made these False, True, the number 16 and a date.
    ("run_name: no", "run_name", "no"),
    ("run_name: on", "run_name", "on"),
    ("run_name: 0x10", "run_name", "0x10"),
    ("run_name: 2024-01-01", "run_name", "2024-01-01"),
    ("mixed_precision: no", "mixed_precision", "no"),
    # So are the names in a list: a module or a token called `no` or `1`.
    ("lora_target_modules: [no, on, y, 1]", "lora_target_modules", ["no", "on", "y", "1"]),
    ("lora_target_modules: no", "lora_target_modules", ["no"]),
    ("ia3_target_modules: [off]", "ia3_target_modules", ["off"]),
    ("add_tokens: [yes, '<x>']", "add_tokens", ["yes", "<x>"]),
    ("freeze_extra_modules: [norm, no]", "freeze_extra_modules", ["norm", "no"]),
])
def test_yaml_1_1_surprises_are_read_by_the_key_s_type(tmp_path, line, key, value):
    path = tmp_path / "run.yaml"
    path.write_text(f"model: demo\n{line}\n", encoding="utf-8")
    assert getattr(RunConfig.load(path), key) == value


@pytest.mark.parametrize("line,said", [
    # eval_split: yes said "'eval_split' must be a number, got True": not what was typed, nor what is allowed.
    ("eval_split: yes", "'eval_split' must be a number between 0.0 and 0.5, got 'yes'"),
    ("learning_rate: off", "'learning_rate' must be a number between 0.0 and 10.0, got 'off'"),
    ("lora_r: on", "'lora_r' must be a whole number between 1 and 4096, got 'on'"),
    ("lora_r: 10.5", "'lora_r' must be a whole number between 1 and 4096, got '10.5'"),
    ("seed: 2024-01-01", "'seed' must be a whole number between 0 and 4294967295, got '2024-01-01'"),
    ("learning_rate: 1:30", "'learning_rate' must be a number between 0.0 and 10.0, got '1:30'"),  # not 90
    ("learning_rate: 1_000", "'learning_rate' must be between 0.0 and 10.0, got 1_000"),
    ("learning_rate: [1e-4]", "'learning_rate' must be a number between 0.0 and 10.0, got [1e-4]"),
    ("packing: 2", "'packing' must be true or false, got '2'"),
    ("method: no", "'method' must be one of full, freeze, lora, qlora, adapter, prefix, prompt, ia3; got 'no'"),
    ("template: yes", "'template' must be one of auto, chat, alpaca, chatml, llama3, gemma, phi3, a .jinja file; "
                      "got 'yes'"),
    ("method: [lora]", "'method' must be one of full, freeze, lora, qlora, adapter, prefix, prompt, ia3; got [lora]"),
    ("run_name: {a: b}", "'run_name' must be text, got {a: b}"),
    ("add_tokens: {a: b}", "'add_tokens' must be a list, got {a: b}"),
    ("lora_target_modules: [q_proj, null]",
     "'lora_target_modules' must be 'all-linear' or a list of module names, got [q_proj, null]"),
    # Numbers too big for a float or for int(): a message, not an OverflowError or ValueError traceback.
    ("learning_rate: 1" + "0" * 400, "'learning_rate' must be between 0.0 and 10.0, got 1000000000"),
    ("seed: " + "9" * 5000, "'seed' must be a whole number between 0 and 4294967295, got '99999"),
])
def test_a_bad_value_is_quoted_as_typed_with_what_its_key_allows(tmp_path, line, said):
    path = tmp_path / "run.yaml"
    path.write_text(f"model: demo\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    assert messages(e.value)[0].startswith(f"{path}:2:1: {said}")
    assert e.value.errors[0].key == line.split(":")[0]


@pytest.mark.parametrize("key,text,value", [
    ("lora_target_modules", "no", ["no"]),  # was False: "must be 'all-linear' or a list of module names"
    ("lora_target_modules", "[no, yes]", ["no", "yes"]),
    ("add_tokens", "[on]", ["on"]),
    ("packing", "y", True),
    ("packing", "0", False),
    ("seed", "017", 17),  # not octal 15
])
def test_command_line_values_are_read_by_the_key_s_type(key, text, value):
    from engine.config import parse_override

    assert getattr(RunConfig.from_dict({key: parse_override(key, text)}), key) == value


def test_a_bad_command_line_value_is_quoted_as_typed():
    from engine.config import parse_override

    with pytest.raises(ConfigErrors) as e:
        RunConfig.from_dict({"eval_split": parse_override("eval_split", "yes")})
    assert messages(e.value) == ["'eval_split' must be a number between 0.0 and 0.5, got 'yes'"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_a_config_in_another_unicode_encoding_says_to_save_it_as_utf8(tmp_path, encoding):
    # PowerShell's `>` writes UTF-16 with a byte-order mark; reading it as UTF-8 raised UnicodeDecodeError.
    path = tmp_path / "run.yaml"
    text = "model: demo\n"
    path.write_bytes(("\ufeff" + text).encode(encoding) if encoding != "utf-16" else text.encode(encoding))
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    msg = messages(e.value)[0]
    assert msg.startswith(f"{path}: the file is {encoding[:6].upper()} text") and "save it as UTF-8" in msg


def test_a_config_that_is_not_utf8_names_the_line_and_column_of_the_first_bad_byte(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes("model: demo\nrun_name: café\n".encode("latin-1"))
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    msg = messages(e.value)[0]
    assert msg.startswith(f"{path}:2:14: the file is not UTF-8 text (byte 0xe9") and "save it as UTF-8" in msg
    path.write_bytes("\ufeffmodel: demo\nrun_name: café\n".encode("utf-8"))  # UTF-8 with a BOM is fine
    assert RunConfig.load(path).run_name == "café"


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    # safe_load silently keeps the last; the error used to point at the first occurrence's line.
    path = tmp_path / "run.yaml"
    path.write_text("model: demo\nmax_steps: 3\nlearning_rate: 1e-4\nmax_steps: 5\n")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    assert messages(e.value) == [f"{path}:4:1: 'max_steps' is given twice (lines 2, 4); YAML would silently "
                                 "keep this last one: give it once"]
    assert e.value.errors[0].key == "max_steps"
    # A bad value of a repeated key points at the occurrence that was read (the last one).
    path.write_text("model: demo\nlora_r: 8\nmethod: lora\nlora_r: 0\n")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    got = messages(e.value)
    assert got[0].startswith(f"{path}:4:1: 'lora_r' is given twice (lines 2, 4)")
    assert got[1].startswith(f"{path}:4:1: 'lora_r' must be between 1 and 4096, got 0")


@pytest.mark.parametrize("method,lr", [("full", 2e-5), ("freeze", 2e-5), ("lora", 2e-4), ("qlora", 2e-4),
                                       ("adapter", 2e-4), ("prefix", 1e-2), ("prompt", 3e-2), ("ia3", 3e-3)])
def test_each_method_trains_at_its_usual_learning_rate_unless_one_is_given(method, lr, tmp_path):
    from engine.methods import learning_rate_note

    assert RunConfig.from_dict({"method": method}).learning_rate == lr
    assert learning_rate_note(RunConfig.from_dict({"method": method})) is None
    assert RunConfig.from_dict({"method": method, "learning_rate": 5e-4}).learning_rate == 5e-4
    path = tmp_path / "run.yaml"
    path.write_text(f"method: {method}\n")
    assert RunConfig.load(path).learning_rate == lr
    assert RunConfig.load(path, {"learning_rate": 1e-4}).learning_rate == 1e-4


@pytest.mark.parametrize("method,lr,said", [
    ("full", 2e-4, "10x above Full fine-tuning's usual 2e-5"),  # LoRA's rate: ten times as far
    ("freeze", 1e-3, "50x above"),
    ("prompt", 2e-4, "150x below Prompt tuning's usual 0.03"),
    ("ia3", 2e-4, "15x below IA3's usual 0.003"),
    ("lora", 1e-2, "50x above LoRA's usual 0.0002"),
    ("lora", 3e-3, None),  # the demo's rate for its tiny model: within 50x
    ("full", 1.9e-4, None), ("prompt", 3.1e-3, None), ("lora", 5e-6, None),
])
def test_a_learning_rate_far_from_the_methods_usual_is_said_with_a_fix(method, lr, said):
    from engine.methods import METHODS, learning_rate_note

    note = learning_rate_note(RunConfig.from_dict({"method": method, "learning_rate": lr}))
    if said is None:
        assert note is None
        return
    assert note["kind"] == "learning_rate" and said in note["message"]
    assert note["fix"] == {"learning_rate": METHODS[method].learning_rate}


@pytest.mark.parametrize("line,said", [
    # `key:` with nothing after it, null or ~: "'learning_rate' must be a number, got None".
    ("learning_rate:", "'learning_rate' is empty (null): give a number between 0.0 and 10.0 (or leave it out for "
                       "the default)"),
    ("lora_r: ~", "'lora_r' is empty (null): give a whole number between 1 and 4096 (or leave it out"),
    ("packing: null", "'packing' is empty (null): give true or false (or leave it out"),
    ("method:", "'method' is empty (null): give one of full, freeze, lora, qlora, adapter, prefix, prompt, ia3 (or"),
    ("lora_target_modules:", "'lora_target_modules' is empty (null): give 'all-linear' or a list of module names"),
    ("model:", "'model' is empty (null): give a model folder (with config.json), a Hugging Face id from your "
               "cache, or 'demo'"),
    # An empty model or dataset was taken: the run failed later with "run '' has no final/ model" or ".: not a file".
    ("model: ''", "'model' is empty: give a model folder (with config.json), a Hugging Face id from your cache, "
                  "or 'demo'"),
    ("dataset: ' '", "'dataset' is empty: give a dataset file (JSON, JSONL, CSV or Parquet), a dataset in the "
                     "Hugging Face cache, or 'demo'"),
])
def test_an_empty_value_of_a_key_that_needs_one_says_what_it_takes(tmp_path, line, said):
    path = tmp_path / "run.yaml"
    path.write_text(f"method: lora\n{line}\n" if not line.startswith("method") else f"{line}\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    assert said in messages(e.value)[0]
    assert e.value.errors[0].key == line.split(":")[0]


@pytest.mark.parametrize("line,key,value", [
    ("run_name:", "run_name", ""), ("output_dir: ~", "output_dir", ""), ("eval_dataset: null", "eval_dataset", ""),
    ("add_tokens:", "add_tokens", []), ("freeze_extra_modules: null", "freeze_extra_modules", []),
])
def test_an_empty_value_of_an_optional_key_means_none(tmp_path, line, key, value):
    path = tmp_path / "run.yaml"
    path.write_text(f"model: demo\n{line}\n", encoding="utf-8")
    assert getattr(RunConfig.load(path), key) == value


@pytest.mark.parametrize("text,said", [
    # A tab said "found character '\t' that cannot start any token".
    ("model: demo\nlora_target_modules:\n\t- q_proj\n", ":3:1: invalid YAML: a tab; YAML indents and separates with "
                                                         "spaces only: replace the tab with spaces"),
    ("model:\tdemo\n", ":1:7: invalid YAML: a tab;"),
    # A NUL or control character had no line or column: '... position 12' of "<unicode string>".
    ("model: demo\nseed: 1\x00\n", ":2:8: invalid YAML: the control character U+0000 can't be in a YAML file; "
                                   "remove it"),
    ("model: demo\nrun_name: 'a\x07b'\n", ":2:13: invalid YAML: the control character U+0007"),
    # An unclosed quote was placed at the end of the file ("found unexpected end of stream").
    ("model: demo\nrun_name: 'abc\nseed: 1\n", ":2:11: invalid YAML: this quote is never closed"),
    ("model: demo\n  seed: 1\n", ":2:7: invalid YAML: mapping values are not allowed here (a 'key: value' where a "
                                 "value was expected: check this line's indentation"),
    ("seed: 1\n---\nseed: 2\n", ":2:1: invalid YAML: a second YAML document ('---')"),
    # Nested thousands deep: a RecursionError traceback.
    ("seed: " + "[" * 5000 + "]" * 5000 + "\n", ": invalid YAML: a value is nested too deeply to read"),
])
def test_yaml_syntax_errors_say_where_and_what_in_words(tmp_path, text, said):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path)
    assert messages(e.value)[0].startswith(f"{path}{said}")


@pytest.mark.parametrize("text", ["", "\n  \n", "# my run, to be written\n\n# model: my-model\n", "---\n", "~\n"])
def test_a_config_file_with_no_keys_is_refused_not_taken_as_the_demo(tmp_path, text):
    """An empty file (an editor that never saved, `> run.yaml`) read as every default: it trained the demo."""
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigErrors) as e:
        RunConfig.load(path, {"max_steps": 3})  # an option typed with it doesn't make it a config
    assert messages(e.value) == [f"{path}: the file holds no keys (it is empty, or only blank lines and comments): "
                                 "a run config names at least the model and the dataset to train, e.g. 'model: demo' "
                                 "and 'dataset: demo' for the embedded demo"]
    assert e.value.hint.endswith("presets/demo.yaml is a whole example; `finetune-studio train --help` lists every key.")
    (tmp_path / "explicit.yaml").write_text("{}\n", encoding="utf-8")  # an empty mapping written on purpose
    assert RunConfig.load(tmp_path / "explicit.yaml") == RunConfig()
