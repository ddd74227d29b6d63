"""Never lose an edit: save, dirty marker, autosave and recovery, close warning, disk changes."""

from __future__ import annotations

import json
import time

import pytest
from PySide6.QtCore import SIGNAL, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox, QStackedWidget, QWidget

from engine.data import load_dataset_file
from engine.errors import DataError
from gui.dataset import recovery
from gui.dataset.table_model import with_data


def records_data(ed) -> list[dict]:
    return [dict(r.peek()) for r in ed.dataset().records]


def _edit_output(ed, index: int, text: str) -> None:
    ed.proxy.setData(ed.proxy.index(ed.model.row_of_index(index), ed.model.column_of("output")), text,
                     Qt.ItemDataRole.EditRole)


def test_save_writes_a_file_that_reloads_equal(make_editor, demo_copy, qtbot):
    original_lines = demo_copy.read_bytes().splitlines(keepends=True)
    ed = make_editor(demo_copy)
    _edit_output(ed, 3, "Edited answer.\nWith a second line.")
    ed.select_record(0)
    ed.act_add.trigger()
    ed.form.field_edit("instruction").setPlainText("A new instruction")
    ed.form.field_edit("output").setPlainText("A new answer")
    ed.form.flush()
    ed._select_indices([10])
    ed.act_delete.trigger()
    with qtbot.waitSignal(ed.sig_title_changed, check_params_cb=lambda t: not t.endswith("*")):
        assert ed.save()
    assert not ed.is_dirty()
    again = load_dataset_file(demo_copy)
    assert [r.peek() for r in again.records] == records_data(ed)
    assert again.records[4].peek()["output"] == "Edited answer.\nWith a second line."
    # Untouched records are written back byte for byte.
    new_lines = demo_copy.read_bytes().splitlines(keepends=True)
    assert new_lines[0] == original_lines[0] and new_lines[-1] == original_lines[-1]


def test_save_failure_is_reported_not_raised(make_editor, small_dataset, tmp_path):
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "x")
    ed.dataset().path = tmp_path / "no-such-dir" / "file.jsonl"
    (tmp_path / "no-such-dir").write_text("a file where a folder should be")
    assert not ed.save()
    assert ed.banner.isVisibleTo(ed) and "Not saved" in ed.banner.label.text()
    assert ed.is_dirty()


def test_dirty_marker_in_title(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    assert ed.title() == "Dataset — small.jsonl"
    with qtbot.waitSignal(ed.sig_title_changed, check_params_cb=lambda t: t == "Dataset — small.jsonl*"):
        _edit_output(ed, 0, "changed")
    with qtbot.waitSignal(ed.sig_title_changed, check_params_cb=lambda t: t == "Dataset — small.jsonl"):
        ed.act_undo.trigger()


def test_autosave_writes_a_recovery_file_and_check_recovery_restores_it(make_editor, demo_copy, qtbot,
                                                                        monkeypatch):
    ed = make_editor(demo_copy)
    _edit_output(ed, 2, "recovered answer")
    ed.select_record(0)
    ed.act_delete.trigger()
    expected = records_data(ed)
    ed.autosaver.settle.setInterval(50)
    with qtbot.waitSignal(ed.autosaver.sig_autosaved, timeout=5000) as sig:
        pass
    path = recovery.recovery_path(demo_copy)
    assert sig.args == [str(path)] and path.exists()
    head = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert head["source"] == str(demo_copy.resolve()) and head["edited"] == 1
    # "Crash": the editor goes away without saving; the file on disk is unchanged.
    ed.autosaver.stop()

    fresh = make_editor(demo_copy)
    asked = []
    monkeypatch.setattr(fresh, "_ask_restore",
                        lambda info: asked.append(info) or QMessageBox.StandardButton.Yes)
    assert fresh.check_recovery()
    assert asked[0].source == demo_copy.resolve()
    assert records_data(fresh) == expected
    assert fresh.is_dirty() and fresh.title().endswith("*")
    assert fresh.save()
    assert [r.peek() for r in load_dataset_file(demo_copy).records] == expected
    assert not path.exists()  # saved: the recovery copy is gone


def test_recovery_refuses_references_to_a_changed_file(tmp_path, small_dataset, monkeypatch):
    monkeypatch.setattr(recovery, "FULL_COPY_BYTES", 0)  # references only, as for a big file
    ds = load_dataset_file(small_dataset)
    recs = list(ds.records)
    recovery.write_recovery(small_dataset, ds.format, ds.container, recs[1:], tuple(recs))
    small_dataset.write_text(small_dataset.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    with pytest.raises(DataError, match="changed or gone"):
        recovery.restore(recovery.recovery_path(small_dataset))


def test_restoring_a_file_that_is_not_a_recovery_says_so(small_dataset):
    with pytest.raises(DataError, match="not a recovery file") as e:
        recovery.restore(small_dataset)  # a dataset's first line is JSON, but no recovery header
    assert e.value.path == str(small_dataset)


def test_a_big_files_recovery_refers_to_unchanged_records_and_restores_them(tmp_path, small_dataset, monkeypatch):
    """The reference lines, formatted without json.dumps, are JSON that the restore reads back."""
    monkeypatch.setattr(recovery, "FULL_COPY_BYTES", 0)  # references only, as for a big file
    ds = load_dataset_file(small_dataset)
    recs = list(ds.records)
    recs[3] = with_data(recs[3], {**recs[3].peek(), "output": "edited"})
    recs.insert(0, recs.pop(10))
    recovery.write_recovery(small_dataset, ds.format, ds.container, recs, tuple(ds.records))
    lines = recovery.recovery_path(small_dataset).read_text(encoding="utf-8").splitlines()
    assert lines[1] == json.dumps({"k": 10}) and lines[2] == json.dumps({"k": 0})
    restored, _baseline, changed, _info = recovery.restore(recovery.recovery_path(small_dataset))
    assert [r.peek() for r in restored.records] == [r.peek() for r in recs] and not changed


def test_discarding_the_recovery(make_editor, small_dataset, monkeypatch):
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "x")
    ed.autosaver.save_now(wait=True)
    assert recovery.list_recoveries()
    monkeypatch.setattr(ed, "_ask_restore", lambda info: QMessageBox.StandardButton.Discard)
    assert not ed.check_recovery()
    assert not recovery.list_recoveries()


def test_maybe_close_asks_when_dirty(make_editor, small_dataset, monkeypatch):
    ed = make_editor(small_dataset)
    assert ed.maybe_close()  # clean: no question
    _edit_output(ed, 0, "unsaved")
    answers = []

    def ask(answer):
        def _ask():
            answers.append(answer)
            return answer
        return _ask

    monkeypatch.setattr(ed, "_ask_save_changes", ask(QMessageBox.StandardButton.Cancel))
    assert not ed.maybe_close() and ed.is_dirty()
    monkeypatch.setattr(ed, "_ask_save_changes", ask(QMessageBox.StandardButton.Save))
    assert ed.maybe_close() and not ed.is_dirty()
    assert load_dataset_file(small_dataset).records[0].peek()["output"] == "unsaved"
    _edit_output(ed, 0, "discard me")
    ed.autosaver.save_now(wait=True)
    monkeypatch.setattr(ed, "_ask_save_changes", ask(QMessageBox.StandardButton.Discard))
    assert ed.maybe_close()
    assert not recovery.list_recoveries()
    assert len(answers) == 3


def test_external_change_is_noticed_and_reload_offered(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    with qtbot.waitSignal(ed.sig_file_changed_on_disk, timeout=5000):
        with open(small_dataset, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"instruction": "added elsewhere", "input": "", "output": "ok"}) + "\n")
    assert ed.banner.isVisibleTo(ed) and "changed on disk" in ed.banner.label.text()
    n = len(ed.dataset().records)
    ed.banner.buttons[0].click()  # Reload
    assert len(ed.dataset().records) == n + 1


def test_own_save_is_not_an_external_change(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "mine")
    with qtbot.assertNotEmitted(ed.sig_file_changed_on_disk, wait=800):  # > the watcher's debounce
        assert ed.save()


def test_a_save_that_fails_in_the_writer_keeps_the_window_and_the_edits(make_editor, tmp_path, monkeypatch):
    """pyarrow's OverflowError for an integer beyond 64 bits: a banner naming the record, not an
    exception through the close button."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b"], "output": ["x", "y"], "id": [1, 2]}), path)
    ed = make_editor(path)
    ed.select_record(1)
    ed.form.json_button.setChecked(True)
    ed.form.raw.setPlainText(json.dumps({"instruction": "b", "output": "y", "id": 18446744073709551615}))
    ed.form.flush()
    assert not ed.save()
    text = ed.banner.label.text()
    assert "Not saved" in text and "record 2" in text and "beyond Parquet's 64-bit integers" in text
    monkeypatch.setattr(ed, "_ask_save_changes", lambda: QMessageBox.StandardButton.Save)
    assert not ed.maybe_close() and ed.is_dirty()
    assert pq.read_table(path).column("id").to_pylist() == [1, 2]


def test_saving_over_a_file_another_program_changed_asks_first(make_editor, small_dataset, qtbot, monkeypatch):
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "mine")
    with qtbot.waitSignal(ed.sig_file_changed_on_disk, timeout=5000):
        with open(small_dataset, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"instruction": "theirs", "input": "", "output": "ok"}) + "\n")
    asked = []
    monkeypatch.setattr(ed, "_ask_overwrite_changed",
                        lambda p: asked.append(p) or QMessageBox.StandardButton.Cancel)
    assert not ed.save()
    assert asked == [small_dataset] and "theirs" in small_dataset.read_text(encoding="utf-8")
    monkeypatch.setattr(ed, "_ask_overwrite_changed", lambda p: QMessageBox.StandardButton.Save)
    assert ed.save()
    assert "theirs" not in small_dataset.read_text(encoding="utf-8") and not ed.banner.isVisibleTo(ed)
    # Keep mine: the user has answered; a later save doesn't ask again.
    with qtbot.waitSignal(ed.sig_file_changed_on_disk, timeout=5000):
        small_dataset.write_text(small_dataset.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    ed.banner.buttons[1].click()  # Keep mine
    _edit_output(ed, 1, "mine too")
    monkeypatch.setattr(ed, "_ask_overwrite_changed", lambda p: pytest.fail("asked again"))
    assert ed.save()


def test_a_read_only_file_is_not_saved_over(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "mine")
    small_dataset.chmod(0o444)
    before = small_dataset.read_bytes()
    assert not ed.save()
    assert f"Not saved: the file is read-only (r--r--r--): {small_dataset}" in ed.banner.label.text()
    assert small_dataset.read_bytes() == before and ed.is_dirty()
    assert ed.banner.buttons[0].text() == "Save as…" and ed.banner.buttons[0].isVisibleTo(ed.banner)


def test_a_full_disk_is_reported_with_the_file(make_editor, small_dataset, monkeypatch):
    import errno

    from gui.dataset import editor as editor_module

    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "mine")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(editor_module, "save_dataset_file", full)
    assert not ed.save() and ed.is_dirty()
    assert f"Not saved: No space left on device: {small_dataset}" in ed.banner.label.text()


def test_undoing_back_to_the_saved_file_drops_the_recovery_copy(make_editor, small_dataset, qtbot):
    """Else a crash later offers to 'restore' an edit the user had undone."""
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "temporary")
    assert ed.autosaver.save_now(wait=True)
    path = recovery.recovery_path(small_dataset)
    assert path.exists()
    ed.act_undo.trigger()
    assert not ed.is_dirty() and not path.exists()
    ed.act_redo.trigger()  # dirty again: the next autosave writes it again
    assert ed.autosaver.save_now(wait=True) and path.exists()


def test_save_as_drops_the_recovery_copy_of_the_file_it_leaves(make_editor, small_dataset, tmp_path):
    """The edits are in the new file now: a later start must not offer to 'restore' them into the
    old one (seen for real: the demo saved as a copy, then 'Restore unsaved edits?' at the next start)."""
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "mine")
    assert ed.autosaver.save_now(wait=True)  # the autosave's timer fired before Save as
    assert recovery.recovery_path(small_dataset).exists()
    copy = tmp_path / "copy.jsonl"
    assert ed.save_as(copy)
    assert ed.path() == copy and not ed.is_dirty()
    assert not recovery.list_recoveries()


def test_a_save_clears_the_autosaved_note(make_editor, small_dataset, qtbot):
    """Seen for real: 'Autosaved 10:09:16' stayed after Ctrl+S, its tooltip naming a recovery file
    the save had deleted."""
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "mine")
    with qtbot.waitSignal(ed.autosaver.sig_autosaved):
        assert ed.autosaver.save_now()
    assert ed.autosave_label.text().startswith("Autosaved ") and "until you save" in ed.autosave_label.toolTip()
    assert ed.save()
    assert ed.autosave_label.text() == "" and ed.autosave_label.toolTip() == ""


def test_a_parquet_file_with_dates_and_bytes_is_autosaved_and_restored_with_its_types(make_editor, tmp_path):
    import datetime
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "typed.parquet"
    values = {"ts": datetime.datetime(2024, 1, 2, 3, 4, 5, 6), "day": datetime.date(2024, 1, 2),
              "at": datetime.time(7, 8), "took": datetime.timedelta(days=1, seconds=2, microseconds=3),
              "price": decimal.Decimal("1.25"), "blob": b"\x00\xff"}
    pq.write_table(pa.table({"instruction": ["a"], "output": ["x"], **{k: [v] for k, v in values.items()}}), path)
    ed = make_editor(path)
    _edit_output(ed, 0, "edited")
    ed.autosaver.save_now(wait=True)  # a datetime is not JSON: this write failed, and the edit was lost
    ds, _baseline, changed, _info = recovery.restore(recovery.recovery_path(path))
    assert not changed  # the file is as the autosave found it
    assert ds.records[0].peek() == {"instruction": "a", "output": "edited", **values}


def test_restoring_edits_to_a_file_changed_since_warns_and_save_asks(make_editor, small_dataset, tmp_path,
                                                                      monkeypatch):
    ed = make_editor(small_dataset)
    _edit_output(ed, 2, "mine")
    ed.autosaver.save_now(wait=True)
    saved = recovery.recovery_path(small_dataset)
    ed.shutdown()  # the crash
    theirs = small_dataset.read_text(encoding="utf-8").replace('"output": "', '"output": "theirs ', 1)
    small_dataset.write_text(theirs + json.dumps({"instruction": "added", "output": "by them"}) + "\n",
                             encoding="utf-8")
    fresh = make_editor(small_dataset)
    assert fresh.restore_recovery(saved)
    assert fresh.dataset().records[2].peek()["output"] == "mine"
    text = fresh.banner.label.text()
    assert "changed on disk after that" in text and "Save as…" in [b.text() for b in fresh.banner.buttons]
    asked = []
    monkeypatch.setattr(fresh, "_ask_overwrite_changed", lambda p: asked.append(p) or QMessageBox.StandardButton.Cancel)
    assert not fresh.save() and asked == [small_dataset]
    assert "by them" in small_dataset.read_text(encoding="utf-8")


def test_reloading_a_file_changed_on_disk_drops_the_recovery_copy(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "mine")
    ed.autosaver.save_now(wait=True)
    assert recovery.recovery_path(small_dataset).exists()
    with qtbot.waitSignal(ed.sig_file_changed_on_disk, timeout=5000):
        with open(small_dataset, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"instruction": "theirs", "input": "", "output": "ok"}) + "\n")
    ed.banner.buttons[0].click()  # Reload: "discards your unsaved edits"
    assert ed.dataset().records[-1].peek()["instruction"] == "theirs" and not ed.is_dirty()
    assert not recovery.recovery_path(small_dataset).exists()  # else the next start offers them back


def test_a_file_with_its_own_column_names_is_restored_read_through_them(make_editor, tmp_path):
    path = tmp_path / "aliased.csv"
    path.write_text("prompt,response\n" + "".join(f"q{i},a{i}\n" for i in range(4)), encoding="utf-8")
    ed = make_editor(path)
    assert ed.dataset().mapping == {"prompt": "instruction", "response": "output"}
    ed.proxy.setData(ed.proxy.index(1, ed.model.column_of("output")), "edited", Qt.ItemDataRole.EditRole)
    ed.autosaver.save_now(wait=True)
    ds, _baseline, changed, _info = recovery.restore(recovery.recovery_path(path))
    assert not changed
    assert ds.mapping == {"prompt": "instruction", "response": "output"}
    assert [r.peek() for r in ds.records][1] == {"prompt": "q1", "response": "edited"}
    ed.restore_recovery(recovery.recovery_path(path))
    assert ed.save()
    assert path.read_text(encoding="utf-8").splitlines()[:3] == ["prompt,response", "q0,a0", "q1,edited"]


def _recovery_of_process(monkeypatch, pid: int, source, records, baseline):
    """A recovery file as the window of process ``pid`` wrote it."""
    with monkeypatch.context() as m:
        m.setattr(recovery.os, "getpid", lambda: pid)
        ds = load_dataset_file(source)
        return recovery.write_recovery(source, ds.format, ds.container, records, baseline)


def test_a_crashs_recovery_survives_new_edits_and_another_windows_is_not_offered(make_editor, small_dataset,
                                                                                monkeypatch):
    import subprocess
    import sys

    ds = load_dataset_file(small_dataset)
    crashed = [with_data(ds.records[0], dict(ds.records[0].peek(), output="from the crash")), *ds.records[1:]]
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # the window that crashed
    dead = _recovery_of_process(monkeypatch, ended.pid, small_dataset, crashed, tuple(ds.records))
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.01)
        live = _recovery_of_process(monkeypatch, running.pid, small_dataset, crashed, tuple(ds.records))
        ed = make_editor(small_dataset)
        _edit_output(ed, 1, "typed before answering")
        ed.autosaver.save_now(wait=True)
        assert dead.exists() and live.exists()  # this window's autosave has a file of its own
        mine = recovery.recovery_path(small_dataset)
        assert mine.exists() and mine not in (dead, live)
        fresh = make_editor(small_dataset)
        mine.unlink()  # as at a start: only the crash's and the other open window's
        offered = []
        monkeypatch.setattr(fresh, "_ask_restore",
                            lambda info: offered.append(info.path) or QMessageBox.StandardButton.Yes)
        assert fresh.check_recovery()
        assert offered == [dead]  # the newer one belongs to a window still open
        assert fresh.dataset().records[0].peek()["output"] == "from the crash"
        assert not dead.exists() and mine.exists()  # taken over: this window's save deletes it
        assert fresh.save() and not mine.exists() and live.exists()
    finally:
        running.kill()
        running.wait()


def test_editing_a_record_keeps_the_blank_line_after_it(make_editor, tmp_path):
    path = tmp_path / "gaps.jsonl"
    lines = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(3)]
    path.write_text(lines[0] + "\n" + lines[1] + "\n\n" + lines[2] + "\n", encoding="utf-8")
    ed = make_editor(path)
    _edit_output(ed, 1, "edited")
    assert ed.save()
    edited = json.dumps({"instruction": "q1", "output": "edited"})
    assert path.read_text(encoding="utf-8") == lines[0] + "\n" + edited + "\n\n" + lines[2] + "\n"
    ed.act_undo.trigger()
    assert ed.save()
    assert path.read_text(encoding="utf-8") == lines[0] + "\n" + lines[1] + "\n\n" + lines[2] + "\n"


def test_editing_one_cell_of_a_csv_row_keeps_the_others_as_written(make_editor, tmp_path):
    path = tmp_path / "chat.csv"
    row = '"[{""from"":""human"",""value"":""hi""},{""from"":""gpt"",""value"":""yo""}]"'
    path.write_text(f"conversations,lang\n{row},en\n", encoding="utf-8")
    ed = make_editor(path)
    ed.proxy.setData(ed.proxy.index(0, ed.model.column_of("lang")), "fr", Qt.ItemDataRole.EditRole)
    assert ed.save()
    assert path.read_text(encoding="utf-8") == f"conversations,lang\n{row},fr\n"


def test_a_save_cancelled_over_a_changed_file_leaves_a_broken_records_text_as_typed(make_editor, small_dataset,
                                                                                   qtbot, monkeypatch):
    ed = make_editor(small_dataset)
    ed.select_record(0)
    ed.form.json_button.setChecked(True)
    typed = ed.form.raw.toPlainText().replace('",', '"', 1)  # several lines, a comma left out
    ed.form.raw.setPlainText(typed)
    ed.select_record(1)  # kept as a broken record holding the text
    assert ed.dataset().records[0].raw == typed and "\n" in typed
    with qtbot.waitSignal(ed.sig_file_changed_on_disk, timeout=5000):
        with open(small_dataset, "a", encoding="utf-8") as fh:
            fh.write("\n")
    monkeypatch.setattr(ed, "_ask_overwrite_changed", lambda p: QMessageBox.StandardButton.Cancel)
    assert not ed.save()
    assert ed.dataset().records[0].raw == typed  # the one-line form is for the file, written only on save


def test_a_parquet_record_left_as_unparsed_json_is_not_dropped_by_save(make_editor, tmp_path, qtbot):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b", "c"], "output": ["A", "B", "C"]}), path)
    ed = make_editor(path)
    ed.select_record(1)
    ed.form.json_button.setChecked(True)
    ed.form.field_edit("raw").setPlainText('{"instruction": "b edited", "output": "B" "n": 2}')
    ed.select_record(2)  # leaving the record keeps the typing as a broken record
    assert ed.dataset().records[1].broken
    assert not ed.save()
    assert "Not saved" in ed.banner.label.text() and "record 2" in ed.banner.label.text()
    assert ed.is_dirty() and ed.dataset().records[1].raw == '{"instruction": "b edited", "output": "B" "n": 2}'
    assert pq.read_table(path).column("instruction").to_pylist() == ["a", "b", "c"]


# ---- Typing not committed yet survives a crash

def _autosave_as_its_timer_does(ed, qtbot) -> None:
    ed.autosaver.settle.setInterval(50)
    with qtbot.waitSignal(ed.autosaver.sig_autosaved, timeout=5000):
        pass


def _crash_and_restore(make_editor, ed, path, monkeypatch):
    """The window goes without saving or closing (its autosave stops with it, as in a killed
    process); a new one over the same data home is offered the recovery and restores it."""
    ed.autosaver.stop()
    fresh = make_editor(path)
    asked = []
    monkeypatch.setattr(fresh, "_ask_restore", lambda info: asked.append(info) or QMessageBox.StandardButton.Yes)
    assert fresh.check_recovery()
    return fresh, asked[0]


def test_a_restored_broken_record_keeps_its_line_and_names_its_error_in_its_text(make_editor, broken_file, qtbot,
                                                                                  monkeypatch):
    """A broken record restored from the recovery's copy of its text (the file changed since) is not
    the file's text as read: it keeps the line it had, and its error is placed in its text. So is a
    copy of it made before the crash, which has no line."""
    ed = make_editor(broken_file)
    ed.select_record(2)
    assert "Not valid JSON at file line 3, column 67: Expecting ',' delimiter" in ed.form.raw_error.text()
    ed.act_duplicate.trigger()
    _autosave_as_its_timer_does(ed, qtbot)
    with broken_file.open("a", encoding="utf-8") as fh:  # another program adds a record after the autosave
        fh.write(json.dumps({"instruction": "added", "input": "", "output": "later"}) + "\n")

    fresh, _info = _crash_and_restore(make_editor, ed, broken_file, monkeypatch)
    form = fresh.form
    restored, copy = fresh.dataset().records[2:4]
    assert restored.broken and copy.broken and restored.raw == copy.raw
    fresh.select_record(2)
    assert form.title.text() == "Record 3 of 5 · line 3 · broken"
    assert ("Not valid JSON at line 1, column 67 of the text below (the record from file line 3): Expecting ',' "
            "delimiter") in form.raw_error.text()
    assert form.raw.textCursor().position() == len(restored.raw) == 66  # where the missing "}" goes
    fresh.select_record(3)
    assert form.title.text() == "Record 4 of 5 · new, not saved yet · broken"
    assert "Not valid JSON at line 1, column 67 of the text below: Expecting ',' delimiter" in form.raw_error.text()
    with qtbot.waitSignal(fresh.sig_lint_finished, timeout=20000):
        fresh.run_lint()
    assert [(f.index, f.line, f.message) for f in fresh.lint_report().by_rule()["broken-record"]] == [
        (2, 3, "not a valid record: line 1, column 67 of its text: Expecting ',' delimiter"),
        (3, None, "not a valid record: line 1, column 67 of its text: Expecting ',' delimiter")]


def _type(qtbot, box, lines: list[str]) -> str:
    """Type ``lines`` over the box's text, as keys; the text typed."""
    box.setFocus()
    box.selectAll()
    for n, line in enumerate(lines):
        if n:
            qtbot.keyClick(box, Qt.Key.Key_Return)
        qtbot.keyClicks(box, line)
    return "\n".join(lines)


def _steps(ed) -> list[str]:
    return [ed.undo_stack.text(i) for i in range(ed.undo_stack.count())]


@pytest.mark.parametrize(("fmt", "edited_before"), [("alpaca", False), ("messages", True)])
def test_other_fields_json_that_does_not_parse_comes_back_in_its_box_after_a_crash(make_editor, tmp_path, qtbot,
                                                                                  monkeypatch, fmt, edited_before):
    """The box's text is held back from the record until it parses: the autosave keeps it anyway (in a
    file with no other unsaved edit too), and the restore puts it back in the box, as typed."""
    path = tmp_path / "scored.jsonl"
    if fmt == "alpaca":
        rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}", "score": i} for i in range(3)]
    else:
        rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                 "score": i} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ed = make_editor(path)
    if edited_before:
        ed.select_record(2)
        ed.form._extra_json.setPlainText('{"score": 20}')
        ed.form.flush()
        rows[2]["score"] = 20
    before = _steps(ed)
    ed.select_record(1)
    typed = _type(qtbot, ed.form._extra_json, ['{"score": 3,', ' "tags": ["a", "b",'])
    assert ed.form._extra_json.toPlainText() == typed
    _autosave_as_its_timer_does(ed, qtbot)
    assert _steps(ed) == before and ed.is_dirty() is edited_before  # the autosave made no step, changed nothing

    fresh, info = _crash_and_restore(make_editor, ed, path, monkeypatch)
    form = fresh.form
    assert fresh.current_record_index() == 1 and form._extra_json.toPlainText() == typed
    assert form._extra_json_error.isVisibleTo(form) and "not valid JSON yet" in form._extra_json_error.text()
    assert "The JSON you were typing in record 2 is back in the form" in fresh.banner.label.text()
    assert [r.peek() for r in fresh.dataset().records] == rows  # the record keeps its last valid values
    assert info.edited == 1 + edited_before
    assert fresh.is_dirty() and _steps(fresh) == []
    # Typing on where it stopped: the text parses, and is an undo step as it would have been.
    qtbot.keyClicks(form._extra_json, ' "c"]}')
    form.flush()
    assert _steps(fresh) == ["Edit other fields"]
    assert fresh.save()
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[1]) == {**rows[1], "score": 3,
                                                                           "tags": ["a", "b", "c"]}


def test_edit_as_json_text_that_does_not_parse_comes_back_after_a_crash(make_editor, small_dataset, qtbot,
                                                                       monkeypatch):
    ed = make_editor(small_dataset)
    _edit_output(ed, 0, "an edit saved before")
    original = ed.dataset().records[2].peek()
    ed.select_record(2)
    ed.form.json_button.setChecked(True)
    typed = ed.form.raw.toPlainText().replace('",\n', '"\n', 1) + "\n"  # a comma left out, over several lines
    ed.form.raw.setPlainText(typed)
    assert ed.form.raw.toPlainText() == typed
    _autosave_as_its_timer_does(ed, qtbot)
    assert _steps(ed) == ["Edit output"]

    fresh, info = _crash_and_restore(make_editor, ed, small_dataset, monkeypatch)
    form = fresh.form
    assert fresh.current_record_index() == 2 and form.json_button.isChecked() and form.pages.currentIndex() == 3
    assert form.raw.toPlainText() == typed and info.edited == 2
    assert "Not valid JSON yet" in form.raw_error.text()
    records = fresh.dataset().records
    assert records[0].peek()["output"] == "an edit saved before"
    assert not records[2].broken and records[2].peek() == original
    assert _steps(fresh) == []
    fresh.select_record(3)  # leaving it keeps the text, as before the crash
    assert records[2].broken and records[2].raw == typed
    assert _steps(fresh) == ["Keep record as text (its JSON doesn't parse)"]


@pytest.mark.parametrize("edited_before", [False, True])
def test_typing_still_waiting_for_its_pause_is_autosaved(make_editor, small_dataset, qtbot, monkeypatch,
                                                        edited_before):
    """A crash within the pause before typing becomes an undo step: the autosave that runs then has it,
    without making the step itself."""
    ed = make_editor(small_dataset)
    if edited_before:  # an earlier edit already autosaved: only the typing is new since
        _edit_output(ed, 5, "earlier")
        assert ed.autosaver.save_now(wait=True)
    ed.select_record(0)
    typed = _type(qtbot, ed.form.field_edit("instruction"), ["A new instruction,", "on two lines"])
    assert ed.form._timer.isActive()  # not committed yet
    assert ed.autosaver.save_now(wait=True)  # what the autosave's timer does
    assert ed.form._timer.isActive() and _steps(ed) == (["Edit output"] if edited_before else [])
    assert ed.is_dirty() is edited_before

    fresh, _info = _crash_and_restore(make_editor, ed, small_dataset, monkeypatch)
    assert fresh.dataset().records[0].peek()["instruction"] == typed
    assert fresh.form.field_edit("instruction").toPlainText() == typed
    assert fresh.dataset().records[5].peek()["output"] == ("earlier" if edited_before else
                                                          load_dataset_file(small_dataset).records[5].peek()["output"])


def test_typing_autosaved_then_typed_back_leaves_nothing_to_recover(make_editor, tmp_path, qtbot):
    path = tmp_path / "scored.jsonl"
    path.write_text(json.dumps({"instruction": "q", "output": "a", "score": 1}) + "\n", encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(0)
    box = ed.form._extra_json
    shown = box.toPlainText()
    box.setPlainText('{"score": 2,')
    assert ed.autosaver.save_now(wait=True)
    infos = recovery.list_recoveries()
    assert [i.typing for i in infos] == [({"record": 0, "box": "other fields", "text": '{"score": 2,'},)]
    box.setPlainText(shown)  # back to what the record holds
    ed.autosaver.save_now(wait=True)
    assert not recovery.list_recoveries() and not ed.is_dirty()
    # Closed before the autosave came round: nothing is left for the next start to offer.
    box.setPlainText('{"score": 2,')
    assert ed.autosaver.save_now(wait=True) and recovery.list_recoveries()
    box.setPlainText(shown)
    assert ed.maybe_close()  # nothing unsaved: no question
    assert not recovery.list_recoveries()


def test_saving_while_the_other_fields_json_does_not_parse_keeps_it_autosaved(make_editor, tmp_path, qtbot,
                                                                             monkeypatch):
    """Save writes the record without the held-back text, which is still unsaved typing."""
    path = tmp_path / "scored.jsonl"
    path.write_text(json.dumps({"instruction": "q", "output": "a", "score": 1}) + "\n", encoding="utf-8")
    ed = make_editor(path)
    ed.select_record(0)
    ed.form.field_edit("instruction").setPlainText("q edited")
    ed.form._extra_json.setPlainText('{"score": 2,')
    assert ed.save() and not ed.is_dirty()
    assert json.loads(path.read_text(encoding="utf-8"))["instruction"] == "q edited"
    _autosave_as_its_timer_does(ed, qtbot)
    fresh, _info = _crash_and_restore(make_editor, ed, path, monkeypatch)
    assert fresh.form._extra_json.toPlainText() == '{"score": 2,'


def test_typing_for_a_box_the_record_lacks_goes_into_its_json_text(make_editor, small_dataset):
    """A recovery whose typing doesn't match the record (no "other fields" box: all its fields are
    text): the typing is put in the record's JSON text, pending there, not dropped."""
    ds = load_dataset_file(small_dataset)
    recovery.write_recovery(small_dataset, ds.format, ds.container, list(ds.records), tuple(ds.records),
                            typing=[{"record": 3, "box": "other fields", "text": '{"score": 2,'}])
    ed = make_editor(small_dataset)
    assert ed.restore_recovery(recovery.recovery_path(small_dataset))
    form = ed.form
    assert ed.current_record_index() == 3 and form.pages.currentIndex() == 3
    text = form.raw.toPlainText()
    assert text.endswith('"score": 2,\n}') and json.dumps(ds.records[3].peek()["instruction"]) in text
    assert not ed.dataset().records[3].broken and "Not valid JSON yet" in form.raw_error.text()


# ---- A table cell's editor: its typing survives a crash

def _open_cell_editor(ed, index: int, key: str):
    """Open the table's editor on record ``index``'s ``key`` cell, as a double-click does."""
    cell = ed.proxy.index(ed.model.row_of_index(index), ed.model.column_of(key))
    ed.table.setCurrentIndex(cell)
    ed.table.edit(cell)
    opened = ed.cell_delegate.open_editor()
    assert opened is not None and opened[1] == cell
    return opened[0]


@pytest.mark.parametrize("edited_before", [False, True])
def test_typing_in_an_open_cell_editor_is_in_the_record_after_a_crash(make_editor, small_dataset, qtbot,
                                                                      monkeypatch, edited_before):
    """The editor is still open when the window goes: the autosave has its text, in its record as closing
    the editor would have put it, without committing it (no undo step, the file not marked changed by it);
    a restore gives the record that text and goes back to that cell."""
    ed = make_editor(small_dataset)
    if edited_before:
        _edit_output(ed, 5, "earlier")
        assert ed.autosaver.save_now(wait=True)
    before = _steps(ed)
    original = dict(ed.dataset().records[2].peek())
    box = _open_cell_editor(ed, 2, "output")
    qtbot.keyClicks(box, " And a line")
    qtbot.keyClick(box, Qt.Key.Key_Return)
    qtbot.keyClicks(box, "typed in the cell.")
    typed = original["output"] + " And a line\ntyped in the cell."
    assert box.toPlainText() == typed
    _autosave_as_its_timer_does(ed, qtbot)  # the cell editor's typing touched the autosave
    assert ed.cell_delegate.open_editor() is not None  # still typing: nothing committed
    assert _steps(ed) == before and ed.is_dirty() is edited_before
    assert ed.dataset().records[2].peek() == original

    fresh, info = _crash_and_restore(make_editor, ed, small_dataset, monkeypatch)
    assert info.typing == ({"record": 2, "box": "cell", "column": "output", "text": typed},)
    assert info.edited == (2 if edited_before else 1)
    records = fresh.dataset().records
    assert records[2].peek() == {**original, "output": typed}
    assert records[5].peek()["output"] == ("earlier" if edited_before else
                                           load_dataset_file(small_dataset).records[5].peek()["output"])
    assert fresh.current_record_index() == 2
    assert fresh.table.currentIndex().column() == fresh.model.column_of("output")
    assert fresh.form.field_edit("output").toPlainText() == typed
    assert _steps(fresh) == [] and fresh.is_dirty()  # unsaved, as the committed edit would be
    assert "record 3's" in fresh.banner.label.text()
    assert fresh.save()
    assert load_dataset_file(small_dataset).records[2].peek()["output"] == typed


def test_a_number_typed_in_a_cell_editor_is_recovered_as_its_commit_keeps_it(make_editor, tmp_path, qtbot,
                                                                            monkeypatch):
    path = tmp_path / "scored.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}", "score": i}) + "\n"
                            for i in range(3)), encoding="utf-8")
    ed = make_editor(path)
    box = _open_cell_editor(ed, 1, "score")
    box.selectAll()
    qtbot.keyClicks(box, "42")
    _autosave_as_its_timer_does(ed, qtbot)
    fresh, _info = _crash_and_restore(make_editor, ed, path, monkeypatch)
    assert fresh.dataset().records[1].peek() == {"instruction": "q1", "output": "a1", "score": 42}


def test_a_cell_editor_cancelled_after_its_typing_was_autosaved_leaves_nothing_to_recover(make_editor,
                                                                                          small_dataset, qtbot):
    ed = make_editor(small_dataset)
    box = _open_cell_editor(ed, 0, "instruction")
    qtbot.keyClicks(box, " typed")
    assert ed.autosaver.save_now(wait=True) and recovery.list_recoveries()
    qtbot.keyClick(box, Qt.Key.Key_Escape)  # cancelled: the record never had the text
    assert ed.cell_delegate.open_editor() is None and not ed.is_dirty()
    assert ed.autosaver.settle.isActive()  # the editor's closing touched the autosave
    ed.autosaver.save_now(wait=True)  # what the timer does then
    assert not recovery.list_recoveries()


# ---- When the autosave writes: shortly after the typing settles, and at once before the app goes

def test_an_edit_is_autosaved_about_a_second_after_it_not_at_the_next_5_s_tick(make_editor, small_dataset, qtbot):
    ed = make_editor(small_dataset)
    t0 = time.monotonic()
    with qtbot.waitSignal(ed.autosaver.sig_autosaved, timeout=2500):
        _edit_output(ed, 0, "edited")
    assert time.monotonic() - t0 >= recovery.SETTLE_MS / 1000 - 0.05  # after the pause, not at each key


def test_typing_without_a_pause_is_still_autosaved_every_few_seconds(make_editor, small_dataset, qtbot):
    """Each key restarts the pause; the deadline from the first unsaved key still comes."""
    ed = make_editor(small_dataset)
    ed.autosaver.settle.setInterval(200)
    ed.autosaver.deadline.setInterval(600)
    ed.select_record(0)
    box = ed.form.field_edit("instruction")
    box.setFocus()
    written = []
    ed.autosaver.sig_autosaved.connect(written.append)
    # A key every 50 ms for 2 s: never a 200 ms pause.
    keys = []
    typist = QTimer(interval=50)
    typist.timeout.connect(lambda: keys.append(qtbot.keyClick(box, "x")))
    typist.start()
    qtbot.waitUntil(lambda: len(keys) >= 40, timeout=10000)
    typist.stop()
    assert len(written) >= 2  # 2 s of typing with a 600 ms deadline: about 3 writes, none waiting for a pause


@pytest.mark.parametrize("page", ["shown", "another area shown"])
def test_the_window_losing_activation_autosaves_at_once(make_editor, small_dataset, qtbot, page):
    """In the app the editor is a page of the main window's stack, shown or not: the window it is in
    losing the keyboard writes what is unsaved, without waiting for the pause."""
    window, stack = QMainWindow(), QStackedWidget()
    qtbot.addWidget(window)
    window.setCentralWidget(stack)
    ed = make_editor(small_dataset)
    stack.addWidget(QWidget())
    stack.addWidget(ed)
    stack.setCurrentWidget(ed if page == "shown" else stack.widget(0))
    ed.autosaver.settle.setInterval(60_000)  # only the deactivation can write within this test
    ed.autosaver.deadline.setInterval(60_000)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(ed.isActiveWindow)
    _edit_output(ed, 0, "edited")
    other = QWidget()
    qtbot.addWidget(other)
    try:
        with qtbot.waitSignal(ed.autosaver.sig_autosaved, timeout=3000):
            other.show()
            other.activateWindow()  # another window (a dialog, another app) takes the keyboard
        assert recovery.list_recoveries()
    finally:
        ed.setParent(None)  # the fixture shuts it down; the window mustn't delete it first


def test_the_app_quitting_autosaves_and_waits_for_it(make_editor, small_dataset):
    ed = make_editor(small_dataset)
    ed.autosaver.settle.setInterval(60_000)
    ed.autosaver.deadline.setInterval(60_000)
    ed.select_record(0)
    ed.form.field_edit("instruction").setPlainText("typed just before the end")  # waiting for its pause
    QApplication.instance().aboutToQuit.emit()
    # Written before the signal returns: the process ends right after it.
    (info,) = recovery.list_recoveries()
    assert recovery.restore(info.path)[0].records[0].peek()["instruction"] == "typed just before the end"


def test_the_session_ending_autosaves_while_the_window_is_open(make_editor, small_dataset):
    """Logging out asks the app to commit its data (``commitDataRequest``) and may end it right after.
    Its QSessionManager can't be made in a test, so: the editor answers the signal while it is open
    (the same slot as aboutToQuit, tested above), and no longer once shut down."""
    commit = SIGNAL("commitDataRequest(QSessionManager&)")
    app = QApplication.instance()
    before = app.receivers(commit)
    ed = make_editor(small_dataset)
    assert app.receivers(commit) == before + 1
    ed.shutdown()
    assert app.receivers(commit) == before


# ---- Files the editor reads as they are: a record over several lines, lone-CR lines, a JSON array's stray text


def _rules(ed) -> list[tuple[str, int | None]]:
    return [(f.rule, f.index) for f in ed.lint_report().findings if f.severity in ("error", "warning")]


def test_a_pretty_printed_jsonl_record_opens_as_one_record_and_a_save_puts_it_on_one_line(make_editor, tmp_path,
                                                                                           qtbot):
    """``json.dumps(obj, indent=2)`` pasted into a .jsonl opened as four broken rows (of six); it is one record with one
    warning, Save writes JSON Lines (each record on its line), and the Checks then say so."""
    path = tmp_path / "pasted.jsonl"
    rows = [{"instruction": "Say hi", "output": "Hi!"}, {"instruction": "Name a colour", "output": "Blue"},
            {"instruction": "Capital of France?", "output": "Paris"}]
    path.write_text(f"{json.dumps(rows[0])}\n{json.dumps(rows[1], indent=2)}\n{json.dumps(rows[2])}\n", encoding="utf-8")
    ed = make_editor(path)
    assert ed.model.rowCount() == 3 and records_data(ed) == rows
    assert _rules(ed) == [("multi-line-record", 1)]
    said: list[str] = []
    ed.sig_status.connect(said.append)
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        assert ed.save()
    assert path.read_text(encoding="utf-8").splitlines() == [json.dumps(r) for r in rows]
    assert _rules(ed) == [] and [r.line for r in ed.dataset().records] == [1, 2, 3]
    assert said[-1].startswith("Saved 3 records to ")
    again = make_editor(path)
    assert records_data(again) == rows and _rules(again) == []


def test_a_lone_cr_jsonl_file_opens_line_by_line_and_an_edit_keeps_its_line_endings(make_editor, tmp_path, qtbot):
    """A file whose lines end in a CR alone opened as one broken record; its lines are records, and a save
    writes an edited one with a CR, as it does a CRLF file's."""
    path = tmp_path / "mac.jsonl"
    lines = [json.dumps({"instruction": "Say hi", "output": "Hi!"}), '{"instruction": "Count", bad}',
             json.dumps({"instruction": "Name a colour", "output": "Blue"})]
    path.write_bytes("\r".join(lines).encode() + b"\r")
    ed = make_editor(path)
    assert ed.model.rowCount() == 3 and [r.broken for r in ed.dataset().records] == [False, True, False]
    assert ed.dataset().records[1].error == "line 2, column 26: Expecting property name enclosed in double quotes"
    _edit_output(ed, 2, "Green")
    assert ed.save()
    assert path.read_bytes() == "\r".join([*lines[:2], lines[2].replace("Blue", "Green")]).encode() + b"\r"
    again = make_editor(path)
    assert [r.line for r in again.dataset().records] == [1, 2, 3] and records_data(again) == records_data(ed)
    assert again.dataset().newline == "\r"


def test_a_json_arrays_text_after_its_bracket_is_kept_by_a_save_and_still_in_the_checks(make_editor, tmp_path,
                                                                                         qtbot):
    """Save wrote the text after ']' back but cleared its file-structure error, so the Checks said nothing was
    wrong with a file that still had it; with every record deleted, Save wrote '[]' and the text was gone."""
    path = tmp_path / "appended.json"
    stray = '{"instruction": "Appended", "output": "after the list"}\n'
    path.write_text('[\n  {"instruction": "Say hi", "output": "Hi!"}\n]\n' + stray, encoding="utf-8")
    ed = make_editor(path)
    assert _rules(ed) == [("file-structure", None)]
    said: list[str] = []
    ed.sig_status.connect(said.append)
    _edit_output(ed, 0, "Hello!")
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        assert ed.save()
    assert path.read_text(encoding="utf-8").endswith("]\n" + stray)
    assert _rules(ed) == [("file-structure", None)]
    assert said[-1].endswith("; its text outside the records is kept as it was: 1 file-structure error left (Checks)")
    assert ed.banner.label.text().startswith(f"{path}:7:1: text after the list's closing ']'")  # where it now is
    ed.select_record(0)
    ed.act_delete.trigger()
    with qtbot.waitSignal(ed.sig_lint_finished, timeout=20000):
        assert ed.save()
    assert path.read_text(encoding="utf-8").endswith("]\n" + stray)
    assert ("file-structure", None) in _rules(ed)
    assert ("file-structure", None) in _rules(make_editor(path))


def test_a_broken_pretty_printed_jsonl_record_is_one_row_and_a_save_writes_it_on_one_line(make_editor, tmp_path):
    """It opened as a row per line, each broken its own way; it is one broken row, its error where it fails,
    and Save keeps its text on one line (JSON Lines), where reopening finds the same record."""
    path = tmp_path / "pasted.jsonl"
    good = json.dumps({"instruction": "Say hi", "output": "Hi!"})
    path.write_text(f'{good}\n{{\n  "instruction": "Count",\n  "output": "1, 2"\n  "x": 1\n}}\n{good}\n', encoding="utf-8")
    ed = make_editor(path)
    assert [r.broken for r in ed.dataset().records] == [False, True, False]
    assert ed.dataset().records[1].error.startswith("line 5, column 3: Expecting ',' delimiter (in the record written "
                                                    "over lines 2–6")
    assert _rules(ed) == [("broken-record", 1), ("duplicate", 2)]
    assert ed.save()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [good, '{   "instruction": "Count",   "output": "1, 2"   "x": 1 }', good]
    again = make_editor(path)
    assert [r.broken for r in again.dataset().records] == [False, True, False]
    assert again.dataset().records[1].error == ed.dataset().records[1].error == "line 2, column 50: Expecting ',' delimiter"
