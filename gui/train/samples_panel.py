"""The model's answers to a few records at each evaluation, beside their reference answers.

Fed by the worker's ``samples`` events (engine/samples.py) and, for a resumed or followed run,
by the run folder's ``samples.jsonl``. The newest evaluation comes first; a step picker shows
an earlier one, so a user can see how an answer changed as the run went on.
"""

from __future__ import annotations

import html

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from gui.scheme import FollowsPalette, ink, palette_signature, tint

_MODEL_BG = "#e8f3e8"
_REFERENCE_FG = "#5f6368"
EMPTY = ("At each evaluation (each checkpoint when there is no eval data) and at the end, the model answers a few "
         "records greedily; the answers appear here next to the records' own ('Sample answers' under Run and "
         "checkpoints).")


class SamplesPanel(FollowsPalette, QWidget):
    """Step picker + the answers of that step, one block per record."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.step = QComboBox()
        self.step.setToolTip("Answers made at this step (newest first)")
        self.step.setMinimumContentsLength(14)
        self.step.currentIndexChanged.connect(lambda _i: self._show())
        self.about = QLabel()
        self.about.setWordWrap(True)
        self.about.setStyleSheet("color: palette(mid);")
        self.view = QTextBrowser()
        self.view.setOpenLinks(False)
        self.view.setMinimumHeight(3 * self.view.fontMetrics().lineSpacing() + 8)
        head = QHBoxLayout()
        head.addWidget(QLabel("Step"))
        head.addWidget(self.step)
        head.addWidget(self.about, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(head)
        lay.addWidget(self.view, 1)
        self._show()
        self._painted_with = palette_signature()  # the palette its colours are from (FollowsPalette)

    # ---- Public API
    def set_rows(self, rows: list[dict]) -> None:
        """Show a run's samples so far (samples.jsonl), replacing what was shown."""
        self.rows = []
        self.step.blockSignals(True)
        self.step.clear()
        self.step.blockSignals(False)
        for row in rows:
            self.add(row)
        if not rows:
            self._show()

    def add(self, data: dict) -> None:
        """One samples event; it becomes the shown step. A step made again (after a rollback) replaces the old."""
        step = data.get("step")
        self.rows = [r for r in self.rows if r.get("step") != step] + [data]
        self.rows.sort(key=lambda r: r.get("step", 0), reverse=True)
        self.step.blockSignals(True)
        self.step.clear()
        for r in self.rows:
            self.step.addItem(f"{r.get('step')}" + ("  (newest)" if r is self.rows[0] else ""), r.get("step"))
        self.step.setCurrentIndex(0)
        self.step.blockSignals(False)
        self._show()

    def shown_step(self) -> int | None:
        return self.step.currentData()

    # ---- Internals
    def _on_palette_change(self) -> None:
        self._show()  # the answers' tint and the reference's grey are the palette's

    def _show(self) -> None:
        row = next((r for r in self.rows if r.get("step") == self.step.currentData()), None)
        self.step.setEnabled(bool(self.rows))
        if row is None:
            # Not a placeholder: QTextEdit draws that on one line, cut at the view's width.
            self.about.setText("")
            self.view.setHtml(f"<p style='color:{ink(_REFERENCE_FG)}'>{html.escape(EMPTY)}</p>")
            return
        where = "held-out records" if row.get("source") == "eval" else "training records (no eval data)"
        self.about.setText(f"{len(row.get('samples') or [])} {where}, greedy, {row.get('time_s', 0):.1f} s")
        parts = []
        for s in row.get("samples") or []:
            line = f"line {s['line']}" if s.get("line") else "record"
            answer = html.escape(s.get("answer") or "") or "<i>(empty)</i>"
            parts.append(
                f"<p style='margin:6px 0 2px 0'><b>{line}</b> &nbsp;{html.escape(s.get('prompt') or '')}</p>"
                f"<table width='100%' cellspacing='0' cellpadding='4'>"
                f"<tr><td width='80' valign='top'>model</td><td style='background:{tint(_MODEL_BG)}'>{answer}</td></tr>"
                f"<tr><td valign='top' style='color:{ink(_REFERENCE_FG)}'>reference</td>"
                f"<td style='color:{ink(_REFERENCE_FG)}'>{html.escape(s.get('reference') or '')}</td></tr></table>")
        self.view.setHtml("".join(parts))
