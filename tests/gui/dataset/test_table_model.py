"""The table model and its filter proxy, checked by pytest-qt's model tester."""

from __future__ import annotations

from PySide6.QtCore import Qt

from engine.data import load_dataset_file
from gui.dataset.filter_proxy import RecordFilterProxy
from gui.dataset.search import TextQuery
from gui.dataset.table_model import DISPLAY_CHARS, RecordRole, RecordTableModel, cell_text, columns_for


def test_model_passes_qtmodeltester(qtmodeltester, small_dataset):
    model = RecordTableModel()
    model.set_dataset(load_dataset_file(small_dataset))
    qtmodeltester.check(model, force_py=True)
    model.sort(model.column_of("output"), Qt.SortOrder.DescendingOrder)
    qtmodeltester.check(model, force_py=True)


def test_proxy_passes_qtmodeltester(qtmodeltester, small_dataset):
    model = RecordTableModel()
    model.set_dataset(load_dataset_file(small_dataset))
    proxy = RecordFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_filter(TextQuery("the"), None)
    qtmodeltester.check(proxy, force_py=True)


def test_columns_follow_the_format(small_dataset, messages_file):
    alpaca = [c.key for c in columns_for(load_dataset_file(small_dataset))]
    assert alpaca[:4] == ["#status", "instruction", "input", "output"]
    assert "task" in alpaca and "lang" in alpaca  # extra fields get their own columns
    chat = [c.key for c in columns_for(load_dataset_file(messages_file))]
    assert chat[:5] == ["#status", "@system", "@user", "@assistant", "#turns"]
    assert "id" in chat


def test_cells_are_truncated_and_single_line():
    long = "line one\nline two " + "x" * 5000
    shown = cell_text(long)
    assert "\n" not in shown and "⏎" in shown
    assert len(shown) == DISPLAY_CHARS + 1 and shown.endswith("…")


def test_data_roles(small_dataset, messages_file):
    model = RecordTableModel()
    ds = load_dataset_file(small_dataset)
    model.set_dataset(ds)
    idx = model.index(0, model.column_of("output"))
    assert model.data(idx, Qt.ItemDataRole.EditRole) == ds.records[0].peek()["output"]
    assert model.data(idx, RecordRole) is ds.records[0]
    assert model.headerData(0, Qt.Orientation.Vertical) == "1"
    chat = RecordTableModel()
    chat.set_dataset(load_dataset_file(messages_file))
    assert chat.data(chat.index(0, chat.column_of("@assistant"))) == "Hello!"
    assert chat.data(chat.index(0, chat.column_of("@system"))) == "Be brief."
    assert chat.data(chat.index(0, chat.column_of("#turns"))) == "3"
    assert not chat.flags(chat.index(0, chat.column_of("@user"))) & Qt.ItemFlag.ItemIsEditable


def test_sort_is_a_view_order(small_dataset):
    model = RecordTableModel()
    ds = load_dataset_file(small_dataset)
    model.set_dataset(ds)
    before = list(ds.records)
    col = model.column_of("output")
    model.sort(col, Qt.SortOrder.AscendingOrder)
    shown = [model.data(model.index(r, col), Qt.ItemDataRole.EditRole) for r in range(model.rowCount())]
    assert [s.casefold() for s in shown] == sorted(s.casefold() for s in shown)
    assert ds.records == before  # the file order is untouched
    model.sort(-1)
    assert model.record(0) is ds.records[0]


def test_lazy_records_stay_lazy(small_dataset):
    model = RecordTableModel()
    ds = load_dataset_file(small_dataset)
    model.set_dataset(ds)
    for r in range(model.rowCount()):
        for c in range(model.columnCount()):
            model.data(model.index(r, c))
    # Displaying every cell parsed lines through the model's cache, not into the records.
    assert not any(r.materialized for r in ds.records)


def test_the_status_mark_is_the_worst_findings_mark(small_dataset):
    """An error reads ✖ in red, as in the Checks tab; a warning ⚠; only notes ℹ (it read ⚠ in red)."""
    from engine.data.lint import Finding

    model = RecordTableModel()
    ds = load_dataset_file(small_dataset)
    model.set_dataset(ds)
    recs = ds.records

    def finding(i: int, severity: str) -> Finding:
        return Finding(index=i, line=i + 1, rule="r", severity=severity, message="m")

    model.set_findings({id(recs[0]): (recs[0], [finding(0, "warning"), finding(0, "error")]),
                        id(recs[1]): (recs[1], [finding(1, "warning")]),
                        id(recs[2]): (recs[2], [finding(2, "info")])})
    marks = [model.data(model.index(i, 0)) for i in range(4)]
    assert marks == ["✖ 2", "⚠ 1", "ℹ 1", ""]
    red, amber = (model.data(model.index(i, 0), Qt.ItemDataRole.ForegroundRole).color() for i in (0, 1))
    assert red != amber
