"""Prompt preview: the selected record rendered with the template, trained tokens highlighted.

The tokenizer (never a model) is loaded on demand, the first time the preview is shown, in the
Dataset area's tokenizer process (:mod:`gui.dataset.token_service`): loading one imports torch,
which would stall the window. Renders are requests to it, sent from a worker thread; the newest
answer is shown.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QColor, QFontDatabase, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from engine.data.records import Record
from engine.data.templates import TEMPLATE_CHOICES
from engine.paths import demo_model_dir
from gui.dataset.token_service import TokenService
from gui.scheme import FollowsPalette, ink, ink_color, palette_signature, tint, tint_color

_TRAINED_BG = QColor(200, 240, 195)
_PROMPT_FG = QColor(95, 95, 95)


class _TokenizerJob(QObject):
    """Talks to the tokenizer process from a worker thread (each request blocks until answered)."""

    sig_done = Signal(bool, str, str)
    """(loaded, model folder, error message)."""
    sig_rendered = Signal(int, object, str)
    """(request number, the render's answer or None, error message)."""

    def __init__(self, service: TokenService):
        super().__init__()
        self.service = service

    @Slot(str)
    def load(self, path: str) -> None:
        try:
            self.service.call({"op": "load", "path": path})
        except RuntimeError as e:
            self.sig_done.emit(False, path, str(e))
            return
        self.sig_done.emit(True, path, "")

    @Slot(int, object)
    def render(self, seq: int, request: dict) -> None:
        try:
            answer = self.service.call(request)
        except RuntimeError as e:
            self.sig_rendered.emit(seq, None, str(e))
            return
        self.sig_rendered.emit(seq, answer, "")


class PreviewPane(FollowsPalette, QWidget):
    """Shows how the trainer sees one record: prompt tokens grey, trained tokens highlighted."""

    sig_add_tokens_changed = Signal()
    """The add_tokens records are rendered with changed."""
    sig_tokenizer_loaded = Signal(object)
    """A tokenizer finished loading (its model folder)."""
    sig_rendered = Signal()
    """The shown record was rendered (or its render failed, said in the stats line)."""

    _sig_load = Signal(str)
    _sig_render = Signal(int, object)

    # ---- Public API
    def __init__(self, parent=None):
        super().__init__(parent)
        self.service = TokenService()  # the tokenizer's process, shared with the editor's checks
        self._loaded: str | None = None  # the model folder whose tokenizer the service holds
        self._tokenizer_path: str | None = None
        self._record: Record | None = None
        self.loss_on = "answers"  # the Train area's loss_on (the main window keeps it in step)
        self.add_tokens: list[str] = []  # the Train area's add_tokens (kept in step the same way)
        self._loading = False
        self._seq = 0  # the newest render request; older answers are dropped
        self._thread: QThread | None = None
        self._job: _TokenizerJob | None = None
        self.source = QLabel()
        self.source.setWordWrap(True)
        self.load_button = QPushButton("Load tokenizer")
        self.load_button.clicked.connect(lambda: self.load_tokenizer(self._tokenizer_path))
        self.choose_button = QPushButton("Choose model folder…")
        self.choose_button.clicked.connect(self._on_choose)
        self.template = QComboBox()
        self.template.addItems(list(TEMPLATE_CHOICES))
        # A .jinja path from the Train area must not squeeze the header; its tooltip-free text elides.
        self.template.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.template.setMinimumContentsLength(8)
        self.template.setToolTip("How records become text, as the Train area's Template: auto (the tokenizer's "
                                 "chat template if it has one, else the Alpaca prompt), chat, alpaca, or a chat "
                                 "format to teach a base model (chatml, llama3, gemma, phi3)")
        self.template.currentTextChanged.connect(lambda _t: self._render())
        head = QHBoxLayout()  # the source on its own line above: beside the buttons it wrapped word by word
        head.addStretch(1)
        head.addWidget(QLabel("template"))
        head.addWidget(self.template)
        head.addWidget(self.load_button)
        head.addWidget(self.choose_button)
        self.legend = legend = QLabel()
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setStyleSheet("color: palette(mid);")
        self.text = QTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.source)
        lay.addLayout(head)
        lay.addWidget(legend)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.stats)
        default = demo_model_dir()
        self._tokenizer_path = str(default) if (default / "tokenizer_config.json").exists() else None
        self._show_source()
        self._recolor()
        self._painted_with = palette_signature()  # the palette its colours are from (FollowsPalette)

    def load_tokenizer(self, path: str | None = None) -> None:
        """Start loading the tokenizer of a model folder (the demo model by default)."""
        path = path or self._tokenizer_path
        if path is None or self._loading:
            return
        self._tokenizer_path = path
        self._loading = True
        self._ensure_thread()
        self._show_source()
        self._sig_load.emit(path)

    def set_template(self, template: str) -> None:
        """Render as a run with this ``template`` would (a .jinja file is added to the list)."""
        if self.template.findText(template) < 0:
            self.template.addItem(template)
        self.template.setCurrentText(template)

    def set_add_tokens(self, tokens: list[str]) -> None:
        """Render as a run that adds these tokens to the vocabulary would."""
        tokens = [t for t in tokens if isinstance(t, str) and t]
        if tokens != self.add_tokens:
            self.add_tokens = tokens
            self.sig_add_tokens_changed.emit()
            if self.isVisible() or self._loaded is not None:
                self._render()

    def lint_request(self) -> dict | None:
        """What the editor's checks send the tokenizer process to count exact token lengths the way
        the run will (tokenizer, add_tokens, template); None until the tokenizer is loaded."""
        if self._loaded is None:
            return None
        return {"op": "lint", "path": self._loaded, "add_tokens": list(self.add_tokens),
                "template": self.template.currentText()}

    def set_loss_on(self, loss_on: str) -> None:
        """Mark the tokens a run with this ``loss_on`` trains on."""
        if loss_on != self.loss_on:
            self.loss_on = loss_on
            self._render()

    def set_record(self, record: Record | None) -> None:
        self._record = record
        if self.isVisible() or self._loaded is not None:
            self._render()

    def stop(self) -> None:
        self.service.close()  # a request in flight fails at once
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()

    # ---- Qt
    def activate(self) -> None:
        """The pane came into view: load the tokenizer the first time, and render."""
        if self._loaded is None and not self._loading:
            self.load_tokenizer()
        self._render()

    def showEvent(self, e) -> None:  # noqa: N802 - Qt's name
        super().showEvent(e)
        self.activate()

    # ---- Internals
    def _show_source(self) -> None:
        name = None
        if self._tokenizer_path:
            path = Path(self._tokenizer_path)
            name = "the demo model" if path == demo_model_dir() else path.name
        if self._loading:
            self.source.setText(f"Loading the tokenizer of <b>{name}</b>…")
        elif self._loaded is not None:
            self.source.setText(f"Tokenizer: <b>{name}</b>")
        elif name:
            self.source.setText(f"Tokenizer: <b>{name}</b> (not loaded)")
        else:
            self.source.setText("No tokenizer: choose a model folder to preview prompts.")
        self.load_button.setVisible(self._loaded is None and not self._loading and name is not None)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = QThread()
            self._thread.setObjectName("dataset-tokenizer")
            self._job = _TokenizerJob(self.service)
            self._job.moveToThread(self._thread)
            self._sig_load.connect(self._job.load)
            self._sig_render.connect(self._job.render)
            self._job.sig_done.connect(self._on_loaded)
            self._job.sig_rendered.connect(self._on_rendered)
            self._thread.start()

    def _on_loaded(self, ok: bool, path: str, error: str) -> None:
        self._loading = False
        if not ok:
            self._show_source()
            self.source.setText(f"<span style='color:{ink('#b71c1c')}'>Can't load the tokenizer of {path}: "
                                f"{error}</span>")
            return
        self._loaded = path
        self._show_source()
        self._render()
        self.sig_tokenizer_loaded.emit(path)

    def _on_choose(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder (with the tokenizer files)")
        if path:
            self._loaded = None
            self.load_tokenizer(path)

    def _recolor(self) -> None:
        """The loss-mask colours follow the palette: set when built, and again (with the record
        rendered anew) on a light/dark switch."""
        self.legend.setText(f"<span style='background:{tint(_TRAINED_BG)}'>&nbsp;trained (answer) tokens&nbsp;"
                            f"</span> &nbsp; <span style='color:{ink(_PROMPT_FG)}'>prompt tokens (masked, "
                            "label -100)</span>")

    def _on_palette_change(self) -> None:
        self._recolor()
        if self._record is not None and self._loaded is not None:
            self._render()

    def _render(self) -> None:
        self._seq += 1  # whatever was asked before is stale now
        rec = self._record
        if rec is None:
            self.text.clear()
            self.stats.setText("No record selected.")
            return
        if self._loaded is None:
            self.text.clear()
            self.stats.setText("Waiting for the tokenizer…" if self._loading else "")
            return
        self._ensure_thread()
        self._sig_render.emit(self._seq, {"op": "render", "path": self._loaded, "add_tokens": list(self.add_tokens),
                                          "record": rec, "template": self.template.currentText(),
                                          "loss_on": self.loss_on})

    def _on_rendered(self, seq: int, answer: Any, error: str) -> None:
        if seq != self._seq:
            return  # the record, template or tokens changed since
        from engine.data.preview import untrained_note

        self.text.clear()
        if answer is None:
            self.stats.setText(f"<span style='color:{ink('#b71c1c')}'>{html.escape(error)}</span>")
            self.sig_rendered.emit()
            return
        cursor = self.text.textCursor()
        trained_fmt = QTextCharFormat()
        trained_fmt.setBackground(tint_color(_TRAINED_BG))
        prompt_fmt = QTextCharFormat()
        prompt_fmt.setForeground(ink_color(_PROMPT_FG))
        for text, trained in answer["pieces"]:
            cursor.insertText(text, trained_fmt if trained else prompt_fmt)
        self.text.moveCursor(QTextCursor.MoveOperation.Start)
        total, trained = answer["total"], answer["trained"]
        skipped, split = answer["skipped"], answer["split"]
        template = self.template.currentText()
        note = (f"<br><span style='color:{ink('#8a5a00')}'>Note: {untrained_note(skipped)}.</span>" if skipped else "")
        if split:
            note += (f"<br><span style='color:{ink('#8a5a00')}'>Note: this tokenizer splits the {template} "
                     f"markers into pieces ({html.escape(', '.join(split))}); the model would learn them as "
                     "text. Add them as tokens (Train area, Add tokens: "
                     f"{html.escape(', '.join(answer['split_tokens']))}; method LoRA, "
                     "QLoRA or full), or use its own chat template or a format it has the tokens of.</span>")
        policy = {"last_answer": " (loss on the last answer only)", "all": " (loss on every token)"}.get(self.loss_on, "")
        self.stats.setText((f"≈{total:,} tokens, {trained:,} trained ({trained / total:.0%}){policy}" if total else "")
                           + note)
        self.sig_rendered.emit()
