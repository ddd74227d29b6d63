"""The lint panel: findings grouped by rule (each clickable to its record), and the balance
and token-length charts.

Lint runs off the GUI thread (:class:`~gui.dataset.lint_runner.LintRunner`) on a snapshot
of the record list; the panel only shows a :class:`~engine.data.lint.LintReport`. Findings come back by record index
in that snapshot, and the editor turns them into record objects, so a click still finds its
record after rows were inserted or moved since.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.data.lint import task_types_note
from gui.dataset.severity import COLORS, MARKS, WORDS
from gui.fonts import set_relative_font
from gui.scheme import (
    MARK_CONTRAST,
    FollowsPalette,
    app_palette,
    hint_style,
    ink,
    ink_color,
    palette_signature,
)

MIN_CHART_HEIGHT = 130  # at the default font; the task-type chart grows with its rows' text
MAX_ITEMS_PER_RULE = 300  # a rule with 10,000 hits is filtered in the table, not listed here
FindingRole = Qt.ItemDataRole.UserRole + 1
_SEVERITY_MARK = MARKS


_SEVERITY_ROLE = Qt.ItemDataRole.UserRole + 2  # a rule's item: its worst severity, to recolour it


def _severity_color(sev: str) -> QColor:
    return ink_color(COLORS[sev]) if sev in COLORS else app_palette().color(QPalette.ColorRole.Text)


def _color_plot(plot: pg.PlotWidget, palette: QPalette) -> None:
    plot.setBackground(palette.color(QPalette.ColorRole.Base))
    text = palette.color(QPalette.ColorRole.Text)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setTextPen(text)
        axis.setPen(palette.color(QPalette.ColorRole.Mid))


def _style_plot(plot: pg.PlotWidget, palette: QPalette) -> None:
    _color_plot(plot, palette)
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.setMinimumHeight(MIN_CHART_HEIGHT)


def _title_size(widget: QWidget) -> str:
    """A chart title's size: the widget's font (9 pt by default), not a fixed 9 pt that stays
    small when the desktop font is raised."""
    return f"{widget.font().pointSizeF():g}pt"


def balance_note_text(source: str, languages: str = "") -> str:
    """The note under the task-type chart: where the types come from, then the language shares."""
    return " ".join(filter(None, (task_types_note(source), f"Languages: {languages}." if languages else "")))


class NoteLabel(QLabel):
    """A word-wrapped note under a chart that asks for the height its wrapped text needs.

    A splitter sizes its panes from minimum sizes, which ignore a wrapped label's
    height-for-width: a two-line note was given one line and drawn over the chart's axis title.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWordWrap(True)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self._fit()

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(e)
        self._fit()

    def _fit(self) -> None:
        need = self.heightForWidth(max(self.width(), 1))
        if need > 0 and need != self.minimumHeight():
            self.setMinimumHeight(need)


class LintPanel(FollowsPalette, QWidget):
    """Findings by rule, and the balance and length charts."""

    sig_finding_activated = Signal(object)
    """A finding was clicked: show its record (the Finding)."""

    sig_finding_opened = Signal(object)
    """A finding was activated (Enter, double-click): edit the field it names (the Finding)."""

    sig_filter_rule = Signal(str)
    """Show only the records with findings of this rule."""

    sig_per_answer = Signal()
    """"Write one record per answer…" on the hidden-answer rule."""

    sig_recheck = Signal()
    """The user asked to run lint again."""

    sig_seq_len_changed = Signal(int)
    """The seq_len to count truncation against changed."""

    sig_audit_toggled = Signal(bool)
    """The user showed or hid a run audit's flagged records."""

    # ---- Public API
    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary = QLabel("Not checked yet.")
        # Wrapped: at 16 pt, beside seq_len and Re-check, "0 errors · 8 warnings · 1 info" was cut
        # to "… · 1 inf" under the seq_len label.
        self.summary.setWordWrap(True)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.seq_len = QSpinBox()
        self.seq_len.setRange(16, 1_048_576)
        self.seq_len.setValue(512)
        self.seq_len.setSingleStep(128)
        self.seq_len.setToolTip("Maximum tokens per training sequence (the run config's seq_len): "
                                "longer records are counted as truncated. It follows the Train area's "
                                "seq_len; a value tried here doesn't change the run.")
        self.seq_len.setKeyboardTracking(False)
        self.seq_len.valueChanged.connect(self.sig_seq_len_changed)
        self.recheck = QPushButton("Re-check")
        self.recheck.setToolTip("Run the checks again on the records as they are now")
        self.recheck.clicked.connect(self.sig_recheck)
        head = QHBoxLayout()
        head.addWidget(self.summary, 1)
        head.addWidget(QLabel("seq_len"))
        head.addWidget(self.seq_len)
        head.addWidget(self.recheck)

        self.audit_box = QCheckBox("Run audit")
        self.audit_box.setChecked(True)
        self.audit_box.setToolTip("Show the records that the newest audit of a run trained on this file flagged "
                                  "(finetune-studio runs audit RUN, or the Runs area's Hardest records): answers "
                                  "the trained model still finds unlikely, and training records it learned "
                                  "nothing from. A record edited since is no longer flagged.")
        self.audit_box.toggled.connect(self.sig_audit_toggled)
        self.audit_note = QLabel()
        self.audit_note.setWordWrap(True)
        audit_row = QHBoxLayout()
        audit_row.addWidget(self.audit_box, 0, Qt.AlignmentFlag.AlignTop)
        audit_row.addWidget(self.audit_note, 1)
        self.audit_row = QWidget()
        self.audit_row.setLayout(audit_row)
        audit_row.setContentsMargins(0, 0, 0, 0)
        self.audit_row.hide()

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Finding", "Where"])
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setRootIsDecorated(True)
        self.tree.header().setStretchLastSection(False)
        self.tree.header().setSectionResizeMode(0, self.tree.header().ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(1, self.tree.header().ResizeMode.ResizeToContents)
        self.tree.itemClicked.connect(self._on_item_activated)
        self.tree.itemActivated.connect(self._on_item_opened)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._on_context_menu)

        self.balance_plot = pg.PlotWidget()
        _style_plot(self.balance_plot, self.palette())
        self.balance_plot.setTitle("Task types (share of records)", size=_title_size(self))
        self.balance_plot.setLabel("bottom", "% of records")
        self.balance_bars = pg.BarGraphItem(x0=[], y=[], height=0.6, width=[], brush=QColor(70, 130, 180))
        self.balance_plot.addItem(self.balance_bars)
        self.balance_labels: list[pg.TextItem] = []
        self.balance_note = NoteLabel()
        set_relative_font(self.balance_note, -0.75)  # 11 px at the default font

        self.length_plot = pg.PlotWidget()
        _style_plot(self.length_plot, self.palette())
        self.length_plot.setTitle("Token length (records per bin)", size=_title_size(self))
        self.length_plot.setLabel("bottom", "tokens")
        self.length_curve = pg.PlotDataItem([0, 1], [0], stepMode="center", fillLevel=0,
                                            brush=QColor(70, 130, 180, 160), pen=QColor(70, 130, 180))
        self.length_plot.addItem(self.length_curve)
        self.seq_line = pg.InfiniteLine(angle=90, movable=False,
                                        label="seq_len", labelOpts={"position": 0.9})
        self.length_plot.addItem(self.seq_line)
        self.length_note = NoteLabel()
        set_relative_font(self.length_note, -0.75)

        # The two charts share one tabbed area under the findings: stacked, at the window's minimum
        # size they squeezed the findings to three rows and themselves to unreadable strips.
        self.charts = QTabWidget()
        self.charts.setDocumentMode(True)
        for plot, note, title in ((self.balance_plot, self.balance_note, "Task types"),
                                  (self.length_plot, self.length_note, "Token lengths")):
            box = QWidget()
            col = QVBoxLayout(box)
            col.setContentsMargins(0, 4, 0, 0)
            col.setSpacing(2)
            col.addWidget(plot, 1)
            col.addWidget(note)
            self.charts.addTab(box, title)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        split.addWidget(self.charts)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([500, 400])  # stretch factors alone leave the tree at its small hint
        split.setChildrenCollapsible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addLayout(head)
        lay.addWidget(self.detail)
        lay.addWidget(self.audit_row)
        lay.addWidget(split, 1)
        self._report = None
        self._recolor()
        self._painted_with = palette_signature()  # the palette its colours are from (FollowsPalette)

    def show_report(self, report, seconds: float | None = None, stale: bool = False) -> None:
        """Show a lint report (findings tree, summary and charts)."""
        self._report = report
        c = report.counts
        parts = [f"{c.get('errors', 0)} error{'s' if c.get('errors', 0) != 1 else ''}",
                 f"{c.get('warnings', 0)} warning{'s' if c.get('warnings', 0) != 1 else ''}",
                 f"{c.get('infos', 0)} info"]
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        self.summary.setText(f"<b>{' · '.join(parts)}</b>")
        self.detail.setText(f"{c.get('records', 0):,} records checked{took}. Click a finding to show its "
                            "record, Enter or double-click to edit it; right-click a rule to filter the table.")
        self._fill_tree(report)
        self._draw_balance(report.stats)
        self._draw_lengths(report.stats)
        self.set_stale(stale)

    def set_stale(self, stale: bool) -> None:
        """Mark the findings as out of date (edits since the last check)."""
        self.recheck.setText("Re-check*" if stale else "Re-check")
        self.recheck.setToolTip("Records changed since the last check; run the checks again" if stale
                                else "Run the checks again on the records as they are now")

    def set_running(self, running: bool) -> None:
        if running:
            self.summary.setText("Checking…" if self._report is None else self.summary.text())
        self.recheck.setEnabled(not running)

    def show_error(self, message: str) -> None:
        self.summary.setText(f"<span style='color:{ink('#b71c1c')}'>The checks failed: {message}</span>")

    def report(self):
        return self._report

    def set_audit(self, summary: str | None, flagged: int) -> None:
        """Offer a run audit's flagged records (``summary`` None: no audit of this file)."""
        self.audit_row.setVisible(summary is not None)
        self.audit_note.setText(summary or "")
        self.audit_box.setEnabled(flagged > 0)

    def audit_shown(self) -> bool:
        return self.audit_box.isChecked()

    def rule_items(self) -> dict[str, QTreeWidgetItem]:
        """The top-level item of each rule (for tests and keyboard navigation)."""
        return {self.tree.topLevelItem(i).data(0, FindingRole): self.tree.topLevelItem(i)
                for i in range(self.tree.topLevelItemCount())}

    # ---- Internals
    def _on_palette_change(self) -> None:
        self._recolor()

    def _recolor(self) -> None:
        """Colours that follow the palette (built, and again on a light/dark switch)."""
        palette = app_palette()  # not self.palette(): a hidden widget may not have taken it yet
        for label in (self.detail, self.audit_note):
            label.setStyleSheet(hint_style())
        for note in (self.balance_note, self.length_note):
            note.setStyleSheet(hint_style())  # its size: set_relative_font, which follows the font
        for plot in (self.balance_plot, self.length_plot):
            _color_plot(plot, palette)  # only colours: the menus and mouse are set once, when built
        seq_color = ink_color(QColor(200, 40, 40), palette, on=palette.color(QPalette.ColorRole.Base),
                              target=MARK_CONTRAST)
        self.seq_line.setPen(pg.mkPen(seq_color, width=2, style=Qt.PenStyle.DashLine))
        self.seq_line.label.setColor(seq_color)
        for label in self.balance_labels:
            label.setColor(palette.color(QPalette.ColorRole.Text))
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            sev = top.data(0, _SEVERITY_ROLE)
            top.setForeground(0, QBrush(_severity_color(sev)))
            for j in range(top.childCount()):
                child = top.child(j)
                finding = child.data(0, FindingRole)
                if finding is None:  # the "… more" line
                    child.setForeground(0, QBrush(ink_color(QColor(120, 120, 120), palette)))
                elif finding.severity != sev:
                    child.setForeground(0, QBrush(_severity_color(finding.severity)))

    def _fill_tree(self, report) -> None:
        self.tree.setUpdatesEnabled(False)
        self.tree.clear()
        groups = report.by_rule()
        order = {"error": 0, "warning": 1, "info": 2}
        for rule, findings in sorted(groups.items(), key=lambda kv: (
                min(order.get(f.severity, 3) for f in kv[1]), kv[0])):
            sev = min((f.severity for f in findings), key=lambda s: order.get(s, 3))
            top = QTreeWidgetItem([f"{_SEVERITY_MARK.get(sev, '')} {rule} ({len(findings):,})", ""])
            top.setData(0, FindingRole, rule)
            # The mark and the colour in words for a screen reader (a finding less severe than its
            # rule's worst differs by its colour alone).
            top.setData(0, Qt.ItemDataRole.AccessibleTextRole,
                        f"{rule}: {len(findings):,} finding{'s' if len(findings) != 1 else ''}, "
                        f"the worst {'an' if sev == 'error' else 'a'} {WORDS.get(sev, sev)}")
            top.setData(0, _SEVERITY_ROLE, sev)
            top.setForeground(0, QBrush(_severity_color(sev)))
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            top.setToolTip(0, "Right-click: show only the records with this finding")
            children = []
            for f in findings[:MAX_ITEMS_PER_RULE]:
                where = "dataset" if f.index is None else f"#{f.index + 1}" + (
                    f" · line {f.line}" if f.line else "")
                item = QTreeWidgetItem([f.message, where])
                item.setData(0, FindingRole, f)
                item.setData(0, Qt.ItemDataRole.AccessibleTextRole,
                             f"{WORDS.get(f.severity, f.severity).capitalize()}: {f.message}")
                item.setToolTip(0, f.message)
                if f.severity != sev:
                    item.setForeground(0, QBrush(_severity_color(f.severity)))
                children.append(item)
            if len(findings) > MAX_ITEMS_PER_RULE:
                more = QTreeWidgetItem([f"… {len(findings) - MAX_ITEMS_PER_RULE:,} more: right-click "
                                        f"'{rule}' to filter the table to them", ""])
                more.setForeground(0, QBrush(ink_color(QColor(120, 120, 120))))
                children.append(more)
            top.addChildren(children)
            self.tree.addTopLevelItem(top)
            top.setExpanded(len(groups) <= 3 or sev == "error")
        self.tree.setUpdatesEnabled(True)

    def _draw_balance(self, stats: dict) -> None:
        tt = stats.get("task_types") or {}
        shares = list((tt.get("shares") or {}).items())[:12]
        shares.reverse()  # largest at the top
        ys = list(range(len(shares)))
        widths = [v * 100 for _, v in shares]
        self.balance_bars.setOpts(x0=[0] * len(ys), y=ys, height=0.6, width=widths)
        self.balance_plot.getAxis("left").setTicks([[(i, name) for i, (name, _) in enumerate(shares)]])
        for item in self.balance_labels:
            self.balance_plot.removeItem(item)
        self.balance_labels = []
        for y, w in zip(ys, widths, strict=True):
            label = pg.TextItem(f"{w:.0f}%", anchor=(0, 0.5), color=self.palette().color(QPalette.ColorRole.Text))
            label.setPos(w, y)
            self.balance_plot.addItem(label)
            self.balance_labels.append(label)
        self.balance_plot.getViewBox().disableAutoRange()
        self.balance_plot.setXRange(0, max(widths + [10]) * 1.18, padding=0)
        self.balance_plot.setYRange(-0.6, max(len(ys) - 0.4, 0.6), padding=0)
        # A row per task type, each a line of the axis text high: at 13 pt six names in the
        # chart's 130 px were drawn over each other. Four more lines hold the title, the ticks and
        # the axis title under the bars.
        line = self.balance_plot.fontMetrics().lineSpacing()
        self.balance_plot.setMinimumHeight(max(MIN_CHART_HEIGHT, (len(ys) + 4) * line))
        langs = (stats.get("languages") or {}).get("shares") or {}
        lang_text = ", ".join(f"{k} {v:.0%}" for k, v in langs.items())
        source = tt.get("source", "")
        self.balance_note.setText(balance_note_text(source, lang_text))

    def _draw_lengths(self, stats: dict) -> None:
        info = stats.get("length") or {}
        hist = info.get("histogram") or {}
        edges, counts = hist.get("edges") or [], hist.get("counts") or []
        if counts:
            self.length_curve.setData(edges, counts)
        else:
            self.length_curve.setData([0, 1], [0])
        seq_len = info.get("seq_len")
        self.seq_line.setVisible(bool(seq_len))
        if seq_len:
            self.seq_line.setValue(seq_len)
            self.seq_line.label.setFormat(f"seq_len {seq_len}")
        top = max([edges[-1] if edges else 1] + ([seq_len * 1.08] if seq_len else []))
        self.length_plot.getViewBox().disableAutoRange()
        self.length_plot.setXRange(0, top, padding=0.02)
        self.length_plot.setYRange(0, max(counts + [1]) * 1.1, padding=0)
        method = info.get("method", "")
        over = info.get("truncated")
        over_text = f" · <b>{over:,} over seq_len</b>" if over else (" · none over seq_len" if over == 0 else "")
        if info.get("left_out"):
            over_text += f" · <b>{info['left_out']:,} left out</b> (the prompt alone fills seq_len)"
        self.length_note.setText(
            f"median {info.get('median', 0):,} · p95 {info.get('p95', 0):,} · max {info.get('max', 0):,} tokens"
            f"{over_text}. Lengths: {method}.")

    def _on_item_activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        finding = item.data(0, FindingRole)
        if finding is not None and not isinstance(finding, str):
            self.sig_finding_activated.emit(finding)

    def _on_item_opened(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        finding = item.data(0, FindingRole)
        if finding is not None and not isinstance(finding, str):
            self.sig_finding_opened.emit(finding)

    def _on_context_menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        if item is None:
            return
        top = item if item.parent() is None else item.parent()
        rule = top.data(0, FindingRole)
        menu = QMenu(self)
        act = QAction(f"Show only records with '{rule}'", menu)
        act.triggered.connect(lambda: self.sig_filter_rule.emit(rule))
        menu.addAction(act)
        if rule == "hidden-answer":
            per = QAction("Write one record per answer…", menu)
            per.setToolTip("Export the file with each multi-turn conversation as one record per answer, each "
                           "ending with it: then every answer trains")
            per.triggered.connect(self.sig_per_answer.emit)
            menu.addAction(per)
        menu.exec(self.tree.viewport().mapToGlobal(pos))
