"""Live training curves with pyqtgraph, redrawn from a timer over growing numpy arrays.

Each curve is created once; new points go into preallocated arrays that double when
full, and a 10 Hz timer calls ``setData`` only if something changed. Curves use
``setDownsampling(auto=True, method='peak')`` and ``setClipToView(True)``, so a 100k-step
run draws about as fast as a 100-step one (the pyqtgraph examples' recipe; see
../../shared/notes/engineering.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFontMetrics, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QGraphicsItem,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from gui.scheme import FollowsPalette, PlotColors, palette_signature

SMOOTHED_COLOR = "#1f5fa8"
REDRAW_INTERVAL_MS = 100
SMALL_PLOT_EVERY = 3  # the small plots redraw every 3rd frame
MAX_RANGE_CHANGES_PER_FRAME = 1  # axis regenerations per redraw tick (each 7-9 ms in software)
GiB = 2**30
LOSS_MIN_SIZE = (160, 170)
# Titles and keys are sized against the plot's font (9 pt by default: a 10-pt title, an 8-pt key),
# so a raised desktop font raises them too; fixed point sizes stayed small beside 16-pt text.
TITLE_POINTS = 1.0
KEY_POINTS = -1.0
AXIS_WIDTH = 46  # px at the default font; wider when "0.0005" needs more (see _Panel)
AXIS_SAMPLE = "0.0005"  # the widest tick text a learning rate shows
KEY_LINE = "━"
KEY_GLYPHS = {"o": "━●━"}  # a curve drawn with points is keyed by one
SMALL_MIN_SIZE = (80, 120)  # heights; the width comes from NARROW's choice of columns


class Series:
    """A growing (x, y) series in preallocated arrays that double when full.

    A point whose x is not after the last one rewinds the series first: a resumed or
    rolled-back run continues from its checkpoint's step, and its curve must too.
    """

    def __init__(self, capacity: int = 1024):
        self.x = np.empty(capacity, dtype=np.float64)
        self.y = np.empty(capacity, dtype=np.float64)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, x: float, y: float) -> None:
        if self.n and x <= self.x[self.n - 1]:
            self.n = int(np.searchsorted(self.x[: self.n], x, side="left"))
        if self.n == len(self.x):
            self.x = np.concatenate([self.x, np.empty_like(self.x)])
            self.y = np.concatenate([self.y, np.empty_like(self.y)])
        self.x[self.n] = x
        self.y[self.n] = y
        self.n += 1

    def clear(self) -> None:
        self.n = 0

    def set(self, x: np.ndarray, y: np.ndarray) -> None:
        """Replace the contents (keeps the spare capacity)."""
        n = len(x)
        if n > len(self.x):
            cap = max(n, 2 * len(self.x))
            self.x, self.y = np.empty(cap), np.empty(cap)
        self.x[:n], self.y[:n] = x, y
        self.n = n

    @property
    def xs(self) -> np.ndarray:
        return self.x[: self.n]

    @property
    def ys(self) -> np.ndarray:
        return self.y[: self.n]


def debiased_ema(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: ``last = w*last + (1-w)*y; out = last / (1 - w**k)``.

    The debiasing divides out the zero start, so the first points are not dragged to 0.
    Non-finite points are skipped (they show the last smoothed value). Vectorised, so
    re-smoothing 100k points when the slider moves takes milliseconds.
    """
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(y)
    vals = y[finite]
    out = np.full(len(y), np.nan)
    if len(vals) == 0:
        return out
    if weight <= 0:
        ema = vals
    else:
        k = np.arange(1, len(vals) + 1, dtype=np.float64)
        ema = _ema(vals, weight) / (1 - weight ** k)
    counts = np.cumsum(finite)
    has = counts > 0
    out[has] = ema[counts[has] - 1]
    return out


def _ema(v: np.ndarray, w: float) -> np.ndarray:
    """``state_i = w*state_(i-1) + (1-w)*v_i`` from a zero start, without a Python loop per point."""
    n = len(v)
    depth = math.ceil(40 / -math.log(w))  # w**depth < e**-40: beyond float64 precision
    if depth <= 64:
        # Short memory: a truncated convolution is exact to float precision.
        kernel = (1 - w) * w ** np.arange(min(depth, n), dtype=np.float64)
        return np.convolve(v, kernel)[:n]
    # Long memory: unroll the recursion as a weighted cumulative sum, in chunks short
    # enough that w**-chunk can't overflow.
    chunk = int(min(4096, 300 / -math.log(w)))
    out = np.empty(n)
    last = 0.0
    for start in range(0, n, chunk):
        c = v[start:start + chunk]
        p = np.arange(1, len(c) + 1, dtype=np.float64)
        state = w ** p * (last + np.cumsum((1 - w) * c * w ** -p))
        out[start:start + chunk] = state
        last = float(state[-1])
    return out


class _Grid(pg.GraphicsObject):
    """Light grid lines at the axes' major and minor ticks, drawn in the view's coordinates.

    It repaints with the curves (a dozen cosmetic lines: well under a millisecond) and adds
    nothing to the axes, which stay small and cached.
    """

    def __init__(self, plot: pg.PlotItem):
        super().__init__()
        self._plot = plot
        self._vb = plot.getViewBox()
        self.set_colors(PlotColors())
        self._key: tuple = ()
        self._lines: tuple[list, list] = ([], [])
        self.setZValue(-1000)
        self._vb.sigRangeChanged.connect(self._on_range)

    def set_colors(self, colors: PlotColors) -> None:
        self._pens = (pg.mkPen(colors.grid_major), pg.mkPen(colors.grid_minor))
        if self.scene() is not None:  # not while it is built, before it is in a plot
            self.update()

    def dataBounds(self, axis, frac=1.0, orthoRange=None):  # noqa: N802 (pyqtgraph's API)
        return None  # never part of auto-range

    def boundingRect(self):  # noqa: N802 (Qt's API)
        return self._vb.viewRect()

    def paint(self, painter, *_):
        (x0, x1), (y0, y1) = self._vb.viewRange()
        rect = self._vb.sceneBoundingRect()
        key = (x0, x1, y0, y1, rect.width(), rect.height())
        if key != self._key:  # tick positions only change with the range or the size
            self._key = key
            self._lines = self._grid_lines(x0, x1, y0, y1, rect.width(), rect.height())
        for pen, lines in zip(self._pens[::-1], self._lines[::-1], strict=True):
            if lines:
                painter.setPen(pen)
                painter.drawLines(lines)

    def _grid_lines(self, x0, x1, y0, y1, width, height) -> tuple[list, list]:
        """(major, minor) grid lines for this view range, as QLineF lists."""
        major: list = []
        minor: list = []
        for axis_name, lo, hi, pixels, horizontal in (("left", y0, y1, height, True),
                                                       ("bottom", x0, x1, width, False)):
            if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or pixels <= 0:
                continue
            levels = self._plot.getAxis(axis_name).tickValues(lo, hi, pixels)
            for out, (_spacing, values) in zip((major, minor), levels[:2], strict=False):
                for v in values:
                    out.append(QLineF(x0, v, x1, v) if horizontal else QLineF(v, y0, v, y1))
        return major, minor

    def _on_range(self, *_):
        self.prepareGeometryChange()
        self.update()


class _TextAxis(pg.AxisItem):
    """An axis whose major ticks are at least a tick text apart.

    pyqtgraph spaces ticks by the axis's length in pixels, never fewer than about three intervals,
    whatever the text's size: at 16 pt the empty memory plot's "1.0 0.8 0.6 0.4 0.2 0" were drawn
    over each other, and "0.20.40.60.8" ran together under it. Where the text needs more room, the
    major spacing steps up (1, 2, 5 × 10^n) until it fits; at the default font nothing changes.
    """

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802, N803 (pyqtgraph's API)
        levels = super().tickSpacing(minVal, maxVal, size)
        if not levels or size <= 0 or maxVal == minVal:
            return levels
        fm = QFontMetrics(self.style["tickFont"] or self.font())
        px_per_unit = size / abs(maxVal - minVal)
        lo, hi = sorted((minVal, maxVal))

        def fits(spacing: float) -> bool:
            if self.orientation in ("left", "right"):
                return spacing * px_per_unit >= fm.height()
            values = np.arange(math.ceil(lo / spacing), math.floor(hi / spacing) + 1) * spacing
            texts = self.tickStrings(list(values), self.scale, spacing) if len(values) else []
            widest = max((fm.horizontalAdvance(t) for t in texts), default=0)
            return spacing * px_per_unit >= widest + fm.averageCharWidth()

        spacing = levels[0][0]
        if fits(spacing):
            return levels
        while not fits(spacing):
            exponent = math.floor(math.log10(spacing))
            mantissa = round(spacing / 10 ** exponent)
            spacing = (2 if mantissa < 2 else 5 if mantissa < 5 else 10) * 10 ** exponent
        return [(spacing, 0)]


def _plot_widget() -> pg.PlotWidget:
    return pg.PlotWidget(axisItems={name: _TextAxis(name) for name in ("left", "bottom")})


class _Panel:
    """One plot with its curves; curves are created once and fed by ``Series``."""

    def __init__(self, widget: pg.PlotWidget, title: str, unit: str = "", *, step_label: bool = False,
                 key_inline: bool = True):
        self.widget = widget
        widget.setMinimumSize(80, 60)  # TrainPlots sets each plot's readable minimum
        self.title = title
        # Painted: a screen reader has the title and, in words, the last point of each curve
        # (kept up to date at the redraw: :meth:`describe`).
        widget.setAccessibleName(f"{title} plot")
        widget.setAccessibleDescription("No data yet.")
        self.key_entries: list[tuple[str, str, str | None]] = []  # (label, curve name, symbol) of each keyed curve
        self.curve_colors: dict[str, tuple[str, str | None]] = {}  # name -> (light colour, colour it is faint under)
        self.colors = PlotColors()
        self.key_shown = False
        self.key_inline = key_inline
        font = widget.font()
        self.title_size = f"{font.pointSizeF() + TITLE_POINTS:g}pt"
        self.key_size = f"{max(font.pointSizeF() + KEY_POINTS, 6):g}pt"
        widget.setTitle(title, size=self.title_size, color=self.colors.foreground)
        # The title row spans the axis column too: a small plot's key needs that width.
        plot = widget.getPlotItem()
        plot.layout.removeItem(plot.titleLabel)
        plot.layout.addItem(plot.titleLabel, 0, 0, 1, 3)
        # The grid is a small item inside the view, not pyqtgraph's axis grid: that one makes
        # each axis item span the whole plot, so every range change re-rendered a plot-sized
        # cached pixmap (24 ms on the loss plot, against 6 ms without; docs/ui-stall.md).
        self.grid = _Grid(widget.getPlotItem())
        widget.addItem(self.grid, ignoreBounds=True)
        widget.setBackground(self.colors.background)
        for name in ("left", "bottom"):
            # Tick labels in the foreground; the axis label ("step") takes the axis pen's colour.
            widget.getAxis(name).setTextPen(self.colors.foreground)
            widget.getAxis(name).setPen(pg.mkPen(self.colors.axis))
        if step_label:
            widget.setLabel("bottom", "step")
        if unit:
            widget.setLabel("left", unit)
        widget.setMouseEnabled(x=True, y=False)
        widget.getPlotItem().setMenuEnabled(False)
        # With the grid on, an axis item spans the whole plot, so every curve update
        # repainted both axes by replaying their QPicture (tick text and grid): 4 ms each,
        # most of the UI thread's time during a run. A device-coordinate cache turns
        # that into a pixmap blit until the axis really changes (docs/ui-stall.md).
        for name in ("left", "bottom"):
            widget.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # A fixed width: the axis would otherwise resize itself as tick texts change
        # (another re-layout per frame), and a cached axis can miss that resize.
        # At 16 pt "0.003" needed more than 46 px and the learning-rate axis showed only "0".
        left = widget.getAxis("left")
        left.setWidth(max(AXIS_WIDTH, widget.fontMetrics().horizontalAdvance(AXIS_SAMPLE)
                          + left.style["tickTextOffset"][0]))

        self.curves: dict[str, pg.PlotDataItem] = {}
        self.series: dict[str, Series] = {}
        self.labels: dict[str, str] = {}  # a keyed curve's name as its key shows it
        self.dirty = False
        self.ranging: bool | None = None  # auto-ranging on data (True) or showing the empty 0..1 frame
        self.fit_pending = False  # drawn since its y range was last checked

    def add(self, name: str, color: str, *, width: float = 1, symbol: str | None = None,
            legend: bool | str = False, faint_under: str | None = None) -> None:
        """A curve fed by ``series[name]``; ``legend`` True (or the label to show) lists it in the
        plot's key (see :meth:`show_key`). ``color`` is its colour under a light palette;
        ``faint_under``: the light-palette colour of the curve it sits quietly under (see
        ``PlotColors.faint``)."""
        if legend:
            self.key_entries.append((legend if isinstance(legend, str) else name, name, symbol))
            self.labels[name] = self.key_entries[-1][0]  # (a plot of one curve: its title says what it is)
        self.curve_colors[name] = (color, faint_under)
        color = self._curve_color(name)
        kw = {"pen": pg.mkPen(color, width=width)}
        if symbol:
            kw.update(symbol=symbol, symbolSize=6, symbolBrush=color, symbolPen=None)
        curve = self.widget.plot(**kw)
        curve.setDownsampling(auto=True, method="peak")
        curve.setClipToView(True)
        self.curves[name] = curve
        self.series[name] = Series()

    def _curve_color(self, name: str) -> QColor:
        color, faint_under = self.curve_colors[name]
        if faint_under is not None:
            return self.colors.faint(color, faint_under)
        return self.colors.line(color)

    def recolor(self, colors: PlotColors) -> None:
        """Paint with ``colors`` (a light/dark switch): background, axes, grid, curves, title."""
        self.colors = colors
        self.widget.setBackground(colors.background)
        for axis in ("left", "bottom"):
            self.widget.getAxis(axis).setTextPen(colors.foreground)
            self.widget.getAxis(axis).setPen(pg.mkPen(colors.axis))
        self.grid.set_colors(colors)
        for name, curve in self.curves.items():
            color = self._curve_color(name)
            pen = curve.opts["pen"]
            curve.setPen(pg.mkPen(color, width=pen.widthF() if isinstance(pen, QPen) else 1))
            if curve.opts.get("symbol"):
                curve.setSymbolBrush(color)
        shown, self.key_shown = self.key_shown, None
        if self.key_entries:
            self.show_key(shown)
        else:
            self.key_shown = shown
            self.widget.setTitle(self.title, size=self.title_size, color=colors.foreground)

    def show_key(self, on: bool) -> None:
        """Show which curve is which in the title row, beside the title, while the plot has data.

        pyqtgraph's legend sits inside the view box, over the data: a loss that levels off high
        or a memory curve at its top ran under it. In the title row it never covers a curve.
        """
        if not self.key_entries or on == self.key_shown:
            return
        self.key_shown = on
        text = self.title
        if on:
            keys = "&nbsp;&nbsp;".join(
                f"<span style='color:{self._curve_color(name).name()}'>{KEY_GLYPHS.get(symbol or '', KEY_LINE)}"
                f"</span>&nbsp;{label}"
                for label, name, symbol in self.key_entries)
            # A small plot's title row has no room beside the title: the key goes under it.
            sep = "&nbsp;&nbsp;&nbsp;&nbsp;" if self.key_inline else "<br>"
            text += f"{sep}<span style='font-size:{self.key_size}; color:{self.colors.axis.name()}'>{keys}</span>"
        self.widget.setTitle(text, size=self.title_size, color=self.colors.foreground)

    def set_key_inline(self, inline: bool) -> None:
        """Put the key beside the title (a wide plot) or under it (a narrow one)."""
        if inline != self.key_inline:
            self.key_inline = inline
            if self.key_shown:
                self.key_shown = False
                self.show_key(True)

    def describe(self) -> None:
        """Say the last point of each curve as the plot's accessible description ("smoothed 1.234 at
        step 40"): what a sighted user reads off the curve's end."""
        said = [f"{self.labels.get(name, '')} {s.ys[-1]:.4g} at step {s.xs[-1]:g}".strip()
                for name, s in self.series.items() if len(s)]
        text = "; ".join(said) + "." if said else "No data yet."
        if text != self.widget.accessibleDescription():
            self.widget.setAccessibleDescription(text)

    @property
    def key_text(self) -> str:
        """The title row's text as shown (title, and the key while it is shown)."""
        return self.widget.getPlotItem().titleLabel.text


class _Note(QLabel):
    """A grey note at the end of a row: the longest of its wordings that fits, whole, or none (its
    first as the tooltip), rather than one cut at the pane's edge; it never widens the pane."""

    def __init__(self) -> None:
        super().__init__("")
        self.wordings: tuple[str, ...] = ()
        self.setStyleSheet("color: palette(mid);")
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def set_note(self, wordings: tuple[str, ...]) -> None:
        self.wordings = wordings
        self.setToolTip(wordings[0] if wordings else "")
        self._fit()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        room = self.contentsRect().width()
        self.setText(next((w for w in self.wordings if self.fontMetrics().horizontalAdvance(w) <= room), ""))


class TrainPlots(FollowsPalette, QWidget):
    """Loss (raw, smoothed, eval), learning rate, gradient norm, tokens/s and GPU memory."""

    sig_smoothing_changed = Signal(float)
    """The smoothing slider moved: the EMA weight."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, background="w", foreground="#333")
        self.smoothing = 0.9
        grid = QGridLayout()
        grid.setSpacing(6)
        grid.setContentsMargins(0, 0, 0, 0)
        self.loss = _Panel(_plot_widget(), "Loss", step_label=True)
        # 1-pixel (cosmetic) pens: wider lines go through Qt's stroker, which made the
        # curves the costliest part of a frame (docs/ui-stall.md).
        self.loss.add("loss", "#b7cde6", legend="raw", faint_under=SMOOTHED_COLOR)
        self.loss.add("smoothed", SMOOTHED_COLOR, legend=True)
        self.loss.add("eval", "#d9822b", symbol="o", legend=True)
        self.loss.curves["loss"].setZValue(-1)
        self.lr = _Panel(_plot_widget(), "Learning rate")
        self.lr.add("lr", "#6a51a3")
        self.grad = _Panel(_plot_widget(), "Gradient norm")
        self.grad.add("grad_norm", "#2a9d8f")
        self.speed = _Panel(_plot_widget(), "Tokens / s")
        self.speed.add("tokens_per_s", "#e76f51")
        self.memory = _Panel(_plot_widget(), "VRAM (GiB)", key_inline=False)
        self.memory.add("allocated", "#264653", legend=True)
        self.memory.add("reserved", "#8ab17d", legend=True)
        self.panels = [self.loss, self.lr, self.grad, self.speed, self.memory]
        # Lower, tick labels overlap; the Train area scrolls rather than squeeze them.
        self.loss.widget.setMinimumSize(*LOSS_MIN_SIZE)
        for p in self.panels[1:]:
            p.widget.setMinimumSize(*SMALL_MIN_SIZE)
        # The loss gets the full width; the four diagnostics share the row below, or two rows
        # of two when the pane is narrow (see _arrange).
        self.grid = grid
        self.diag_columns = 0
        self.diagnostics_shown = True
        self._arrange(4)

        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        smoothing_label = QLabel("Smoothing")
        controls.addWidget(smoothing_label)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        smoothing_label.setBuddy(self.slider)  # the slider's name for a screen reader
        self.slider.setRange(0, 99)
        self.slider.setValue(int(self.smoothing * 100))
        self.slider.setMaximumWidth(160)
        self.slider.setToolTip("EMA weight for the smoothed loss (TensorBoard's debiased EMA); 0 = off")
        self.slider_label = QLabel(f"{self.smoothing:.2f}")
        self.slider_label.setMinimumWidth(32)
        controls.addWidget(self.slider)
        controls.addWidget(self.slider_label)
        self.log_y = QCheckBox("Log scale")
        self.log_y.setToolTip("Show the loss on a logarithmic axis")
        controls.addSpacing(12)
        controls.addWidget(self.log_y)
        self.status = _Note()  # why the small plots are gone, while they are hidden
        controls.addWidget(self.status, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(controls)
        layout.addLayout(grid, 1)

        hint = self.loss.colors.hint
        self._placeholder = pg.TextItem("Start a run to see live curves", color=hint, anchor=(0.5, 0.5))
        self.loss.widget.addItem(self._placeholder, ignoreBounds=True)
        self._placeholder.setPos(0.5, 0.5)
        self._gpu = True
        self._no_gpu_text = pg.TextItem("no GPU:\nCPU run", color=hint, anchor=(0.5, 0.5))
        self.memory.widget.addItem(self._no_gpu_text, ignoreBounds=True)
        self._no_gpu_text.setPos(0.5, 0.5)
        self._no_gpu_text.hide()

        self.slider.valueChanged.connect(self._on_slider)
        self.log_y.toggled.connect(self._on_log_toggled)
        self._timer = QTimer(self)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self.redraw)
        self._timer.start()
        self._ema_last = 0.0
        self._ema_k = 0
        self._resmooth_pending = False
        self._max_steps = 0
        self.redraws = 0
        self._frame = 0
        for p in self.panels:
            p.dirty = True
        self.redraw()
        self._painted_with = palette_signature()  # the palette its colours are from (FollowsPalette)

    NARROW = 620
    """Below this width (px) the four small plots go two by two: a quarter of a narrower row
    leaves their titles ("Learnin") and tick labels no room. Their minimum heights make the
    two rows fit (the Train area scrolls)."""

    KEY_INLINE = 360
    """From this width (px) the loss plot's key fits beside its title; narrower, it goes under it."""

    def _arrange(self, columns: int) -> None:
        """Lay the diagnostics out ``columns`` to a row (4 or 2), the loss above them all."""
        if columns == self.diag_columns:
            return
        self.diag_columns = columns
        for p in self.panels:
            self.grid.removeWidget(p.widget)
        self.grid.addWidget(self.loss.widget, 0, 0, 1, columns)
        for i, p in enumerate(self.panels[1:]):
            self.grid.addWidget(p.widget, 1 + i // columns, i % columns)
        for col in range(4):
            self.grid.setColumnStretch(col, 1 if col < columns else 0)
        self._stretch_rows()

    def _stretch_rows(self) -> None:
        rows = 1 + 4 // self.diag_columns if self.diagnostics_shown else 1
        for row in range(3):
            self.grid.setRowStretch(row, (3 if self.diag_columns == 4 else 4) if row == 0 else
                                    (2 if row < rows else 0))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        size = event.size()
        self._arrange(2 if size.width() < self.NARROW else 4)
        self.loss.set_key_inline(size.width() >= self.KEY_INLINE)

    # ---- Public API
    def show_diagnostics(self, shown: bool, why_hidden: tuple[str, ...] = ()) -> None:
        """Show or hide the four small plots (learning rate, gradient norm, tokens/s, VRAM); hidden,
        the plots ask for the loss plot's height only, and the controls row says the first of
        ``why_hidden`` (longest first) that fits it."""
        self.status.set_note(() if shown else why_hidden)
        if shown == self.diagnostics_shown:
            return
        self.diagnostics_shown = shown
        for p in self.panels[1:]:
            p.widget.setVisible(shown)
        self._stretch_rows()

    def set_loss_min_height(self, height: int | None) -> None:
        """The loss plot's minimum height: ``None`` its readable one (LOSS_MIN_SIZE); the Train area
        lowers it to the small plots' while its Answers tab needs the room of a short window, and the
        x axis's "step" goes (as on the small plots) for the curve's room."""
        self.loss.widget.setMinimumHeight(LOSS_MIN_SIZE[1] if height is None else height)
        self.loss.widget.getAxis("bottom").showLabel(height is None)

    def set_step_range(self, max_steps: int) -> None:
        """Fix the x axis to the run's length, so it isn't re-laid out on every new step."""
        if max_steps and max_steps != self._max_steps:
            self._max_steps = max_steps
            for p in self.panels:
                if p is not self.memory or self._gpu:
                    p.widget.setXRange(0, max_steps, padding=0.01)

    def clear(self) -> None:
        self._max_steps = 0
        for p in self.panels:
            for s in p.series.values():
                s.clear()
            p.dirty = True
        self._ema_last, self._ema_k = 0.0, 0
        self._placeholder.setVisible(True)
        self.redraw()

    def add_steps(self, rows: Iterable[dict]) -> None:
        """Append training-step rows (step events or metrics.jsonl rows)."""
        loss, smooth = self.loss.series["loss"], self.loss.series["smoothed"]
        for r in rows:
            step = r.get("step")
            if step is None:
                continue
            if "eval_loss" in r and "loss" not in r:
                self.add_eval(r)
                continue
            value = r.get("loss")
            if value is not None and math.isfinite(value):
                rewound = len(loss) and step <= loss.xs[-1]
                loss.append(step, value)
                if rewound:
                    self._resmooth()
                else:
                    w = self.smoothing
                    self._ema_last = w * self._ema_last + (1 - w) * value
                    self._ema_k += 1
                    smooth.append(step, self._ema_last / (1 - w ** self._ema_k) if w > 0 else value)
                self.loss.dirty = True
            self._add(self.lr, "lr", step, r.get("lr"))
            self._add(self.grad, "grad_norm", step, r.get("grad_norm"))
            self._add(self.speed, "tokens_per_s", step, r.get("tokens_per_s"))
            for name, key in (("allocated", "gpu_mem_allocated"), ("reserved", "gpu_mem_reserved")):
                v = r.get(key)
                self._add(self.memory, name, step, v / GiB if v is not None else None)

    def add_eval(self, row: dict) -> None:
        v = row.get("eval_loss")
        if row.get("step") is not None and v is not None and math.isfinite(v):
            self.loss.series["eval"].append(row["step"], v)
            self.loss.dirty = True

    def load_metrics(self, rows: list[dict]) -> None:
        """Show a run's metrics.jsonl (a resumed or re-attached run continues from it)."""
        self.clear()
        self.add_steps(rows)
        self.redraw()

    def set_gpu_available(self, available: bool) -> None:
        """Say on the memory plot why it stays empty on a CPU-only machine."""
        self._gpu = available
        self._no_gpu_text.setVisible(not available)
        if not available:
            self.memory.widget.setXRange(0, 1, padding=0.02)
            self.memory.widget.setYRange(0, 1, padding=0.02)

    def point_count(self, panel: str = "loss", curve: str = "loss") -> int:
        return len(getattr(self, panel).series[curve])

    def curve_data(self, panel: str = "loss", curve: str = "loss") -> tuple[np.ndarray, np.ndarray]:
        """What the curve shows now (after the last redraw)."""
        x, y = getattr(self, panel).curves[curve].getData()
        return (np.array([]), np.array([])) if x is None else (x, y)

    def redraw(self) -> None:
        """Push changed series into their curves (the timer calls this at 10 Hz).

        A y-range change regenerates the panel's axis (tick text and grid, 7-9 ms in
        software). At most one panel changes its range per frame; others wait for the next
        tick, so the first frame of a run does not regenerate five axes at once.
        """
        if self._resmooth_pending:
            self._resmooth_pending = False
            self._resmooth()
        drew = False
        self._frame += 1
        for p in self.panels:
            if not p.dirty:
                continue
            # The four small diagnostics plots update at a third of the rate (about 3 Hz): each
            # repaint of a plot costs a few ms, and the loss is the curve people watch.
            if p is not self.loss and self._frame % SMALL_PLOT_EVERY:
                continue
            for name, s in p.series.items():
                p.curves[name].setData(s.xs, s.ys)
            p.describe()
            p.dirty = False
            p.fit_pending = True
            drew = True
        if drew:
            self.redraws += 1
            has_data = len(self.loss.series["loss"]) > 0
            self._placeholder.setVisible(not has_data)
        range_changes = 0
        for p in self.panels:
            if not p.fit_pending:
                continue
            p_has = any(len(s) for s in p.series.values())
            p.show_key(p_has)
            if p_has:
                if not p.ranging:
                    p.ranging = True
                    p.widget.disableAutoRange(axis="y")
                    if not self._max_steps:
                        p.widget.enableAutoRange(axis="x")
                wanted = self._wanted_y(p)
                if wanted is None:
                    p.fit_pending = False
                elif range_changes < MAX_RANGE_CHANGES_PER_FRAME:
                    p.widget.setYRange(*wanted, padding=0)
                    range_changes += 1
                    p.fit_pending = False
            else:
                p.fit_pending = False
                if p.ranging is not False:
                    p.ranging = False
                    p.widget.setXRange(0, 1, padding=0.02)
                    p.widget.setYRange(0, 1, padding=0.02)

    # ---- Internals
    def _fit_y(self, p: _Panel) -> None:
        wanted = self._wanted_y(p)
        if wanted is not None:
            p.widget.setYRange(*wanted, padding=0)

    def _wanted_y(self, p: _Panel) -> tuple[float, float] | None:
        """The y range the panel should change to, or None to keep it.

        The range is kept until the data leaves it (or fills less than a quarter of it).
        pyqtgraph's auto-range refits y on every new point; each refit regenerates the
        axis (tick text and grid), the most expensive thing a frame can do. With this
        hysteresis the axis changes a few times per run instead of every frame.
        """
        ys = [s.ys for s in p.series.values() if len(s)]
        if not ys:
            return None
        y = np.concatenate(ys)
        log = p is self.loss and self.log_y.isChecked()
        if log:
            y = y[y > 0]
            y = np.log10(y) if len(y) else y
        y = y[np.isfinite(y)]
        if not len(y):
            return None
        lo, hi = float(y.min()), float(y.max())
        span = max(hi - lo, abs(hi) * 1e-3, 1e-12)
        cur_lo, cur_hi = p.widget.getViewBox().viewRange()[1]
        if lo < cur_lo or hi > cur_hi or (cur_hi - cur_lo) > 4 * span:
            return lo - 0.08 * span, hi + 0.08 * span
        return None

    def _add(self, panel: _Panel, name: str, step: float, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            panel.series[name].append(step, value)
            panel.dirty = True

    def _resmooth(self) -> None:
        loss, smooth = self.loss.series["loss"], self.loss.series["smoothed"]
        ys = debiased_ema(loss.ys, self.smoothing)
        smooth.set(loss.xs, ys)
        w = self.smoothing
        self._ema_k = len(loss)
        self._ema_last = float(ys[-1] * (1 - w ** self._ema_k)) if len(ys) and w > 0 else 0.0
        self.loss.dirty = True

    def _on_palette_change(self) -> None:
        colors = PlotColors()  # the application's: a hidden widget may not have taken it yet
        for p in self.panels:
            p.recolor(colors)
        self._placeholder.setColor(colors.hint)
        self._no_gpu_text.setColor(colors.hint)

    def _on_slider(self, value: int) -> None:
        self.smoothing = value / 100
        self.slider_label.setText(f"{self.smoothing:.2f}")
        self._resmooth_pending = True  # done on the next redraw tick: a dragged slider resmooths at 10 Hz
        self.sig_smoothing_changed.emit(self.smoothing)

    def _on_log_toggled(self, on: bool) -> None:
        self.loss.widget.setLogMode(y=on)
        if self._max_steps:  # setLogMode auto-ranges x; keep the run's length
            self.loss.widget.setXRange(0, self._max_steps, padding=0.01)
        self.loss.dirty = True
        self.redraw()
        self._fit_y(self.loss)
