"""The Adapters area: the library of adapter cards beside a playground that compares them.

One prompt goes to the base and to each checked adapter; their answers stream into
columns side by side, each with its tokens/s. The models live in a generation worker
process (``engine.generate``), which loads the base once and switches adapters with
``set_adapter``; this widget only sends commands and shows events.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from engine import adapters as lib
from engine.errors import StudioError
from engine.generate import BASE, LOAD_CHOICES, GenerationSettings, type_groups
from engine.gguf_export import unmergeable
from engine.runs import read_run_config
from gui.adapters.compare_dialog import CompareDialog, WholeModel, compare_problem
from gui.adapters.generation_thread import GenerationThread
from gui.adapters.gguf_dialog import GgufDialog
from gui.adapters.library_model import AdapterCardDelegate, AdapterLibraryModel, PathRole, method_label
from gui.adapters.merge_dialog import MergeDialog, merge_problem
from gui.adapters.prompts import PromptStore, SavedPrompt
from gui.flow_layout import FlowLayout
from gui.fonts import set_relative_font
from gui.scheme import MARK_CONTRAST, error_banner_style, ink, keep_styled
from gui.settings import kept_dict, studio_settings
from gui.train.model_picker import recent_models, remember_model

COLUMN_COLORS = ("#1565c0", "#2e7d32", "#ad1457", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037")
BASE_COLOR = "#616161"
PLAYGROUND_KEY = "adapters/playground"
"""The settings key of the playground as the user left it (JSON): the base and its precision, the
ticked adapters, the prompt and system message, the generation settings, "Compare with base"."""


class ElidedLabel(QLabel):
    """A one-line label that elides (…) instead of being clipped; the whole text is its tooltip."""

    def __init__(self, text: str = "", mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self._full = ""
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        self._full = text
        self.setToolTip(text)
        self._elide()

    def text(self) -> str:  # the whole text; what is painted may be elided
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def sizeHint(self):  # noqa: D102 - the unelided width, so layouts give it room when they can
        hint = super().sizeHint()
        hint.setWidth(self.fontMetrics().horizontalAdvance(self._full) + 4)
        return hint

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, self._mode, max(self.width() - 2, 0))
        if shown != super().text():
            super().setText(shown)


def _preview(text: str, most: int = 200) -> str:
    """A saved prompt's text as a question quotes it: the start of a long one, then "…"."""
    return text if len(text) <= most else text[:most - 1].rstrip() + "\u2026"


def _base_choice(recorded: str | None) -> str | None:
    """What to put in the base box for an adapter's recorded base: ``demo`` for the demo folder."""
    if not recorded:
        return None
    return "demo" if lib.base_label(recorded) == "demo" else recorded


PROMPT_LINES = 4  # the prompt box's height, in lines of text


class OutputColumn(QFrame):
    """One answer: who answered, the streamed text, and its speed."""

    def __init__(self, key: str, title: str, subtitle: str, color: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.key = key
        self.setObjectName("outputColumn")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumWidth(260)
        keep_styled(self, lambda: f"QFrame#outputColumn {{ border: 1px solid palette(mid); "
                    f"border-top: 3px solid {ink(color, target=MARK_CONTRAST)}; border-radius: 4px; }}")
        self.title = ElidedLabel(title)  # a long run name ends in "…" inside the column, not past its edge
        keep_styled(self.title, lambda: f"color: {ink(color)}; border: none;")
        set_relative_font(self.title, 0.75, bold=True)  # 13 px at the default font, and follows a raised one
        self.subtitle = ElidedLabel(subtitle)  # "/long/path/to/base · adapters off" ends in "…", not mid-word
        self.subtitle.setStyleSheet("color: palette(placeholder-text); border: none;")
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFrameShape(QFrame.Shape.NoFrame)
        self.stats = QLabel("waiting…")
        self.stats.setWordWrap(True)  # "16 tokens · 61.2 tokens/s · 0.26 s · switch 0.5 ms" on a narrow column
        self.stats.setStyleSheet("color: palette(placeholder-text); border: none;")
        self.error = ""
        self.done = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(3)
        lay.addWidget(self.title)
        lay.addWidget(self.subtitle)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.stats)
        self._started = time.perf_counter()
        self._chars = 0

    # ---- Public API
    def append(self, text: str) -> None:
        if self.error:
            return
        if not self._chars:
            self.stats.setText("streaming…")
        self._chars += len(text)
        cursor = self.text.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(text)
        self.text.setTextCursor(cursor)

    def finish(self, data: dict[str, Any]) -> None:
        """Show the final text (the worker's decode is authoritative) and the speed."""
        self.done = True
        if self.text.toPlainText() != data.get("text", ""):
            self.text.setPlainText(data.get("text", ""))
        tokens, rate = data.get("tokens", 0), data.get("tokens_per_s", 0.0)
        parts = [f"{tokens} tokens", f"{rate:.1f} tokens/s", f"{data.get('time_s', 0.0):.2f} s"]
        if data.get("adapter") != BASE:
            parts.append(f"switch {data.get('switch_s', 0.0) * 1000:.1f} ms")
        if data.get("stopped"):
            parts.append("stopped")
        # A narrow column wraps between the figures, never inside one ("switch" / "1.6 ms").
        self.stats.setText(" · ".join(part.replace(" ", "\u00a0") for part in parts))

    def show_error(self, message: str) -> None:
        self.done = True
        self.error = message
        self.text.setPlainText(message)
        self.text.setStyleSheet(f"color: {ink('#b3261e')};")
        self.stats.setText("failed")

    def answer(self) -> str:
        return self.text.toPlainText()


class AdaptersArea(QWidget):
    """The adapter library and the playground."""

    sig_title_changed = Signal(str)
    """Text for the window title (the base model of the playground)."""
    sig_base_loaded = Signal(dict)
    """The worker loaded the base or an adapter: base, adapters, adapter?, load_s, device, dtype, base_loads."""
    sig_generation_finished = Signal(str)
    """Every column of a request has its answer (or its error); the request id."""
    sig_error = Signal(dict)
    """An error was shown to the user (the worker's error dict)."""

    # ---- Public API
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.thread: GenerationThread | None = None
        self._worker_key: tuple[str, str] | None = None
        self._names: dict[str, str] = {}          # adapter folder -> its name in the worker (kept once given)
        self._loaded: dict[str, str] = {}         # adapter folder -> PEFT type, for what the worker holds
        self._turns: list[list[lib.AdapterCard]] = []  # this request's adapter groups still to answer
        self._stopping = False
        self._prompt: tuple[str, str | None, dict[str, Any]] = ("", None, {})  # the request's prompt, system, settings
        self.columns: dict[str, OutputColumn] = {}
        self._request = ""
        self._request_count = 0
        self.busy = False
        self.last_loaded: dict[str, Any] = {}
        self.prompts = PromptStore()
        self._build()
        self._match_timer = QTimer(self)
        self._match_timer.setSingleShot(True)
        self._match_timer.setInterval(300)
        self._match_timer.timeout.connect(self._update_matches)
        self.base_box.currentTextChanged.connect(lambda _: self._match_timer.start())
        self.refresh()
        self._reload_prompt_names()
        self._update_buttons()
        # The playground is written to the settings as it changes, 0.4 s after the last change (a
        # burst of typing is one write, ~10 ms each, not one per key): a crash loses at most that.
        self._remembered = json.dumps(self._playground_state())  # the last written or restored; the defaults
        self._remembering = True
        self._remember_timer = QTimer(self)
        self._remember_timer.setSingleShot(True)
        self._remember_timer.setInterval(400)
        self._remember_timer.timeout.connect(self.remember_form)
        for changed in (self.base_box.currentTextChanged, self.precision_box.currentTextChanged,
                        self.prompt_edit.textChanged, self.system_edit.textChanged, self.max_tokens.valueChanged,
                        self.temperature.valueChanged, self.top_p.valueChanged, self.repetition.valueChanged,
                        self.seed.valueChanged, self.compare_base.toggled, self.model.dataChanged,
                        self.model.modelReset):
            changed.connect(lambda *_: self._remember_timer.start())

    def refresh(self) -> None:
        """Re-read the library (runs, library folder, added folders) and each card's fit with the base."""
        selected = self._selected_path()
        cards = lib.list_adapters()
        for card in cards:
            if card.source == "added" and not card.loadable and not Path(card.path).exists():
                # The engine's text names the command line's "adapters remove"; here it is a button.
                card.problem = "the folder no longer exists (deleted or moved): select it and press Remove to forget it"
        self.model.set_cards(cards)
        self._update_matches()
        n = len(self.model.cards)
        self.library_title.setText(f"Adapter library ({n})" if n else "Adapter library")
        self.empty_hint.setVisible(n == 0)
        if selected:
            self._select(selected)

    def refresh_library(self) -> str:
        """The Refresh button: read the library again and say in the status line what it found (a
        click that changed nothing looked like a click that did nothing). Returns that line."""
        before = {c.path: c.name for c in self.model.cards}
        self.refresh()
        after = {c.path: c.name for c in self.model.cards}
        n = len(after)
        changes = [f"{len(names)} {what} ({', '.join(names[:2])}{', …' if len(names) > 2 else ''})"
                   for what, names in (("new", [after[p] for p in after if p not in before]),
                                       ("gone", [before[p] for p in before if p not in after])) if names]
        text = (f"library read again: {n} adapter{'' if n == 1 else 's'}, "
                + (", ".join(changes) if changes else "nothing new or gone"))
        self.status.setText(text)
        return text

    def try_adapter(self, path: str | Path) -> None:
        """Open the playground on one adapter (a run's "Try it"): add it, fit the base, load it.

        Args:
            path: The adapter folder (a run's ``final/``) or its run folder.
        """
        try:
            card = lib.read_card(path)
        except StudioError as e:
            folder = Path(path)
            if (folder / "config.json").exists():
                # Full and freeze runs save a whole model, not an adapter: try it as the base.
                self.base_box.setCurrentText(str(folder))
                for other in list(self.model.checked):
                    self.model.set_checked(other, False)
                self.compare_base.setChecked(True)
                self._show_banner("")
                self._ensure_worker()
                self.status.setText(f"{folder.parent.name}: a whole model, loaded as the base…")
                self.prompt_edit.setFocus()
                return
            self._show_banner(f"Can't try {path}: {e.message}")
            return
        if self.model.row_of(card.path) < 0:
            lib.add_adapter(card.path)
            self.refresh()
        self._fit_base(card)
        for other in list(self.model.checked):
            self.model.set_checked(other, False)
        if not self.model.set_checked(card.path, True):
            match = self.model.matches.get(card.path)
            self._show_banner(f"{card.name} can't be loaded: "
                              f"{card.problem or (match.message if match else 'unknown reason')}")
            return
        self._select(card.path)
        self._show_banner("")
        self._ensure_worker()
        self._load_group([card])
        self.prompt_edit.setFocus()

    def base_text(self) -> str:
        return self.base_box.currentText().strip() or "demo"

    def settings(self) -> GenerationSettings:
        """The generation settings as the widgets show them."""
        return GenerationSettings(max_new_tokens=self.max_tokens.value(), temperature=self.temperature.value(),
                                  top_p=self.top_p.value(), repetition_penalty=self.repetition.value(),
                                  seed=self.seed.value())

    def set_settings(self, values: dict[str, Any]) -> None:
        try:
            s = GenerationSettings.from_dict(values)
        except StudioError:
            return
        self.max_tokens.setValue(s.max_new_tokens)
        self.temperature.setValue(s.temperature)
        self.top_p.setValue(s.top_p)
        self.repetition.setValue(s.repetition_penalty)
        self.seed.setValue(s.seed or 0)

    def load_base(self) -> None:
        """(Re)start the worker on the base and precision shown, and load the checked adapters."""
        self._ensure_worker(restart=True)
        turns = self._plan_turns(self.model.checked_cards())
        if turns:
            self._load_group(turns[0])  # the other types load in their turn, at Generate

    def generate(self) -> str | None:
        """Send the prompt to the base (if compared) and every checked adapter. Returns the request id."""
        prompt = self.prompt_edit.toPlainText().strip()
        cards = self.model.checked_cards()
        with_base = self.compare_base.isChecked()
        if not prompt:
            self._show_banner("Type a prompt first.")
            return None
        if not cards and not with_base:
            self._show_banner("Check at least one adapter in the library, or tick \"Compare with base\".")
            return None
        if self.busy or self._gone_since_read(cards):
            return None
        self._show_banner("")
        self._ensure_worker()
        assert self.thread is not None
        self._request_count += 1
        self._request = f"g{self._request_count}"
        self._build_columns(with_base, cards, [self._name_for(card) for card in cards])
        # PEFT holds one adapter type on a base at a time: mixed types answer in turns, the
        # type already on the base first, the next turn sent when the worker has finished one.
        self._turns = self._plan_turns(cards)
        self._stopping = False
        self._prompt = (prompt, self.system_edit.text().strip() or None, self.settings().to_dict())
        self._next_turn(with_base)
        self.busy = True
        self._update_buttons()
        return self._request

    def stop(self) -> None:
        """Stop the current request after the current token."""
        if self.thread is not None and self.busy:
            self._stopping = True  # and the turns of other adapter types are not started
            self.thread.stop_generation()

    def save_prompt(self, name: str | None = None) -> str | None:
        """Save the prompt, system message and settings under ``name`` (asked for when None).

        A different saved prompt of that name is replaced only if the user says so: the suggested
        name is the prompt's first 40 characters, which prompts from one dataset often share."""
        prompt = self.prompt_edit.toPlainText().strip()
        if not prompt:
            self._show_banner("Type a prompt to save first.")
            return None
        if name is None:
            suggested = prompt.splitlines()[0][:40]
            name, ok = QInputDialog.getText(self, "Save prompt", "Name:", text=suggested)
            if not ok:
                return None
        name = name.strip()
        if not name:
            return None
        new = SavedPrompt(name=name, prompt=prompt, system=self.system_edit.text().strip(),
                          settings=self.settings().to_dict())
        old = self.prompts.get(name)
        if old is not None and old != new and not self._confirm_replace_prompt(old):
            return None
        self.prompts.save(new)
        self._reload_prompt_names(select=name)
        return name

    def open_prompt(self, name: str) -> bool:
        """Put a saved prompt (text, system message, settings) into the editors."""
        saved = self.prompts.get(name)
        if saved is None:
            return False
        self.prompt_edit.setPlainText(saved.prompt)
        self.system_edit.setText(saved.system)
        self.set_settings(saved.settings)
        return True

    def replay_prompt(self, name: str | None = None) -> str | None:
        """Open a saved prompt and generate with it against the current selection."""
        name = name or self.saved_box.currentText()
        if not name or not self.open_prompt(name):
            return None
        return self.generate()

    def remember_form(self) -> None:
        """Keep the playground for the next start: the base, the ticked adapters, the prompt and the
        generation settings. Called as they change, and by the main window as it closes."""
        self._remember_timer.stop()
        text = json.dumps(self._playground_state())
        if not self._remembering or text == self._remembered:
            return  # a session that changed nothing (``--demo``) leaves the last one's playground
        s = studio_settings()
        s.setValue(PLAYGROUND_KEY, text)
        s.sync()
        self._remembered = text

    def restore_form(self) -> bool:
        """Put back the playground as the user left it: the base, the adapters ticked that are still
        in the library (one deleted since is dropped without a word), the prompt and the generation
        settings. Nothing is loaded until the user asks. False when nothing was kept."""
        values, text = kept_dict(PLAYGROUND_KEY)
        if values is None:
            return False
        self._remembering = False  # the state being put back is what the settings already hold
        try:
            base = values.get("base")
            if isinstance(base, str) and base.strip():
                self.base_box.setCurrentText(base)
            if isinstance(values.get("precision"), str) and values["precision"] in LOAD_CHOICES:
                self.precision_box.setCurrentText(values["precision"])
            if isinstance(values.get("compare_base"), bool):
                self.compare_base.setChecked(values["compare_base"])
            if isinstance(values.get("prompt"), str):
                self.prompt_edit.setPlainText(values["prompt"])
            if isinstance(values.get("system"), str):
                self.system_edit.setText(values["system"])
            if isinstance(values.get("settings"), dict):
                self.set_settings(values["settings"])
            self._match_timer.stop()
            self._update_matches()  # which cards the restored base can take, before ticking them
            for other in list(self.model.checked):
                self.model.set_checked(other, False)
            adapters = values.get("adapters")
            for path in adapters if isinstance(adapters, list) else []:
                if isinstance(path, str) and path:
                    self.model.set_checked(path, True)  # False for a folder gone or refused: dropped
        finally:
            self._remembering = True
        self._remember_timer.stop()
        self._remembered = text
        self._update_buttons()
        return True

    def on_shown(self) -> None:
        self.refresh()

    def prepare_screenshot(self) -> None:
        """For ``--screenshot``: the library with its first two adapters checked."""
        self._remembering = False  # a screenshot leaves the user's playground in the settings alone
        self.refresh()
        fitting = [c for c in self.model.cards if self.model.set_checked(c.path, True)]
        for card in fitting[2:]:
            self.model.set_checked(card.path, False)
        if not self.prompt_edit.toPlainText():
            self.prompt_edit.setPlainText("What should I do today?")

    def shutdown(self) -> None:
        """Quit the worker before the app exits."""
        self._stop_worker()

    # ---- Building
    def _build(self) -> None:
        # Left: the library.
        self.library_title = QLabel("Adapter library")
        set_relative_font(self.library_title, 1.5, bold=True)
        self.model = AdapterLibraryModel(self)
        self.list = QListView()
        self.list.setAccessibleName("Adapter library")
        self.list.setModel(self.model)
        self.list.setItemDelegate(AdapterCardDelegate(self.list))
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # cards elide instead
        self.list.setMouseTracking(True)
        self.list.setStyleSheet("QListView { border: none; background: transparent; }")
        self.list.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.model.dataChanged.connect(lambda *_: self._update_buttons())
        self.empty_hint = QLabel("No adapters yet. Train a LoRA, IA3 or prompt tuning run, or add a PEFT "
                                 "adapter folder.")
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setStyleSheet("color: palette(placeholder-text); padding: 12px;")
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Add a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Forget an added folder (its files stay on disk)")
        self.export_button = QPushButton("Export")
        self.export_button.setToolTip("Copy the selected adapter on its own, or write it merged into its base "
                                      "as one GGUF file for llama.cpp, Ollama and LM Studio")
        export_menu = QMenu(self.export_button)
        self.export_folder_action = export_menu.addAction("Adapter folder…", self._on_export_clicked)
        self.export_gguf_action = export_menu.addAction("GGUF file (merged into its base)…", self._on_gguf_clicked)
        export_menu.setToolTipsVisible(True)  # says why "GGUF file" is greyed out for an adapter that can't merge
        self.export_button.setMenu(export_menu)
        self.merge_button = QPushButton("Merge…")
        self.merge_button.setToolTip("Merge the ticked LoRA/IA3 adapters (or the selected one) into the base "
                                     "and save a plain model folder")
        self.compare_button = QPushButton("Compare on data…")
        self.compare_button.setToolTip("Score the base and the ticked adapters (or the selected one) on a "
                                       "dataset's records, set aside what each trained on, and read their "
                                       "answers where they differ most")
        self.compare_button.clicked.connect(self._on_compare_clicked)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the library again: runs finished or deleted since, the library folder, "
                                       "added folders")
        self.merge_button.clicked.connect(self._on_merge_clicked)
        self.add_button.clicked.connect(self._on_add_clicked)
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.refresh_button.clicked.connect(self.refresh_library)
        # Two rows keep the library pane narrow: what acts on the selection, then the library itself.
        lib_buttons = QGridLayout()
        lib_buttons.setHorizontalSpacing(6)
        lib_buttons.addWidget(self.export_button, 0, 0)
        lib_buttons.addWidget(self.merge_button, 0, 1)
        lib_buttons.addWidget(self.compare_button, 0, 3)
        lib_buttons.addWidget(self.add_button, 1, 0)
        lib_buttons.addWidget(self.remove_button, 1, 1)
        lib_buttons.addWidget(self.refresh_button, 1, 3)
        lib_buttons.setColumnStretch(2, 1)
        lib_hint = QLabel("Tick adapters to compare them in the playground.")
        lib_hint.setWordWrap(True)  # at a large font it was cut at the pane's edge
        lib_hint.setStyleSheet("color: palette(placeholder-text);")
        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(8, 8, 4, 8)
        left_lay.addWidget(self.library_title)
        left_lay.addWidget(lib_hint)
        left_lay.addWidget(self.empty_hint)
        left_lay.addWidget(self.list, 1)
        left_lay.addLayout(lib_buttons)

        # Right: the playground.
        title = QLabel("Playground")
        set_relative_font(title, 1.5, bold=True)
        self.base_box = QComboBox()
        self.base_box.setEditable(True)
        self.base_box.addItem("demo")
        for model in recent_models():  # the Train area's recent models, merged ones included
            self.base_box.addItem(model)
        self.base_box.setMinimumWidth(220)
        self.base_box.setToolTip("The base model: 'demo', a model folder, or a Hugging Face id in your cache")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._on_browse_clicked)
        self.precision_box = QComboBox()
        self.precision_box.addItems(list(LOAD_CHOICES))
        self.precision_box.setToolTip("How the base is loaded, as in training: auto = bf16/fp16 on a GPU, fp32 on "
                                      "the CPU; int8 and nf4 need CUDA")
        self.load_button = QPushButton("Load base")
        self.load_button.clicked.connect(self.load_base)
        # Middle elision keeps both ends of "merged model saved to /long/path/out".
        self.status = ElidedLabel("base not loaded", Qt.TextElideMode.ElideMiddle)
        self.status.setStyleSheet("color: palette(placeholder-text);")
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        base_row = QHBoxLayout()
        base_label, precision_label = QLabel("Base"), QLabel("Precision")
        base_label.setBuddy(self.base_box)  # a screen reader names each box by its label
        precision_label.setBuddy(self.precision_box)
        base_row.addWidget(base_label)
        base_row.addWidget(self.base_box, 1)
        base_row.addWidget(self.browse_button)
        base_row.addWidget(precision_label)
        base_row.addWidget(self.precision_box)
        base_row.addWidget(self.load_button)

        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("Prompt: the same text goes to the base and to each ticked adapter "
                                            "(Ctrl+Enter to generate)")
        # Four lines of the font, never under the 72 px of the default one: at 16 pt the 72 px held
        # two and a half.
        doc = self.prompt_edit.document()
        self.prompt_edit.setFixedHeight(max(72, PROMPT_LINES * self.prompt_edit.fontMetrics().lineSpacing()
                                            + int(2 * doc.documentMargin()) + 2 * self.prompt_edit.frameWidth()))
        # Tab goes on to the next control: a tab character in a prompt is rarely meant, and in this
        # box Tab trapped the keyboard (every press typed one more).
        self.prompt_edit.setTabChangesFocus(True)
        self.prompt_edit.setAccessibleName("Prompt")
        self.system_edit = QLineEdit()
        self.system_edit.setPlaceholderText("System message (optional)")
        self.system_edit.setAccessibleName("System message")

        d = GenerationSettings()
        b = GenerationSettings.BOUNDS
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(*b["max_new_tokens"])
        self.max_tokens.setValue(d.max_new_tokens)
        self.max_tokens.setToolTip("Generate at most this many tokens per answer")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(*b["temperature"])
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(d.temperature)
        self.temperature.setToolTip("0 = greedy (deterministic); higher = more random")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(d.top_p)
        self.top_p.setToolTip("Nucleus sampling: keep the smallest set of tokens with this much probability "
                              "(ignored when greedy)")
        self.repetition = QDoubleSpinBox()
        self.repetition.setRange(*b["repetition_penalty"])
        self.repetition.setSingleStep(0.05)
        self.repetition.setValue(d.repetition_penalty)
        self.repetition.setToolTip("Above 1 discourages repeating tokens; 1 = off")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(d.seed or 0)
        self.seed.setToolTip("Sampling seed, the same for every column so they are comparable")
        self.compare_base = QCheckBox("Compare with base")
        self.compare_base.setChecked(True)
        self.compare_base.setToolTip("Also answer with the base model alone (adapters disabled)")
        # Label-and-box pairs in a flow: at 1024 px the playground is ~480 px wide, where one grid row
        # cut every label ("Tempe", "Rep. pe") and the checkbox.
        settings_row = FlowLayout(spacing=10)
        for label, w, tip in (
                ("Max tokens", self.max_tokens, "max_new_tokens"), ("Temperature", self.temperature, "temperature"),
                ("Top-p", self.top_p, "top_p"), ("Rep. penalty", self.repetition, "repetition_penalty"),
                ("Seed", self.seed, "seed")):
            lab = QLabel(label)
            lab.setBuddy(w)  # a screen reader names the box by its label
            lab.setToolTip(f"{w.toolTip()} ({tip})")
            w.setMinimumWidth(64)
            w.setMaximumWidth(90)
            pair = QWidget()
            pl = QHBoxLayout(pair)
            pl.setContentsMargins(0, 0, 0, 0)
            pl.setSpacing(4)
            pl.addWidget(lab)
            pl.addWidget(w)
            settings_row.addWidget(pair)
        settings_row.addWidget(self.compare_base)

        self.saved_box = QComboBox()
        self.saved_box.setMinimumWidth(150)
        self.saved_box.setPlaceholderText("Saved prompts")
        self.saved_box.setToolTip("Pick a saved prompt to put it (and its settings) in the editor")
        self.saved_box.activated.connect(lambda _: self.open_prompt(self.saved_box.currentText()))
        self.saved_box.currentIndexChanged.connect(lambda _: self._update_buttons())
        self.save_button = QPushButton("Save prompt…")
        self.save_button.clicked.connect(lambda: self.save_prompt())
        self.replay_button = QPushButton("Replay")
        self.replay_button.setToolTip("Run the selected saved prompt again against the ticked adapters")
        self.replay_button.clicked.connect(lambda: self.replay_prompt())
        self.delete_prompt_button = QPushButton("Delete")
        self.delete_prompt_button.setToolTip("Delete the selected saved prompt (after asking)")
        self.delete_prompt_button.clicked.connect(self._on_delete_prompt)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setStyleSheet("QPushButton#generateButton { font-weight: bold; padding: 4px 18px; }")
        self.generate_button.setDefault(True)
        self.generate_button.setToolTip("Answer the prompt with the base and each ticked adapter (Ctrl+Enter)")
        self.generate_button.clicked.connect(self.generate)
        # Saved prompts on one row, Stop and Generate on the next, right-aligned: in one row at 1024 px
        # the buttons were cut ("ave prompt.", "enera").
        prompts_row = QHBoxLayout()
        prompts_row.addWidget(self.saved_box, 1)
        prompts_row.addWidget(self.replay_button)
        prompts_row.addWidget(self.save_button)
        prompts_row.addWidget(self.delete_prompt_button)
        run_row = QHBoxLayout()
        run_row.addStretch(1)
        run_row.addWidget(self.stop_button)
        run_row.addWidget(self.generate_button)
        actions = QVBoxLayout()
        actions.setSpacing(4)
        actions.addLayout(prompts_row)
        actions.addLayout(run_row)
        # Ctrl with either Enter key (the main one is Return to Qt; the keypad's is Enter).
        self.generate_shortcut = QShortcut(self)
        self.generate_shortcut.setKeys([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.generate_shortcut.activated.connect(self.generate)
        self.generate_shortcut.setWhatsThis("Generate")

        self.banner = QLabel("")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        keep_styled(self.banner, error_banner_style)
        self.banner.hide()

        self.columns_host = QWidget()
        self.columns_layout = QHBoxLayout(self.columns_host)
        self.columns_layout.setContentsMargins(0, 0, 0, 0)
        self.columns_layout.setSpacing(8)
        self.columns_placeholder = QLabel("Answers appear here, one column per model, side by side.")
        self.columns_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.columns_placeholder.setStyleSheet("color: palette(placeholder-text);")
        self.columns_layout.addWidget(self.columns_placeholder)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.columns_host)

        right = QWidget()
        right_lay = QVBoxLayout(right)
        right_lay.setContentsMargins(4, 8, 8, 8)
        right_lay.setSpacing(6)
        title_row = QHBoxLayout()
        title_row.addWidget(title)
        title_row.addSpacing(24)
        title_row.addWidget(self.status, 1)  # what is loaded, where the eye starts
        right_lay.addLayout(title_row)
        right_lay.addLayout(base_row)
        right_lay.addWidget(self.prompt_edit)
        right_lay.addWidget(self.system_edit)
        right_lay.addLayout(settings_row)
        right_lay.addLayout(actions)
        right_lay.addWidget(self.banner)
        right_lay.addWidget(scroll, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        # A wider window gives the library a third of what it adds: at 1920 px the cards show whole
        # names and target lists instead of staying at the minimum beside a mostly empty playground.
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 2)
        # The cards need their width: answer columns appearing must not squeeze the library. A
        # minimum width replaces the layout's own, so that one is kept when larger: at 13 pt the
        # buttons' row needs more, and "Compare on data…" was cut to "ompare on data.".
        left.setMinimumWidth(max(372, left.minimumSizeHint().width()))
        splitter.setSizes([360, 900])
        splitter.setChildrenCollapsible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(splitter)

    def _build_columns(self, with_base: bool, cards: list[lib.AdapterCard], names: list[str]) -> None:
        while self.columns_layout.count():
            item = self.columns_layout.takeAt(0)
            w = item.widget()
            if w is not None and w is not self.columns_placeholder:
                # Hidden now: until the deferred delete runs, the old column would still be painted
                # under the new ones, its title over theirs.
                w.hide()
                w.deleteLater()
        self.columns_placeholder.hide()
        self.columns = {}
        if with_base:
            title, subtitle = self._base_heading(adapters=bool(cards))
            self.columns[BASE] = OutputColumn(BASE, title, subtitle, BASE_COLOR)
            self.columns[BASE].subtitle.setToolTip(self.base_text())
        for i, (card, name) in enumerate(zip(cards, names, strict=True)):
            parts = [method_label(card.method) + (f" r{card.rank}" if card.rank else "")]
            if card.dataset_records is not None:
                parts.append(f"{card.dataset_records} records")
            if card.best_eval_loss is not None:
                parts.append(f"eval {card.best_eval_loss:.3f}")
            col = OutputColumn(name, card.name, " · ".join(parts), COLUMN_COLORS[i % len(COLUMN_COLORS)])
            col.subtitle.setToolTip(card.path)
            self.columns[name] = col
        for col in self.columns.values():
            self.columns_layout.addWidget(col, 1)

    def _base_heading(self, adapters: bool) -> tuple[str, str]:
        """Title and subtitle of the base's column. A full or freeze run's model (its ``final/``,
        tried from the Runs area) is named by its run, not "Base" over a path."""
        base = self.base_text()
        folder = Path(base).expanduser()
        cfg = read_run_config(folder.parent) if folder.name == "final" and (folder / "config.json").exists() else {}
        if not cfg:
            return "Base", f"{base} · adapters off"
        method = str(cfg.get("method") or "")
        subtitle = f"{method_label(method) if method else 'trained'} run · trained from {lib.base_label(cfg.get('model'))}"
        return folder.parent.name, subtitle + (" · adapters off" if adapters else "")

    # ---- Worker
    def _ensure_worker(self, restart: bool = False) -> None:
        key = (self.base_text(), self.precision_box.currentText())
        if self.thread is not None and not self.thread.exited and self._worker_key == key and not restart:
            return
        self._stop_worker()
        self._worker_key = key
        self._names = {}
        self._loaded = {}
        self._turns = []
        self.busy = False
        thread = GenerationThread(key[0], key[1], parent=self)
        thread.sig_loaded.connect(self._on_loaded)
        thread.sig_tokens.connect(self._on_tokens)
        thread.sig_generated.connect(self._on_generated)
        thread.sig_error.connect(self._on_error)
        thread.sig_ready.connect(self._on_ready)
        thread.sig_exited.connect(self._on_exited)
        self.thread = thread
        self.status.setText(f"loading {key[0]} ({key[1]})…")
        self.sig_title_changed.emit(f"Playground: {key[0]}")
        thread.begin()
        self._update_buttons()

    def _stop_worker(self) -> None:
        thread, self.thread = self.thread, None
        if thread is None:
            return
        for sig in (thread.sig_loaded, thread.sig_tokens, thread.sig_generated, thread.sig_error,
                    thread.sig_ready, thread.sig_exited):
            sig.disconnect()
        thread.shutdown()
        thread.deleteLater()
        self.busy = False

    def _name_for(self, card: lib.AdapterCard) -> str:
        """The adapter's name in the worker (its run's name, made unique), the same for the worker's life."""
        name = self._names.get(card.path)
        if name is None:
            name = lib.adapter_name(card, set(self._names.values()))
            self._names[card.path] = name
        return name

    def _plan_turns(self, cards: list[lib.AdapterCard]) -> list[list[lib.AdapterCard]]:
        """``cards`` grouped by PEFT type, the group of the type the worker holds now first."""
        groups = [[cards[i] for i in g] for g in type_groups(cards)]
        resident = set(self._loaded.values())
        return sorted(groups, key=lambda g: g[0].peft_type not in resident)

    def _load_group(self, cards: list[lib.AdapterCard]) -> list[str]:
        """Have the worker hold ``cards`` (one PEFT type): adapters of another type are unloaded
        first; those of the same type stay, so switching back to them is instant."""
        assert self.thread is not None
        kind = cards[0].peft_type if cards else None
        for path, loaded_kind in list(self._loaded.items()):
            if loaded_kind != kind:
                self.thread.unload(self._names[path])
                del self._loaded[path]
        names = []
        for card in cards:
            name = self._name_for(card)
            if card.path not in self._loaded:
                self._loaded[card.path] = str(card.peft_type)
                self.thread.load_adapter(card.path, name)
            names.append(name)
        return names

    def _next_turn(self, with_base: bool = False) -> None:
        """Load the next group of adapters and ask for their answers (and the base's, first)."""
        assert self.thread is not None
        group = self._turns.pop(0) if self._turns else []
        names = self._load_group(group) if group else []
        prompt, system, settings = self._prompt
        self.thread.generate(self._request, prompt, ([BASE] if with_base else []) + names, settings, system)

    # ---- Slots
    def _on_loaded(self, data: dict) -> None:
        self.last_loaded = data
        n = len(data.get("adapters") or {})
        self.status.setText(f"{data.get('base')} · {data.get('dtype')} on {data.get('device')} · "
                            f"{n} adapter{'s' if n != 1 else ''} loaded")
        self.sig_base_loaded.emit(data)

    def _on_tokens(self, request: str, adapter: str, text: str) -> None:
        col = self.columns.get(adapter)
        if request == self._request and col is not None:
            col.append(text)

    def _on_generated(self, data: dict) -> None:
        col = self.columns.get(str(data.get("adapter")))
        if data.get("request") == self._request and col is not None:
            col.finish(data)
            self._check_request_done()

    def _on_error(self, data: dict) -> None:
        message = str(data.get("message", "error"))
        if data.get("hint"):
            message += f"\n{data['hint']}"
        cmd = data.get("cmd")
        if cmd == "load_adapter":
            path = str(data.get("path") or "")
            self._loaded.pop(path, None)  # sent as card.path, so it comes back the same
            name = self._names.get(path)
            col = self.columns.get(name or "")
            if col is not None and not col.done:
                col.show_error(message)
            else:
                card = self._card(path)  # a run's adapter is its final/: name the run
                self._show_banner(f"Could not load adapter {card.name if card else Path(path).name or path}: "
                                  f"{message}")
        elif cmd == "generate" and data.get("adapter") in self.columns:
            col = self.columns[data["adapter"]]
            if not col.error:
                col.show_error(message)
            self._check_request_done()
        elif cmd == "generate":
            for col in self.columns.values():
                if not col.done:
                    col.show_error(message)
            self._check_request_done()
        else:
            what = "load the base" if cmd == "start" else str(cmd or "run the generation worker")
            self._show_banner(f"Could not {what}: {message}")
            if data.get("fatal"):
                self.status.setText("base not loaded")
        self.sig_error.emit(data)

    def _on_ready(self, data: dict) -> None:
        if data.get("cmd") == "generate" and data.get("request") == self._request:
            if self._turns and self.busy and not self._stopping and self.thread is not None:
                self._next_turn()
                return
            self._turns = []
            for col in self.columns.values():
                if not col.done:
                    col.show_error("no answer (stopped)")
            self._finish_request()

    def _on_exited(self, data: dict) -> None:
        if self.thread is not None:
            self.thread = None
            self._names = {}
            self._loaded = {}
            self._turns = []
            if self.columns and self.busy:
                for col in self.columns.values():
                    if not col.done:
                        col.show_error("the generation worker stopped")
            if data.get("returncode") not in (0, 2):
                self._show_banner(f"The generation worker exited unexpectedly (code {data.get('returncode')}).")
            self.status.setText("base not loaded")
            self._finish_request()

    def _check_request_done(self) -> None:
        if self.busy and self.columns and all(c.done for c in self.columns.values()):
            self._finish_request()

    def _finish_request(self) -> None:
        if not self.busy:
            return
        self.busy = False
        self._update_buttons()
        self.sig_generation_finished.emit(self._request)

    def _on_add_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a PEFT adapter folder")
        if folder:
            self._add_folder(folder)

    def _add_folder(self, folder: str) -> None:
        try:
            card = lib.add_adapter(folder)
        except StudioError as e:
            if (Path(folder) / "config.json").is_file() and not (Path(folder) / "adapter_config.json").exists():
                # A full or freeze run's final/ (or any model folder): the playground takes it as the base.
                self._show_banner(f"Can't add {folder}: it is a whole model (config.json), not an adapter. "
                                  "To try it, choose it as the Base (Browse…) and tick \"Compare with base\".")
            else:
                self._show_banner(f"Can't add {folder}: {e.message}")
            return
        self._show_banner("")
        self.refresh()
        self._select(card.path)

    def _on_remove_clicked(self) -> None:
        path = self._selected_path()
        card = self._card(path)
        if card is None:
            return
        if card.source != "added":
            self._show_banner(f"{card.name} comes from {'a run' if card.source == 'run' else 'the library folder'}; "
                              "only added folders can be removed here.")
            return
        lib.remove_adapter(card.path)
        self.refresh()

    def _on_export_clicked(self) -> None:
        card = self._card(self._selected_path())
        if card is None or self._gone_since_read([card]):
            return
        parent = QFileDialog.getExistingDirectory(self, f"Export {card.name} into")
        if parent:
            self.export_selected(Path(parent) / card.name)

    def open_gguf_dialog(self) -> GgufDialog | None:
        """The GGUF export of the selected adapter, merged into the base it records (else the
        playground's base); None, with a banner, when nothing is selected or it can't merge."""
        card = self._card(self._selected_path())
        if card is None:
            self._show_banner("Select an adapter to export as GGUF.")
            return None
        if self._gone_since_read([card]):
            return None
        self._show_banner("")
        dialog = GgufDialog(card.path, card.name, base=None if card.base_model else self.base_text(), parent=self)
        dialog.sig_exported.connect(lambda out: self.status.setText(f"GGUF file written to {out}"))
        dialog.sig_failed.connect(lambda why: self._report_failure(f"The GGUF export of {card.name} failed", why))
        return dialog

    def _on_gguf_clicked(self) -> None:
        dialog = self.open_gguf_dialog()
        if dialog is not None:
            dialog.open()

    def export_selected(self, out: str | Path) -> Path | None:
        card = self._card(self._selected_path())
        if card is None or self._gone_since_read([card]):
            return None
        try:
            done = lib.export_adapter(card.path, out)
        except StudioError as e:
            self._report_failure(f"The export of {card.name} failed", e.message)
            return None
        self.status.setText(f"exported {card.name} to {done}")
        return done

    def merge_cards(self) -> list[lib.AdapterCard]:
        """What "Merge…" merges: the ticked adapters, or else the selected one."""
        cards = self.model.checked_cards()
        if not cards:
            card = self._card(self._selected_path())
            cards = [card] if card is not None else []
        return cards

    def base_problem(self) -> str | None:
        """Why the base in the Base box can't be loaded (a folder that doesn't exist, a hub id that
        is not in the cache), in the engine's words; None when it can. Merge… and Compare… say it
        before their dialog opens: their child process would only fail on it after a while."""
        base = self.base_text()
        if base == "demo":
            return None  # built on first use, when it is missing
        from engine.models import resolve_model_path

        try:
            resolve_model_path(base)
        except StudioError as e:
            return f"The base in the Base box can't be loaded: {e.message}." + (f" {e.hint}" if e.hint else "")
        return None

    def open_merge_dialog(self) -> MergeDialog | None:
        """The merge dialog for :meth:`merge_cards` onto the current base (None, with a banner, if impossible)."""
        cards = self.merge_cards()
        if self._gone_since_read(cards):
            return None
        problem = merge_problem(cards, self.model.matches) or (self.base_problem() if cards else None)
        if problem:
            self._show_banner(problem)
            return None
        self._show_banner("")  # an earlier refusal no longer applies
        dialog = MergeDialog(self.base_text(), cards, self)
        dialog.sig_merged.connect(self._on_merged)
        names = ", ".join(c.name for c in cards)
        dialog.sig_failed.connect(lambda why: self._report_failure(f"The merge of {names} failed", why))
        return dialog

    def _on_merged(self, out: str) -> None:
        """A merged model is a model to load: offered in the Base list here and in the Train area's
        model list (its recent models), as the merge dialog says."""
        self.status.setText(f"merged model saved to {out}; it is in the Base list here and the Train area's models")
        remember_model(out)
        if self.base_box.findText(out) < 0:
            self.base_box.insertItem(1, out)

    def open_compare_dialog(self, wholes: list[WholeModel] | None = None) -> CompareDialog | None:
        """The comparison of :meth:`merge_cards` (ticked, else selected), and of ``wholes`` (full or
        freeze runs' models), against the current base."""
        cards = self.merge_cards()
        if self._gone_since_read(cards):
            return None
        problem = compare_problem(cards, self.model.matches) if cards or not wholes else None
        problem = problem or self.base_problem()
        if problem:
            self._show_banner(problem)
            return None
        self._show_banner("")
        dialog = CompareDialog(self.base_text(), [*cards, *(wholes or [])], self,
                               load_in=self.precision_box.currentText())
        dialog.sig_starting.connect(self._free_gpu_for_compare)
        dialog.sig_compared.connect(lambda out: self.status.setText(f"comparison saved to {out}"))
        return dialog

    def compare_adapters(self, paths: list[str]) -> CompareDialog | None:
        """Tick exactly these adapters (adding any the library lacks), fit the base, open the comparison.

        The Runs area's "Compare on data…" for the selected runs. A full or freeze run's
        ``final/`` (a whole model, no adapter) is compared beside them, loaded on its own.
        """
        wholes = [WholeModel.of_run(p) for p in paths if not (Path(p) / "adapter_config.json").exists()
                  and (Path(p) / "config.json").exists()]
        try:
            cards = [lib.read_card(p) for p in paths if (Path(p) / "adapter_config.json").exists()
                     or not (Path(p) / "config.json").exists()]
        except StudioError as e:
            self._show_banner(f"Can't compare: {e.message}")
            return None
        for other in list(self.model.checked):
            self.model.set_checked(other, False)
        if not cards:
            # Whole models only: the base they were trained from.
            from engine.runs import read_run_config

            start = read_run_config(Path(paths[0]).parent).get("model")
            if start:
                self.base_box.setCurrentText(_base_choice(start) or start)
            dialog = self.open_compare_dialog(wholes)
            if dialog is not None:
                dialog.open()
            return dialog
        missing = [c for c in cards if self.model.row_of(c.path) < 0]
        for card in missing:
            lib.add_adapter(card.path)
        if missing:
            self.refresh()
        self._fit_base(cards[0])
        for card in cards:
            if not self.model.set_checked(card.path, True):
                match = self.model.matches.get(card.path)
                self._show_banner(f"{card.name} can't be compared on {self.base_text()}: "
                                  f"{card.problem or (match.message if match else 'unknown reason')}")
                return None
        dialog = self.open_compare_dialog(wholes)
        if dialog is not None:
            dialog.open()
        return dialog

    def _free_gpu_for_compare(self) -> None:
        # The comparison loads the base in a process of its own; on one GPU two copies may not fit.
        if self.thread is not None and str(self.last_loaded.get("device", "")).startswith("cuda"):
            self._stop_worker()
            self._worker_key = None
            self.status.setText("the playground's model was unloaded to free the GPU for the comparison; "
                                "Generate loads it again")

    def _on_compare_clicked(self) -> None:
        dialog = self.open_compare_dialog()
        if dialog is not None:
            dialog.open()

    def _on_merge_clicked(self) -> None:
        dialog = self.open_merge_dialog()
        if dialog is not None:
            dialog.open()

    def _on_browse_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Base model folder (with config.json)")
        if folder:
            self.base_box.setCurrentText(folder)

    def _on_delete_prompt(self) -> None:
        name = self.saved_box.currentText()
        saved = self.prompts.get(name) if name else None
        if saved is not None and self._confirm_delete_prompt(saved) and self.prompts.delete(name):
            self._reload_prompt_names()

    def _confirm_replace_prompt(self, old: SavedPrompt) -> bool:  # tests replace this
        box = QMessageBox(QMessageBox.Icon.Question, "Replace saved prompt",
                          f"A saved prompt is already called \u201c{old.name}\u201d:\n\n{_preview(old.prompt)}\n\n"
                          "Replace it with the prompt in the editor? Choose Cancel to keep it and save under another "
                          "name.", QMessageBox.StandardButton.Cancel, self)
        go = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is go

    def _confirm_delete_prompt(self, saved: SavedPrompt) -> bool:  # tests replace this
        box = QMessageBox(QMessageBox.Icon.Question, "Delete saved prompt",
                          f"Delete the saved prompt \u201c{saved.name}\u201d?\n\n{_preview(saved.prompt)}\n\n"
                          "Its text, system message and settings are deleted for good.",
                          QMessageBox.StandardButton.Cancel, self)
        go = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is go

    # ---- Internals
    def _fit_base(self, card: lib.AdapterCard) -> None:
        """Put the adapter's recorded base in the base box when it is on this machine (or when the
        current base can't take the adapter at all). Another model whose config merely has the same
        shapes (a full run's final/ of the same size) fits, but is not what the adapter learnt on."""
        choice = _base_choice(card.base_model)
        match = lib.check_base_match(card.path, self.base_text())
        if choice and not match.exact and (match.ok is not True or lib.check_base_match(card.path, choice).exact):
            self.base_box.setCurrentText(choice)
        self._update_matches()

    def _update_matches(self) -> None:
        base = self.base_text()
        self.model.set_matches({c.path: lib.check_base_match(c.path, base) for c in self.model.cards if c.loadable})

    def _playground_state(self) -> dict[str, Any]:
        """What :meth:`remember_form` keeps."""
        return {"base": self.base_box.currentText().strip(), "precision": self.precision_box.currentText(),
                "adapters": [card.path for card in self.model.checked_cards()],
                "prompt": self.prompt_edit.toPlainText(), "system": self.system_edit.text(),
                "settings": self.settings().to_dict(), "compare_base": self.compare_base.isChecked()}

    def _reload_prompt_names(self, select: str | None = None) -> None:
        self.saved_box.clear()
        self.saved_box.addItems(self.prompts.names())
        if select:
            self.saved_box.setCurrentText(select)
        else:
            self.saved_box.setCurrentIndex(-1)
        self._update_buttons()

    def _selected_path(self) -> str | None:
        rows = self.list.selectionModel().selectedRows() if self.list.selectionModel() else []
        return rows[0].data(PathRole) if rows else None

    def _card(self, path: str | None) -> lib.AdapterCard | None:
        return next((c for c in self.model.cards if c.path == path), None) if path else None

    def _select(self, path: str) -> None:
        row = self.model.row_of(path)
        if row >= 0:
            index = self.model.index(row)
            # The current index too: the arrow keys go on from the card, not from the top of the list.
            self.list.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.list.scrollTo(index)

    def _gone_since_read(self, cards: list[lib.AdapterCard]) -> bool:
        """Whether a card's folder was deleted or moved since the library was read (in a file
        manager, or by the Runs area's Delete…). If so the library is read again, which unticks
        it, and the banner says which and what to do, instead of a worker failing on it later."""
        gone = [c for c in cards if c.loadable and not Path(c.path).is_dir()]
        if not gone:
            return False
        self.refresh()
        names = ", ".join(c.name for c in gone)
        added = [c for c in gone if self.model.row_of(c.path) >= 0 and c.source == "added"]
        self._show_banner(
            f"{names}: {'its folder was' if len(gone) == 1 else 'their folders were'} deleted or moved since the "
            f"library was read ({gone[0].path}{', …' if len(gone) > 1 else ''}). The library was read again"
            + (" and it is unticked" if len(gone) == 1 else " and they are unticked")
            + ("; select it and press Remove to forget it." if len(added) == 1 else
               "; select each and press Remove to forget them." if added else ".")
            + " Nothing was started.")
        return True

    def _report_failure(self, what: str, why: str) -> None:
        """Say in the status line that an export or merge failed, and why in the banner: the
        dialog that said so may be closed, and the status line must not still read as a success."""
        self.status.setText(f"{what[0].lower()}{what[1:]}")
        self._show_banner(f"{what}: {why}")

    def _show_banner(self, text: str) -> None:
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def _update_buttons(self) -> None:
        card = self._card(self._selected_path())
        self.remove_button.setEnabled(card is not None and card.source == "added")
        self.export_button.setEnabled(card is not None and card.loadable)
        # A prompt tuning, prefix or bottleneck adapter has no GGUF form: greyed out with why, not
        # a dialog that opens only to say so.
        why = unmergeable(card) if card is not None else None
        self.export_gguf_action.setEnabled(why is None)
        self.export_gguf_action.setToolTip(
            f"{why} Use Adapter folder… to copy it for PEFT, or train a LoRA or IA3 adapter for a GGUF file."
            if why else "Write the adapter merged into its base as one GGUF file for llama.cpp, Ollama and "
            "LM Studio")
        self.merge_button.setEnabled(bool(self.model.checked) or card is not None)
        self.compare_button.setEnabled(bool(self.model.checked) or card is not None)
        self.generate_button.setEnabled(not self.busy)
        self.stop_button.setEnabled(self.busy)
        picked = self.saved_box.currentIndex() >= 0
        self.replay_button.setEnabled(picked and not self.busy)
        self.delete_prompt_button.setEnabled(picked)
