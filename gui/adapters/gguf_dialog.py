"""Export an adapter (merged into its base), a full/freeze run or a model folder as one GGUF file.

The export is ``finetune-studio export-gguf`` run in a child process (``QProcess``): the GUI
process never holds the model. The dialog shows the command it runs, a tensor-by-tensor
progress bar, and where the file went.
"""

from __future__ import annotations

import html
import json
import shutil
import time
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.adapters import base_label, format_size, read_card
from engine.errors import StudioError
from engine.gguf_export import (
    LORA_TYPES,
    TYPES,
    estimate_lora_size,
    estimate_size,
    export_problem,
    free_space,
    lora_gguf_problem,
    space_needed,
)
from engine.paths import data_home
from engine.runs import find_run
from gui.dialog_size import text_width
from gui.engine_process import EngineCommandMixin, command_label, command_text
from gui.scheme import ink

TYPE_NOTES = {
    "q8_0": "8-bit blocks: about half of f16, and the answers barely change (the usual choice)",
    "f16": "16-bit: the reference quality; quantise it further with llama.cpp's llama-quantize",
    "bf16": "bfloat16: as the model was trained in bf16; not every llama.cpp backend runs it fast",
    "f32": "32-bit: the exact weights, twice f16's size",
}


LORA_TYPE_NOTES = {
    "f16": "16-bit: half of f32's size (the usual choice; adapters are small either way)",
    "f32": "32-bit: the adapter's exact weights (llama.cpp's converter's default)",
}


class GgufDialog(EngineCommandMixin, QDialog):
    """Ask for the type and the file, run the export, say where the file went."""

    CLI_COMMAND = "export-gguf"
    PROGRESS_UNIT = "tensors"

    sig_exported = Signal(str)
    """The export finished: the .gguf file."""
    sig_failed = Signal(str)
    """The export process failed: why, as shown in the dialog."""

    def __init__(self, source: str, name: str, *, base: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export GGUF")
        self.setMinimumWidth(text_width(self, 100))  # 600 px at the default font
        self.source = source
        self.name = name
        self.base = base
        self.is_adapter = (Path(source) / "adapter_config.json").exists()
        self.run = find_run(Path(source).parent) if Path(source).name == "final" else None
        self.started_at = 0.0
        self._auto_out = True
        self.file_size: int | None = None  # not "size": that would hide QWidget.size()
        self.need: int | None = None

        self.intro = QLabel()
        self.intro.setWordWrap(True)
        form = QFormLayout()
        # A LoRA can also go out on its own, applied on the base's GGUF at run time.
        self.form_box = QComboBox()
        self.form_box.addItem("Merged model: one file that runs on its own", "merged")
        self.form_box.addItem("LoRA adapter: a small file applied on the base's GGUF", "lora")
        self.lora_problem = lora_gguf_problem(source) if self.is_adapter else "not an adapter"
        if self.is_adapter:
            form.addRow("Write:", self.form_box)
            if self.lora_problem:
                self.form_box.model().item(1).setEnabled(False)
                self.form_box.setItemData(1, self.lora_problem, Qt.ItemDataRole.ToolTipRole)
        self.form_box.setVisible(self.is_adapter)
        self.type_box = QComboBox()  # filled by _on_form: the types of the chosen form
        self.type_note = QLabel()
        self.type_note.setWordWrap(True)
        self.type_note.setStyleSheet("color: palette(placeholder-text);")
        type_col = QVBoxLayout()
        type_col.setSpacing(2)
        type_col.addWidget(self.type_box)
        type_col.addWidget(self.type_note)
        form.addRow("Type:", type_col)
        self.out_edit = QLineEdit()
        browse = QPushButton("Browse…")
        browse.setAutoDefault(False)  # Return in the form is the dialog's action, not a folder picker
        browse.clicked.connect(self._on_browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        form.addRow("File:", out_row)
        self.size_label = QLabel()
        self.size_label.setToolTip("From the model's tensor shapes: its matrices at the type's bytes per weight, "
                                   "norms in f32, plus the vocabulary")
        form.addRow("Size:", self.size_label)

        self.command_label = command_label()
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.clicked.connect(self.start)
        self.folder_button = self.buttons.addButton("Open folder", QDialogButtonBox.ButtonRole.ActionRole)
        self.folder_button.setToolTip("Show the folder that holds the GGUF file")
        self.folder_button.clicked.connect(self._on_open_folder)
        self.folder_button.hide()
        self.written: str | None = None
        self.buttons.rejected.connect(self._on_cancel)

        lay = QVBoxLayout(self)
        lay.addWidget(self.intro)
        lay.addLayout(form)
        lay.addWidget(self.command_label)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        # Default once the button box is in the dialog: set before, Qt had no dialog to tell, and at show
        # it made the first button after the focus the default: Return in the form pressed Browse….
        self.export_button.setDefault(True)

        self.type_box.currentIndexChanged.connect(self._on_type)
        self.form_box.currentIndexChanged.connect(self._on_form)
        self.out_edit.textEdited.connect(self._on_out_edited)
        self.out_edit.textChanged.connect(self._update)
        self.merge_problem = export_problem(source, base)
        self._on_form()

    # ---- Public API
    def command(self) -> list[str]:
        """The ``finetune-studio export-gguf`` arguments the dialog runs (without the program)."""
        args = ["export-gguf", self.source, "--type", self.type_box.currentData(),
                "--out", self.out_edit.text().strip()]
        if self.is_adapter and self.base:
            args += ["--base", self.base]
        return args + (["--lora"] if self.as_lora() else [])

    def as_lora(self) -> bool:
        """The adapter is written on its own (a llama.cpp LoRA adapter), not merged."""
        return self.is_adapter and self.form_box.currentData() == "lora"

    def base_label(self) -> str:
        """The base an adapter is merged into, as the user knows it: the one given, else the one it records."""
        if self.base:
            return base_label(self.base)
        try:
            recorded = read_card(self.source).base_model
        except StudioError:
            recorded = None
        return base_label(recorded) if recorded else "its base"

    def default_out(self) -> Path:
        """``<run folder>/<run>-<type>.gguf`` for a run, else ``<data home>/gguf/<name>-<type>.gguf``."""
        kind = f"lora-{self.type_box.currentData()}" if self.as_lora() else self.type_box.currentData()
        if self.run is not None:
            return self.run / f"{self.run.name}-{kind}.gguf"
        return data_home() / "gguf" / f"{self.name}-{kind}.gguf"

    def start(self) -> bool:
        """Run the export; False (with the reason shown) when the file can't be written."""
        text = self.out_edit.text().strip()
        out = Path(text).expanduser()
        if not text or out.suffix.lower() != ".gguf":
            self._say("Choose a file name ending in .gguf.", "#be1e1e")
            return False
        if out.exists():
            self._say(html.escape(f"{out} already exists; choose a new name (nothing is written over).", quote=False),
                      "#be1e1e")
            return False
        out.parent.mkdir(parents=True, exist_ok=True)
        self._say("Writing the adapter…" if self.as_lora() else
                  "Merging the adapter into the base…" if self.is_adapter else "Reading the model…")
        self.started_at = time.time()
        self._start_engine([*self.command(), "--json", "--progress"], self.export_button)
        return True

    # ---- Internals
    def _say(self, text: str, color: str | None = None) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {ink(color)};" if color else "")

    def _on_form(self) -> None:
        lora = self.as_lora()
        if lora:
            self.intro.setText(f"Writes the LoRA adapter <b>{html.escape(self.name)}</b> on its own as a "
                               "<code>.gguf</code> adapter file, applied at run time on the GGUF of "
                               f"<b>{html.escape(self.base_label())}</b> (export that once). One base file can "
                               "then take any of your adapters.")
        elif self.is_adapter:
            self.intro.setText(f"Writes the adapter <b>{html.escape(self.name)}</b>, merged into "
                               f"<b>{html.escape(self.base_label())}</b> first, as one <code>.gguf</code> file: "
                               "the format llama.cpp, Ollama and LM Studio load. The chat template and special "
                               "tokens go in with it.")
        else:
            self.intro.setText(f"Writes <b>{html.escape(self.name)}</b> as one <code>.gguf</code> file: the format "
                               "llama.cpp, Ollama and LM Studio load. The chat template and special tokens go in "
                               "with it.")
        current = self.type_box.currentData()
        self.type_box.blockSignals(True)
        self.type_box.clear()
        for t in sorted(LORA_TYPES if lora else TYPES, key=list(TYPE_NOTES).index):  # the usual choice first
            self.type_box.addItem(t, t)
        index = self.type_box.findData(current)
        self.type_box.setCurrentIndex(index if index >= 0 else 0)
        self.type_box.blockSignals(False)
        self._on_type()
        problem = self.lora_problem if lora else self.merge_problem
        self._say(html.escape(f"Can't export: {problem}", quote=False) if problem else "", "#be1e1e")
        self.export_button.setEnabled(not problem)

    def _on_type(self) -> None:
        out_type = self.type_box.currentData()
        self.type_note.setText(TYPE_NOTES[out_type] if not self.as_lora() else LORA_TYPE_NOTES[out_type])
        if self.as_lora():
            self.file_size = self.need = estimate_lora_size(self.source, out_type)
        else:
            self.file_size = estimate_size(self.source, self.base, out_type)
            self.need = space_needed(self.source, self.base, out_type)
        if self._auto_out:
            self.out_edit.setText(str(self.default_out()))
        self._update()

    def _on_out_edited(self, _text: str) -> None:
        self._auto_out = False

    def _update(self) -> None:
        self.command_label.setText(command_text(self.command()))
        self._show_size()

    def _show_size(self) -> None:
        """The file's size, and whether the target's disk has the room (the merge's copy included)."""
        problem = getattr(self, "lora_problem", None) if self.as_lora() else getattr(self, "merge_problem", None)
        if problem:  # nothing will be written: a size would read as if something would
            self.size_label.setText("none: this export can't be made (see below)")
            self.size_label.setStyleSheet("color: palette(placeholder-text);")
            return
        text = f"about {format_size(self.file_size)}" if self.file_size else "unknown"
        free = free_space(Path(self.out_edit.text().strip() or ".").parent)
        short = self.need is not None and free is not None and free < self.need
        if self.need and self.file_size and self.need > self.file_size:
            text += f"; {format_size(self.need)} free needed while the merged base is written"
        if short:
            text += f"; only {format_size(free)} free there"
        self.size_label.setText(text)
        self.size_label.setStyleSheet(f"color: {ink('#be1e1e')};" if short else "")

    def _on_browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "GGUF file", self.out_edit.text(), "GGUF files (*.gguf)")
        if path:
            self._auto_out = False
            self.out_edit.setText(path if path.lower().endswith(".gguf") else path + ".gguf")

    def _on_progress(self) -> None:
        self._say("Converting and writing tensors…")

    def _on_failed(self, why: str) -> None:
        self._say(html.escape(f"The export failed: {why}", quote=False), "#be1e1e")
        self.sig_failed.emit(why)

    def _on_succeeded(self, output: str) -> None:
        try:
            result = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError) as e:
            self._say(html.escape(f"The export's result can't be read: {e}", quote=False), "#be1e1e")
            self.sig_failed.emit(f"its result can't be read: {e}")
            return
        path = result["path"]
        fallback = result.get("f16_fallbacks") or []
        note = (f" {len(fallback)} tensor(s) stayed f16: their rows don't split into q8_0 blocks." if fallback else "")
        run_it = ("<br>Apply it with <code>llama-cli -m BASE.gguf --lora FILE</code>, or in Ollama with a Modelfile "
                  "of <code>FROM BASE.gguf</code> and <code>ADAPTER FILE</code>." if self.as_lora() else
                  "<br>Run it with <code>llama-cli -m FILE</code>, or in Ollama with a Modelfile whose first "
                  "line is <code>FROM FILE</code>.")
        self._say(html.escape(f"Wrote {path} ({format_size(result['bytes'])}, {result['type']}, "
                              f"{result['tensors']} tensors, {result['seconds']:.1f} s).{note}", quote=False)
                  + run_it + self._renamed_note(result.get("renamed")), "#1b5e20")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Close")
        self.export_button.setEnabled(False)
        self.written = path
        self.folder_button.show()
        self.sig_exported.emit(path)

    @staticmethod
    def _renamed_note(renamed: str | None) -> str:
        """The model name in the file isn't the one asked for (for llama.cpp's sake): why, as the CLI says."""
        if not renamed:
            return ""
        return "<br>" + html.escape(renamed[:1].upper() + renamed[1:] + ".", quote=False)

    def _on_open_folder(self) -> None:
        if self.written:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(self.written).parent)))

    def _on_cancel(self) -> None:
        if self._kill_engine():
            self._remove_leftovers()
        self.reject()

    def _remove_leftovers(self) -> None:
        """A killed export leaves its half-written ``.NAME.*.part`` file (and, for an adapter, the
        merge's scratch folder) beside the target: remove those this export started."""
        out = Path(self.out_edit.text().strip()).expanduser()
        if not out.parent.is_dir():
            return
        for path in [*out.parent.glob(f".{out.name}.*.part"), *out.parent.glob(".gguf-merge-*")]:
            try:
                if path.stat().st_mtime >= self.started_at - 1:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            except OSError:
                pass
