"""The Runs area's "Hardest records" tab: a run's records ranked by answer loss.

The audit itself is ``finetune-studio runs audit RUN --json`` in a child process (``QProcess``),
so the GUI process never holds a model; its result is ``record_losses.json`` in the run
folder, which this panel reads (and shows at once for a run audited before). Double-clicking
a record opens it in the Dataset editor.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from engine.audit import (
    OUTLIER_FACTOR,
    Audit,
    audit_weights,
    ratio_text,
    read_audit,
    still_the_audited_record,
)
from engine.errors import StudioError
from engine.runs import RunInfo
from gui.dataset.severity import COLORS
from gui.engine_process import EngineCommandMixin
from gui.scheme import ink, ink_color, tint_color

COLUMNS = ("Loss", "× median", "Base loss", "Fell by", "Record", "Split", "Tokens", "Instruction")
BASE_COLUMNS = ("Base loss", "Fell by")  # shown when the audit compared with the base model
FLAG_BACKGROUND = "#fff3d6"  # a warning's tint, behind text in COLORS["warning"]


class AuditTableModel(QAbstractTableModel):
    """The scored records, hardest first; flagged records tinted."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.audit: Audit | None = None
        self.rows: list[Any] = []
        self.flagged: set[int] = set()
        self.medians: dict[str, float | None] = {}

    def set_audit(self, audit: Audit | None, flagged_only: bool = False) -> None:
        self.beginResetModel()
        self.audit = audit
        self.flagged = {r.record for r in audit.outliers()} if audit else set()
        self.medians = {s: audit.median_of(s) for s in ("train", "eval")} if audit else {}
        rows = audit.records if audit else []
        self.rows = [r for r in rows if r.record in self.flagged] if flagged_only else list(rows)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 - Qt's name
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return {"Loss": "Mean negative log-likelihood of the record's answer tokens under the trained weights",
                    "× median": "The loss over the median loss of the record's split (train or eval)",
                    "Record": "The record's number in the dataset file, from 1, as in the Dataset editor",
                    "Tokens": "Answer tokens scored (the prompt is not scored, as in training)",
                    "Base loss": "The same record's loss under the base model, before training",
                    "Fell by": "How much training lowered the record's loss (≤ 0 on a training record: the run "
                               "learned nothing from it)",
                    }.get(COLUMNS[section])
        return None

    def ratio(self, r: Any) -> float | None:
        m = self.medians.get(r.split)
        return r.loss / m if m else None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return {"Loss": f"{r.loss:.3f}", "× median": ratio_text(self.ratio(r)),
                    "Base loss": f"{r.base_loss:.3f}" if r.base_loss is not None else "–",
                    "Fell by": f"{r.fell:.3f}" if r.fell is not None else "–",
                    "Record": f"#{r.record}", "Split": r.split, "Tokens": str(r.tokens),
                    "Instruction": r.instruction + (" (truncated)" if r.truncated else "")}[col]
        if role == Qt.ItemDataRole.UserRole:  # sort key
            return {"Loss": r.loss, "× median": self.ratio(r) or 0.0, "Base loss": r.base_loss or 0.0,
                    "Fell by": r.fell if r.fell is not None else 0.0, "Record": r.record, "Split": r.split,
                    "Tokens": r.tokens, "Instruction": r.instruction}[col]
        if role == Qt.ItemDataRole.TextAlignmentRole and col != "Instruction" and col != "Split":
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and r.record in self.flagged:
            return tint_color(FLAG_BACKGROUND)
        if role == Qt.ItemDataRole.ForegroundRole and r.record in self.flagged and col == "× median":
            return ink_color(COLORS["warning"], on=tint_color(FLAG_BACKGROUND))
        if role == Qt.ItemDataRole.ForegroundRole and col == "Fell by" and r.split == "train" and \
                r.fell is not None and r.fell <= 0:
            return ink_color(COLORS["error"])
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"Record {r.record}" + (f", line {r.line}" if r.line else "") + f" ({r.split} split)"
            if r.record in self.flagged:
                tip += (f"\n⚠ {OUTLIER_FACTOR:g}× the median loss of its split or more: check its answer for a "
                        "mistake, an inconsistency or another format than its siblings.")
            if r.truncated:
                tip += "\nLonger than the run's seq_len: only its first tokens were scored (and trained)."
            if r.split == "train" and r.fell is not None and r.fell <= 0:
                tip += ("\n✖ No easier than under the base model: the run learned nothing from it, often because "
                        "it contradicts similar records.")
            return tip + "\nDouble-click to open it in the Dataset editor."
        return None


class AuditPanel(EngineCommandMixin, QWidget):
    """Audit a run's records in a child process and show them, hardest first."""

    CLI_COMMAND = "runs audit"
    PROGRESS_UNIT = "records"

    sig_open_record = Signal(str, int, str)
    """(dataset file, record index from 0, its first user turn as audited): show this record
    in the Dataset editor."""
    sig_audited = Signal(str)
    """A run folder whose audit just finished."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.run: RunInfo | None = None
        self.auditing: Path | None = None  # the run folder the running audit scores
        self.model = AuditTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Instruction"), QHeaderView.ResizeMode.Stretch)

        self.audit_button = QPushButton("Audit records")
        self.audit_button.setToolTip("Score every record of this run's dataset with its trained weights, as "
                                     "training saw it, and rank them (runs in a child process: "
                                     "finetune-studio runs audit)")
        self.flagged_only = QCheckBox(f"Only flagged (≥ {OUTLIER_FACTOR:g}× median)")
        self.compare_base = QCheckBox("Compare with the base model")
        self.compare_base.setToolTip("Also score each record with the base model, to see how much training "
                                     "lowered its loss (the audit takes about twice as long)")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)  # every text shown is escaped or built here
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bar = QHBoxLayout()
        bar.addWidget(self.audit_button)
        bar.addWidget(self.compare_base)
        bar.addSpacing(12)
        bar.addWidget(self.flagged_only)
        bar.addWidget(self.progress)
        bar.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        # The selected record, whole, beside the table: read the flagged answers without leaving.
        self.preview = QTextBrowser()
        self.preview.setOpenLinks(False)
        self.preview.setPlaceholderText("Select a record to read it here; double-click it to edit it in the "
                                        "Dataset editor.")
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.table)
        self.split.addWidget(self.preview)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.split.setChildrenCollapsible(False)
        layout.addWidget(self.split, 1)
        self.filler = QWidget()  # holds the space while there is no table, so the text stays on top
        layout.addWidget(self.filler, 1)
        self._records_cache: tuple[str, float, list] | None = None  # (path, mtime, records)

        self.audit_button.clicked.connect(self.start)
        self.flagged_only.toggled.connect(lambda _: self._show(self.model.audit))
        self.table.doubleClicked.connect(self._on_double_click)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._show_record(cur))
        self.set_run(None)

    # ---- Public API
    def set_run(self, run: RunInfo | None) -> None:
        """Show ``run``'s saved audit, or say what auditing it takes."""
        if self.proc is not None and self.run is not None and run is not None and run.path == self.run.path:
            return  # its audit is running: keep showing the progress
        self.run = run
        self.progress.setVisible(self.proc is not None and run is not None and run.path == self.auditing)
        self._show(read_audit(run.path) if run is not None else None)
        self._update()

    def start(self) -> bool:
        """Audit the current run in a child process; False when there is nothing to audit."""
        if self.run is None or self.proc is not None or not self._has_weights(self.run):
            return False
        self.auditing = self.run.path
        self._say(html.escape(f"Auditing {self.run.name}: loading its model and tokenizing the records in a child process…"))
        self._start_engine(["runs", "audit", str(self.run.path), "--json", "--progress"]
                           + (["--compare-base"] if self.compare_base.isChecked() else []), self.audit_button)
        self._update()
        return True

    def stop(self) -> None:
        self._kill_engine()

    # ---- Internals
    @staticmethod
    def _has_weights(run: RunInfo) -> bool:
        return audit_weights(run.path) is not None

    def _update(self) -> None:
        run = self.run
        busy = self.proc is not None
        self.audit_button.setEnabled(run is not None and not busy and self._has_weights(run))
        self.audit_button.setText("Audit again" if self.model.audit is not None else "Audit records")
        self.flagged_only.setEnabled(self.model.audit is not None)

    def _say(self, text: str, colour: str | None = None) -> None:
        self.status.setStyleSheet(f"color: {ink(colour)};" if colour else "")
        self.status.setText(text)

    def _show(self, audit: Audit | None) -> None:
        self.model.set_audit(audit, self.flagged_only.isChecked())
        for name in BASE_COLUMNS:
            self.table.setColumnHidden(COLUMNS.index(name), not (audit is not None and audit.compared_with_base))
        self.split.setVisible(audit is not None)
        self.filler.setVisible(audit is None)
        self.preview.clear()
        if self.proc is not None and self.run is not None and self.run.path == self.auditing:
            return  # the progress message stays
        if self.run is None:
            self._say("Select one run to see its records ranked by how unlikely the trained model finds "
                      "their answers.")
        elif audit is None:
            self._say(("Not audited yet. “Audit records” scores every record of this run's dataset with the "
                       "trained weights, exactly as training saw it, and ranks them: after training, the "
                       "records the model still finds least likely are most often annotation mistakes.")
                      if self._has_weights(self.run) else
                      "This run has no trained weights yet (no final/ and no checkpoint) to audit with.")
        else:
            self._say(self._summary(audit))
        self._update()

    def _summary(self, audit: Audit) -> str:
        flagged = audit.outliers()
        medians = ", ".join(f"{s} {m:.3f}" for s in ("train", "eval") if (m := audit.median_of(s)) is not None)
        text = (f"{len(audit.records):,} records scored with {Path(audit.weights).name} on {audit.device} "
                f"in {audit.seconds:.1f} s · median loss {medians} · ")
        one = len(flagged) == 1
        text += (f"<b style='color:{ink(COLORS['warning'])}'>{len(flagged)} flagged</b> at ≥ {OUTLIER_FACTOR:g}× the "
                 f"median of {'its' if one else 'their'} split: check {'its answer' if one else 'their answers'}"
                 if flagged else "nothing stands out")
        if audit.compared_with_base:
            stuck = audit.not_learned()
            text += (f" · median loss under the base model {audit.base_median():.3f}; "
                     + (f"<b style='color:{ink(COLORS['error'])}'>{len(stuck)} training record"
                        f"{'s' if len(stuck) != 1 else ''} no easier</b> than before training"
                        if stuck else "every training record got easier"))
        text = text.replace("\n", " ")
        notes = [html.escape(n) for n in audit.notes]
        if audit.skipped:
            notes.append(f"{len(audit.skipped)} record(s) had nothing to score (the prompt fills seq_len)")
        if notes:
            text += f"<br><span style='color:{ink('#8a5a00')}'>" + "<br>".join(notes) + "</span>"
        return text + "<br><span style='color:palette(mid)'>Double-click a record to open it in the Dataset editor.</span>"

    def _on_progress(self) -> None:
        if self.run is not None and self.run.path == self.auditing:
            self._say(html.escape(f"Auditing {self.run.name}: scoring records…"))

    def _on_succeeded(self, _output: str) -> None:
        audited, self.auditing = self.auditing, None
        self._show(read_audit(self.run.path) if self.run is not None else None)  # the shown run's, this one or another
        self.sig_audited.emit(str(audited))

    def _on_failed(self, why: str) -> None:
        audited, self.auditing = self.auditing, None
        if self.run is None or self.run.path != audited:
            self._show(read_audit(self.run.path) if self.run is not None else None)  # another run is shown
            return
        self._say(html.escape(f"The audit failed: {why}"), "#be1e1e")
        self._update()

    def _records(self, path: str) -> list:
        """The dataset's records, re-read only when the file changed (a dataset in the Hugging Face
        cache by its id: a snapshot doesn't change)."""
        from engine.data import hub
        from engine.data.formats import open_dataset

        mtime = 0.0 if hub.parse_ref(path) is not None else Path(path).stat().st_mtime
        if self._records_cache is None or self._records_cache[:2] != (path, mtime):
            self._records_cache = (path, mtime, open_dataset(path).records)
        return self._records_cache[2]

    def _show_record(self, index: QModelIndex) -> None:
        """Show the record of table row ``index`` in the preview: every turn, as in the file."""
        audit = self.model.audit
        if audit is None or not index.isValid():
            self.preview.clear()
            return
        r = self.model.rows[self.proxy.mapToSource(index).row()]
        try:
            records = self._records(audit.dataset)
        except (OSError, StudioError) as e:
            self.preview.setHtml(f"<p style='color:{ink('#be1e1e')}'>{html.escape(f'Can not read {audit.dataset}: {e}')}</p>")
            return
        head = f"<p><b>Record {r.record}</b>" + (f" · line {r.line}" if r.line else "") + f" · {r.split} split · " \
               f"loss {r.loss:.3f}" + (f" (base {r.base_loss:.3f})" if r.base_loss is not None else "") + "</p>"
        if not 0 < r.record <= len(records):
            self.preview.setHtml(head + f"<p style='color:{ink('#be1e1e')}'>The file has {len(records)} records now: it "
                                 "changed since the audit.</p>")
            return
        record = records[r.record - 1]
        warn = "" if still_the_audited_record(record, r.instruction) else (
            f"<p style='color:{ink('#8a5a00')}'>⚠ This is not the record the audit scored: the file changed since. "
            "Audit the run again.</p>")
        try:
            turns = record.messages()
        except StudioError as e:
            self.preview.setHtml(head + warn + f"<p style='color:{ink('#be1e1e')}'>{html.escape(str(e))}</p>")
            return
        body = "".join(f"<p style='margin-bottom:2px'><b>{html.escape(m.get('role', '?'))}</b></p>"
                       f"<p style='white-space:pre-wrap; margin-top:0'>{html.escape(str(m.get('content', '')))}</p>"
                       for m in turns)
        self.preview.setHtml(head + warn + body)

    def _on_double_click(self, index: QModelIndex) -> None:
        audit = self.model.audit
        if audit is None or not index.isValid():
            return
        r = self.model.rows[self.proxy.mapToSource(index).row()]
        self.sig_open_record.emit(audit.dataset, r.record - 1, r.instruction)
