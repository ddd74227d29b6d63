"""Merge one adapter, or a weighted combination of several, into the base: a model folder.

The merge itself is ``finetune-studio merge`` run in a child process (``QProcess``), so the
GUI process never holds a model and stays responsive while the base loads and is saved.
What the dialog runs is shown as a command line, the same the user could type.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine import adapters as lib
from engine.gguf_export import TYPES as GGUF_TYPES
from engine.paths import data_home
from gui.adapters.library_model import method_label
from gui.dialog_size import grow_to_fit, text_width
from gui.engine_process import EngineCommandMixin, command_label, command_text
from gui.scheme import ink

MERGEABLE = ("LORA", "IA3")


def merge_problem(cards: list[lib.AdapterCard], matches: dict | None = None) -> str | None:
    """Why these adapters can't be merged, or None when they can. ``matches``: each card's
    ``BaseMatch`` against the current base (a refused one is said before any work starts)."""
    if not cards:
        return "Tick the adapters to merge in the library, or select one."
    for card in cards:
        if not card.loadable:
            return f"{card.name} can't be loaded: {card.problem or 'not a PEFT adapter'}"
        match = (matches or {}).get(card.path)
        if match is not None and match.ok is False:
            return f"{card.name} doesn't fit the base: {match.message}"
        if (card.peft_type or "").upper() not in MERGEABLE:
            return (f"{card.name} is a {method_label(card.method, in_sentence=True)} adapter; only LoRA and IA3 "
                    "adapters merge into the weights (prompt learning and bottleneck adapters add layers instead).")
    if len(cards) > 1 and any((c.peft_type or "").upper() != "LORA" for c in cards):
        return "Combining several adapters works for LoRA adapters only."
    return None


class MergeDialog(EngineCommandMixin, QDialog):
    """Ask where and how to merge, run the merge in a child process, report the outcome."""

    CLI_COMMAND = "merge"

    sig_merged = Signal(str)
    """The merge finished: the output folder."""
    sig_failed = Signal(str)
    """The merge process failed: why, as shown in the dialog."""

    def __init__(self, base: str, cards: list[lib.AdapterCard], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Merge into the base model")
        self.setMinimumWidth(text_width(self, 94))  # 564 px at the default font
        self.base = base
        self.cards = list(cards)
        self.weights: list[QDoubleSpinBox] = []

        intro = QLabel(f"Writes a plain safetensors model folder: <b>{base}</b> with "
                       + (f"<b>{cards[0].name}</b> merged in." if len(cards) == 1 else
                          f"{len(cards)} adapters combined and merged in.")
                       + " It loads with <code>AutoModelForCausalLM.from_pretrained</code>, without PEFT.")
        intro.setWordWrap(True)
        form = QFormLayout()
        # As in the Compare and Split dialogs: the weights' spin boxes stay small (stretched to
        # the dialog's width, "1.00" sat at the left of a 400 px box), the output folder grows.
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        for card in self.cards:
            spin = QDoubleSpinBox()
            spin.setRange(-10.0, 10.0)
            spin.setSingleStep(0.1)
            spin.setDecimals(2)
            spin.setValue(1.0 if len(cards) == 1 else round(1.0 / len(cards), 2))
            spin.setToolTip("Weight of this adapter in the merge (1 = as trained)")
            self.weights.append(spin)
            form.addRow(f"Weight of {card.name}:", spin)
        self.combination = QComboBox()
        for name in lib.COMBINATIONS:
            self.combination.addItem(name + (" (exact)" if name == lib.DEFAULT_COMBINATION else ""), name)
            self.combination.setItemData(self.combination.count() - 1, lib.COMBINATION_HELP[name],
                                         Qt.ItemDataRole.ToolTipRole)
        self.combination.setCurrentIndex(self.combination.findData(lib.DEFAULT_COMBINATION))
        self.combination.setToolTip("How PEFT's add_weighted_adapter combines the adapters; 'cat' merges exactly "
                                    "the weighted sum of their changes, the others approximate it")
        # What the chosen combination does, under it: "linear" reads as the weighted sum and isn't.
        # A row of its own across the form: in the field column (~240 px) "linear"'s text took 6 lines.
        self.combination_help = QLabel()
        self.combination_help.setWordWrap(True)
        self.combination_help.setStyleSheet("color: palette(placeholder-text);")
        self.density = QDoubleSpinBox()
        self.density.setRange(0.01, 1.0)
        self.density.setSingleStep(0.05)
        self.density.setValue(0.5)
        self.density.setToolTip("Fraction of weights kept by the ties, dare_* and magnitude_prune types")
        if len(cards) > 1:
            form.addRow("Combination:", self.combination)
            form.addRow(self.combination_help)
            form.addRow("Density:", self.density)
            self.combination.currentTextChanged.connect(self._update)
        self.dtype = QComboBox()
        self.dtype.addItems(["fp32", "fp16", "bf16"])
        self.dtype.setToolTip("The dtype the merge is done and saved in")
        form.addRow("Save as:", self.dtype)
        self.gguf = QComboBox()
        self.gguf.addItem("no", None)
        for t in GGUF_TYPES:
            self.gguf.addItem(f"yes, {t}", t)
        self.gguf.setToolTip("Also write the merged model as one .gguf file inside the folder, for llama.cpp, "
                             "Ollama and LM Studio (q8_0: about half of f16's size)")
        self.gguf.currentIndexChanged.connect(self._update)
        form.addRow("Also write GGUF:", self.gguf)
        self.out_edit = QLineEdit(str(self._default_out()))
        browse = QPushButton("Browse…")
        browse.setAutoDefault(False)  # Return in the form is the dialog's action, not a folder picker
        browse.clicked.connect(self._on_browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        form.addRow("Output folder:", out_row)
        self.out_edit.textChanged.connect(self._update)

        self.command_label = command_label()
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumHeight(110)
        self.log.setVisible(False)
        self.result = QLabel()
        self.result.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.merge_button = self.buttons.addButton("Merge", QDialogButtonBox.ButtonRole.AcceptRole)
        self.merge_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self._on_cancel)

        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(self.command_label)
        lay.addWidget(self.progress)
        lay.addWidget(self.result)
        lay.addWidget(self.log)
        lay.addStretch(1)  # room a longer text once needed stays below the form, above the buttons
        lay.addWidget(self.buttons)
        # Default once the button box is in the dialog: set before, Qt had no dialog to tell, and at show
        # it made the first button after the focus the default: Return in the form pressed Browse….
        self.merge_button.setDefault(True)
        self._update()

    # ---- Public API
    def command(self) -> list[str]:
        """The ``finetune-studio merge`` arguments the dialog will run (without the program)."""
        args = ["merge", "--base", self.base]
        for card in self.cards:
            args += ["--adapter", card.path]
        weights = [w.value() for w in self.weights]
        if len(self.cards) > 1 or weights != [1.0]:
            args += ["--weights", *(f"{w:g}" for w in weights)]
        if len(self.cards) > 1:
            args += ["--combination", self.combination.currentData()]
            if self.combination.currentData() in lib.NEEDS_DENSITY:
                args += ["--density", f"{self.density.value():g}"]
        args += ["--dtype", self.dtype.currentText(), "--out", self.out_edit.text().strip()]
        if self.gguf.currentData():
            args += ["--gguf", self.gguf.currentData()]
        return args

    def start(self) -> bool:
        """Run the merge; False (with the reason shown) when the output folder is not usable."""
        out = Path(self.out_edit.text().strip()).expanduser()
        if not self.out_edit.text().strip():
            self._fail("Choose an output folder.")
            return False
        if out.exists() and not out.is_dir():  # as the engine's merge says it: not "not an empty folder"
            self._fail(f"{out} is a file; the merged model is written to a new folder: choose one.")
            return False
        if out.exists() and any(out.iterdir()):
            self._fail(f"{out} already exists and is not an empty folder; choose a new one.")
            return False
        self.log.clear()
        self._show_result("Merging… the base loads, the adapters are applied and the folder is written.")
        self._start_engine(self.command(), self.merge_button, merged=True)
        return True

    # ---- Qt overrides
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        grow_to_fit(self)  # Qt opens it at its layout's minimum height, which ignores the wrapped lines

    # ---- Internals
    def _default_out(self) -> Path:
        stem = "+".join(c.name for c in self.cards)[:80] or "merged"
        root = data_home() / "merged"
        out = root / stem
        n = 2
        while out.exists():
            out = root / f"{stem}-{n}"
            n += 1
        return out

    def _update(self) -> None:
        self.density.setEnabled(self.combination.currentData() in lib.NEEDS_DENSITY)
        self.combination_help.setText(lib.COMBINATION_HELP.get(self.combination.currentData(), ""))
        self.command_label.setText(command_text(self.command()))
        grow_to_fit(self)  # a longer combination text or command wraps to more lines: not cut

    def _fail(self, text: str) -> None:
        self._show_result(text, f"color: {ink('#8a1c14')};")

    def _show_result(self, text: str, style: str = "") -> None:
        self.result.setText(text)
        self.result.setStyleSheet(style)
        grow_to_fit(self)  # a long folder wraps it to more lines: not cut

    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Parent folder for the merged model")
        if folder:
            self.out_edit.setText(str(Path(folder) / Path(self.out_edit.text()).name))

    def _on_output(self, text: str) -> None:
        self.log.setVisible(True)
        self.log.appendPlainText(text.rstrip("\n"))

    def _on_succeeded(self, output: str) -> None:
        out = self.out_edit.text().strip()
        gguf = [ln.split(" ", 2)[1] for ln in output.splitlines() if ln.startswith("wrote ")]
        self._show_result(f"Merged into {out}. Load it as a base model in the playground or in the "
                          "Train area." + (f" GGUF file: {gguf[-1]}" if gguf else ""), f"color: {ink('#1b5e20')};")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Close")
        self.sig_merged.emit(out)

    def _on_failed(self, why: str) -> None:
        self._fail(f"The merge failed: {why}")
        self.sig_failed.emit(why)

    def _on_cancel(self) -> None:
        self._kill_engine()
        self.reject()
