"""Method and precision: every method from the engine's table, with only its own settings,
and every ``load_in`` x ``mixed_precision`` combination, impossible ones disabled with the
reason as the tooltip.

The method list, its settings and the validity rules all come from the engine
(``engine.methods.METHODS``, ``invalid_reason``, ``engine.precision.validity_matrix``),
so adding a method there adds it here.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.config import LOAD_IN, MIXED_PRECISION
from engine.methods import METHODS, invalid_reason, rate_note
from gui.scheme import MARK_CONTRAST, ink, keep_styled
from gui.train.config_model import ConfigModel
from gui.train.fields import FieldEditor, format_number, label_for, make_editor, tooltip_for

LOAD_LABELS = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8": "int8 (LLM.int8)", "nf4": "nf4 (4-bit)"}
MIXED_LABELS = {"no": "no AMP", "fp16": "fp16 AMP", "bf16": "bf16 AMP"}
def chosen_impossible_style() -> str:
    return f"QRadioButton {{ color: {ink('#b71c1c')}; font-weight: bold; }}"
# When a new method rules out the current precision, the first valid one of these is chosen.
PREFERRED = (("bf16", "bf16"), ("nf4", "bf16"), ("fp32", "no"), ("fp32", "bf16"), ("fp16", "fp16"),
             ("fp32", "fp16"), ("int8", "bf16"), ("int8", "no"), ("nf4", "no"), ("nf4", "fp16"))


class MethodPicker(QWidget):
    """The method, its description, and the settings that method reads (and only those)."""

    def __init__(self, model: ConfigModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.combo = QComboBox()
        for name, m in METHODS.items():
            self.combo.addItem(f"{m.label}", name)
            self.combo.setItemData(self.combo.count() - 1, m.description, Qt.ItemDataRole.ToolTipRole)
        self.combo.setToolTip(tooltip_for("method"))
        self.description = QLabel("")
        self.description.setWordWrap(True)
        self.description.setStyleSheet("color: palette(mid);")
        # The method's usual learning rate, and the form's when it is far from it (with the fix):
        # said here, where the method is picked, as the Learning rate field may be scrolled away.
        self.rate_label = QLabel("")
        self.rate_label.setWordWrap(True)
        self.rate_button = QPushButton("")
        self.rate_button.setToolTip("Set the learning rate to this method's usual one")
        self.rate_button.clicked.connect(self._use_usual_rate)
        rate_row = QHBoxLayout()
        rate_row.setContentsMargins(0, 0, 0, 0)
        rate_row.addWidget(self.rate_label, 1)
        rate_row.addWidget(self.rate_button, 0, Qt.AlignmentFlag.AlignTop)
        self.form = QFormLayout()
        self.form.setContentsMargins(0, 0, 0, 0)
        self.editors: dict[str, FieldEditor] = {}
        for m in METHODS.values():
            for key in m.settings:
                if key not in self.editors:
                    editor = make_editor(model, key)
                    label = QLabel(label_for(key))
                    label.setToolTip(tooltip_for(key))
                    self.editors[key] = editor
                    self.form.addRow(label, editor)
        self.no_settings = QLabel("This method has no settings of its own.")
        self.no_settings.setStyleSheet("color: palette(mid);")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addWidget(self.description)
        layout.addLayout(rate_row)
        layout.addLayout(self.form)
        layout.addWidget(self.no_settings)
        self._switched: tuple | None = None  # (the user's precision, the one a method switch chose)
        self._show(model.get("method"))
        self._show_rate()
        self.combo.activated.connect(self._on_activated)
        model.sig_changed.connect(self._on_model_changed)

    # ---- Public API
    def visible_settings(self) -> list[str]:
        return [k for k, e in self.editors.items() if self.form.isRowVisible(e)]

    # ---- Internals
    def _show(self, method: str) -> None:
        index = self.combo.findData(method)
        if index >= 0:
            self.combo.setCurrentIndex(index)
        m = METHODS.get(method)
        self.description.setText(m.description if m else "")
        settings = set(m.settings) if m else set()
        for key, editor in self.editors.items():
            self.form.setRowVisible(editor, key in settings)
        self.no_settings.setVisible(not settings)

    def _on_activated(self, index: int) -> None:
        method = self.combo.itemData(index)
        values = self.model.values()
        li, mp = values["load_in"], values["mixed_precision"]
        env = self.model.environment
        chosen = self._switched
        if chosen is not None and chosen[1] == (li, mp) and invalid_reason(method, *chosen[0], env) is None:
            # Back from a method that needed another precision (fp32 → QLoRA → LoRA): the user's again.
            values = {**values, "load_in": chosen[0][0], "mixed_precision": chosen[0][1]}
            self._switched = None
        changes = {"method": method, **switch_changes(values, method, env)}
        if "load_in" in changes:  # remembered, to give the user's back when a later switch allows it
            self._switched = (chosen[0] if chosen is not None and chosen[1] == (li, mp) else (li, mp),
                              (changes["load_in"], changes["mixed_precision"]))
        elif (values["load_in"], values["mixed_precision"]) != (li, mp):
            changes.update(load_in=values["load_in"], mixed_precision=values["mixed_precision"])
        self.model.update(changes)

    def _on_model_changed(self, keys: set[str]) -> None:
        if "method" in keys:
            self._show(self.model.get("method"))
        if not keys or keys & {"method", "learning_rate"}:
            self._show_rate()

    def _show_rate(self) -> None:
        method = METHODS.get(self.model.get("method"))
        lr = self.model.get("learning_rate")
        note = rate_note(method.name, lr) if method else None
        self.rate_button.setVisible(note is not None)
        if method is None:
            self.rate_label.setText("")
        elif note is None:
            self.rate_label.setStyleSheet("color: palette(mid);")
            self.rate_label.setText(f"Usual learning rate: {format_number(method.learning_rate)} "
                                    f"({method.learning_rate_source}).")
        else:
            self.rate_label.setStyleSheet(f"color: {ink('#8a5a00')};")
            self.rate_label.setText(f"⚠ {note['finding'][:1].upper()}{note['finding'][1:]}.")
            self.rate_button.setText(f"Use {format_number(method.learning_rate)}")
        self.rate_label.setToolTip(f"{note['message'][:1].upper()}{note['message'][1:]}. {note['hint']}" if note
                                   else "")

    def _use_usual_rate(self) -> None:
        method = METHODS.get(self.model.get("method"))
        if method is not None:
            self.model.set("learning_rate", method.learning_rate)


def switch_changes(values: dict[str, Any], new: str, env: Any, keep: Any = ()) -> dict[str, Any]:
    """What picking method ``new`` changes in a form holding ``values`` (the Method combo, and each
    method of a queued grid): the new method's usual learning rate where the form holds the old
    method's (full fine-tuning at LoRA's 2e-4 moves every weight ten times as far as usual; a rate
    the user chose stays), and a precision the new method allows where it rules the form's out.
    Keys in ``keep`` (a grid's own) are left alone."""
    changes: dict[str, Any] = {}
    old, lr = METHODS.get(values["method"]), values["learning_rate"]
    if "learning_rate" not in keep and old is not None and new in METHODS and lr == old.learning_rate \
            and METHODS[new].learning_rate != lr:
        changes["learning_rate"] = METHODS[new].learning_rate
    li, mp = values["load_in"], values["mixed_precision"]
    if "load_in" not in keep and "mixed_precision" not in keep and invalid_reason(new, li, mp, env) is not None:
        # No precision works on this machine (QLoRA on a CPU): take one the method itself
        # allows, so the banner names the machine's problem ("nf4 needs a CUDA GPU")
        # rather than asking for a cell that is crossed out, and the estimate can plan it.
        better = first_valid(new, li, env) or first_valid(new, li, None)
        if better:
            changes.update(load_in=better[0], mixed_precision=better[1])
    return changes


def first_valid(method: str, load_in: str, env: Any) -> tuple[str, str] | None:
    """The precision to switch to when ``method`` rules the current one out."""
    same_load = [(load_in, mp) for mp in MIXED_PRECISION]
    others = [(li, mp) for li in LOAD_IN for mp in MIXED_PRECISION]
    for li, mp in [*same_load, *PREFERRED, *others]:
        if invalid_reason(method, li, mp, env) is None:
            return li, mp
    return None


class PrecisionGrid(QWidget):
    """``load_in`` rows x ``mixed_precision`` columns of radio buttons; impossible cells disabled."""

    def __init__(self, model: ConfigModel, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.cells: dict[tuple[str, str], QRadioButton] = {}
        self.reasons: dict[tuple[str, str], str | None] = {}
        # A disabled radio button looks almost like an enabled one; show an ✕ instead.
        keep_styled(self, lambda: f"QRadioButton:disabled {{ color: {ink('#b0b0b0', target=MARK_CONTRAST)}; "
                    "spacing: 0px; } QRadioButton::indicator:disabled { image: none; border: none; width: 0px; "
                    "height: 0px; }")
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        corner = QLabel("weights ↓  autocast →")
        corner.setStyleSheet("color: palette(mid);")
        grid.addWidget(corner, 0, 0)
        for c, mp in enumerate(MIXED_PRECISION, start=1):
            head = QLabel(MIXED_LABELS[mp])
            head.setToolTip(tooltip_for("mixed_precision"))
            grid.addWidget(head, 0, c, Qt.AlignmentFlag.AlignHCenter)
        for r, li in enumerate(LOAD_IN, start=1):
            head = QLabel(LOAD_LABELS[li])
            head.setToolTip(tooltip_for("load_in"))
            grid.addWidget(head, r, 0)
            for c, mp in enumerate(MIXED_PRECISION, start=1):
                cell = QRadioButton()
                cell.setObjectName(f"precision_{li}_{mp}")
                # Its text is "" or "✕": a screen reader needs the row and column in words (the
                # tooltip, its description, says whether it is possible and why not).
                cell.setAccessibleName(f"{LOAD_LABELS[li]} weights, {MIXED_LABELS[mp]}")
                self.cells[(li, mp)] = cell
                self.group.addButton(cell)
                grid.addWidget(cell, r, c, Qt.AlignmentFlag.AlignHCenter)
                cell.toggled.connect(lambda on, li=li, mp=mp: on and self._on_picked(li, mp))
        self.refresh()
        model.sig_changed.connect(self._on_model_changed)

    # ---- Public API
    def refresh(self) -> None:
        """Recompute which cells are possible for the method on this machine."""
        method, env = self.model.get("method"), self.model.environment
        current = (self.model.get("load_in"), self.model.get("mixed_precision"))
        for (li, mp), cell in self.cells.items():
            try:
                reason = invalid_reason(method, li, mp, env)
            except Exception as e:  # noqa: BLE001 - an unknown method from a bad YAML
                reason = str(e)
            self.reasons[(li, mp)] = reason
            # The chosen cell stays visible (checked, in red) when it is not possible here, e.g.
            # int8 from a YAML on a CPU-only machine: otherwise nothing in the grid looks chosen.
            chosen = reason is not None and (li, mp) == current
            cell.setEnabled(reason is None or chosen)
            cell.setText("" if reason is None else "✕")
            cell.setStyleSheet(chosen_impossible_style() if chosen else "")
            where = f"load_in: {li}, mixed_precision: {mp}\n"
            if chosen:
                cell.setToolTip(where + f"Chosen, but not possible: {reason}\nPick one of the possible cells.")
            else:
                cell.setToolTip(where + ("Possible." if reason is None else f"Not possible: {reason}"))
        self._check_current()

    def is_enabled(self, load_in: str, mixed_precision: str) -> bool:
        """Whether this combination is possible for the method on this machine."""
        return self.reasons.get((load_in, mixed_precision)) is None

    # ---- Internals
    def _check_current(self) -> None:
        current = (self.model.get("load_in"), self.model.get("mixed_precision"))
        cell = self.cells.get(current)
        self.group.blockSignals(True)
        for c in self.cells.values():
            c.blockSignals(True)
        if cell is not None:
            cell.setChecked(True)
        for c in self.cells.values():
            c.blockSignals(False)
        self.group.blockSignals(False)

    def _on_picked(self, li: str, mp: str) -> None:
        self.model.update({"load_in": li, "mixed_precision": mp})

    def _on_model_changed(self, keys: set[str]) -> None:
        if not keys or keys & {"method", "device", "load_in", "mixed_precision"}:
            self.refresh()  # the chosen cell's look depends on whether it is possible
