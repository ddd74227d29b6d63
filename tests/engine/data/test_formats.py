"""Reading and writing every format: round trips, auto-detection, malformed input, edits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.data import DatasetFile, Record, export, load_dataset_file, save_dataset_file
from engine.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"


def copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copy(FIXTURES / name, dst)
    return dst


# ---- Round trips


@pytest.mark.parametrize("name", [
    "alpaca_bom_crlf.jsonl", "alpaca_indent2.json", "compact_ascii.jsonl", "broken.jsonl",
    "bad_utf8.jsonl", "broken_array.json", "sharegpt.json", "messages.jsonl", "odd_columns.csv",
    "empty.jsonl",
])
def test_unedited_save_is_byte_identical(tmp_path, name):
    path = copy(tmp_path, name)
    before = path.read_bytes()
    ds = load_dataset_file(path)
    assert not ds.modified
    save_dataset_file(ds)
    assert path.read_bytes() == before
    # Saving elsewhere writes the same bytes too.
    other = save_dataset_file(ds, tmp_path / ("copy" + path.suffix))
    assert other.read_bytes() == before


def test_detects_bom_crlf_chinese_and_keeps_extra_fields(tmp_path):
    ds = load_dataset_file(copy(tmp_path, "alpaca_bom_crlf.jsonl"))
    assert (ds.format, ds.container, ds.bom, ds.newline) == ("alpaca", "jsonl", True, "\r\n")
    assert ds.detected == "Alpaca JSONL, 3 records, UTF-8 with BOM, CRLF"
    first = ds.records[0].data
    assert list(first) == ["instruction", "input", "output", "task", "lang", "meta"]
    assert first["instruction"] == "把这句话翻译成英文。"
    assert first["meta"] == {"source": "annotator-3", "score": 4.5}
    assert [r.line for r in ds.records] == [1, 2, 3]


def test_edited_jsonl_line_is_rewritten_in_the_files_style_and_others_kept(tmp_path):
    path = copy(tmp_path, "alpaca_bom_crlf.jsonl")
    original = path.read_bytes().split(b"\r\n")
    ds = load_dataset_file(path)
    ds.records[1].data["output"] = "Cats nap ~16 h a day. 猫"
    ds.records.append(ds.new_record({"instruction": "新的", "input": "", "output": "记录"}))
    assert ds.modified
    save_dataset_file(ds)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.split(b"\r\n")
    assert lines[0] == original[0] and lines[2] == original[2]
    # The old last line had no line ending: a CRLF now separates it from the new record.
    assert lines[3] == '{"instruction": "新的", "input": "", "output": "记录"}'.encode()
    assert json.loads(lines[1])["output"] == "Cats nap ~16 h a day. 猫"
    assert list(json.loads(lines[1])) == ["instruction", "input", "output", "task", "lang", "tags"]
    again = load_dataset_file(path)
    assert [r.data for r in again.records] == [r.data for r in ds.records]
    assert not ds.modified and [r.line for r in ds.records] == [1, 2, 3, 4]


def test_compact_ascii_style_is_kept_for_edited_lines(tmp_path):
    path = copy(tmp_path, "compact_ascii.jsonl")
    ds = load_dataset_file(path)
    assert ds.style["separators"] == (",", ":") and ds.style["ensure_ascii"] is True
    ds.records[0].data["output"] = "好天气"
    save_dataset_file(ds)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == json.dumps(ds.records[0].data, separators=(",", ":"))
    assert "\\u597d" in first


def test_json_array_edit_keeps_indent_and_other_elements(tmp_path):
    path = copy(tmp_path, "alpaca_indent2.json")
    ds = load_dataset_file(path)
    assert ds.style["indent"] == 2
    ds.records[2].data["output"] = "11"
    del ds.records[0]
    save_dataset_file(ds)
    expected = [r.data for r in ds.records]
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    starts = [n for n, line in enumerate(text.split("\n"), 1) if line == "  {"]
    assert [r.line for r in ds.records] == starts


def test_lazy_jsonl_records_are_not_parsed_until_touched(tmp_path):
    path = tmp_path / "lazy.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(50)))
    ds = load_dataset_file(path)
    assert sum(r.materialized for r in ds.records[1:]) == 0  # only record 0 may be peeked for the format
    assert ds.records[7].peek()["output"] == "a7"
    assert not ds.records[7].materialized
    ds.records[7].data["output"] = "changed"
    assert ds.records[7].materialized and ds.modified


@pytest.mark.parametrize("container,suffix", [("csv", ".csv"), ("parquet", ".parquet"), ("json", ".json"),
                                              ("jsonl", ".jsonl")])
@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages"])
def test_export_to_every_container_and_format_round_trips(tmp_path, container, suffix, fmt):
    src = load_dataset_file(copy(tmp_path, "alpaca_bom_crlf.jsonl"))
    out = export(src, tmp_path / f"out{suffix}", container, fmt)
    back = load_dataset_file(out)
    assert (back.container, back.format, len(back.records)) == (container, fmt, 3)
    assert [r.messages() for r in back.records] == [r.messages() for r in src.records]
    extras = back.records[0].data
    if container == "csv":  # CSV cells are text; nested values come back as their JSON text
        assert extras["task"] == "translation" and json.loads(extras["meta"])["score"] == 4.5
    else:
        assert extras["task"] == "translation" and extras["meta"] == {"source": "annotator-3", "score": 4.5}
    # And the exported file itself saves back unchanged.
    before = out.read_bytes()
    save_dataset_file(back)
    if container != "parquet":
        assert out.read_bytes() == before
    else:
        assert [r.data for r in load_dataset_file(out).records] == [r.data for r in back.records]


def test_alpaca_round_trip_through_sharegpt_keeps_fields(tmp_path):
    src = load_dataset_file(copy(tmp_path, "alpaca_bom_crlf.jsonl"))
    sg = load_dataset_file(export(src, tmp_path / "sg.jsonl", "jsonl", "sharegpt"))
    assert sg.records[2].data["conversations"][0] == {"from": "system", "value": "You are terse."}
    back = load_dataset_file(export(sg, tmp_path / "back.jsonl", "jsonl", "alpaca"))
    for a, b in zip(src.records, back.records, strict=True):
        a, b = a.data, b.data
        # instruction + "\n" + input is one user turn; converting back puts it all in instruction.
        assert b["output"] == a["output"] and b.get("history") == a.get("history")
        assert b["task"] == a["task"] and b.get("system") == a.get("system")


def test_csv_edit_keeps_other_rows_verbatim(tmp_path):
    path = copy(tmp_path, "odd_columns.csv")
    raw = path.read_bytes()
    ds = load_dataset_file(path)
    assert ds.mapping == {"prompt": "instruction", "completion": "output"}
    ds.records[1].data["completion"] = "one, two, three"
    save_dataset_file(ds)
    text = path.read_bytes()
    assert text.startswith(raw[: raw.index(b"\"Count")])  # BOM, header and the multi-line row kept
    assert text.endswith(b'"Count, to three","one, two, three",counting\r\n')


def test_parquet_round_trip_keeps_nested_data(tmp_path):
    src = load_dataset_file(copy(tmp_path, "sharegpt.json"))
    out = export(src, tmp_path / "x.parquet", "parquet", "sharegpt")
    back = load_dataset_file(out)
    assert [r.data for r in back.records] == [r.data for r in src.records]
    assert back.detected == "ShareGPT PARQUET, 2 records"


def test_parquet_mixed_column_types_are_a_clear_error(tmp_path):
    ds = DatasetFile(records=[Record({"instruction": "a", "output": "x"}),
                              Record({"instruction": "b", "output": 3})])
    with pytest.raises(DataError, match="record 2: 'output' can't be written as a Parquet column: it is a number, "
                       "but the records before it hold a string there, and a Parquet column has one type"):
        export(ds, tmp_path / "x.parquet", "parquet", "alpaca")
    # The culprit is found wherever it is (bisection), and a nested shape that differs is named too.
    rows = [Record({"instruction": str(i), "output": "x", "tags": ["a"]}) for i in range(50)]
    rows[37] = Record({"instruction": "37", "output": "x", "tags": [{"k": 1}]})
    with pytest.raises(DataError, match="record 38: 'tags' can't be written as a Parquet column: it is a list "
                       "shaped unlike the records before it"):
        export(DatasetFile(records=rows), tmp_path / "y.parquet", "parquet", "alpaca")


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = copy(tmp_path, "messages.jsonl")
    ds = load_dataset_file(path)
    ds.records[0].data["messages"][2]["content"] = "Paris!"
    save_dataset_file(ds)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messages.jsonl"]


# ---- Detection


def test_json_extension_with_jsonl_content_is_read_as_jsonl(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    ds = load_dataset_file(path)
    assert ds.container == "jsonl" and len(ds.records) == 2


@pytest.mark.parametrize("text,container,good", [
    ('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": "d"}\n]\n', "json", ["b", "d"]),
    ('[{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}]\n', "json", ["b", "d"]),
    ('{"instruction": "a", "output": "b"}\n[{"instruction": "c", "output": "d"}]\n', "jsonl", ["b"]),
    ('[{"instruction": "a", "output": "b"}]\n{"instruction": "c", "output": "d"}\n', "jsonl", ["d"]),
])
def test_a_jsonl_file_holding_a_json_array_is_read_as_one(tmp_path, text, container, good):
    """A .jsonl name on a JSON array (no JSON line starts with '['): every line but a few was a broken
    record ("Expecting value", "Extra data") and the records were lost to training. A line that is a
    whole array among JSON lines stays a broken JSON line."""
    path = tmp_path / "array.jsonl"
    path.write_text(text, encoding="utf-8")
    ds = load_dataset_file(path)
    assert ds.container == container and len(ds.broken_indices()) == 2 - len(good)
    assert [r.data["output"] for r in ds.records if not r.broken] == good
    if container == "json":
        save_dataset_file(ds)  # unedited: the same bytes
        assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("name,fmt,container", [
    ("sharegpt.json", "sharegpt", "json"), ("messages.jsonl", "messages", "jsonl"),
    ("alpaca_indent2.json", "alpaca", "json"), ("odd_columns.csv", "alpaca", "csv"),
])
def test_auto_detects_format(tmp_path, name, fmt, container):
    ds = load_dataset_file(copy(tmp_path, name))
    assert (ds.format, ds.container) == (fmt, container)


def test_sharegpt_roles_are_mapped():
    ds = load_dataset_file(FIXTURES / "sharegpt.json")
    roles = [m["role"] for m in ds.records[1].messages()]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]


def test_mapping_renames_keys_and_roles_for_odd_files():
    with pytest.raises(DataError, match="can't tell the record format.*dialog"):
        load_dataset_file(FIXTURES / "odd_roles.jsonl")
    ds = load_dataset_file(FIXTURES / "odd_roles.jsonl", mapping={
        "dialog": "conversations", "speaker": "from", "text": "value", "customer": "human", "agent": "gpt"})
    assert ds.format == "sharegpt"
    assert ds.records[0].messages() == [{"role": "user", "content": "Where is my order?"},
                                        {"role": "assistant", "content": "On its way."}]
    assert "dialog" in ds.records[0].data  # data keeps the file's own names


def test_forced_format_and_unknown_format():
    ds = load_dataset_file(FIXTURES / "messages.jsonl", "messages")
    assert ds.format == "messages"
    with pytest.raises(DataError, match="unknown dataset format 'yaml'; allowed: auto"):
        load_dataset_file(FIXTURES / "messages.jsonl", "yaml")


# ---- Malformed input


def test_broken_lines_are_kept_with_line_column_and_reason(tmp_path):
    path = copy(tmp_path, "broken.jsonl")
    ds = load_dataset_file(path)
    assert len(ds.records) == 5 and ds.broken_indices() == [1, 3]
    bad = ds.records[1]
    assert bad.broken and bad.line == 2 and bad.column == 34
    assert bad.error == "line 2, column 34: Expecting ',' delimiter"
    assert bad.raw == '{"instruction": "b", "input": "" "output": "B"}'
    assert ds.records[3].error == "line 5, column 1: expected a record object {...}, got a list"
    assert [r.data["output"] for r in ds.records if not r.broken] == ["A", "C", "D"]
    assert [r.line for r in ds.records] == [1, 2, 4, 5, 6]
    assert [(e.line, e.column) for e in ds.errors] == [(2, 34), (5, 1)]
    assert str(ds.errors[0]) == f"{path}:2:34: Expecting ',' delimiter"
    with pytest.raises(DataError, match=r"broken.jsonl:2:34"):
        ds.check_trainable()


def test_a_json_message_that_ends_on_at_reads_as_a_sentence(tmp_path):
    """Python says "Unterminated string starting at" and gives the position apart; the line and
    column come first here, so the message ends "here"."""
    path = tmp_path / "cut.jsonl"
    path.write_text('{"instruction": "a", "output": "A"}\n{"instruction": "cut\n', encoding="utf-8")
    bad = load_dataset_file(path).records[1]
    assert bad.error == "line 2, column 17: Unterminated string starting here"


def test_broken_record_is_fixed_in_place_and_written_back(tmp_path):
    path = copy(tmp_path, "broken.jsonl")
    ds = load_dataset_file(path)
    ds.records[0].data["output"] = "AA"  # an edit elsewhere must not drop the broken lines
    save_dataset_file(ds)
    text = path.read_text()
    assert '{"instruction": "b", "input": "" "output": "B"}\n' in text and '["not", "an", "object"]\n' in text
    assert not ds.records[1].fix('{"instruction": "b", "output": "B"')
    assert ds.records[1].broken and "line 1, column 35" in ds.records[1].error
    assert ds.records[1].fix('{"instruction": "b", "input": "", "output": "B"}')
    assert not ds.records[1].broken and ds.records[1].data["output"] == "B"
    save_dataset_file(ds)
    again = load_dataset_file(path)
    assert again.broken_indices() == [3]
    assert again.records[1].data == {"instruction": "b", "input": "", "output": "B"}


def test_invalid_utf8_line_is_broken_not_fatal():
    ds = load_dataset_file(FIXTURES / "bad_utf8.jsonl")
    assert ds.records[0].data["output"] == "fine"
    assert ds.records[1].broken and "invalid UTF-8 byte 0xe9" in ds.records[1].error


def test_broken_element_in_json_array(tmp_path):
    ds = load_dataset_file(copy(tmp_path, "broken_array.json"))
    assert [r.broken for r in ds.records] == [False, True, False]
    assert ds.records[1].line == 6 and ds.records[1].error == "line 9, column 5: Expecting ',' delimiter"
    assert ds.records[2].data["output"] == "3"
    assert (ds.errors[0].line, ds.errors[0].column) == (9, 5)


@pytest.mark.parametrize("name", ["empty.jsonl", "whitespace_only.json"])
def test_empty_file_is_a_clear_error(name):
    ds = load_dataset_file(FIXTURES / name)
    assert ds.records == [] and "empty" in ds.errors[0].message
    with pytest.raises(DataError, match="no records"):
        ds.check_trainable()


def test_empty_csv(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("")
    assert "empty" in load_dataset_file(path).errors[0].message


@pytest.mark.parametrize("name,what", [("top_level_object.json", "an object"),
                                       ("top_level_string.json", "a string")])
def test_wrong_top_level_type_names_the_file(name, what):
    with pytest.raises(DataError) as e:
        load_dataset_file(FIXTURES / name)
    assert f"{name}:1:1: the top-level JSON value is {what}, expected a list of records" in str(e.value)
    if name == "top_level_object.json":
        assert "under 'data'" in e.value.hint


def test_wrong_field_type_is_reported_by_messages():
    r = Record({"instruction": "x", "output": 3}, 7)
    with pytest.raises(DataError, match="record at line 7: 'output' is a number, expected text"):
        r.messages()


def test_csv_row_with_wrong_field_count_is_broken(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"instruction,output\na,b\nc,d,e\nf,g\n")
    ds = load_dataset_file(path)
    assert ds.broken_indices() == [1]
    assert ds.records[1].error == "line 3, column 1: the row has 3 fields, the header has 2"
    ds.records[0].data["output"] = "B"
    save_dataset_file(ds)
    assert path.read_bytes() == b"instruction,output\na,B\nc,d,e\nf,g\n"


def test_csv_stray_quotes_are_broken_rows_not_silently_changed_values(tmp_path):
    # Python's csv, not strict, reads `x,"y"z` as 'yz' and an unclosed quote as the rest of the file.
    path = tmp_path / "q.csv"
    original = b'instruction,output\nx,"y"z\nhello,world\n"a",b\nlast,"never closed\nmore,rows\n'
    path.write_bytes(original)
    ds = load_dataset_file(path)
    assert ds.broken_indices() == [0, 3]
    assert ds.records[0].error.startswith("line 2, column 6: text follows a quoted field's closing quote (',' ")
    assert ds.records[0].column == 6
    assert ds.records[3].error.startswith("line 5, column 6: a quoted field in this row never gets its closing "
                                          "quote")
    assert [r.data for r in ds.records if not r.error] == [
        {"instruction": "hello", "output": "world"}, {"instruction": "a", "output": "b"}]
    # Nothing is lost: an edit elsewhere saves the broken rows as they were.
    ds.records[1].data["output"] = "World"
    save_dataset_file(ds)
    assert path.read_bytes() == original.replace(b"hello,world", b"hello,World")


@pytest.mark.parametrize("row,where", [('a,"ok""x","never closed\nmore\n', "line 2, column 11"),
                                       ('a,"multi\nline"x\n', "line 3, column 6"),
                                       ('a\tb"c\n', None)])
def test_a_bad_csv_row_names_the_quote_s_line_and_column(tmp_path, row, where):
    path = tmp_path / ("q.tsv" if "\t" in row else "q.csv")
    path.write_text(("instruction\toutput\n" if "\t" in row else "instruction,output\n") + row, encoding="utf-8")
    ds = load_dataset_file(path)
    if where is None:  # a quote inside an unquoted field is text, not an error
        assert not ds.broken_indices() and ds.records[0].data == {"instruction": "a", "output": 'b"c'}
        return
    assert ds.records[0].error.startswith(where + ": ")


def test_missing_and_unreadable_files():
    with pytest.raises(DataError, match="no such file"):
        load_dataset_file(FIXTURES / "nope.jsonl")
    with pytest.raises(DataError, match=r"broken.jsonl: not a Parquet file \(it doesn't start with PAR1\)"):
        load_dataset_file(FIXTURES / "broken.jsonl", "parquet")


def test_a_parquet_file_cut_short_is_said_so(tmp_path):
    """pyarrow's words, "Parquet magic bytes not found in footer. Either the file is corrupted or this is not a
    parquet file", were all a cut-short copy got."""
    ds = load_dataset_file(FIXTURES / "alpaca_indent2.json")
    export(ds, tmp_path / "d.parquet")
    data = (tmp_path / "d.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[:-10])
    with pytest.raises(DataError) as e:
        load_dataset_file(tmp_path / "cut.parquet")
    assert e.value.message == (f"{tmp_path / 'cut.parquet'}: not a readable Parquet file: it ends without its footer "
                               f"({len(data) - 10:,} bytes): cut short")


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.csv"])
def test_a_file_that_cant_be_read_is_a_data_error_naming_it(tmp_path, monkeypatch, name):
    """No read permission (faked: the tests may run as root, whom permissions don't stop) raised a bare
    PermissionError: a traceback in the editor's Open, 'training failed: PermissionError' called a bug."""
    import builtins

    from engine.data import formats

    path = tmp_path / name
    path.write_text('[{"instruction": "a", "output": "b"}]' if name.endswith(".json") else "instruction,output\na,b\n")

    def refused(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(formats, "open", refused, raising=False)
    monkeypatch.setattr(Path, "read_bytes", lambda self: refused(self))
    with pytest.raises(DataError) as e:
        load_dataset_file(path)
    assert e.value.message == f"{path}: can't read the file: Permission denied"
    assert "permissions" in e.value.hint


def test_export_refuses_broken_records(tmp_path):
    ds = load_dataset_file(FIXTURES / "broken.jsonl")
    with pytest.raises(DataError, match="2 broken record.*line 2"):
        export(ds, tmp_path / "x.parquet")


@pytest.mark.parametrize(("text", "in_text"), [
    ('[{"instruction": "a", "output": "A"}, {"instruction": "b" "output": "B"}]\n', "line 1, column 21"),
    ('[\n  {"instruction": "a",\n   "output": "A" "x"}\n]\n', "line 2, column 18"),
    ('instruction,output\na,"A\nb,B\n', "line 1, column 3"),  # a CSV row: a quote never closed
], ids=["array-first-line", "array-second-line", "csv"])
def test_a_broken_records_error_placed_in_its_own_text(tmp_path, text, in_text):
    """A copy of a broken record, or one restored after a crash, is not at the file line its error
    names: placed in its text, the error names the same character of ``raw`` (line 1 its first)."""
    path = tmp_path / ("data.csv" if text.startswith("instruction,") else "data.json")
    path.write_text(text, encoding="utf-8")
    broken = next(r for r in load_dataset_file(path).records if r.broken)
    assert broken.error_in_file and broken.error_words() == broken.error
    error, column = broken.error_in_text()
    words = broken.error.split(": ", 1)[1]
    assert error == f"{in_text}: {words}" and column == int(in_text.rsplit(" ", 1)[1])
    copy_ = Record(None, None, raw=broken.raw, error=error, column=column)
    assert not copy_.error_in_file and copy_.error_in_text() == (error, column)
    assert copy_.error_words() == f"{in_text} of its text: {words}"
    line, col = (int(n) for n in in_text.replace("line ", "").split(", column "))
    assert broken.raw.split("\n")[line - 1][col - 1] == text.split("\n")[
        int(broken.error.split(",")[0].split()[1]) - 1][broken.column - 1]  # the same character
    ds = load_dataset_file(path)
    ds.records.insert(0, copy_)
    with pytest.raises(DataError, match=rf"the first is record 1, not saved yet: {in_text} of its text") as e:
        export(ds, tmp_path / "x.jsonl")
    assert e.value.line is None and e.value.column is None


def test_demo_dataset_loads(small_dataset):
    ds = load_dataset_file(small_dataset)
    assert ds.format == "alpaca" and len(ds.records) == 64 and not ds.errors


def test_new_records_and_iter_messages(tmp_path):
    ds = load_dataset_file(copy(tmp_path, "sharegpt.json"))
    blank = ds.new_record()
    assert blank.data == {"conversations": []} and blank.line is None and blank.schema is ds.schema
    ds.records.insert(0, ds.new_record({"conversations": [{"from": "human", "value": "Q"},
                                                          {"from": "gpt", "value": "A"}]}))
    got = [(i, msgs[-1]["content"]) for i, _, msgs in ds.iter_messages()]
    assert got == [(0, "A"), (1, "4"), (2, "18 °C in Paris.")]
    save_dataset_file(ds)
    again = load_dataset_file(ds.path)
    assert [r.data for r in again.records] == [r.data for r in ds.records]
    assert again.style["indent"] == 2 and [r.line for r in again.records] == [r.line for r in ds.records]


@pytest.mark.parametrize("name,encoding,label", [("u.jsonl", "utf-16", "UTF-16"), ("u.json", "utf-16", "UTF-16"),
                                                 ("u.csv", "utf-16", "UTF-16"), ("u.jsonl", "utf-32", "UTF-32")])
def test_a_utf16_file_is_named_as_such(tmp_path, name, encoding, label):
    path = tmp_path / name
    text = ('instruction,output\na,b\n' if name.endswith(".csv") else
            '{"instruction": "a", "output": "b"}\n' if name.endswith(".jsonl") else '[{"instruction": "a"}]')
    path.write_text(text, encoding=encoding)  # Python writes the byte-order mark, as PowerShell's > does
    with pytest.raises(DataError) as e:
        load_dataset_file(path)
    assert e.value.message == f"{path}: the file is {label} text (its byte-order mark says so), not UTF-8"
    assert f"iconv -f {label} -t UTF-8" in e.value.hint


@pytest.mark.parametrize("name,encoding,label", [("u.jsonl", "utf-16-le", "UTF-16LE"), ("u.json", "utf-16-be", "UTF-16BE"),
                                                 ("u.csv", "utf-16-le", "UTF-16LE"), ("u.jsonl", "utf-32-le", "UTF-32LE")])
def test_a_utf16_file_without_a_byte_order_mark_is_named_as_such(tmp_path, name, encoding, label):
    """.NET's and Java's UTF-16 writers leave the mark out: the file was read as UTF-8, so some lines
    were "invalid UTF-8" and others (json.loads guesses UTF-16 from zero bytes) quietly records."""
    path = tmp_path / name
    text = ('instruction,output\na,b\n' if name.endswith(".csv") else
            '{"instruction": "a", "output": "b"}\n' * 3 if name.endswith(".jsonl") else '[{"instruction": "a"}]')
    path.write_bytes(text.encode(encoding))
    with pytest.raises(DataError) as e:
        load_dataset_file(path)
    assert e.value.message == (f"{path}: the file is {label} text (no byte-order mark, but a zero byte beside each "
                               "of its first characters), not UTF-8")
    assert f"iconv -f {label} -t UTF-8" in e.value.hint


def test_a_utf16_line_in_a_utf8_jsonl_file_is_broken_not_read_as_utf16(tmp_path):
    """Windows PowerShell's >> appends UTF-16 to a UTF-8 file; json.loads reads bytes with zero bytes as
    UTF-16, so such a line loaded as a good record (and was saved back as UTF-16), and its neighbour
    said "invalid UTF-8 byte 0x0a"."""
    path = tmp_path / "appended.jsonl"
    line = '{"instruction": "c", "output": "d"}\r\n'
    path.write_bytes(b'{"instruction": "a", "output": "b"}\r\n' + line.encode("utf-16-le") * 2)
    ds = load_dataset_file(path)
    assert [r.broken for r in ds.records] == [False, True, True, True]
    zero = "a zero byte: the line is UTF-16 text (as Windows PowerShell's >> appends it), or binary, not UTF-8"
    assert [r.error for r in ds.records[1:]] == [f"line 2, column 2: {zero}", f"line 3, column 1: {zero}",
                                                 f"line 4, column 1: {zero}"]


@pytest.mark.parametrize("text,column,error", [
    ('{"instruction": "a", "output": "b"} {"instruction": "c", "output": "d"}\n', 37,
     "more text after the record ends; JSON Lines holds one record per line"),
    ('{"instruction": "a", "output": "b"},\n', 36, "more text after the record ends; JSON Lines holds one record per line"),
])
def test_text_after_a_jsonl_lines_record_says_what_follows_it(tmp_path, text, column, error):
    """Python's "Extra data" named nothing to fix."""
    path = tmp_path / "cr.jsonl"
    path.write_bytes(text.encode())
    ds = load_dataset_file(path)
    assert [r.error for r in ds.records] == [f"line 1, column {column}: {error}"]
    assert (ds.errors[0].line, ds.errors[0].column) == (1, column)


@pytest.mark.parametrize("name,text", [("l.json", '[{"instruction": "a",\n  "output": "caf\xe9"}]'),
                                       ("l.csv", "instruction,output\na,caf\xe9\n")])
def test_a_latin1_byte_in_a_whole_file_format_is_named_with_its_line_and_column(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError) as e:
        load_dataset_file(path)
    column = text.split("\n")[1].index("\xe9") + 1
    assert (e.value.line, e.value.column) == (2, column)
    assert str(e.value).startswith(f"{path}:2:{column}: not UTF-8 text: byte 0xe9")
    assert "Save the file as UTF-8" in e.value.hint


def test_a_compact_json_array_keeps_its_separators_when_a_record_is_replaced_or_moved(tmp_path):
    """The editor replaces an edited record with a new object and moves records: the file's own
    ',' between elements stays (it became ', ' around the edited one)."""
    path = tmp_path / "compact.json"
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(4)]
    path.write_text(json.dumps(rows, separators=(",", ":")), encoding="utf-8")
    ds = load_dataset_file(path)
    ds.records[1] = Record({"instruction": "q1", "output": "changed"}, ds.records[1].line, schema=ds.schema)
    ds.records[2], ds.records[3] = ds.records[3], ds.records[2]
    save_dataset_file(ds)
    expected = [rows[0], {"instruction": "q1", "output": "changed"}, rows[3], rows[2]]
    assert path.read_text(encoding="utf-8") == json.dumps(expected, separators=(",", ":"))  # no newline added


def test_a_parquet_save_keeps_each_columns_type_and_the_all_null_ones(tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "instruction": ["a", "b"], "input": pa.array([None, None], type=pa.string()), "output": ["x", "y"],
        "n": pa.array([1, None], type=pa.int32()), "ts": [datetime.datetime(2024, 1, 1), None],
        "tags": pa.array([["t"], None], type=pa.list_(pa.string()))}), path)
    before = pq.read_schema(path)
    ds = load_dataset_file(path)
    assert "input" not in ds.records[0].peek()  # a null is an absent field in the editor
    ds.records[1] = Record(dict(ds.records[1].peek(), output="y2", n="7", extra="new"), 2)
    save_dataset_file(ds)
    after = pq.read_table(path)
    assert after.schema.remove(after.schema.get_field_index("extra")) == before.remove_metadata()
    assert after.column("n").to_pylist() == [1, 7] and after.column("extra").to_pylist() == [None, "new"]
    assert after.column("input").to_pylist() == [None, None]


def test_a_csv_row_edited_keeps_its_other_cells_text_and_a_blank_new_field_adds_no_column(tmp_path):
    path = tmp_path / "chat.csv"
    path.write_text('conversations,lang\n"[{""from"":""human"",""value"":""hi""},{""from"":""gpt"",""value"":""yo""}]",en\n',
                    encoding="utf-8")
    ds = load_dataset_file(path)
    old = ds.records[0]
    ds.records[0] = Record(dict(old.peek(), lang="fr"), 2, source=old._source)  # as the editor's with_data
    save_dataset_file(ds)
    assert path.read_text(encoding="utf-8").splitlines()[1] == \
        '"[{""from"":""human"",""value"":""hi""},{""from"":""gpt"",""value"":""yo""}]",fr'
    alpaca = tmp_path / "a.csv"
    alpaca.write_text("instruction,output\nq,a\n", encoding="utf-8")
    ds = load_dataset_file(alpaca)
    ds.records.append(Record({"instruction": "new", "input": "", "output": "b"}, None))
    save_dataset_file(ds)
    assert alpaca.read_text(encoding="utf-8") == "instruction,output\nq,a\nnew,b\n"


def test_a_csv_field_longer_than_csvs_default_limit_is_read_not_broken(tmp_path):
    """csv refuses a field over 128 KiB by default ("field larger than field limit"): a long answer
    made its row a broken record. It reads, and an edit to it or to another row saves it whole."""
    long = "word " * 40_000  # 200 KB
    path = tmp_path / "long.csv"
    path.write_text(f'instruction,output\na,"{long}"\nb,{long.strip()}\n', encoding="utf-8")
    ds = load_dataset_file(path)
    assert ds.broken_indices() == [] and ds.records[0].data["output"] == long
    ds.records[0].data["instruction"] = "A"
    ds.records[1].data["output"] += "!"
    save_dataset_file(ds)
    again = load_dataset_file(path)
    assert [r.data for r in again.records] == [{"instruction": "A", "output": long},
                                               {"instruction": "b", "output": long.strip() + "!"}]


def test_a_semicolon_separated_csv_reads_and_saves_as_such(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text('id;question;answer\n1;"Is 1,5 > 1?";yes\n2;Two?;"no; never"\n', encoding="utf-8")
    ds = load_dataset_file(path)
    assert [r.peek() for r in ds.records] == [{"id": "1", "question": "Is 1,5 > 1?", "answer": "yes"},
                                               {"id": "2", "question": "Two?", "answer": "no; never"}]
    assert ds.mapping == {"question": "instruction", "answer": "output"}
    old = ds.records[0]
    ds.records[0] = Record(dict(old.peek(), answer="oui"), 2, source=old._source)
    save_dataset_file(ds)
    # The edited row is written with the file's separator (quoting only what needs it there).
    assert path.read_text(encoding="utf-8") == 'id;question;answer\n1;Is 1,5 > 1?;oui\n2;Two?;"no; never"\n'


def test_a_parquet_save_refuses_a_broken_record_instead_of_dropping_it(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b", "c"], "output": ["A", "B", "C"]}), path)
    before = path.read_bytes()
    ds = load_dataset_file(path)
    # What the editor's "Edit as JSON" keeps when the typed text doesn't parse: the record as text.
    assert not ds.records[1].fix('{"instruction": "b2" "output": "B"}')
    with pytest.raises(DataError, match=r"record 2 .*line 1, column 22.*Parquet") as e:
        save_dataset_file(ds)
    assert e.value.hint and "Fix or delete it" in e.value.hint
    assert path.read_bytes() == before  # nothing written: the record is neither dropped nor lost
    assert ds.records[1].broken and ds.records[1].raw == '{"instruction": "b2" "output": "B"}'


@pytest.mark.parametrize("name,text,line,error", [
    ("a.jsonl", '{"instruction": "a", "output": "A"}\n{"instruction": "b", "output": "B"\n', 2,
     "line {}, column 35: Expecting ',' delimiter"),
    ("a.csv", 'instruction,output\na,A\n"b" x,B\n', 3,
     "line {}, column 4: text follows a quoted field's closing quote"),
])
def test_a_broken_records_error_names_the_line_it_is_on_after_a_save_moved_it(tmp_path, name, text, line, error):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    ds = load_dataset_file(path)
    assert ds.records[1].error.startswith(error.format(line))
    ds.records.insert(0, ds.new_record({"instruction": "new", "output": "N"}))
    save_dataset_file(ds)
    moved = ds.records[2]
    assert moved.broken and moved.line == line + 1
    assert moved.error.startswith(error.format(line + 1))  # what reopening the file says
    assert load_dataset_file(path).records[2].error == moved.error
    assert [(e.line, e.column) for e in ds.errors] == [(line + 1, moved.column)]


_ARRAY = ('[\n  {"instruction": "a", "output": "A"},\n  {"instruction": "b", "output": "B"},\n'
          '  {"instruction": "c",\n   "output": "C" "x"},\n  {"instruction": "d", "output": "D"}\n]\n')


@pytest.mark.parametrize("change,shift", [
    (lambda ds: ds.records.insert(0, ds.new_record({"instruction": "new", "output": "N"})), 4),
    (lambda ds: ds.records.pop(0), -1),
    (lambda ds: ds.records.__setitem__(1, ds.new_record({"instruction": "b", "output": "B", "id": 2})), 4),
    (lambda ds: ds.records.insert(0, ds.new_record({"instruction": "x", "output": "X"})) or ds.records.pop(1), 3),
], ids=["inserted-above", "deleted-above", "lines-changed-above", "replaced-above"])
def test_a_broken_json_array_elements_error_names_where_it_is_after_a_save_moved_it(tmp_path, change, shift):
    """Its error (line and column in the whole file) is what reopening the saved file says: a new
    record above is written over several lines (the file's indent), so the element moves by those."""
    path = tmp_path / "a.json"
    path.write_text(_ARRAY, encoding="utf-8")
    ds = load_dataset_file(path)
    broken = next(r for r in ds.records if r.broken)
    assert (broken.line, broken.error) == (4, "line 5, column 18: Expecting ',' delimiter")
    change(ds)
    save_dataset_file(ds)
    assert broken.broken and broken.line == 4 + shift
    assert broken.error == f"line {5 + shift}, column 18: Expecting ',' delimiter"
    reopened = next(r for r in load_dataset_file(path).records if r.broken)
    assert (broken.line, broken.error, broken.column, broken.start_column) == (
        reopened.line, reopened.error, reopened.column, reopened.start_column)
    assert [(e.line, e.column) for e in ds.errors] == [(5 + shift, 18)]


@pytest.mark.parametrize("text", [
    '[\n  {"instruction": "a", "output": "A"},\n  {"instruction": "c" "output": "C"}\n]\n',
    '[\n    {"instruction": "a", "output": "A"},\n    {"instruction": "c" "output": "C"}\n]\n',
    '[\n\t{"instruction": "a", "output": "A"},\n\t{"instruction": "c" "output": "C"}\n]\n',
    '[{"instruction": "a", "output": "A"}, {"instruction": "c" "output": "C"}]\n',
], ids=["indent-2", "indent-4", "tab", "compact"])
def test_a_broken_json_array_element_knows_the_column_its_text_starts_at(tmp_path, text):
    """Its error's column is the file's, counted from the line's start, and its raw text starts at
    its '{': ``start_column`` tells the two apart, as read and after a save moved the element along
    its line (the record before it, on the same line in a compact file, deleted)."""
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    ds = load_dataset_file(path)
    broken = ds.records[1]
    line_text = text.split("\n")[broken.line - 1]
    assert broken.start_column == line_text.index('{"instruction": "c"') + 1
    assert broken.error.startswith(f"line {broken.line}, column {broken.column}: Expecting ','")
    # The error is on the element's first line: in its text, start_column - 1 to the left.
    assert broken.raw[broken.column - broken.start_column:].startswith('"output"')
    ds.records.pop(0)
    save_dataset_file(ds)
    reopened = load_dataset_file(path).records[0]
    assert (broken.start_column, broken.column, broken.error) == (
        reopened.start_column, reopened.column, reopened.error)
    assert broken.raw[broken.column - broken.start_column:].startswith('"output"')


# ---- Where a file holds a conversation's system prompt


@pytest.mark.parametrize(("fmt", "rows", "in_turns"), [
    ("sharegpt", [{"conversations": [{"from": "human", "value": "Hi"}]},
                  {"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"}]}], True),
    ("sharegpt", [{"conversations": [], "system": "Be kind."},
                  {"conversations": [{"from": "system", "value": "Be kind."}]}], False),  # the first one decides
    ("sharegpt", [{"conversations": [{"from": "human", "value": "Hi"}]}], False),
    ("messages", [{"messages": [{"role": "user", "content": "Hi"}]}], True),
    ("messages", [{"messages": [{"role": "user", "content": "Hi"}], "system": "Be kind."}], False),
])
def test_a_system_prompt_is_held_where_the_file_holds_them(fmt, rows, in_turns):
    from engine.data.records import system_in_turns

    records = [Record(None, raw="{oops", error="line 1, column 2: Expecting property name"),
               *(Record(r) for r in rows)]
    assert system_in_turns(fmt, records) is in_turns


# ---- Brackets nested too deep and integers too long

DEEP = "[" * 5000 + "]" * 5000  # deeper than Python's parser recurses: a RecursionError, not a JSON error
LONG_INT = "9" * 5000  # more digits than int() reads (sys.get_int_max_str_digits): a bare ValueError
# json.loads takes it, but the string is not text: hashing, tokenizing or saving it raised UnicodeEncodeError.
HALF_EMOJI = ("'\\ud83d' is half of a surrogate pair (how JSON escapes a character such as an emoji) without its "
              "other half: not text")


@pytest.mark.parametrize("name,text,line,column,error", [
    ("deep.jsonl", '{"instruction": "a", "output": "A"}\n{"instruction": "b", "x": ' + DEEP + "}\n", 2, 126,
     "nested more than 100 levels deep (brackets inside brackets), too deep to read"),
    ("deep.json", '[{"instruction": "a", "output": "A"},\n {"instruction": "b", "x": ' + DEEP + "}]", 2, 127,
     "nested more than 100 levels deep (brackets inside brackets), too deep to read"),
    ("long.jsonl", '{"instruction": "a", "output": "A"}\n{"instruction": "b", "n": ' + LONG_INT + "}\n", 2, 27,
     "a number with 5000 digits, more than the 4300 a JSON reader takes; write it as a string"),
    ("long.json", '[{"instruction": "a", "output": "A"},\n {"instruction": "b", "n": ' + LONG_INT + "}]", 2, 28,
     "a number with 5000 digits, more than the 4300 a JSON reader takes; write it as a string"),
    ("half.jsonl", '{"instruction": "a", "output": "A"}\n{"instruction": "b \\ud83d\\ude00", "output": "\\ud83d!"}\n',
     2, 46, HALF_EMOJI),
    ("half.json", '[{"instruction": "a", "output": "A"},\n {"instruction": "b\\\\ud83d", "output": "\\ude00"}]', 2, 41,
     HALF_EMOJI.replace("ud83d", "ude00")),
])
def test_json_python_cannot_parse_is_a_broken_record_with_its_place(tmp_path, name, text, line, column, error):
    """Too-deep brackets and too-long integers are JSON Python's parser refuses with a RecursionError
    or a bare ValueError, neither saying where; half an escaped surrogate pair it takes, but it is no text.
    Each is a broken record at the bracket, number or escape, the others loaded (an escaped backslash
    before "u", or a whole pair, is text)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    ds = load_dataset_file(path)
    assert ds.records[0].data["output"] == "A"
    bad = ds.records[1]
    assert bad.broken and (bad.line, bad.column) == (line, column)
    assert bad.error == f"line {line}, column {column}: {error}"
    assert [(e.line, e.column) for e in ds.errors] == [(line, column)]
    assert not bad.fix(bad.raw) and error in bad.error  # retyped in the editor: the same words


@pytest.mark.parametrize("cell", [DEEP, f"[[{LONG_INT}, 1]]"])
def test_a_csv_json_cell_python_cannot_parse_is_kept_as_text(tmp_path, cell):
    path = tmp_path / "h.csv"
    path.write_text(f'instruction,output,history\na,b,"{cell}"\n', encoding="utf-8")
    ds = load_dataset_file(path)
    assert ds.records[0].data["history"] == cell
    with pytest.raises(DataError, match="'history' is a string, expected a list"):
        ds.records[0].messages()


@pytest.mark.parametrize("text,first_error", [
    ('# exported 2024-05-01\n{"instruction": "a", "output": "b"}\n',
     "line 1, column 1: a comment line: JSON Lines has no comments"),
    ('{"instruction": "a", "output": "b"}\n  // the next batch\n', "line 2, column 3: a comment line: JSON Lines has no comments"),
])
def test_a_comment_in_jsonl_is_said_as_such(tmp_path, text, first_error):
    """The parser's own words ("Expecting property name enclosed in double quotes", "Expecting value")
    named neither; a save's re-check of the broken record says the same."""
    path = tmp_path / "pretty.jsonl"
    path.write_bytes(text.encode())
    ds = load_dataset_file(path)
    assert [r.error for r in ds.records if r.broken][0] == first_error
    save_dataset_file(ds)
    assert path.read_bytes() == text.encode()
    assert [r.error for r in ds.records if r.broken][0] == first_error


def test_a_jsonl_line_cut_short_or_missing_its_brace_is_not_called_a_spread_object(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "c", \n{"instruction": "e", "output": "f"}\n')
    assert load_dataset_file(path).records[1].error == "line 2, column 22: Expecting property name enclosed in double quotes"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "c", ')
    ds = load_dataset_file(path)
    assert ds.records[1].error == "line 2, column 22: Expecting property name enclosed in double quotes"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"\n')
    assert load_dataset_file(path).records[1].error == "line 2, column 35: Expecting ',' delimiter"


@pytest.mark.parametrize("header,names", [
    ("Instruction,Input,Output", ("Instruction", "Input", "Output")),
    (" instruction , input ,OUTPUT ", (" instruction ", " input ", "OUTPUT ")),
    ("Prompt,Response", ("Prompt", None, "Response")),
])
def test_a_csv_header_in_another_case_or_padded_reads_and_is_written_back_as_it_was(tmp_path, header, names):
    """Spreadsheet users write Instruction/Output, or pad cells with spaces; both were 'can't tell the
    record format'. The names read case- and space-insensitively, and a save keeps the header."""
    path = tmp_path / "sheet.csv"
    rows = ["What is 2+2?,,4", "Say hi,,hi"] if names[1] else ["What is 2+2?,4", "Say hi,hi"]
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    ds = load_dataset_file(path)
    assert ds.format == "alpaca" and not ds.broken_indices()
    assert [(m["role"], m["content"]) for m in ds.records[0].messages(ds.schema)] == [
        ("user", "What is 2+2?"), ("assistant", "4")]
    old = ds.records[1]
    ds.records[1] = Record(dict(old.peek(), **{names[2]: "hello"}), 3, source=old._source)
    save_dataset_file(ds)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == header
    assert lines[2].endswith(",hello")
    assert load_dataset_file(path).records[1].messages(ds.schema)[-1]["content"] == "hello"


@pytest.mark.parametrize("name,text,said,hint", [
    ("odd.csv", "Frage, Antwort\nWer?,Ich\n", "the header has the columns 'Frage', ' Antwort'; expected instruction "
     "and output (Alpaca; input and system optional), conversations (ShareGPT) or messages, or "
     "prompt/question/query with completion/response/answer (any case, spaces around a name ignored)", "mapping"),
    ("commas.tsv", "instruction,output\nhi,there\n", "the header has the columns 'instruction,output'; expected",
     "Rename it to .csv: a .tsv file is read tab-separated."),
])
def test_a_csv_header_that_names_no_format_is_listed_as_found(tmp_path, name, text, said, hint):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_dataset_file(path)
    assert f"{path}:1: can't tell the record format: {said}" in err.value.message
    assert hint in err.value.hint
    if name.endswith(".tsv"):
        assert err.value.message.endswith("; the header has no tab but has commas: this .tsv file is comma-separated")


# ---- JSON Lines written over several lines, or with lone-CR line endings


PRETTY_RECORD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "id": 2}


def _pretty_file(path: Path, newline: str = "\n") -> list[dict]:
    """A JSONL file with ``json.dumps(obj, indent=2)`` pasted in as its second record (lines 2-14)."""
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "id": 1},
            PRETTY_RECORD,
            {"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}], "id": 3}]
    text = json.dumps(rows[0]) + "\n" + json.dumps(rows[1], indent=2) + "\n" + json.dumps(rows[2]) + "\n"
    path.write_bytes(text.replace("\n", newline).encode())
    return rows


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_pretty_printed_record_in_jsonl_is_read_as_one_record_and_a_save_writes_it_on_one_line(tmp_path, newline):
    """Its first line was said to start a spread object and each of the next 12 lines was a broken record of its
    own; the record is now read from its '{' to its '}', one warning names its lines, and a save (as ``data
    convert``) writes it as JSON Lines, the other records as they were."""
    from engine.data.lint import lint

    path = tmp_path / "pasted.jsonl"
    rows = _pretty_file(path, newline)
    before = path.read_bytes().split(newline.encode())
    ds = load_dataset_file(path)
    assert [r.peek() for r in ds.records] == rows and not ds.broken_indices() and not ds.errors
    assert [r.line for r in ds.records] == [1, 2, 15]
    assert ds.newline == newline
    found = [(f.rule, f.line, f.message.split(":")[0]) for f in lint(ds).findings if f.severity != "info"]
    assert found == [("multi-line-record", 2, "lines 2–14")]
    save_dataset_file(ds)
    after = path.read_bytes()
    assert after.split(newline.encode()) == [before[0], json.dumps(PRETTY_RECORD).encode(), before[-2], b""]
    assert [r.line for r in ds.records] == [1, 2, 3]
    assert not [f for f in lint(ds).findings if f.rule == "multi-line-record"]  # the checks say what the file holds
    again = load_dataset_file(path)
    assert [r.peek() for r in again.records] == rows and not [f for f in lint(again).findings
                                                               if f.rule == "multi-line-record"]


def test_a_broken_pretty_printed_record_is_one_broken_record_over_its_lines(tmp_path):
    path = tmp_path / "pasted.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n'
                     b'{\n  "instruction": "c",\n  "output": "d"\n  "x": 1\n}\n'  # lines 2-6: a comma missing
                     b'{"instruction": "e", "output": "f"}\n'
                     b'{\n  "instruction": "g",\n  "output": "h",\n\n'  # lines 8-10: never closed
                     b'{"instruction": "i", "output": "j"}\n')
    ds = load_dataset_file(path)
    assert [(r.line, r.broken) for r in ds.records] == [(1, False), (2, True), (7, False), (8, True), (12, False)]
    assert ds.records[1].error == ("line 5, column 3: Expecting ',' delimiter (in the record written over lines 2–6: "
                                   "JSON Lines holds one record per line, not pretty-printed JSON)")
    assert ds.records[3].error == ("line 10, column 17: the record's '{' on line 8 is never closed: '}' is missing (in "
                                   "the record written over lines 8–10: JSON Lines holds one record per line, not "
                                   "pretty-printed JSON)")
    assert [(e.line, e.column) for e in ds.errors] == [(5, 3), (10, 17)]
    before = path.read_bytes()
    save_dataset_file(ds)  # kept as it was, said the same
    assert path.read_bytes() == before and ds.records[3].error.startswith("line 10, column 17: ")


def test_a_jsonl_file_with_lone_cr_line_endings_is_read_and_saved_with_them(tmp_path):
    """Lines that end in a CR alone (classic Mac OS) were one JSONL line, the whole file one broken record; they
    are lines, counted as such in a message, and a save keeps the CR as it keeps a CRLF."""
    path = tmp_path / "mac.jsonl"
    text = '{"instruction": "a", "output": "b"}\r{"instruction": "c", "output": "d"}\r\r{"instruction": "e", bad}\r'
    path.write_bytes(text.encode())
    ds = load_dataset_file(path)
    assert [r.line for r in ds.records] == [1, 2, 4] and ds.newline == "\r"
    assert ds.detected == "Alpaca JSONL, 3 records (1 broken), UTF-8, CR"
    assert ds.records[2].error == "line 4, column 22: Expecting property name enclosed in double quotes"
    assert (ds.errors[0].line, ds.errors[0].column) == (4, 22)
    save_dataset_file(ds)
    assert path.read_bytes() == text.encode()
    ds.records[1].data["output"] = "D"
    ds.records.append(ds.new_record({"instruction": "f", "input": "", "output": "g"}))
    save_dataset_file(ds)
    assert path.read_bytes() == (text.replace('"d"', '"D"') + '{"instruction": "f", "input": "", "output": "g"}\r').encode()
    assert [r.line for r in ds.records] == [1, 2, 4, 5]
    again = load_dataset_file(path)
    assert [r.peek() for r in again.records] == [r.peek() for r in ds.records] and again.newline == "\r"


def test_a_cr_between_a_records_tokens_is_whitespace_not_a_line_end(tmp_path):
    path = tmp_path / "cr.jsonl"
    path.write_bytes(b'{"instruction": "a",\r "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    ds = load_dataset_file(path)
    assert [r.peek()["output"] for r in ds.records] == ["b", "d"] and [r.line for r in ds.records] == [1, 2]


APPENDED = '[\n  {"instruction": "a", "output": "b"}\n]\n{"instruction": "appended", "output": "late"}\n'
CUT_SHORT = '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": "d"},\n'


@pytest.mark.parametrize("text,edit,ends", [
    (APPENDED, "edit", '\n]\n{"instruction": "appended", "output": "late"}\n'),
    (APPENDED, "delete all", '\n]\n{"instruction": "appended", "output": "late"}\n'),
    (CUT_SHORT, "edit", '"output": "d"},\n'),
], ids=["text-after-edit", "text-after-delete-all", "cut-short-edit"])
def test_a_save_keeps_a_json_arrays_unread_text_and_its_file_structure_error(tmp_path, text, edit, ends):
    """A save wrote the text after ']' (or the comma of a file cut short) back, but cleared the error, so the
    checks said the file was fine; and with every record deleted it wrote '[]', dropping that text unsaid."""
    from engine.data.lint import lint

    def said(ds: DatasetFile) -> list[str]:  # without the place: a save moves it
        return [f.message.split(": ", 1)[1] for f in lint(ds).findings if f.rule == "file-structure"]

    path = tmp_path / "cut.json"
    path.write_text(text, encoding="utf-8")
    ds = load_dataset_file(path)
    before = said(ds)
    assert len(before) == 1
    if edit == "edit":
        ds.records[0].data["output"] = "B"
    else:
        ds.records.clear()
    save_dataset_file(ds)
    assert path.read_text(encoding="utf-8").endswith(ends)
    assert said(ds) == before
    assert [f.message for f in lint(load_dataset_file(path)).findings if f.rule == "file-structure"] == \
        [f.message for f in lint(ds).findings if f.rule == "file-structure"]


def test_a_pretty_printed_record_left_unclosed_ends_where_the_next_record_starts(tmp_path):
    path = tmp_path / "pasted.jsonl"
    path.write_bytes(b'{\n  "instruction": "a",\n  "output": "b"\n{"instruction": "c", bad}\n{\n  "instruction": "d",\n'
                     b'  "output": "e"\n}\n')
    ds = load_dataset_file(path)
    assert [(r.line, r.broken) for r in ds.records] == [(1, True), (4, True), (5, False)]
    assert ds.records[0].error.startswith("line 3, column 16: the record's '{' on line 1 is never closed")
    assert ds.records[1].error == "line 4, column 22: Expecting property name enclosed in double quotes"
