"""Prompt preview: the selected record rendered with the template, trained tokens highlighted.

The tokenizer (never a model) is loaded on demand, the first time the preview is shown,
on a worker thread: importing transformers alone takes seconds, and the window must open
without waiting for it.
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
from engine.errors import StudioError
from engine.paths import demo_model_dir

_TRAINED_BG = QColor(200, 240, 195)
_PROMPT_FG = QColor(95, 95, 95)


class _TokenizerJob(QObject):
    sig_done = Signal(object, str, str)
    """(tokenizer or None, name, error message)."""

    @Slot(str)
    def load(self, path: str) -> None:
        from engine.models import load_tokenizer

        try:
            tok = load_tokenizer(path)
        except StudioError as e:
            self.sig_done.emit(None, path, e.message)
            return
        except Exception as e:  # noqa: BLE001 - a bad folder must not take the editor down
            self.sig_done.emit(None, path, f"{type(e).__name__}: {e}")
            return
        self.sig_done.emit(tok, path, "")


class PreviewPane(QWidget):
    """Shows how the trainer sees one record: prompt tokens grey, trained tokens highlighted."""

    sig_add_tokens_changed = Signal()
    """The add_tokens records are rendered with changed."""
    sig_tokenizer_loaded = Signal(object)
    """A tokenizer finished loading (the tokenizer)."""

    _sig_load = Signal(str)

    # ---- Public API
    def __init__(self, parent=None):
        super().__init__(parent)
        self._tokenizer = None
        self._tokenizer_path: str | None = None
        self._record: Record | None = None
        self.loss_on = "answers"  # the Train area's loss_on (the main window keeps it in step)
        self.add_tokens: list[str] = []  # the Train area's add_tokens (kept in step the same way)
        self._grown: tuple[Any, Any] = (None, None)  # (key, the tokenizer with add_tokens added)
        self._loading = False
        self._thread: QThread | None = None
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
        head = QHBoxLayout()
        head.addWidget(self.source, 1)
        head.addWidget(QLabel("template"))
        head.addWidget(self.template)
        head.addWidget(self.load_button)
        head.addWidget(self.choose_button)
        legend = QLabel(f"<span style='background:{_TRAINED_BG.name()}'>&nbsp;trained (answer) tokens&nbsp;"
                        f"</span> &nbsp; <span style='color:{_PROMPT_FG.name()}'>prompt tokens (masked, "
                        "label -100)</span>")
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setStyleSheet("color: palette(mid);")
        self.text = QTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addLayout(head)
        lay.addWidget(legend)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.stats)
        default = demo_model_dir()
        self._tokenizer_path = str(default) if (default / "tokenizer_config.json").exists() else None
        self._show_source()

    def tokenizer(self):
        return self._tokenizer

    def tokenizer_path(self) -> str | None:
        """The model folder the tokenizer comes from (or will, once loaded)."""
        return self._tokenizer_path

    def load_tokenizer(self, path: str | None = None) -> None:
        """Start loading the tokenizer of a model folder (the demo model by default)."""
        path = path or self._tokenizer_path
        if path is None or self._loading:
            return
        self._tokenizer_path = path
        self._loading = True
        if self._thread is None:
            self._thread = QThread()
            self._thread.setObjectName("dataset-tokenizer")
            self._job = _TokenizerJob()
            self._job.moveToThread(self._thread)
            self._sig_load.connect(self._job.load)
            self._job.sig_done.connect(self._on_loaded)
            self._thread.start()
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
            if self.isVisible() or self._tokenizer is not None:
                self._render()

    def rendering_tokenizer(self) -> Any:
        """The tokenizer records are rendered with: the model's, plus add_tokens (a copy)."""
        if not self.add_tokens or self._tokenizer is None:
            return self._tokenizer
        key = (id(self._tokenizer), tuple(self.add_tokens))
        if self._grown[0] != key:
            import copy

            from engine.models import add_special_tokens

            tok = copy.deepcopy(self._tokenizer)
            add_special_tokens(tok, self.add_tokens)
            self._grown = (key, tok)
        return self._grown[1]

    def set_loss_on(self, loss_on: str) -> None:
        """Mark the tokens a run with this ``loss_on`` trains on."""
        if loss_on != self.loss_on:
            self.loss_on = loss_on
            self._render()

    def set_record(self, record: Record | None) -> None:
        self._record = record
        if self.isVisible() or self._tokenizer is not None:
            self._render()

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()

    # ---- Qt
    def activate(self) -> None:
        """The pane came into view: load the tokenizer the first time, and render."""
        if self._tokenizer is None and not self._loading:
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
        elif self._tokenizer is not None:
            self.source.setText(f"Tokenizer: <b>{name}</b>")
        elif name:
            self.source.setText(f"Tokenizer: <b>{name}</b> (not loaded)")
        else:
            self.source.setText("No tokenizer: choose a model folder to preview prompts.")
        self.load_button.setVisible(self._tokenizer is None and not self._loading and name is not None)

    def _on_loaded(self, tok, path: str, error: str) -> None:
        self._loading = False
        if tok is None:
            self._show_source()
            self.source.setText(f"<span style='color:#b71c1c'>Can't load the tokenizer of {path}: "
                                f"{error}</span>")
            return
        self._tokenizer = tok
        self._show_source()
        self._render()
        self.sig_tokenizer_loaded.emit(tok)

    def _on_choose(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder (with the tokenizer files)")
        if path:
            self._tokenizer = None
            self.load_tokenizer(path)

    def _render(self) -> None:
        self.text.clear()
        rec = self._record
        if rec is None:
            self.stats.setText("No record selected.")
            return
        if self._tokenizer is None:
            self.stats.setText("Waiting for the tokenizer…" if self._loading else "")
            return
        from engine.data import preview
        from engine.data.preview import untrained_note
        from engine.data.templates import marker_problems, split_markers

        tok = self.rendering_tokenizer()
        skipped: list[int] = []
        try:
            pieces = preview(rec, tok, self.template.currentText(), skipped=skipped,
                             loss_on=self.loss_on)
        except StudioError as e:
            self.stats.setText(f"<span style='color:#b71c1c'>{e.message}</span>")
            return
        cursor = self.text.textCursor()
        trained_fmt = QTextCharFormat()
        trained_fmt.setBackground(_TRAINED_BG)
        prompt_fmt = QTextCharFormat()
        prompt_fmt.setForeground(_PROMPT_FG)
        for text, trained in pieces:
            cursor.insertText(text, trained_fmt if trained else prompt_fmt)
        self.text.moveCursor(QTextCursor.MoveOperation.Start)
        total = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t, _ in pieces)
        trained = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t, tr in pieces if tr)
        note = (f"<br><span style='color:#8a5a00'>Note: {untrained_note(skipped)}.</span>" if skipped else "")
        split = marker_problems(tok, self.template.currentText())
        if split:
            note += (f"<br><span style='color:#8a5a00'>Note: this tokenizer splits the {self.template.currentText()} "
                     f"markers into pieces ({html.escape(', '.join(split))}); the model would learn them as "
                     "text. Add them as tokens (Train area, Add tokens: "
                     f"{html.escape(', '.join(split_markers(tok, self.template.currentText())))}; method LoRA, "
                     "QLoRA or full), or use its own chat template or a format it has the tokens of.</span>")
        policy = {"last_answer": " (loss on the last answer only)", "all": " (loss on every token)"}.get(self.loss_on, "")
        self.stats.setText((f"≈{total:,} tokens, {trained:,} trained ({trained / total:.0%}){policy}" if total else "")
                           + note)
