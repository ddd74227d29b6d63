"""The live VRAM gauge: the estimate's breakdown as a stacked bar against the GPU's memory.

The bar is scaled to the larger of the GPU's memory and the estimated peak, so a config
that doesn't fit visibly runs past the GPU line. The estimate is for batches of ``seq_len``
tokens. Once the run's records are measured and their longest batch is shorter than that, the
peak with this dataset is what the run reaches (batches are padded only to their longest
record): the badge judges it ("fits with this dataset"), the bar is its breakdown, and the peak
at the full ``seq_len`` stays as a hollow outline on the bar and a grey line under it. Until
then (being measured, can't be measured, packing, records that reach ``seq_len``) the badge and
the bar are the estimate at ``seq_len``. After a run, the measured peak is drawn as a marker on
the same bar, beside the estimate.
"""

from __future__ import annotations

import html
import re
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from engine.wording import a_number
from gui.scheme import MARK_CONTRAST, FollowsPalette, ink, ink_color, is_dark, palette_signature
from gui.train.model_picker import human_count

GiB = 2**30
# One fixed colour per breakdown term (engine.memory.BREAKDOWN_KEYS), so a term keeps its
# colour as others appear and vanish; unknown terms take the spares.
COLORS = {"weights": "#264653", "quant_constants": "#3d6b7d", "gradients": "#2a9d8f",
          "optimizer_states": "#e9c46a", "autocast_weight_copies": "#8ab17d", "activations": "#e76f51",
          "logits_and_loss": "#6a51a3", "temporaries": "#f4a261", "workspace": "#b5838d",
          "allocator_slack": "#c9c9c9", "cuda_context": "#8d99ae", "gpu_correction": "#6d6875"}
SPARE = ["#9ab9dd", "#d4a5a5", "#a3c4bc", "#bfb48f"]
FITS_TEXT = {"yes": ("fits", "#2e8540"), "tight": ("tight", "#d98e04"), "no": ("does not fit", "#d0342c")}
STALE_BADGE = "#9e9e9e"
"""The badge's colour while it still judges the previous dataset line (greyed, STALE_MS at most)."""
PLAN_SIZES_GIB = (8, 12, 16, 24, 40, 48, 80, 141)
DATA_COLOR = "#1565c0"
"""The tick of the peak with this dataset, and the mark before its line (the measured peak's is red)."""
OTHERS_COLOR = "#7a7a7a"
"""The memory other programs hold on the GPU: hatched at the bar's GPU end, and its legend mark."""
SAID_OTHERWISE = ("gpu_others", "no_gpu_detected", "cannot_run_here")
"""The kinds of the engine's notes (``Estimate.notes_by_kind``) the gauge leaves out: what other programs
hold has a line of its own, with the GPU's numbers; "no GPU detected" speaks CLI (``--gpu-memory``),
where the "Plan for" list does that here; why this machine can't run the config is the Train area's
banner, with its fix buttons."""
STALE_MS = 400
"""While the records are measured again (seq_len typed, a dataset saved), the previous line with this
dataset stays, greyed, this long: a quick re-measure then replaces it without a flash of "measuring"."""
NBSP = "\u00a0"
FIT_TIP = ("Apply the estimate's suggestions (seq_len cut to the dataset's longest record, micro-batch, "
           "accumulation, checkpointing, precision) so the run fits; asks first")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / 2**20:.0f} MiB"


def fmt_percent(fraction: float) -> str:
    """A share as people read it: 1.0 -> '100%', 0.0102 -> '1%', 0.000123 -> '0.012%'."""
    pct = 100 * fraction
    return f"{pct:.0f}%" if pct >= 10 else f"{pct:.2g}%"


def share_text(trainable: int | None, total: int | None) -> str:
    """The trainable share of the parameters, for the end of the gauge's first line ("" without counts).

    Counts are rounded as the model picker's ("150K of 1.15M"): the exact ones made the line too
    long for the 1360-px window's pane (its "(13%)" wrapped onto a line of its own), and are the
    details' tooltip. The share never breaks inside: a pane too narrow for it moves it whole to
    the next line.
    """
    if trainable is None or not total:
        return ""
    return (f"<span style='white-space:nowrap'>trainable {human_count(trainable)} of {human_count(total)} "
            f"parameters ({fmt_percent(trainable / total)})</span>")


def field(obj: Any, key: str, default: Any = None) -> Any:
    """An attribute of a dataclass or a key of a dict (suggestions may be either)."""
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


class VramBar(QWidget):
    """The stacked bar itself."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.parts: list[tuple[str, int, QColor]] = []
        self.gpu_bytes: int | None = None
        self.measured: int | None = None
        self.data_peak: int | None = None
        self.full_peak: int | None = None
        self.muted = False
        self.others = 0
        self.setMinimumHeight(34)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        # Painted: a screen reader has only these words (VramGauge keeps the description up to date).
        self.setAccessibleName("GPU memory estimate")
        self.setAccessibleDescription("Estimating…")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(400, 38)

    def set_data(self, parts: list[tuple[str, int, QColor]], gpu_bytes: int | None,
                 measured: int | None, data_peak: int | None = None, *, full_peak: int | None = None,
                 muted: bool = False, others: int = 0) -> None:
        """The breakdown's parts, the GPU line, the measured peak and the peak with this dataset
        (a tick; None draws none).

        Args:
            full_peak: The peak at the full ``seq_len`` when ``parts`` are this dataset's: a hollow
                outline from the parts' end to it (None draws none).
            muted: The parts are the previous dataset's, kept a moment while it is measured again:
                drawn faded.
            others: Memory other programs hold on the GPU: hatched at its end; the GPU line then
                marks what they leave.
        """
        self.parts, self.gpu_bytes, self.measured, self.data_peak = parts, gpu_bytes, measured, data_peak
        self.full_peak, self.muted = full_peak, muted
        self.others = min(others or 0, gpu_bytes or 0)
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(1, 6, -1, -6)
        p.setPen(QPen(self.palette().mid().color()))
        p.setBrush(self.palette().base())
        p.drawRoundedRect(rect, 4, 4)
        palette = self.palette()
        base = palette.color(QPalette.ColorRole.Base)
        total = sum(b for _, b, _ in self.parts)
        scale = max(total, self.gpu_bytes or 0, self.measured or 0, self.full_peak or 0) * 1.04 or 1
        x = rect.left()
        p.setPen(Qt.PenStyle.NoPen)
        if self.muted:
            p.setOpacity(0.45)
        for _name, nbytes, color in self.parts:
            w = rect.width() * nbytes / scale
            p.setBrush(ink_color(color, palette, on=base, target=MARK_CONTRAST))
            p.drawRect(QRectF(x, rect.top() + 1, max(w, 0), rect.height() - 2))
            x += w
        p.setOpacity(1.0)
        if self.full_peak and self.full_peak > total:
            # What a batch of the full seq_len would add: an outline, not a fill, so the fill stays
            # the peak the badge judges.
            fx = rect.left() + rect.width() * self.full_peak / scale
            p.setPen(QPen(self.palette().mid().color(), 1, Qt.PenStyle.DashLine))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(x, rect.top() + 1.5, fx - x, rect.height() - 3))
            p.setPen(Qt.PenStyle.NoPen)
        if self.gpu_bytes:
            gx = rect.left() + rect.width() * (self.gpu_bytes - self.others) / scale
            if self.others:
                ex = rect.left() + rect.width() * self.gpu_bytes / scale
                others_color = ink_color(OTHERS_COLOR, palette, on=base, target=MARK_CONTRAST)
                p.setBrush(QBrush(others_color, Qt.BrushStyle.BDiagPattern))
                p.drawRect(QRectF(gx, rect.top() + 1, ex - gx, rect.height() - 2))
                p.setPen(QPen(others_color, 1))
                p.drawLine(int(ex), int(rect.top()), int(ex), int(rect.bottom()))
                p.setPen(Qt.PenStyle.NoPen)
            if total > self.gpu_bytes - self.others:
                p.setBrush(QColor(208, 52, 44, 70))
                p.drawRect(QRectF(gx, rect.top(), x - gx, rect.height()))
            # The GPU's line: near-black on a light palette, the text colour on a dark one.
            gpu_line = palette.color(QPalette.ColorRole.Text) if is_dark(palette) else QColor("#222")
            p.setPen(QPen(gpu_line, 2, Qt.PenStyle.DashLine))
            p.drawLine(int(gx), int(rect.top()) - 5, int(gx), int(rect.bottom()) + 5)
        if self.data_peak:
            # Over the bar only (the GPU and measured markers reach past it): a light halo keeps the
            # tick visible on the dark segments it crosses.
            dx = int(rect.left() + rect.width() * self.data_peak / scale)
            halo = QColor(base if is_dark(palette) else QColor(255, 255, 255))  # the background's colour
            halo.setAlpha(200)
            p.setPen(QPen(halo, 4))
            p.drawLine(dx, int(rect.top()) + 1, dx, int(rect.bottom()) - 1)
            p.setPen(QPen(ink_color(DATA_COLOR, palette, on=base, target=MARK_CONTRAST), 2))
            p.drawLine(dx, int(rect.top()) - 2, dx, int(rect.bottom()) + 2)
        if self.measured:
            mx = rect.left() + rect.width() * self.measured / scale
            p.setPen(QPen(ink_color("#d0342c", palette, on=base, target=MARK_CONTRAST), 2))
            p.drawLine(int(mx), int(rect.top()) - 5, int(mx), int(rect.bottom()) + 5)
        p.end()


class FitDialog(QDialog):
    """Asks which of the estimate's suggestions to apply."""

    def __init__(self, suggestions: list[Any], gpu_bytes: int | None, parent: QWidget | None = None, *,
                 data: dict | None = None, seq_len: int | None = None):
        """``data``: the estimate with this dataset when the gauge judges it (:meth:`VramGauge.judged_data`):
        the intro then says where the run stands with it, and that the steps are for the full ``seq_len``."""
        super().__init__(parent)
        self.setWindowTitle("Fit to my GPU")
        self.suggestions = suggestions
        text = (f"Each step below adds to the ones above it (cumulative), lowering the estimated "
                f"peak towards {fmt_bytes(gpu_bytes)}. The first step that fits is selected; "
                "pick another if you prefer, then Apply:")
        if data:
            word = FITS_TEXT.get(data.get("fits"), ("?", ""))[0]
            text = (f"With this dataset the run peaks at ≈ {fmt_bytes(data['peak_bytes'])} ({word}): its batches "
                    f"are padded to their longest record, {data['longest_record']:,} tokens. The peaks below are "
                    f"for batches of the full seq_len{f' {seq_len}' if seq_len else ''}, which a longer record "
                    f"added later would reach. " + text)
        intro = QLabel(text)
        intro.setWordWrap(True)
        # Each suggestion wraps to the dialog's width: on one line each, their peaks and most
        # of their changes were cut off at the right.
        self.list = QListWidget()
        self.list.setWordWrap(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSpacing(2)
        for i, s in enumerate(suggestions, start=1):
            changes = ", ".join(f"{k} = {v}" for k, v in (field(s, "changes") or {}).items())
            verdict = FITS_TEXT.get(field(s, "fits"), ("?", ""))[0]
            # The change and where it leaves the peak on one line, under the description (which can
            # be a sentence of its own: seq_len cut to the data's longest record says why it is free).
            item = QListWidgetItem(f"{i}. {field(s, 'description', '')}\n{changes} → peak "
                                   f"{fmt_bytes(field(s, 'peak_bytes'))} ({verdict})")
            self.list.addItem(item)
        self.list.setCurrentRow(self.best_index(suggestions))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Cancel)
        apply = buttons.button(QDialogButtonBox.StandardButton.Apply)
        apply.clicked.connect(self.accept)
        # Apply is what the dialog is for: Enter takes the selected step (Cancel was drawn as the default),
        # and so does a double-click on one.
        apply.setDefault(True)
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setAutoDefault(False)
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.list)
        layout.addWidget(buttons)
        self.resize(600, 440)

    @staticmethod
    def best_index(suggestions: list[Any]) -> int:
        """The first suggestion that fits, else the first that is tight, else the last."""
        for wanted in ("yes", "tight"):
            for i, s in enumerate(suggestions):
                if field(s, "fits") == wanted:
                    return i
        return len(suggestions) - 1

    def chosen_changes(self) -> dict[str, Any]:
        row = self.list.currentRow()
        return dict(field(self.suggestions[row], "changes") or {}) if row >= 0 else {}


def data_line(data: dict, config_seq_len: int | None, gpu: int | None, *, muted: bool = False,
              primary: bool = False) -> str:
    """The peak with this dataset (the estimate's ``data``), under the peak at ``seq_len``.

    Batches are padded only to their longest record, so data whose records stay under
    ``seq_len`` peaks lower (docs/memory.md, "With the data"). Records cut to ``seq_len``, or
    packed batches, reach it: the peak is then the same, which is said rather than repeated.
    ``muted``: without colours, for the previous line shown greyed while the records are
    measured again. ``primary``: the line the badge judges (:func:`data_applies`), first in the
    gauge: the peak "of" the GPU and "largest micro-batch that fits", worded as the line at
    ``seq_len`` is when it is the one judged; the badge says the verdict.
    """
    n = data["records"]
    mark = "" if muted else f"<span style='color:{ink(DATA_COLOR, target=MARK_CONTRAST)}'>▍</span>"
    text = f"{mark}With this dataset ({n:,} record{'s' if n != 1 else ''}, longest {data['longest_record']:,} tokens)"
    cut = data.get("truncated") or 0
    if cut or (config_seq_len and data["seq_len"] >= config_seq_len):
        if cut:
            why = f"{cut:,} record{' is' if cut == 1 else 's are'} cut to seq_len {data['seq_len']}"
        elif data["longest_record"] >= data["seq_len"]:
            why = "the longest is seq_len long"
        else:
            why = "packing fills every batch to seq_len"
        return f"{text}: {why}, so the peak is the same"
    text += f": ≈{NBSP}<b>{fmt_bytes(data['peak_bytes']).replace(' ', NBSP)}</b>"
    fits, mbs = data.get("fits"), data.get("max_batch_size")
    if primary:
        if gpu:
            text += f" of {fmt_bytes(gpu)}"
            if mbs is not None and mbs >= n > 0:  # no batch holds more records than there are
                text += f" · a{NBSP}batch{NBSP}of{NBSP}all{NBSP}{n:,}{NBSP}records{NBSP}fits"
            elif mbs is not None:
                text += (f" · largest{NBSP}micro-batch{NBSP}that{NBSP}fits:{NBSP}<b>{mbs}</b>" if mbs > 0 else
                         " · even micro-batch 1 does not fit")
        return text
    if gpu and fits in FITS_TEXT:
        word, color = FITS_TEXT[fits]
        text += f" — {word}" if muted else f" — <span style='color:{ink(color)}'>{word}</span>"
        if mbs:
            text += f", largest{NBSP}micro-batch{NBSP}{mbs}"
    return text


def data_applies(data: dict | None, config_seq_len: int | None) -> bool:
    """Whether the estimate with this dataset is a peak of its own: its longest batch is shorter
    than ``seq_len`` (not packed, no record reaching it). Only then does it differ from the
    estimate at ``seq_len``, and only then does the gauge judge by it."""
    return bool(data) and bool(config_seq_len) and data["seq_len"] < config_seq_len


def full_seq_len_line(est: Any, gpu: int | None) -> str:
    """The estimate at the config's ``seq_len``, under the peak with this dataset that the gauge
    judges: what a record that long, added later, would make the run need."""
    text = (f"At the full seq_len {field(est, 'seq_len')}: "
            f"≈{NBSP}{fmt_bytes(field(est, 'peak_bytes')).replace(' ', NBSP)}")
    fits, mbs = field(est, "fits"), field(est, "max_batch_size")
    if gpu and fits in FITS_TEXT:
        text += f" — {FITS_TEXT[fits][0]}"
        if mbs is not None:
            text += f", largest{NBSP}micro-batch{NBSP}{mbs}"
    return f"<span style='color:palette(mid)'>{text}</span>"


def short_reason(message: str, limit: int = 110) -> str:
    """An engine message cut to one line for the gauge: a trailing aside in brackets (the list of
    tokenizer files) goes first, then the end."""
    first = message.strip().splitlines()[0] if message.strip() else "unknown reason"
    if len(first) > limit:
        first = re.sub(r"\s*\([^()]*\)\s*$", "", first)
    return first if len(first) <= limit else first[:limit - 1] + "…"


def disk_line(disk: dict) -> str:
    """The run's disk use under the memory numbers, red when the runs folder's disk is short.

    Sizes keep their unit on their line (a narrow gauge wrapped "2" / "MiB"), and the total
    reads as a need beside what is free: "13 MiB of 62 GiB free" read as if 13 MiB were free.
    """
    def size(n: int) -> str:
        return fmt_bytes(n).replace(" ", "\u00a0")

    at_once = disk.get("checkpoints_at_once")
    text = (f"Disk: checkpoints ≈ {size(disk['checkpoint_bytes'])} each"
            + (f", up to {at_once} at once" if at_once else ", all kept")
            + f", final model {size(disk['final_bytes'])}")
    free = disk.get("free_bytes")
    if disk.get("need_bytes") and free is not None:
        text += f": needs {size(disk['need_bytes'])}, {size(free)} free"
    if disk.get("fits") is False:
        return (f"<span style='color:{ink('#d0342c')}'>{text}: not enough; lower save_total_limit or choose another "
                "output folder</span>")
    return text


class VramGauge(FollowsPalette, QWidget):
    """Header (verdict, target GPU, Fit button), the bar, a legend and the numbers."""

    sig_fit_requested = Signal()
    """The user pressed "Fit to my GPU"."""
    sig_target_changed = Signal(object)
    """The GPU memory to plan for changed (bytes, or None for the detected GPU / none)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.estimate: Any = None
        self.measured: int | None = None
        self.measured_note = ""
        self.data_note = ""  # said in place of the line with this dataset while it has none
        self._painted_with = palette_signature()  # the palette its colours are from (FollowsPalette)
        self._data_tip = ""  # why there is none, in full: the details' tooltip (with the exact parameter counts)
        self._stale_data: tuple[dict, int | None] | None = None  # the previous line's data and seq_len,
        # shown greyed while the records are measured again
        self._stale_timer = QTimer(self)
        self._stale_timer.setSingleShot(True)
        self._stale_timer.setInterval(STALE_MS)
        self._stale_timer.timeout.connect(lambda: self._set_stale(None))
        self.detected_bytes: int | None = None
        self.title = QLabel("<b>GPU memory estimate</b>")
        # Neither the title nor the legend sets the gauge's minimum width: _reflow wraps them
        # before they would be clipped, so a narrow pane can have the gauge.
        self.title.setMinimumWidth(1)
        self.verdict = QLabel("")
        self.verdict.setObjectName("verdict")
        self.updating = QLabel("updating…")
        self.updating.setStyleSheet("color: palette(mid);")
        self.updating.setToolTip("The estimate for the config as it is now is being computed; the numbers "
                                 "shown are the previous config's")
        self.updating.hide()
        self.target = QComboBox()
        self.target.setToolTip("Which GPU to plan for: the one in this machine, or another size (to plan a "
                               "run for a bigger machine)")
        self.fit_button = QPushButton("Fit to my GPU…")
        self.fit_button.setToolTip(FIT_TIP)
        self.fit_button.setEnabled(False)
        self.bar = VramBar()
        self.legend = QGridLayout()
        self._legend_labels: list[QLabel] = []
        self.legend.setHorizontalSpacing(14)
        self.legend.setVerticalSpacing(2)
        self.details = QLabel("Estimating… (the first estimate reads the model's structure, which takes a "
                              "few seconds; later ones are instant)")
        self.details.setWordWrap(True)
        # Room for four lines (estimate, with this dataset, measured peak, disk) from the start: a
        # line that appears when a run ends would otherwise shrink the plots below, and a resized
        # plot redraws all its axes in one frame (docs/ui-stall.md).
        self.details.setMinimumHeight(4 * self.details.fontMetrics().lineSpacing() + 2)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        # "Plan for" and the Fit button sit right of the title, or on a row of their own when
        # the pane is too narrow for both (see _reflow).
        self.controls = QWidget()
        controls = QHBoxLayout(self.controls)
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QLabel("Plan for"))
        controls.addWidget(self.target)
        controls.addWidget(self.fit_button)
        self.header = QHBoxLayout()
        self.header.addWidget(self.title)
        self.header.addWidget(self.verdict)
        self.header.addWidget(self.updating)
        self.summary = QLabel("<span style='color:palette(mid)'>estimating…</span>")  # the peak in a few
        # words, while the gauge is folded
        self.summary.setToolTip("Folded while the Answers tab is open: Advice or Log shows the whole estimate")
        self.summary.setMinimumWidth(1)
        self.summary.hide()
        self.header.addWidget(self.summary, 1)
        self.header.addStretch(1)
        self.header.addWidget(self.controls)
        self.controls_row = QHBoxLayout()
        self._legend_cols = 4
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(self.header)
        layout.addLayout(self.controls_row)
        # The bar, the legend and the numbers: folded away, with the controls, while the Train area's
        # Answers tab is open (set_folded); the header then says the peak in a few words.
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(4)
        body.addWidget(self.bar)
        body.addLayout(self.legend)
        body.addWidget(self.details)
        layout.addWidget(self.body)
        self.set_detected_gpu(None, None)
        self.target.currentIndexChanged.connect(lambda _: self.sig_target_changed.emit(self.target_bytes()))
        self.fit_button.clicked.connect(self.sig_fit_requested)

    # ---- Public API
    def set_detected_gpu(self, name: str | None, total_bytes: int | None) -> None:
        """Fill the "Plan for" list: the detected GPU first, then common sizes."""
        self.detected_bytes = total_bytes
        # The byte counts live in a Python list, not in item data: PySide6 6.12 on Python
        # 3.11 drops a reference to None each time currentData() returns an empty
        # QVariant, and enough calls crash the interpreter ("deallocating None").
        self._targets: list[int | None] = [total_bytes or None] + [g * GiB for g in PLAN_SIZES_GIB]
        self.target.blockSignals(True)
        self.target.clear()
        self.target.addItem(f"this GPU ({total_bytes / GiB:.0f} GiB)" if total_bytes else "no GPU (estimate only)")
        for g in PLAN_SIZES_GIB:
            self.target.addItem(f"{a_number(g)} GiB GPU")
        self.target.setCurrentIndex(0)
        self.target.blockSignals(False)

    def target_bytes(self) -> int | None:
        index = self.target.currentIndex()
        return self._targets[index] if 0 <= index < len(self._targets) else None

    def select_target(self, nbytes: int | None) -> bool:
        """Plan for this much GPU memory, if it is one of the offered sizes."""
        if nbytes not in self._targets:
            return False
        self.target.setCurrentIndex(self._targets.index(nbytes))
        return True

    def set_estimate(self, est: Any) -> None:
        self.estimate = est
        if field(est, "data"):  # the records measured again: the previous line, greyed meanwhile, goes
            self._stale_timer.stop()
            self._stale_data = None
        self._render()

    def judged_data(self) -> dict | None:
        """The estimate with this dataset when the badge and the bar judge by it (measured for the
        config shown, and a peak of its own: :func:`data_applies`); None when they judge the
        estimate at ``seq_len``."""
        if self.estimate is None or self._stale_data is not None:
            return None
        data = field(self.estimate, "data")
        return data if data_applies(data, field(self.estimate, "seq_len")) else None

    def set_data_measuring(self) -> None:
        """The run's records are being measured: until the estimate with them comes, the one at
        ``seq_len`` is all there is, which the line with this dataset says (after STALE_MS; until
        then the previous line stays, greyed)."""
        shown = field(self.estimate, "data") if self.estimate is not None else None
        self.data_note = "<span style='color:palette(mid)'>With this dataset: measuring its records…</span>"
        self._data_tip = ""
        self._set_stale((shown, field(self.estimate, "seq_len")) if shown else self._stale_data)
        if self._stale_data is not None:
            self._stale_timer.start()

    def set_data_failed(self, message: str) -> None:
        """The records can't be measured (no dataset, a model folder without a tokenizer, ...): a
        short grey reason where the line with this dataset goes; the whole message as its tooltip."""
        self.data_note = (f"<span style='color:palette(mid)'>No estimate with this dataset: "
                          f"{html.escape(short_reason(message))}</span>")
        self._data_tip = f"No estimate with this dataset: {message}"
        self.details.setToolTip(self._data_tip)  # (and with the estimate's counts, once there is one: _render)
        self._set_stale(None)

    def set_folded(self, folded: bool) -> None:
        """Fold the gauge to its header line (the title, the badge and the peak in a few words),
        without the controls, the bar, the legend and the numbers: the Train area does while its
        Answers tab is open, which then has their room (on a 640-px-high window, all it gets)."""
        self.body.setVisible(not folded)
        self.controls.setVisible(not folded)
        self.summary.setVisible(folded)
        self._reflow()

    def is_folded(self) -> bool:
        return self.body.isHidden()

    def set_updating(self, on: bool) -> None:
        """Say that the numbers shown are the previous config's while a slow estimate is computed
        (the first for a model, or a big method structure)."""
        self.updating.setVisible(on and self.estimate is not None)
        for w in (self.bar, self.details):
            w.setEnabled(not on)

    def set_error(self, message: str) -> None:
        self.estimate = None
        self.verdict.setText("")
        self.bar.set_data([], self.target_bytes(), self.measured)
        self._fill_legend([])
        self.details.setText(f"<span style='color:{ink('#d0342c')}'>No estimate: {message}</span>")
        self.summary.setText(f"<span style='color:{ink('#d0342c')}'>no estimate</span>")
        self.fit_button.setEnabled(False)

    def set_measured(self, nbytes: int | None, note: str = "") -> None:
        """The peak a finished run measured (device or reserved bytes), shown beside the estimate."""
        self.measured = nbytes
        self.measured_note = note
        if self.estimate is None:  # the estimate is still coming: say what was measured meanwhile
            what = f"Measured peak {fmt_bytes(nbytes)} {note}".strip() if nbytes else note
            if what:
                self.details.setText(f"Estimating…<br>{what}")
            return
        self._render()

    # ---- Internals
    def _set_stale(self, data: tuple[dict, int | None] | None) -> None:
        self._stale_timer.stop()
        self._stale_data = data
        self._render()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._reflow()

    def _reflow(self) -> None:
        """Fit the header and the legend to the width: the controls wrap under the title, and
        the legend takes as many columns (1-4) as its widest entry allows."""
        width = self.width()
        spacing = self.header.spacing()
        controls = 0 if self.controls.isHidden() else self.controls.sizeHint().width()  # folded: no row of their own
        one_row = self.title.sizeHint().width() + self.verdict.sizeHint().width() + controls + 3 * spacing
        wrapped = self.controls_row.indexOf(self.controls) >= 0
        if width < one_row and not wrapped:
            self.header.removeWidget(self.controls)
            self.controls_row.addWidget(self.controls)
            self.controls_row.addStretch(1)
        elif width >= one_row and wrapped:
            while self.controls_row.count():
                self.controls_row.takeAt(0)
            self.header.addWidget(self.controls)
        shown = [label.sizeHint().width() for label in self._legend_labels if not label.isHidden()]
        if shown:
            gap = self.legend.horizontalSpacing()
            cols = max(1, min(4, (width + gap) // (max(shown) + gap)))
            if cols != self._legend_cols:
                self._legend_cols = cols
                for label in self._legend_labels:
                    self.legend.removeWidget(label)
                for i, label in enumerate(self._legend_labels):
                    self.legend.addWidget(label, i // cols, i % cols)

    def _fill_legend(self, parts: list[tuple[str, int, QColor]]) -> None:
        # Labels are reused: the gauge updates on every keystroke, and widget churn is slow.
        cols = self._legend_cols
        while len(self._legend_labels) < len(parts):
            i = len(self._legend_labels)
            label = QLabel()
            label.setMinimumWidth(1)
            self._legend_labels.append(label)
            self.legend.addWidget(label, i // cols, i % cols)
        for i, label in enumerate(self._legend_labels):
            if i < len(parts):
                name, nbytes, color = parts[i]
                text = (f"<span style='color:{ink(color, target=MARK_CONTRAST)}'>■</span> {name.replace('_', ' ')} "
                        f"<span style='color:palette(mid)'>{fmt_bytes(nbytes)}</span>")
                if label.text() != text:
                    label.setText(text)
            label.setVisible(i < len(parts))
        self._reflow()

    def _on_palette_change(self) -> None:
        self._render()  # its text's colours are the palette's

    def _render(self) -> None:
        est = self.estimate
        if est is None:
            return
        total_gpu = field(est, "gpu_bytes") or self.target_bytes()
        others = (field(est, "gpu_others_bytes") or 0) if total_gpu else 0
        # What the run can have: the GPU less what other programs hold now; every "of N" and
        # verdict below is of it, and a line says so.
        gpu = field(est, "gpu_available_bytes") or total_gpu
        data = field(est, "data")
        seq_len = field(est, "seq_len")
        peak = field(est, "peak_bytes")
        fits = field(est, "fits")
        below = data_applies(data, seq_len)  # else the same peak: no tick
        # What the badge and the bar judge: the peak with this dataset when it is one of its own (the
        # run's real peak, batches being padded to their longest record); while the records are
        # measured again, the previous one, greyed, for STALE_MS at most; else the peak at seq_len.
        judged, muted = self.judged_data(), False
        if self._stale_data is not None and data_applies(*self._stale_data):
            judged, muted = self._stale_data[0], True
        own = judged.get("breakdown") if judged else None  # (an estimate from before data had one: a tick only)
        breakdown = dict(own or field(est, "breakdown") or {})
        parts = [(name, int(b), QColor(COLORS.get(name, SPARE[i % len(SPARE)])))
                 for i, (name, b) in enumerate(breakdown.items()) if b and b > 0]
        if own:
            self.bar.set_data(parts, total_gpu, self.measured, judged["peak_bytes"], full_peak=peak, muted=muted,
                              others=others)
        else:
            self.bar.set_data(parts, total_gpu, self.measured, data["peak_bytes"] if below else None, others=others)
        self._fill_legend(parts + ([("other_programs", others, QColor(OTHERS_COLOR))] if others else []))
        verdict = judged.get("fits") if judged else fits
        if gpu and verdict in FITS_TEXT:
            text, color = FITS_TEXT[verdict]
            if judged:
                text += " with this dataset"
            self.verdict.setText(f"<span style='color:white; background:{STALE_BADGE if muted else color}; "
                                 f"padding:2px 6px;'>&nbsp;{text}&nbsp;</span>")
            self.verdict.setToolTip(self._verdict_tip(est, judged, gpu))
        else:
            self.verdict.setText("")
            self.verdict.setToolTip("")
        trainable, total = field(est, "trainable_params"), field(est, "total_params")
        share = share_text(trainable, total)
        # The exact counts (as PEFT prints them) where the line has the rounded ones.
        exact = f"Trainable parameters: {trainable:,} of {total:,}" if share else ""
        self.details.setToolTip("\n\n".join(t for t in (exact, self._data_tip) if t))
        if judged:
            # The peak the badge judges first, the one at the full seq_len under it.
            first = data_line(judged, None, gpu, muted=muted, primary=True)
            text = (f"<span style='color:palette(mid)'>{first}</span>" if muted else first)
            text += (" · " + share if share else "") + "<br>" + full_seq_len_line(est, gpu)
        else:
            lines = [(f"Peak at seq_len {seq_len}" if seq_len else "Peak") + f" ≈{NBSP}<b>{fmt_bytes(peak)}</b>"
                     + (f" of {fmt_bytes(gpu)}" if gpu else "")]
            # The largest micro-batch beside the peak, as on the line with this dataset below it; the
            # trainable share last, where a narrow pane wraps it (whole: share_text).
            mbs = field(est, "max_batch_size")
            if gpu and mbs is not None:
                lines.append(f"largest{NBSP}micro-batch{NBSP}that{NBSP}fits:{NBSP}<b>{mbs}</b>" if mbs > 0 else
                             f"<span style='color:{ink('#d0342c')}'>even micro-batch 1 does not fit</span>")
            if share:
                lines.append(share)
            text = " · ".join(lines)
            if self._stale_data:  # measured again: the previous line, greyed, for STALE_MS at most
                text += ("<br><span style='color:palette(mid)'>" + data_line(*self._stale_data, gpu, muted=True)
                         + "</span>")
            elif data:
                text += "<br>" + data_line(data, seq_len, gpu)
            elif self.data_note:
                text += "<br>" + self.data_note
        if self.measured:
            diff = (peak - self.measured) / self.measured * 100 if peak else 0
            vs = f"estimate {diff:+.0f}%"
            if below:  # the run's batches were this data's: its estimate is the one to hold against the peak
                vs += f", with this dataset {(data['peak_bytes'] - self.measured) / self.measured * 100:+.0f}%"
            text += (f"<br><span style='color:{ink('#d0342c', target=MARK_CONTRAST)}'>▍</span>Measured peak {fmt_bytes(self.measured)}"
                     f"{' ' + self.measured_note if self.measured_note else ''} ({vs})")
        elif self.measured_note:
            text += f"<br>{self.measured_note}"
        disk = field(est, "disk") or {}
        if disk.get("checkpoint_bytes"):
            text += "<br>" + disk_line(disk)
        # Left out by their kind, not their wording: the engine may word them as it likes.
        by_kind = field(est, "notes_by_kind") or {}
        said = {by_kind[kind] for kind in SAID_OTHERWISE if kind in by_kind}
        notes = [n for n in (field(est, "notes") or []) if n and n not in said]
        if others and gpu < total_gpu:
            text += (f"<br><span style='color:{ink('#b26b00')}'>Other programs hold {fmt_bytes(others)} of this "
                     f"{fmt_bytes(total_gpu)} GPU now</span>: the numbers above are of the {fmt_bytes(gpu)} they "
                     "leave (who holds it: under Model and machine)")
        if not gpu:
            notes.insert(0, "no GPU to compare with: pick a size under “Plan for” to see whether it fits")
        if notes:
            text += "<br><span style='color:palette(mid)'>" + "; ".join(notes) + "</span>"
        self.details.setText(text)
        shown = judged["peak_bytes"] if judged else peak
        self.bar.setAccessibleDescription(self._spoken(est, judged, gpu, verdict if gpu else None, muted, others,
                                                       total_gpu))
        self.summary.setText(f"<span style='color:palette(mid)'>≈ {fmt_bytes(shown)}"
                             + (f" of {fmt_bytes(gpu)}" if gpu else "")
                             # (with a GPU the badge says "with this dataset")
                             + (f" at seq_len {seq_len}" if not judged and seq_len else
                                " with this dataset" if judged and not gpu else "") + "</span>")
        self.fit_button.setEnabled(bool(gpu) and bool(field(est, "suggestions")) and fits != "yes")
        self.fit_button.setToolTip(FIT_TIP if not (judged and judged.get("fits") in ("yes", "tight")) else
                                   f"It fits with this dataset; this makes it fit at the full seq_len {seq_len} "
                                   "too, which a longer record added later would reach (the first step, seq_len "
                                   "cut to the dataset's longest record, changes nothing in training). Asks first")

    def _spoken(self, est: Any, judged: dict | None, gpu: int | None, verdict: str | None, muted: bool,
                others: int, total_gpu: int | None) -> str:
        """The bar in words, for a screen reader: the peak it judges, of how much memory, the verdict
        ("Estimated 7.30 GiB of 24.00 GiB — fits"), then what else it marks."""
        peak, seq_len = field(est, "peak_bytes"), field(est, "seq_len")
        if judged:
            said = f"Estimated {fmt_bytes(judged['peak_bytes'])} with this dataset"
        else:
            said = f"Estimated {fmt_bytes(peak)}" + (f" at seq_len {seq_len}" if seq_len else "")
        said += f" of {fmt_bytes(gpu)}" if gpu else ", no GPU to compare with"
        if verdict in FITS_TEXT:
            said += f" — {FITS_TEXT[verdict][0]}"
        if muted:
            said += " (the previous records' estimate, while they are measured again)"
        parts = [said]
        if judged and peak:
            parts.append(f"{fmt_bytes(peak)} at the full seq_len {seq_len}")
        if self.measured:
            parts.append(f"measured peak {fmt_bytes(self.measured)}")
        if others and total_gpu:
            parts.append(f"other programs hold {fmt_bytes(others)} of the {fmt_bytes(total_gpu)} GPU")
        return ". ".join(p[0].upper() + p[1:] for p in parts) + "."

    def _verdict_tip(self, est: Any, judged: dict | None, gpu: int | None) -> str:
        """What the badge judged, in words: the peak with this dataset, or the one at seq_len."""
        of = f" of {fmt_bytes(gpu)}" if gpu else ""
        at_full = (f"≈ {fmt_bytes(field(est, 'peak_bytes'))}{of} at seq_len {field(est, 'seq_len')}, "
                   f"{FITS_TEXT.get(field(est, 'fits'), ('?', ''))[0]}")
        if judged:
            return (f"Judged with this dataset: ≈ {fmt_bytes(judged['peak_bytes'])}{of}. A run without packing "
                    f"pads each batch to its longest record ({judged['longest_record']:,} tokens here), so this "
                    f"is the most it reaches. At the full seq_len (a record that long, added later): {at_full}.")
        return (f"Judged at seq_len {field(est, 'seq_len')}, every batch that long (the most any data can reach): "
                f"{at_full}.")
