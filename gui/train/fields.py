"""One editor widget per run-config key, built from ``RunConfig.field_meta()``.

The metadata decides the widget: a check box for a bool, a combo box for choices, a
spin box for an integer with bounds (a double spin box without decimals past 2**31 - 1), a
text field for floats (so ``2e-5`` reads as such), module lists and paths. The ``help`` text becomes the tooltip, with the key and
its allowed range, so the GUI, the CLI ``--help`` and the YAML comments say the same.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QMenu,
    QSpinBox,
    QToolButton,
    QWidget,
)

from engine.config import RunConfig
from gui.scheme import MARK_CONTRAST, ink_color
from gui.train.config_model import ConfigModel

LABELS = {
    "model": "Model", "dataset": "Dataset", "dataset_format": "Format", "template": "Template", "add_tokens": "Add tokens", "group_by_length": "Group by length",
    "seq_len": "Sequence length", "packing": "Packing", "min_lr_ratio": "Min LR ratio", "eval_split": "Eval split", "loss_on": "Loss on", "eval_dataset": "Eval file",
    "output_dir": "Output folder", "run_name": "Run name", "method": "Method",
    "lora_r": "Rank (r)", "lora_alpha": "Alpha", "lora_dropout": "Dropout",
    "lora_target_modules": "Target modules", "use_dora": "DoRA", "use_rslora": "rsLoRA", "lora_init": "Init",
    "loraplus_lr_ratio": "LoRA+ LR ratio", "neftune_noise_alpha": "NEFTune noise",
    "freeze_trainable_layers": "Trainable top layers", "freeze_extra_modules": "Extra modules",
    "num_virtual_tokens": "Virtual tokens", "prefix_projection": "Prefix projection (MLP)",
    "adapter_reduction_factor": "Reduction factor", "adapter_style": "Placement",
    "ia3_target_modules": "Target modules", "load_in": "Load weights in",
    "mixed_precision": "Mixed precision", "int8_threshold": "int8 outlier threshold",
    "gradient_checkpointing": "Gradient checkpointing", "device": "Device", "optimizer": "Optimizer",
    "learning_rate": "Learning rate", "lr_scheduler": "LR schedule", "warmup_ratio": "Warm-up ratio",
    "warmup_steps": "Warm-up steps",
    "weight_decay": "Weight decay", "adam_epsilon": "Adam epsilon", "max_grad_norm": "Max grad norm",
    "num_epochs": "Epochs", "max_steps": "Max steps", "batch_size": "Micro-batch",
    "gradient_accumulation_steps": "Accumulation", "seed": "Seed", "save_steps": "Save every (steps)",
    "save_total_limit": "Keep checkpoints", "logging_steps": "Log every (steps)",
    "eval_steps": "Eval every (steps)", "nan_policy": "On NaN loss", "oom_recovery": "OOM recovery",
    "keep_awake": "Keep computer awake",
    "early_stopping_patience": "Early stop after (evals)", "early_stopping_threshold": "Min. improvement",
    "sample_answers": "Sample answers", "sample_max_new_tokens": "Sample length (tokens)",
    "trust_remote_code": "Trust remote code", "allow_pickle": "Allow pickle weights",
    "attn_implementation": "Attention", "deepspeed": "DeepSpeed config",
}
ERROR_COLOR = "#d0342c"
"""The frame of a field whose value can't run."""
WARNING_COLOR = "#c77800"
"""The frame of a field whose value can run but looks wrong."""
# QSpinBox holds a C int; IntEditor takes a QDoubleSpinBox for keys that go past it.
_INT_MAX = 2**31 - 1


def label_for(key: str) -> str:
    return LABELS.get(key, key.replace("_", " ").capitalize())


def tooltip_for(key: str, meta: dict[str, Any] | None = None) -> str:
    """The field's help, its key (as in YAML and on the command line) and what is allowed."""
    meta = meta or RunConfig.field_meta()[key]
    parts = [meta["help"]]
    if meta.get("choices"):
        parts.append("Allowed: " + ", ".join(meta["choices"]))
    elif meta.get("min") is not None and meta.get("max") is not None:
        parts.append(f"Range: {_fmt(meta['min'])} to {_fmt(meta['max'])}")
    parts.append(f"Key: {key} (default {meta['default']!r})")
    return "\n".join(parts)


def _fmt(x: Any) -> str:
    return format_number(x) if isinstance(x, float) else str(x)


def format_number(x: float) -> str:
    """A float as a user types it: 2e-05 -> '2e-5', 0.05 -> '0.05', 3.0 -> '3'."""
    if not math.isfinite(x):
        return str(x)
    text = f"{x:.6g}"
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text


class _Mark(QWidget):
    """A coloured frame painted over a field's inputs (line edits, combo and spin boxes).

    A style sheet border (``QSpinBox { border: ... }``) makes Qt draw the whole box from the style
    sheet: a spin box's up/down buttons lost their arrows and were squashed into a sliver. Painted
    on top, the frame leaves each input drawn by its own style, arrows and all.
    """

    INPUTS = (QLineEdit, QComboBox, QAbstractSpinBox)

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.color: str | None = None
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)  # clicks and tooltips go through
        self.hide()

    def set_color(self, color: str | None) -> None:
        self.color = color
        self.setVisible(color is not None)
        if color is not None:
            self.setGeometry(self.parentWidget().rect())
            self.raise_()  # above inputs added after it
            self.update()

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        # The light-palette colour, lightened to read as a mark on a dark one.
        painter.setPen(QPen(ink_color(self.color, self.palette(), target=MARK_CONTRAST), 1))
        for w in self.parentWidget().findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if isinstance(w, self.INPUTS) and w.isVisible():
                painter.drawRoundedRect(QRectF(w.geometry()).adjusted(0.5, 0.5, -0.5, -0.5), 2, 2)


class FieldEditor(QWidget):
    """Edits one key of a :class:`ConfigModel`; shows the key's validation error in red."""

    def __init__(self, model: ConfigModel, key: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.model, self.key = model, key
        self.meta = RunConfig.field_meta()[key]
        self._tooltip = tooltip_for(key, self.meta)
        self._note = ""
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self.setToolTip(self._tooltip)
        self.setObjectName(f"field_{key}")
        self._mark = _Mark(self)
        model.sig_changed.connect(self._on_model_changed)

    # ---- Public API
    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        raise NotImplementedError

    def set_error(self, message: str | None) -> None:
        if message == getattr(self, "_error", None):
            return  # restyling is costly; most config changes leave most fields as they were
        self._error = message
        if not message and getattr(self, "_warning", None):
            self._warning, warning = None, self._warning
            self.set_warning(warning)  # the error went: the warning shows again
            return
        self.setToolTip(self._help() if not message else f"⚠ {message}\n\n{self._help()}")
        self._mark.set_color(ERROR_COLOR if message else None)
        self._say_mark("Error", message)

    def set_warning(self, message: str | None) -> None:
        """An amber border and a ⚠ tooltip: the value can run but looks wrong (an error wins)."""
        if message == getattr(self, "_warning", None):
            return
        self._warning = message
        if getattr(self, "_error", None):
            return
        self.setToolTip(self._help() if not message else f"⚠ {message}\n\n{self._help()}")
        self._mark.set_color(WARNING_COLOR if message else None)
        self._say_mark("Warning", message)

    def mark_color(self) -> str | None:
        """The colour of the frame around the inputs: ERROR_COLOR, WARNING_COLOR, or None."""
        return self._mark.color

    def set_note(self, note: str) -> None:
        """A line shown before the key's help in the tooltips (why the field is locked, say)."""
        if note == self._note:
            return
        self._note = note
        for w in (self, *self.findChildren(QWidget)):
            w.setToolTip(self._help())
        if getattr(self, "_error", None):
            self.setToolTip(f"⚠ {self._error}\n\n{self._help()}")

    def name_inputs(self) -> None:
        """Name the inputs after the field's label for a screen reader: the form's label is the
        buddy of this editor, not of the box inside it that has the keyboard, and a "…" button
        says nothing of what it browses for."""
        label = label_for(self.key)
        for w in self.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if isinstance(w, QToolButton):
                w.setAccessibleName(f"Browse for {label.lower()}")
            elif isinstance(w, (*_Mark.INPUTS, QCheckBox)):
                w.setAccessibleName(label)

    def _say_mark(self, kind: str, message: str | None) -> None:
        """The painted frame in words: the inputs' accessible description says the error or the
        warning (without one, a description falls back to the input's tooltip, the key's help)."""
        for w in self.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if isinstance(w, (*_Mark.INPUTS, QCheckBox)):
                w.setAccessibleDescription(f"{kind}: {message}" if message else "")

    def _help(self) -> str:
        return f"{self._note}\n\n{self._tooltip}" if self._note else self._tooltip

    # ---- Internals
    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._mark.setGeometry(self.rect())

    def _commit(self, *_: Any) -> None:
        self.model.set(self.key, self.value())

    def _on_model_changed(self, keys: set[str]) -> None:
        if self.key in keys and self.model.get(self.key) != self.value():
            self.set_value(self.model.get(self.key))


class BoolEditor(FieldEditor):
    def __init__(self, model: ConfigModel, key: str, parent: QWidget | None = None):
        super().__init__(model, key, parent)
        self.box = QCheckBox()
        self.box.setToolTip(self._tooltip)
        self._layout.addWidget(self.box)
        self._layout.addStretch(1)
        self.set_value(model.get(key))
        self.box.toggled.connect(self._commit)

    def value(self) -> bool:
        return self.box.isChecked()

    def set_value(self, value: Any) -> None:
        self.box.blockSignals(True)
        self.box.setChecked(bool(value))
        self.box.blockSignals(False)


class ChoiceEditor(FieldEditor):
    def __init__(self, model: ConfigModel, key: str, parent: QWidget | None = None):
        super().__init__(model, key, parent)
        self.combo = QComboBox()
        self.combo.addItems(list(self.meta["choices"]))
        self.combo.setToolTip(self._tooltip)
        self._layout.addWidget(self.combo, 1)
        suffix = self.meta.get("files")
        if suffix:
            # A name from the list, or a file of that kind (e.g. a .jinja chat template): typed or browsed.
            self.combo.setEditable(True)
            self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            self.combo.lineEdit().setPlaceholderText(f"a name, or a {suffix} file")
            button = QToolButton()
            button.setText("…")
            button.setToolTip(f"Choose a {suffix} file")
            button.clicked.connect(lambda: self._browse_file(suffix))
            self._layout.addWidget(button)
        self.set_value(model.get(key))
        if suffix:
            self.combo.activated.connect(self._commit)
            self.combo.lineEdit().editingFinished.connect(self._commit)
        else:
            self.combo.currentTextChanged.connect(self._commit)

    def value(self) -> str:
        return self.combo.currentText()

    def set_value(self, value: Any) -> None:
        self.combo.blockSignals(True)
        self.combo.setCurrentText(str(value))
        self.combo.blockSignals(False)

    def _browse_file(self, suffix: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, label_for(self.key), "",
                                              f"{label_for(self.key)} (*{suffix});;All files (*)")
        if path:
            self.set_value(path)
            self._commit()

    def set_item_enabled(self, choice: str, enabled: bool, reason: str = "") -> None:
        """Disable one choice (e.g. an 8-bit optimizer on a CPU) with the reason as its tooltip."""
        index = self.combo.findText(choice)
        item = self.combo.model().item(index) if index >= 0 else None
        if item is None:
            return
        item.setEnabled(enabled)
        item.setToolTip("" if enabled else reason)


class IntEditor(FieldEditor):
    """A spin box over the key's whole range.

    QSpinBox holds a C int, so a key allowed past 2**31 - 1 (``seed``, up to 2**32 - 1) gets a
    QDoubleSpinBox with no decimals instead: a double holds every integer up to 2**53 exactly.
    """

    def __init__(self, model: ConfigModel, key: str, parent: QWidget | None = None):
        super().__init__(model, key, parent)
        lo, hi = int(self.meta.get("min", 0)), int(self.meta.get("max", _INT_MAX))
        if -_INT_MAX <= lo and hi <= _INT_MAX:
            self.spin: QSpinBox | QDoubleSpinBox = QSpinBox()
        else:
            self.spin = QDoubleSpinBox()
            self.spin.setDecimals(0)
        self.spin.setRange(lo, hi)
        self.spin.setAccelerated(True)
        self.spin.setKeyboardTracking(True)
        self.spin.setToolTip(self._tooltip)
        if key == "max_steps":
            self.spin.setSpecialValueText("off (use epochs)")
        elif key in ("save_steps", "eval_steps"):
            self.spin.setSpecialValueText("off" if key == "save_steps" else "auto")
        elif key == "save_total_limit":
            self.spin.setSpecialValueText("all")
        elif key in ("early_stopping_patience", "sample_answers"):
            self.spin.setSpecialValueText("off")
        self._layout.addWidget(self.spin, 1)
        self.set_value(model.get(key))
        self.spin.valueChanged.connect(self._commit)

    def value(self) -> int:
        return int(round(self.spin.value()))

    def set_value(self, value: Any) -> None:
        self.spin.blockSignals(True)
        try:
            self.spin.setValue(int(value))
        except (TypeError, ValueError, OverflowError):
            pass
        self.spin.blockSignals(False)


class TextEditor(FieldEditor):
    """Free text: floats (parsed on the fly), module lists, names and paths."""

    def __init__(self, model: ConfigModel, key: str, parent: QWidget | None = None, *,
                 browse: str | None = None):
        super().__init__(model, key, parent)
        self.edit = QLineEdit()
        self.edit.setToolTip(self._tooltip)
        self._layout.addWidget(self.edit, 1)
        kind = self.meta["type"]
        if kind == "modules":
            self.edit.setPlaceholderText("all-linear" if key == "lora_target_modules" else "auto")
        elif key == "add_tokens":
            self.edit.setPlaceholderText("none (comma-separated, e.g. <|im_start|>, <|im_end|>)")
        elif kind == "list":
            self.edit.setPlaceholderText("none (comma-separated names)")
        elif key == "output_dir":
            self.edit.setPlaceholderText("a new folder in the runs directory")
        elif key == "run_name":
            self.edit.setPlaceholderText("method and time")
        elif key == "deepspeed":
            self.edit.setPlaceholderText("none (one GPU)")
        elif key == "eval_dataset":
            self.edit.setPlaceholderText("none: the eval split of the dataset")
        if browse:
            button = QToolButton()
            button.setText("…")
            button.setToolTip("Browse")
            self.button = button
            if key in ("dataset", "eval_dataset"):
                # A file, or a dataset of the Hugging Face cache (listed when the menu opens).
                self.menu = QMenu(button)
                self.menu.addAction("Choose a file…", lambda: self._browse(browse))
                self.hub_menu = self.menu.addMenu("From the Hugging Face cache")
                self.hub_menu.aboutToShow.connect(self._fill_hub_menu)
                button.setMenu(self.menu)
                button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
                button.setToolTip("A dataset file, or a dataset in the Hugging Face cache (type org/name:split "
                                  "for another split than train)")
            else:
                button.clicked.connect(lambda: self._browse(browse))
            self._layout.addWidget(button)
        self.set_value(model.get(key))
        self.edit.textEdited.connect(self._commit)

    def _fill_hub_menu(self) -> None:
        from engine.data.hub import cached_datasets

        self.hub_menu.clear()
        ids = cached_datasets()
        for repo in ids:
            self.hub_menu.addAction(repo, lambda r=repo: self._choose(r))
        if not ids:
            empty = self.hub_menu.addAction("none yet (huggingface-cli download --repo-type dataset ID)")
            empty.setEnabled(False)

    def _choose(self, text: str) -> None:
        self.edit.setText(text)
        self._commit()

    def value(self) -> Any:
        text = self.edit.text().strip()
        kind = self.meta["type"]
        if kind == "float":
            try:
                return float(text)
            except ValueError:
                return text  # the engine's validation names the key and what is allowed
        if kind == "modules":
            special = "all-linear" if self.key == "lora_target_modules" else "auto"
            if text in ("", special):
                return special
            return [s.strip() for s in text.split(",") if s.strip()]
        if kind == "list":
            return [s.strip() for s in text.split(",") if s.strip()]
        return text

    def set_value(self, value: Any) -> None:
        if isinstance(value, float):
            text = format_number(value)
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = "" if value is None else str(value)
        if text != self.edit.text():
            self.edit.setText(text)

    def _browse(self, what: str) -> None:
        if what == "dir":
            path = QFileDialog.getExistingDirectory(self, label_for(self.key), self.edit.text())
        else:
            path, _ = QFileDialog.getOpenFileName(self, label_for(self.key), "", what)
        if path:
            self.edit.setText(path)
            self._commit()


def make_editor(model: ConfigModel, key: str, parent: QWidget | None = None) -> FieldEditor:
    """The right editor for ``key`` according to its metadata, its inputs named after its label."""
    meta = RunConfig.field_meta()[key]
    kind = meta["type"]
    if kind == "bool":
        editor: FieldEditor = BoolEditor(model, key, parent)
    elif meta.get("choices"):
        editor = ChoiceEditor(model, key, parent)
    elif kind == "int":
        editor = IntEditor(model, key, parent)
    elif key in ("dataset", "eval_dataset"):
        editor = TextEditor(model, key, parent, browse="Datasets (*.json *.jsonl *.csv *.parquet);;All files (*)")
    elif key == "output_dir":
        editor = TextEditor(model, key, parent, browse="dir")
    elif key == "deepspeed":
        editor = TextEditor(model, key, parent, browse="DeepSpeed config (*.json);;All files (*)")
    else:
        editor = TextEditor(model, key, parent)
    editor.name_inputs()
    return editor
