"""Split the open file into a train file and a held-out eval file (``finetune-studio data split``).

A held-out file is what "Compare on data" and an honest evaluation need: records no run trained
on. The split is the one a run with ``eval_split: R`` and the same seed makes, so training on the
whole file with that split and on the train file alone hold out the same records.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.config import RunConfig
from engine.data.split import split_file
from engine.errors import StudioError
from gui.dialog_size import grow_to_fit, text_width
from gui.engine_process import command_label, command_text
from gui.scheme import ink


class SplitDialog(QDialog):
    """Ask for the ratio, seed and folder; write the two files; say where they went."""

    STATUS_LINES = 5
    """Lines of message the dialog keeps room for from the start."""

    sig_train_on = Signal(str, str)
    """"Train on these": (the train file, the eval file) for the Train area's dataset and eval file."""

    def __init__(self, path: str | Path, parent: QWidget | None = None, out_dir: str | Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("Split into train and eval files")
        self.setMinimumWidth(text_width(self, 94))  # 564 px at the default font
        self.path = Path(path)
        self.result: dict[str, Any] | None = None

        intro = QLabel(f"Writes <b>{html.escape(self.path.stem)}-train{html.escape(self.path.suffix)}</b> and "
                       f"<b>{html.escape(self.path.stem)}-eval{html.escape(self.path.suffix)}</b> in the file's "
                       "own format. The records are split as a run with this eval split and seed splits them, "
                       "so the eval file holds records such a run never trains on: compare adapters on it.")
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)
        meta = RunConfig.field_meta()
        self.ratio = QDoubleSpinBox()
        self.ratio.setRange(0.01, meta["eval_split"]["max"])  # what split_file takes, as a run's eval_split
        self.ratio.setSingleStep(0.05)
        self.ratio.setDecimals(2)
        self.ratio.setValue(0.1)
        # The Train area's label for the same setting; the tooltip names the config key and the flag.
        self.ratio.setToolTip("Fraction of records held out for the eval file, as a run's eval_split "
                              "(--eval-ratio of data split): 0.1 holds out 10%")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(int(meta["seed"]["default"]))
        self.seed.setToolTip("The run's seed: the same seed and ratio hold out the same records")
        self.out_edit = QLineEdit(str(out_dir or self.path.parent))
        browse = QPushButton("Browse…")
        browse.setAutoDefault(False)  # Return in the form is the dialog's action, not a folder picker
        browse.clicked.connect(self._on_browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        self.force = QCheckBox("Replace the files if they exist")
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Eval split:", self.ratio)
        form.addRow("Seed:", self.seed)
        form.addRow("Folder:", out_row)
        form.addRow("", self.force)
        self.command_label = command_label()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # Room for the usual message (two written files and a three-line note), held from the start,
        # so the dialog doesn't jump as messages come and go.
        self.status.setMinimumHeight(self.STATUS_LINES * self.status.fontMetrics().lineSpacing())
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.split_button = self.buttons.addButton("Split", QDialogButtonBox.ButtonRole.ActionRole)
        self.split_button.clicked.connect(self.split)
        self.train_button = self.buttons.addButton("Train on these", QDialogButtonBox.ButtonRole.ActionRole)
        self.train_button.setToolTip("Open the Train area with the train file as the dataset and the eval file "
                                     "as its eval file")
        self.train_button.setVisible(False)
        self.train_button.clicked.connect(self._on_train_on)
        self.buttons.rejected.connect(self.reject)
        for w in (self.ratio, self.seed):
            w.valueChanged.connect(self._update)
        self.out_edit.textChanged.connect(self._update)
        self.force.toggled.connect(self._update)

        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(self.command_label)
        lay.addWidget(self.status)
        lay.addStretch(1)
        lay.addWidget(self.buttons)
        # Default once the button box is in the dialog: set before, Qt had no dialog to tell, and at show
        # it made the first button after the focus the default: Return in the form pressed Browse….
        self.split_button.setDefault(True)
        self._update()

    def command(self) -> list[str]:
        """The ``finetune-studio data split`` arguments the dialog runs (the same, in process)."""
        args = ["data", "split", str(self.path), "--eval-ratio", f"{self.ratio.value():g}", "--seed",
                str(self.seed.value()), "--out-dir", self.out_edit.text().strip()]
        return args + (["--force"] if self.force.isChecked() else [])

    def split(self) -> bool:
        """Write the two files; False, with the reason shown, when the engine refuses."""
        out = self.out_edit.text().strip()
        if not out:
            self._say("Choose a folder.", error=True)
            return False
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            self.result = split_file(self.path, self.ratio.value(), Path(out).expanduser(), seed=self.seed.value(),
                                     force=self.force.isChecked())
        except StudioError as e:
            hint = 'Tick "Replace the files if they exist" to replace them.' if "--force" in (e.hint or "") else e.hint
            self._say(html.escape(e.message, quote=False) + (f"<br>{html.escape(hint, quote=False)}" if hint else ""), error=True)
            self.train_button.setVisible(False)
            return False
        except OSError as e:
            self._say(html.escape(quote=False, s=f"Can't write there: {e.strerror or e} ({e.filename or out})"), error=True)
            self.train_button.setVisible(False)
            return False
        finally:
            QApplication.restoreOverrideCursor()
        r = self.result
        self._say(f"{r['train']['records']:,} records to {html.escape(r['train']['path'])}<br>"
                  f"{r['eval']['records']:,} records to {html.escape(r['eval']['path'])}<br>"
                  f"<span style='color:palette(mid)'>Train on the first with the second as its eval file (Train on "
                  "these), and compare on the second; or "
                  f"train on the whole file with eval_split {self.ratio.value():g} and seed {self.seed.value()}, "
                  "which holds out the same records when no record is dropped as too long.</span>")
        self.train_button.setVisible(True)
        self.train_button.setFocus()
        return True

    # ---- Qt overrides
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._grow_to_fit()  # the size it opens at is the size it keeps: the first edit mustn't grow it

    def _on_train_on(self) -> None:
        if self.result is not None:
            self.sig_train_on.emit(self.result["train"]["path"], self.result["eval"]["path"])
            self.accept()

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet(f"color: {ink('#be1e1e')};" if error else "")
        self.status.setText(text)
        # A message longer than the room held for one (long paths wrap) grows the room, and the
        # dialog with it, rather than being cut; the room never shrinks, so the dialog doesn't jump back.
        needed = self.status.heightForWidth(self.status.width())
        if needed > self.status.minimumHeight():
            self.status.setMinimumHeight(needed)
        self._grow_to_fit()

    def _update(self) -> None:
        self.command_label.setText(command_text(self.command()))
        self._grow_to_fit()

    def _grow_to_fit(self) -> None:
        """Taller when what is shown needs it (a long folder wraps the command), never shorter."""
        grow_to_fit(self)

    def _on_browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the train and eval files", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)
