"""Plain advice for what happens during a run, each with a one-click fix where one exists.

:class:`Advisor` is plain Python (testable without widgets): it turns the worker's typed
``error``/``warning``/``recovered``/``finished`` events into :class:`Advice`, and watches
the loss itself for divergence (the engine only reports NaN). :class:`AdvisorPanel` shows
the advice as cards; "Apply" sends the fix (a dict of run-config changes, as carried by
``engine.errors.StudioError.fix``) to the Train area's config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from gui.scheme import ink

LEVEL_COLORS = {"error": "#d0342c", "warning": "#d98e04", "info": "#1f5fa8", "ok": "#2e8540"}


@dataclass
class Advice:
    """One piece of advice.

    Attributes:
        level: error, warning, info or ok.
        title: A few words.
        text: What happened and what to do, in plain words.
        fix: Run-config changes that address it (applied to the form, used by the next
            start or resume).
        action: A non-config action the panel offers: ``resume``, ``stop`` or ``promote``.
        key: Identifies the advice, so a repeated warning replaces its card.
        where: A record to show in the Dataset area, ``(file, line)``: the first of those a run
            left out.
    """

    level: str
    title: str
    text: str
    fix: dict[str, Any] = field(default_factory=dict)
    action: str | None = None
    key: str = ""
    where: tuple[str, int] | None = None

    def fix_label(self) -> str:
        return "Apply: " + ", ".join(f"{k} = {_short(v)}" for k, v in self.fix.items())


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}".replace("e-0", "e-")  # 2e-5, as the form's field shows it
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


def _clean_fix(fix: Any) -> dict[str, Any]:
    # A fix of {key: None} means "remove the key" (an unknown YAML key); the form has no such key.
    return {k: v for k, v in (fix or {}).items() if v is not None} if isinstance(fix, dict) else {}


class DivergenceDetector:
    """Flags a loss that has turned and keeps rising well above its low.

    Uses a debiased EMA (weight 0.9, about the last 10 logged steps) so single noisy
    batches don't count. Diverging = the smoothed loss is at least ``ratio`` times its
    minimum and has risen for ``rising`` consecutive logged steps, after ``warmup``
    points. It fires once per run.
    """

    def __init__(self, weight: float = 0.9, ratio: float = 1.5, rising: int = 5, warmup: int = 10):
        self.weight, self.ratio, self.rising, self.warmup = weight, ratio, rising, warmup
        self.reset()

    def reset(self) -> None:
        self.last = 0.0
        self.k = 0
        self.prev: float | None = None
        self.best: tuple[float, float] | None = None  # (smoothed loss, step)
        self.up = 0
        self.fired = False

    def update(self, step: float, loss: float) -> tuple[float, float, float, float] | None:
        """Add one point; returns (low, low_step, now, step) the first time it diverges."""
        if not math.isfinite(loss):
            return None
        w = self.weight
        self.last = w * self.last + (1 - w) * loss
        self.k += 1
        smooth = self.last / (1 - w ** self.k)
        self.up = self.up + 1 if self.prev is not None and smooth > self.prev else 0
        self.prev = smooth
        if self.k <= self.warmup:
            return None
        if self.best is None or smooth < self.best[0]:
            self.best = (smooth, step)
        if (not self.fired and self.up >= self.rising and self.best[0] > 0
                and smooth >= self.ratio * self.best[0]):
            self.fired = True
            return (self.best[0], self.best[1], smooth, step)
        return None


class Advisor:
    """Turns run events into :class:`Advice` (no widgets here)."""

    def __init__(self) -> None:
        self.divergence = DivergenceDetector()
        self.learning_rate: float | None = None

    def reset(self, learning_rate: float | None = None) -> None:
        self.divergence.reset()
        self.learning_rate = learning_rate

    # ---- Public API
    def on_steps(self, rows: list[dict]) -> list[Advice]:
        out = []
        for r in rows:
            if r.get("loss") is None or r.get("step") is None:
                continue
            hit = self.divergence.update(r["step"], float(r["loss"]))
            if hit:
                low, low_step, now, step = hit
                fix = {"learning_rate": self.learning_rate / 2} if self.learning_rate else {}
                out.append(Advice(
                    "warning", "The loss is diverging",
                    f"The smoothed loss rose from its low of {low:.3f} (step {low_step:g}) to {now:.3f} "
                    f"(step {step:g}) and is still rising. The usual cause is a learning rate that is too "
                    "high for this model and batch. Stop the run, halve the learning rate and resume "
                    "from the last checkpoint; a longer warm-up or gradient clipping (max_grad_norm 1.0) "
                    "also helps.", fix=fix, action="stop", key="diverging"))
        return out

    def on_event(self, kind: str, data: dict[str, Any]) -> list[Advice]:
        handler = getattr(self, f"_on_{kind}", None)
        return handler(data) if handler else []

    # ---- Internals
    def _on_started(self, data: dict[str, Any]) -> list[Advice]:
        lr = (data.get("config") or {}).get("learning_rate")
        self.reset(lr)
        return []

    def _on_error(self, data: dict[str, Any]) -> list[Advice]:
        kind = data.get("kind", "error")
        message = data.get("message", "")
        hint = data.get("hint")
        fix = _clean_fix(data.get("fix"))
        if kind == "oom":
            text = (f"{message}. The automatic recovery already went down to micro-batch 1 or is off. "
                    + (hint or "Turn on gradient checkpointing, use an 8-bit optimizer or QLoRA, or shorten "
                       "the sequence length."))
            return [Advice("error", "Out of GPU memory", text, fix, key="oom")]
        if kind == "nonfinite":
            text = f"{message}. " + (hint or "")
            what = data.get("what") or "the loss"  # the engine says which: loss, gradient norm or both
            return [Advice("error", f"{what[0].upper()}{what[1:]} became NaN or infinite", text.strip(), fix,
                           key="nonfinite")]
        if data.get("errors"):
            return [Advice("error", f"Config problem: {e.get('key') or 'config'}", e.get("message", ""),
                           _clean_fix(e.get("fix")), key=f"config:{e.get('key')}:{i}")
                    for i, e in enumerate(data["errors"])]
        titles = {"config": "Config problem", "data": "Dataset problem", "model": "Model problem"}
        text = message + (f"\n{hint}" if hint else "")
        return [Advice("error", titles.get(kind, "The run failed"), text, fix, key=f"error:{kind}",
                       where=_first_record(data) if kind == "data" else None)]

    def _on_warning(self, data: dict[str, Any]) -> list[Advice]:
        kind = data.get("kind", "warning")
        if kind == "stopping":
            return []  # the progress line says it; not advice
        if kind == "early_stopped":
            return [Advice("info", "Stopped early: the eval loss stopped improving", data.get("message", ""),
                           None, key="early_stopped")]
        message = data.get("message", "")
        fix = _clean_fix(data.get("fix"))
        hint = data.get("hint")
        if kind == "truncation":
            text = (f"{message}. Truncated records lose the end of their answers, which is what the model "
                    "learns from. Raise the sequence length (more memory: check the gauge) or shorten "
                    "those records in the Dataset area.")
            return [Advice("warning", "Records were truncated", text, fix, key="truncation")]
        if kind == "dropped":
            text = f"{message}." + (f"\n{hint}" if hint else "")
            return [Advice("warning", "Records were left out", text, fix, key="dropped", where=_first_record(data))]
        if kind == "broken":
            return [Advice("warning", "Records could not be read", _sentence(message, hint), fix,
                           key="warning:broken", where=_first_record(data))]
        if kind == "keep_awake":
            return [Advice("warning", "The computer may go to sleep", f"{message}. Nothing trains while the "
                           "machine sleeps, and with some GPU drivers the run fails on waking; it can then be "
                           "resumed from its last checkpoint.", None, key="keep_awake")]
        if kind == "duplicates":
            return [Advice("warning", "Duplicate records", f"{message}. Duplicates weigh those examples "
                           "more and leak between train and eval; remove them in the Dataset area.",
                           fix, key="duplicates")]
        titles = {"disk": "The disk may fill up", "gpu_busy": "The GPU may not have the memory this run needs",
                  "gpu_idle": "The GPU often waits",
                  "eval_overlap": "Eval records are also training records",
                  "untrained_tokens": "The model never learnt these format tokens",
                  "dataset_changed": "The dataset changed since the run started",
                  "partial": "Some answers of multi-turn records don't train",
                  "learning_rate": "The learning rate is far from this method's usual one",
                  "eval_split": "The eval split isn't what was asked"}
        return [Advice("warning", titles.get(kind, kind.replace("_", " ").capitalize()), _sentence(message, hint),
                       fix, key=f"warning:{kind}")]

    def _on_recovered(self, data: dict[str, Any]) -> list[Advice]:
        kind = data.get("kind")
        changes = _clean_fix(data.get("changes"))
        if kind == "oom":
            return [Advice("info", "Recovered from out of memory", f"{data.get('message', '')}. Apply the "
                           "same settings to the form, so the next run starts with them.", changes,
                           key="recovered:oom")]
        if kind == "nonfinite":
            batch = data.get("batch")
            text = data.get("message", "") + (f" ({batch})" if batch else "")
            title = "a NaN gradient norm" if data.get("what") == "the gradient norm" else "a NaN loss"
            return [Advice("info", f"Recovered from {title}", text + " Apply the lower learning rate "
                           "to the form for the next run.", changes, key="recovered:nonfinite")]
        return [Advice("info", "Recovered", data.get("message", ""), changes, key=f"recovered:{kind}")]

    def _on_finished(self, data: dict[str, Any]) -> list[Advice]:
        status = data.get("status")
        if status == "crashed":
            tail = (data.get("log_tail") or "").strip().splitlines()[-6:]
            text = data.get("message", "The worker process ended unexpectedly.")
            if tail:
                text += "\nLast lines of its log:\n" + "\n".join(tail)
            return [Advice("error", "The training process crashed", text, action="resume", key="crashed")]
        report = data.get("probe")
        if not isinstance(report, dict) and status in ("completed", "stopped") and data.get("output_dir"):
            from engine.promote import describe_offer, eval_losses, eval_rise, promotion_offer

            offer = promotion_offer(data["output_dir"])
            # Said only on evidence: one eval point a little above the lowest, or a single eval, is no overfitting.
            rise = eval_rise(eval_losses(Path(data["output_dir"]))) if offer is not None else None
            if offer is not None and rise is not None:
                ckpt, rose = offer[0], rise.describe()
                return [Advice("info", "An earlier checkpoint evaluated better",
                               f"{rose[0].upper()}{rose[1:]}: the run overfit at its end; {describe_offer(offer)}. "
                               f"Make {ckpt.name} the run's result (final/, what Try it, merge and export use); the "
                               "last weights stay in their checkpoint. Early stopping does this during a run.",
                               {"early_stopping_patience": 3}, action="promote", key="promote")]
        if isinstance(report, dict) and status in ("completed", "stopped"):
            from engine.probe import format_probe

            changed = report.get("changed") or {}
            text = "\n".join(format_probe(report))
            if changed:
                text += "\nApply the batch that fits to the form with the button below."
            return [Advice("warning" if changed else "ok", "Probe: what this config costs on this machine", text,
                           dict(changed) or None, key="probe")]
        return []


class _AdviceCard(QFrame):
    def __init__(self, advice: Advice, panel: AdvisorPanel):
        super().__init__()
        self.advice = advice
        color = ink(LEVEL_COLORS.get(advice.level, "#888"), on=self.palette().color(QPalette.ColorRole.Base))
        self.setObjectName("adviceCard")
        self.setStyleSheet(f"QFrame#adviceCard {{ border: 1px solid palette(mid); border-left: 4px solid {color};"
                           " border-radius: 4px; background: palette(base); }")
        title = QLabel(f"<b>{advice.title}</b>")
        title.setStyleSheet(f"color: {color};")
        title.setWordWrap(True)  # a narrow window: the card fits its panel, no sideways scrolling
        text = QLabel(advice.text)
        text.setWordWrap(True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        text.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        self.fix_button = None
        if advice.fix:
            self.fix_button = QPushButton(advice.fix_label())
            self.fix_button.setToolTip("Change the run config in the form; the next start or resume uses it")
            self.fix_button.clicked.connect(lambda: panel.sig_apply_fix.emit(dict(advice.fix)))
            buttons.addWidget(self.fix_button)
        if advice.action:
            label = {"resume": "Resume from last checkpoint", "stop": "Stop the run",
                     "promote": "Use the best checkpoint"}.get(advice.action, advice.action)
            action_button = QPushButton(label)
            action_button.clicked.connect(lambda: panel.sig_action.emit(advice.action))
            buttons.addWidget(action_button)
        if advice.where:
            show = QPushButton("Show in the Dataset area")
            show.setToolTip(f"Open {advice.where[0]} at line {advice.where[1]}, the first of these records")
            show.clicked.connect(lambda: panel.sig_open_line.emit(*advice.where))
            buttons.addWidget(show)
        buttons.addStretch(1)
        dismiss = QPushButton("Dismiss")
        dismiss.setFlat(True)
        dismiss.clicked.connect(lambda: panel.remove(advice.key))
        buttons.addWidget(dismiss)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 8, 6)
        layout.setSpacing(4)
        layout.addWidget(title)
        layout.addWidget(text)
        layout.addLayout(buttons)


class AdvisorPanel(QWidget):
    """Advice cards, newest first, each with Apply/action/Dismiss buttons."""

    sig_apply_fix = Signal(dict)
    """The user applied a fix: run-config changes."""
    sig_action = Signal(str)
    """The user asked for an action: resume, stop or promote."""
    sig_open_line = Signal(str, int)
    """The user asked to see a record in the Dataset area: its file and line."""
    sig_count_changed = Signal(int)
    """The number of cards shown changed."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.cards: dict[str, _AdviceCard] = {}
        self._seq = 0
        inner = QWidget()
        self._list = QVBoxLayout(inner)
        self._list.setContentsMargins(2, 2, 2, 2)
        self._list.setSpacing(6)
        self.empty = QLabel("No advice yet. Problems during a run (out of memory, NaN or diverging loss, "
                            "truncated records) appear here with a one-click fix.")
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: palette(mid); padding: 8px;")
        self._list.addWidget(self.empty)
        self._list.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(inner)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

    # ---- Public API
    def add(self, advice: Advice) -> None:
        if not advice.key:
            self._seq += 1
            advice.key = f"advice-{self._seq}"
        self.remove(advice.key, notify=False)
        card = _AdviceCard(advice, self)
        self.cards[advice.key] = card
        self._list.insertWidget(0, card)
        self.empty.setVisible(False)
        self.sig_count_changed.emit(len(self.cards))

    def add_all(self, advice: list[Advice]) -> None:
        for a in advice:
            self.add(a)

    def remove(self, key: str, notify: bool = True) -> None:
        card = self.cards.pop(key, None)
        if card is not None:
            card.setParent(None)
            card.deleteLater()
        self.empty.setVisible(not self.cards)
        if notify:
            self.sig_count_changed.emit(len(self.cards))

    def clear(self) -> None:
        for key in list(self.cards):
            self.remove(key, notify=False)
        self.sig_count_changed.emit(0)

    def advice(self) -> list[Advice]:
        return [c.advice for c in self.cards.values()]


def _sentence(message: str, hint: str | None) -> str:
    """An engine message as a card's text: capitalised, with its hint on a line of its own."""
    return message[:1].upper() + message[1:] + (f"\n{hint}" if hint else "")


def _first_record(data: dict[str, Any]) -> tuple[str, int] | None:
    """``(file, line)`` of the first record a warning lists (or a data error names), when the editor can open it there
    (a file on disk, not a Hugging Face cache dataset, whose lines are in the cache's files)."""
    from engine.data.hub import parse_ref

    path, records = data.get("path"), data.get("records") or []
    line = next((r.get("line") for r in records if isinstance(r, dict) and r.get("line")), data.get("line"))
    if not path or not line or parse_ref(str(path)) is not None:
        return None
    return str(path), int(line)
