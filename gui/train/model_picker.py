"""The model picker: the demo, a local folder, the Hugging Face cache (offline) or a recent model.

Nothing here downloads. The cache is scanned with ``huggingface_hub.scan_cache_dir()``
(imported lazily, off the UI thread). The info line is read from the model folder's JSON
files and safetensors headers, never from the weights, so it is instant even for a 70B
model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.scheme import ink
from gui.settings import recent_list, remember
from gui.train.background import BackgroundCalls
from gui.train.config_model import ConfigModel
from gui.train.fields import tooltip_for

RECENT_KEY = "train/recent_models"
MAX_RECENT = 8


def recent_models() -> list[str]:
    return [v for v in recent_list(RECENT_KEY) if v != "demo"]


def remember_model(model: str) -> None:
    """Put ``model`` first in the recent list (the demo is always offered anyway)."""
    if model and model != "demo":
        remember(RECENT_KEY, model, MAX_RECENT)


def scan_hf_cache() -> list[str]:
    """Model repo ids in the local Hugging Face cache that have a config.json (no network)."""
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return []
    try:
        info = scan_cache_dir()
    except Exception:  # noqa: BLE001 - no cache folder, or an unreadable one: nothing cached
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        if any((Path(rev.snapshot_path) / "config.json").exists() for rev in repo.revisions):
            found.append(repo.repo_id)
    return sorted(found, key=str.lower)


def safetensors_summary(folder: Path) -> tuple[int, str] | None:
    """(parameter count, dominant dtype) from the safetensors headers, or None if there are none.

    The files' headers give each tensor's dtype and shape, so counting needs no weights and no torch.
    """
    from engine.adapters import safetensors_header

    files = [f for f in sorted(Path(folder).glob("*.safetensors")) if not f.name.startswith("adapter_")]
    if not files:
        return None
    total = 0
    dtypes: Counter[str] = Counter()
    for f in files:
        for t in safetensors_header(f).values():
            numel = 1
            for d in t["shape"]:
                numel *= int(d)
            total += numel
            dtypes[t["dtype"]] += numel
    return total, dtypes.most_common(1)[0][0] if dtypes else "?"


def describe_model(model: str) -> dict[str, Any]:
    """What the info panel shows for ``model`` (runs on a worker thread)."""
    from engine.models import model_info

    info = model_info(model)
    counted = safetensors_summary(Path(info.path))
    return {"info": info, "params": counted[0] if counted else None,
            "stored_dtype": counted[1] if counted else None}


def human_count(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


class ModelPicker(QWidget):
    """Choose the base model; shows what it is, read from its folder."""

    sig_info = Signal(object)
    """New model details (a dict from :func:`describe_model`), or None when unreadable."""

    def __init__(self, model: ConfigModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.info: dict[str, Any] | None = None
        self._calls = BackgroundCalls(self, max_threads=1)
        self._calls.sig_done.connect(self._on_done)
        self._calls.sig_failed.connect(self._on_failed)
        self._cached: list[str] = []
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        # A long cached path must not widen the form: the combo shrinks, the popup shows it whole.
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(14)
        self.combo.setToolTip(tooltip_for("model"))
        self.combo.lineEdit().setPlaceholderText("demo, a folder with config.json, or org/name from the HF cache")
        self.browse = QPushButton("Folder…")
        self.browse.setToolTip("Pick a local model folder (one with config.json)")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.browse)
        self.labels: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setContentsMargins(0, 4, 0, 0)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(2)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        for key, label in (("architecture", "Architecture"), ("params", "Parameters"), ("vocab", "Vocabulary"),
                           ("context", "Context length"), ("dtype", "dtype"), ("chat", "Chat template"),
                           ("weights", "Weights")):
            value = QLabel("…")
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)  # a long architecture line wraps instead of widening the form
            self.labels[key] = value
            name = QLabel(label)
            name.setStyleSheet("color: palette(mid);")
            form.addRow(name, value)
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(f"color: {ink('#d0342c')};")
        self.problem.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(row)
        layout.addLayout(form)
        layout.addWidget(self.problem)

        self._fill_items()
        self._set_text(model.get("model"))
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self._commit)
        self.combo.lineEdit().textEdited.connect(lambda _: self._debounce.start())
        self.combo.activated.connect(lambda _: self._commit())
        self.combo.lineEdit().editingFinished.connect(self._commit)
        self.browse.clicked.connect(self._on_browse)
        model.sig_changed.connect(self._on_model_changed)
        self._calls.submit("cache", scan_hf_cache)
        self._describe(model.get("model"))

    # ---- Public API
    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self._fill_items()  # a model merged in the Adapters area since is a recent one

    def wait(self, msecs: int = 30_000) -> bool:
        return self._calls.wait(msecs)

    def show_problem(self, text: str) -> None:
        """Say what is wrong with the model in red under its details (until the model changes)."""
        self.problem.setText(text)
        self.problem.show()

    # ---- Internals
    def _fill_items(self) -> None:
        text = self.combo.currentText()
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem("demo")
        self.combo.setItemData(0, "The embedded tiny demo model (trains on a CPU in a minute)",
                               Qt.ItemDataRole.ToolTipRole)
        recents = recent_models()
        for m in recents:
            self.combo.addItem(m)
            self.combo.setItemData(self.combo.count() - 1, "Recently used", Qt.ItemDataRole.ToolTipRole)
        for m in self._cached:
            if m not in recents:
                self.combo.addItem(m)
                self.combo.setItemData(self.combo.count() - 1, "In the local Hugging Face cache",
                                       Qt.ItemDataRole.ToolTipRole)
        self.combo.setEditText(text)
        self.combo.blockSignals(False)

    def _set_text(self, text: str) -> None:
        if self.combo.currentText() != text:
            self.combo.blockSignals(True)
            self.combo.setEditText(text)
            self.combo.blockSignals(False)

    def _commit(self) -> None:
        self._debounce.stop()
        text = self.combo.currentText().strip()
        if text and text != self.model.get("model"):
            self.model.set("model", text)

    def _on_browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model folder (with config.json)")
        if not path:
            return
        if not (Path(path) / "config.json").exists():
            QMessageBox.warning(self, "Not a model folder", f"{path} has no config.json. Pick the folder that "
                                "holds config.json and the weights.")
            return
        self._set_text(path)
        self._commit()

    def _on_model_changed(self, keys: set[str]) -> None:
        if "model" in keys:
            self._set_text(self.model.get("model"))
            self._describe(self.model.get("model"))

    def _describe(self, model: str) -> None:
        for label in self.labels.values():
            label.setText("…")
        self.problem.hide()
        self._calls.submit(f"info:{model}", lambda: describe_model(model))

    def _on_done(self, tag: str, result: Any) -> None:
        if tag == "cache":
            self._cached = result
            self._fill_items()
            return
        if tag != f"info:{self.model.get('model')}":
            return  # an older model's answer
        self.info = result
        info = result["info"]
        lab = self.labels
        lab["architecture"].setText(f"{info.architecture} ({info.model_type}), {info.num_layers} layers, "
                                    f"hidden {info.hidden_size}")
        lab["params"].setText(human_count(result["params"]) + (f" ({result['params']:,})" if result["params"] else
                                                                " (no safetensors to count)"))
        lab["vocab"].setText(f"{info.vocab_size:,}")
        lab["context"].setText(f"{info.context_length:,}" if info.context_length else "unknown")
        stored = result["stored_dtype"]
        lab["dtype"].setText(str(info.dtype or "not stated") + (f" (stored {stored})" if stored else ""))
        if not info.has_tokenizer:
            lab["chat"].setText(f"<span style='color:{ink('#d0342c')}'>no tokenizer files</span>: copy the tokenizer of "
                                "the model's repository into the folder")
        else:
            lab["chat"].setText("yes" if info.has_chat_template else
                                f"<span style='color:{ink('#d98e04')}'>no</span>: the Alpaca prompt is used")
        if info.safetensors:
            lab["weights"].setText("safetensors")
        elif info.pickle_only:
            lab["weights"].setText(f"<span style='color:{ink('#d0342c')}'>pickle only (.bin)</span>: needs allow_pickle, "
                                   "which can run code")
        else:
            lab["weights"].setText(f"<span style='color:{ink('#d0342c')}'>none found</span>: training needs the .safetensors "
                                   "files")
        self.sig_info.emit(result)

    def _on_failed(self, tag: str, message: str, trace: str) -> None:
        if tag == "cache":
            return
        if tag != f"info:{self.model.get('model')}":
            return
        self.info = None
        for label in self.labels.values():
            label.setText("–")
        self.problem.setText(message.split(": ", 1)[-1] if message.startswith("ModelError") else message)
        self.problem.show()
        self.sig_info.emit(None)
