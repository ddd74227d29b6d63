"""The Runs area: every run with its status, duration, losses and measured peak memory.

Select several runs to overlay their curves; open a run's config in the Train area,
resume a stopped or interrupted run, open its folder, or try its adapter. The table is a
thin ``QAbstractTableModel`` adapter over ``engine.runs.list_runs()``.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QProcess,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QColor, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.adapters import final_problem, format_size
from engine.promote import describe_offer, promotion_offer
from engine.resume import resume_point, resume_verdict
from engine.runs import (
    DIFFERENT_EVAL_DATA,
    RunInfo,
    checkpoint_step,
    checkpoints,
    compare_runs,
    config_problem_text,
    describe_config_changes,
    duration_text,
    gguf_files,
    last_checkpoint,
    list_runs,
    read_metrics,
    read_summary,
    recorded_config,
    steps_detail,
    steps_text,
    with_history,
)
from gui.adapters.gguf_dialog import GgufDialog
from gui.engine_process import cli_failure, json_message, run_engine
from gui.flow_layout import FlowLayout
from gui.runs.audit_panel import AuditPanel
from gui.runs.queue_panel import QueuePanel
from gui.scheme import FollowsPalette, PlotColors, ink, ink_color, palette_signature
from gui.train.plots import debiased_ema

GiB = 2**30
COLUMNS = ("Run", "Status", "Method", "Model", "Steps", "Duration", "Final loss", "Best eval loss",
           "Peak GPU", "Disk", "Started")
STATUS_COLORS = {"running": "#1f5fa8", "completed": "#2e8540", "stopped": "#d98e04", "interrupted": "#d98e04",
                 "failed": "#d0342c", "crashed": "#d0342c"}
CURVE_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                "#bcbd22", "#7f7f7f"]
METRICS = {"loss": "Training loss", "eval_loss": "Eval loss", "lr": "Learning rate", "grad_norm": "Gradient norm",
           "tokens_per_s": "Tokens / s"}
OPEN_CONFIG_TIP = ("Load this run's config into the Train area: Start there makes a new run from it, Resume "
                   "there continues this run with your changes (a fix, a larger max_steps)")
RESUME_TIP = "Continue a stopped, interrupted or failed run from its last checkpoint"


def suggested_fix(summary: dict[str, Any]) -> dict[str, Any]:
    """The run-config changes a failed run's error suggests (``{}`` when none)."""
    error = summary.get("error")
    fix = error.get("fix") if isinstance(error, dict) else None
    return dict(fix) if isinstance(fix, dict) else {}


def failure_text(run: RunInfo) -> str:
    """Why a failed run failed, from its summary.json: the message, its hint and suggested fix."""
    if run.status in ("completed", "running"):
        return ""
    error = read_summary(run.path).get("error")
    if not isinstance(error, dict) or not error.get("message"):
        return ""
    step = error.get("step")
    # The engine's message often names the step itself ("... non-finite at step 6 ..."): say it once.
    at_step = f" at step {step}" if isinstance(step, int) and f"step {step}" not in error["message"] else ""
    lines = [f"{run.status.capitalize()}{at_step}: {error['message']}"]
    if error.get("hint"):
        lines.append(f"Hint: {error['hint']}")
    fix = error.get("fix")
    if isinstance(fix, dict) and fix:
        lines.append("Suggested fix: " + ", ".join(f"{k} = {v}" for k, v in fix.items()))
    return "\n".join(lines)


def _ended(run: RunInfo) -> str:
    """How the run ended, to follow "This run": "failed", "was interrupted"..."""
    return {"interrupted": "was interrupted", "stopped": "was stopped"}.get(run.status, run.status)


def resume_state(run: RunInfo | None) -> tuple[bool, str]:
    """Whether the Runs area offers Resume for ``run``, and the tooltip that says why (not).

    Only a run that ended early (stopped, interrupted, failed) with a checkpoint, and with steps
    left, can continue. A completed run has nothing left to train: the engine would only
    rewrite final/ from its last checkpoint, so it is not offered (``engine.resume``).
    Resume here continues with the run's saved config; to change it first (a suggested fix, a
    larger max_steps), Open config makes that run the Train area's, whose Resume uses the form.
    """
    if run is None:
        return False, "Select one run to resume it"
    verdict = resume_verdict(resume_point(run.path, run.status))
    tip = verdict.reason
    if verdict.finished:
        tip += " To train it further, Open config, raise max_steps in the Train area and press Resume there."
    elif verdict.ok:
        tip += " It resumes with the same config (its run.yaml)"
        if run.status in ("failed", "crashed"):
            tip += ", which failed once; to change it first (e.g. the suggested fix), Open config, edit it in " \
                   "the Train area and press Resume there"
        tip += "."
    return verdict.ok, tip


def interrupted_text(ckpt: Path | None, logged_step: int | None = None) -> str:
    """What an interrupted run's details say: what happened and what Resume would do.

    Args:
        ckpt: the run's last checkpoint.
        logged_step: the last step in its metrics.jsonl; steps after the checkpoint are lost
            and trained again on resume (their curve points are replaced).
    """
    text = "Interrupted: the worker ended without finishing (killed, crashed or the machine went down)"
    if ckpt is None:
        return text + " before its first checkpoint; open its config to start it again."
    step = checkpoint_step(ckpt)
    lost = (logged_step or 0) - step
    later = (f"; step {logged_step}, logged after it, is trained again" if lost == 1 else
             f"; steps {step + 1}–{logged_step}, logged after it, are trained again" if lost > 1 else "")
    return text + f". Resume continues from {ckpt.name}{later}."


def rewound_text(rewound: Any) -> str:
    """" · went back to checkpoint-N (from step M); the rest is in superseded-…/", or ''."""
    if not isinstance(rewound, dict) or not rewound.get("to"):
        return ""
    came = f" from step {rewound['from_step']}" if rewound.get("from_step") is not None else ""
    aside = f"; the rest is in {rewound['superseded']}/" if rewound.get("superseded") else ""
    return f" · went back to {rewound['to']}{came}{aside}"


def offer_text(offer: tuple[Path, float, float | None]) -> str:
    """The run summary's line on a checkpoint that evaluated better than the run's final/."""
    return f"{describe_offer(offer)}: “Use best checkpoint” makes it the result."


def best_tip(run: RunInfo | None, offer: tuple[Path, float, float | None] | None) -> str:
    """The "Use best checkpoint" tooltip: what it would do, or why there is nothing to do."""
    if run is None:
        return "Select one run to make its best checkpoint (lowest eval loss) its result"
    if offer is not None:
        return (describe_offer(offer) + ". Make it the run's final/ (what Try it, merge and export "
                "use); the weights final/ holds now stay in their checkpoint or in final-step-N/.")
    if run.status == "running":
        return "This run is still training"
    if run.method == "adapter":
        return "Not for bottleneck-adapter runs: their checkpoints hold the whole model, not the adapter"
    return ("Nothing to do: no kept checkpoint evaluated lower than final/ (checkpoints are compared by the eval "
            "loss logged at their step; early stopping already keeps the best)")


def try_tip(run: RunInfo | None, resumable: bool = False, problem: str | None = None) -> str:
    """The "Try it" tooltip: what it opens, or why there is nothing to try (``resumable``: from
    :func:`resume_state`, to say that resuming would finish it; ``problem``: from
    :func:`engine.adapters.final_problem`, why its final/ can't be loaded, as the Train area says it)."""
    if run is None:
        return "Select one run to try its adapter"
    if problem:
        return f"Not for this run: {problem}"
    if (run.path / "final").is_dir():
        return "Open this run's adapter (its final/ folder) in the Adapters playground"
    if run.status == "running":
        return "This run is still training: its adapter is saved to final/ when it ends"
    tip = f"This run {_ended(run)} before saving its adapter (no final/ folder)"
    return tip + (": resume it to finish it" if resumable else "")


def gguf_problem(final: Path) -> str | None:
    """Why a run's final/ adapter has no GGUF form (a prefix, prompt or bottleneck adapter), or None
    (a whole model, a LoRA or IA3 adapter): the Adapters area greys its Export GGUF the same way."""
    if (final / "config.json").exists():
        return None
    from engine.adapters import read_card
    from engine.errors import StudioError
    from engine.gguf_export import unmergeable

    try:
        return unmergeable(read_card(final))
    except StudioError as e:
        return e.message


class StepAxis(pg.AxisItem):
    """An x axis of optimizer steps: whole numbers only (a 3-step run read "step 1.2, 1.4...")."""

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:  # noqa: N802, N803 - pyqtgraph's API
        levels = [(spacing, values) for spacing, values in super().tickValues(minVal, maxVal, size)
                  if spacing >= 1]
        if not levels and math.isfinite(minVal) and math.isfinite(maxVal):
            levels = [(1.0, [float(v) for v in range(math.ceil(minVal), math.floor(maxVal) + 1)])]
        return levels


class CappedLabelArea(QScrollArea):
    """A word-wrapped label, as tall as its text up to ``max_lines`` lines, scrolled beyond them.

    A failed run's error, hint and fix took four lines and more under the run list, which they
    squeezed to 2½ rows at 1024×700; a library's exception, several lines of its own, took more.
    Here the text stays whole and selectable, and takes at most its cap.
    """

    def __init__(self, label: QLabel, max_lines: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.max_lines = max_lines
        self.setWidget(label)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)  # the window's background, as a bare label has
        label.setAutoFillBackground(False)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        label = self.widget()
        if not label.text():
            return QSize(0, 0)
        cap = label.fontMetrics().lineSpacing() * self.max_lines + label.contentsMargins().top() \
            + label.contentsMargins().bottom()
        return QSize(label.sizeHint().width(), min(label.heightForWidth(max(self.contentsRect().width(), 1)), cap))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(0, self.sizeHint().height())

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.LayoutRequest:  # the label's text changed: fit it again
            self.updateGeometry()
        return super().viewportEvent(event)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():  # wrapped anew: another height
            self.updateGeometry()


class RunsTableModel(QAbstractTableModel):
    """Rows of ``RunInfo``; ``Qt.UserRole`` gives the raw value for sorting."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.runs: list[RunInfo] = []
        self._disk: dict[str, tuple[tuple[int, ...], int]] = {}  # path -> (what it was measured at, bytes)

    def set_runs(self, runs: list[RunInfo]) -> None:
        self.beginResetModel()
        self.runs = list(runs)
        self._measure_disk()  # once per refresh, not per paint of a cell
        self.endResetModel()

    def disk_bytes(self, run: RunInfo) -> int:
        """The run folder's size, as measured at the last :meth:`set_runs`."""
        return self._disk.get(str(run.path), ((), 0))[1]

    def _measure_disk(self) -> None:
        """Each run folder's size, measured again only when the folder or one of its checkpoints
        changed (a running run's at every refresh); folders no longer listed are forgotten."""
        from engine.files import folder_bytes

        sizes = {}
        for run in self.runs:
            try:
                stamp = tuple(p.stat().st_mtime_ns for p in [run.path, *checkpoints(run.path)])
            except OSError:
                stamp = ()
            cached = self._disk.get(str(run.path))
            if cached is None or cached[0] != stamp or run.status == "running":
                cached = (stamp, folder_bytes(run.path))
            sizes[str(run.path)] = cached
        self._disk = sizes

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.runs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.runs):
            return None
        r = self.runs[index.row()]
        col = COLUMNS[index.column()]
        status = r.shown_status
        raw = {"Run": r.name, "Status": status, "Method": r.method, "Model": r.model, "Steps": r.steps,
               "Duration": r.duration_s,
               "Final loss": r.final_loss_mean if r.final_loss_mean is not None else r.final_loss,
               "Best eval loss": r.best_eval_loss,
               "Peak GPU": r.peak_gpu_bytes, "Started": r.first_started or r.started,
               "Disk": self.disk_bytes(r) if col == "Disk" else None}[col]
        if role == Qt.ItemDataRole.UserRole:
            return raw if raw is not None else -1
        if role == Qt.ItemDataRole.DisplayRole:
            if col == "Steps" and r.failed_step is not None:  # "4 (failed at 5)", as its error names step 5
                return steps_text(r.steps, r.failed_step).replace("-", "–")
            if raw is None:
                return "–"
            if col in ("Final loss", "Best eval loss"):
                return f"{raw:.4f}"
            if col == "Duration":  # a resumed run's: the training time of all its legs
                return duration_text(r)
            if col == "Peak GPU":
                return f"{raw / GiB:.2f} GiB"
            if col == "Disk":
                return format_size(raw)
            if col == "Started":
                return time.strftime("%Y-%m-%d %H:%M", time.localtime(raw))
            if col == "Model" and "/" in str(raw) and Path(str(raw)).is_absolute():
                return Path(str(raw)).name
            return str(raw)
        if role == Qt.ItemDataRole.ForegroundRole and col == "Status":
            return ink_color(STATUS_COLORS.get(status, "#555"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == "Status" and (failure := failure_text(r)):
                return failure
            if col == "Status" and status == "probe":
                return ("A probe: a few steps to measure time per step and peak memory; nothing was saved. The "
                        "report is in the run's summary (finetune-studio runs show).")
            if col == "Status" and r.status == "interrupted":
                return "The worker ended without finishing (killed, crashed or the machine went down); resume " \
                       "continues from the last checkpoint."
            if col == "Steps" and r.failed_step is not None and r.failed_step != r.steps:
                return (f"Steps: {steps_detail(r.steps, r.failed_step)}."
                        + (f" Its curve and losses end at step {r.steps}." if r.steps else ""))
            if col == "Final loss" and r.final_loss is not None:
                return (f"Mean training loss of the last logged steps (up to 10); the last step alone: "
                        f"{r.final_loss:.4f}" if r.final_loss_mean is not None else
                        "The last step's training loss (this run predates the mean of the last steps)")
            if col == "Duration" and r.legs > 1:
                return (f"Training time of the run's {r.legs} legs (it was stopped or interrupted, then resumed); "
                        "the time it sat stopped between them doesn't count.")
            if col == "Disk":
                return ("The run folder's size: checkpoints (weights and optimizer state), final/ and the curves. "
                        "Free disk… removes the older checkpoints; Delete… the whole run.")
            if col == "Peak GPU" and r.peak_gpu_bytes is None:
                return "No GPU peak: the run trained on the CPU, or it did not get far enough."
            return str(r.path) if col == "Run" else None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in ("Steps", "Duration", "Final loss",
                                                                   "Best eval loss", "Peak GPU", "Disk"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class RunsArea(FollowsPalette, QWidget):
    """Run history with overlaid curves, resume, open config and folder, and "Try it"."""

    sig_try_adapter = Signal(str)
    """Open one run's adapter in the playground: its final/ folder."""
    sig_compare_adapters = Signal(list)
    """Compare the selected runs on data: their final/ folders (adapters, or whole models)."""
    """Open a run's adapter (its ``final`` folder) in the Adapters playground."""
    sig_resume_run = Signal(str)
    """Resume this run folder in the Train area."""
    sig_open_config_fixed = Signal(str, dict)
    """Load a failed run's run.yaml into the Train area with its error's suggested fix applied:
    the file, the changes."""
    sig_open_config = Signal(str)
    """Open this run's run.yaml in the Train area."""
    sig_promoted = Signal(str)
    """A run folder whose final/ now holds another checkpoint (the adapter library re-reads it)."""
    sig_removed = Signal(list)
    """Run folders deleted or pruned (the adapter library and the Train area look again)."""
    sig_open_record = Signal(str, int, str)
    """(dataset file, record index from 0, its first user turn as audited): show this record
    in the Dataset editor."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("RunsArea")
        self._metrics_cache: dict[str, tuple[float, list[dict]]] = {}
        self.model = RunsTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        # Every column's text, so "ia3", "failed", "sweep" or "2026-12-05" each narrow the list.
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter: name, method, status…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setToolTip("Show only the runs with this text in a column: part of a name, a method "
                                    "(ia3), a status (failed), a model, a date (2026-12-05)")
        self.filter_edit.setMinimumWidth(200)
        self.filter_edit.textChanged.connect(self._on_filter)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COLUMNS.index("Started"), Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        # Every column as wide as its contents, the run's name included (stretched, it was the
        # one squeezed to "2026120… cli-run" at 1024 px); the last one takes what is left,
        # and a narrow window scrolls the table sideways.
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setWordWrap(False)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.empty = QLabel("No runs yet. Start one in the Train area; every run appears here with its "
                            "status, losses and peak memory.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: palette(mid); padding: 24px;")

        self.refresh_button = QPushButton("Refresh")
        self.config_button = QPushButton("Open config")
        self.config_button.setToolTip(OPEN_CONFIG_TIP)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(RESUME_TIP)
        # A failed run's "Suggested fix" as a button: its config in the Train area with the fix applied.
        self.fix_button = QPushButton("Open with the fix")
        # Back to an earlier checkpoint, to train on from there: the rest moves to superseded-*/.
        self.rewind_button = QPushButton("Go back to…")
        self.rewind_menu = QMenu(self.rewind_button)
        self.rewind_button.setMenu(self.rewind_menu)
        self.folder_button = QPushButton("Open folder")
        self.folder_button.setToolTip("Show the run folder (checkpoints, metrics, final adapter, model card)")
        self.try_button = QPushButton("Try it")
        self.try_button.setToolTip("Open this run's adapter in the Adapters playground")
        self.best_button = QPushButton("Use best checkpoint")
        self.compare_data_button = QPushButton("Compare on data…")
        self.gguf_button = QPushButton("Export GGUF…")
        self.free_button = QPushButton("Free disk…")
        self.delete_button = QPushButton("Delete…")
        self._promote: QProcess | None = None
        self._removing: QProcess | None = None
        self._promote_output = ""
        self.summary = QLabel("")
        self.summary.setStyleSheet(f"color: {ink('#555')};")  # what a selection holds: readable, not the hint grey
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A row that wraps: in one row a 1024-px window cut them to "e best checkpo".
        self.button_row = QWidget()
        buttons = FlowLayout(self.button_row)
        for b in (self.refresh_button, self.config_button, self.fix_button, self.resume_button, self.rewind_button,
                  self.folder_button, self.try_button, self.best_button, self.compare_data_button, self.gguf_button,
                  self.free_button, self.delete_button, self.filter_edit):
            buttons.addWidget(b)

        self.metric_combo = QComboBox()
        for key, label in METRICS.items():
            self.metric_combo.addItem(label, key)
        self.smooth = QCheckBox("Smooth (EMA 0.9)")
        self.smooth.setChecked(True)
        self.log_y = QCheckBox("Log scale")
        pg.setConfigOptions(antialias=False, background="w", foreground="#333")
        self.plot = pg.PlotWidget(axisItems={"bottom": StepAxis(orientation="bottom")})
        self.plot.setAccessibleName("Run curves plot")
        self.plot.showGrid(x=True, y=True, alpha=1.0)  # opaque light lines: cheap to draw, calm to read
        self.plot_colors = PlotColors()
        self.plot.setLabel("bottom", "step")
        self.plot.getPlotItem().setMenuEnabled(False)
        # The key to the right of the view, in the plot's layout: inside the view (pyqtgraph's
        # default) it covered the curves that ran through the top right.
        # A point under the plot's font (8 pt at the default 9): a fixed 8 pt stayed small at a
        # raised desktop font, half the size of the ticks beside it.
        self.legend = pg.LegendItem(labelTextSize=f"{max(self.font().pointSizeF() - 1, 6):g}pt")
        # Its own height, at the top: given the row's, its entries spread apart from their lines.
        self.legend.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.plot.getPlotItem().layout.addItem(self.legend, 2, 3, Qt.AlignmentFlag.AlignTop)
        self.plot_hint = pg.TextItem("Select one or more runs to compare their curves", anchor=(0.5, 0.5))
        self.plot.addItem(self.plot_hint, ignoreBounds=True)
        self.plot_hint.setPos(0.5, 0.5)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._recolor_plot()
        plot_controls = QHBoxLayout()
        plot_controls.addWidget(QLabel("Compare"))
        plot_controls.addWidget(self.metric_combo)
        plot_controls.addWidget(self.smooth)
        plot_controls.addWidget(self.log_y)
        plot_controls.addStretch(1)
        plot_box = QWidget()
        pl = QVBoxLayout(plot_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addLayout(plot_controls)
        pl.addWidget(self.plot, 1)

        table_box = QWidget()
        tl = QVBoxLayout(table_box)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.button_row)
        tl.addWidget(self.empty)
        tl.addWidget(self.table, 1)
        self.audit_panel = AuditPanel()
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.setDocumentMode(True)
        self.bottom_tabs.addTab(plot_box, "Curves")
        self.bottom_tabs.addTab(self.audit_panel, "Hardest records")
        self.bottom_tabs.setTabToolTip(1, "The run's records ranked by how unlikely the trained model finds their "
                                          "answers: the top ones are often annotation mistakes")
        self.queue_panel = QueuePanel()
        self.bottom_tabs.addTab(self.queue_panel, "Queue")
        self.bottom_tabs.setTabToolTip(2, "Runs lined up to train one after another (a sweep too), also with the "
                                          "window closed")
        self.queue_panel.sig_changed.connect(self._on_queue_changed)
        self._title_queue(sum(1 for e in self.queue_panel.model.entries if e.state == "pending"))
        self.queue_panel.sig_show_run.connect(lambda path: (self.refresh(), self.select_paths([path])))
        self.queue_panel.sig_compare.connect(self._compare_queued)
        # What the selection is (a failed run's error, hint and fix; how the selected runs differ,
        # coloured as their curves) heads the lower part: under the list it took the rows the list
        # needs, while the curves below can spare a few lines. A long error scrolls in its box.
        self.details = CappedLabelArea(self.summary, max_lines=6)
        detail_box = QWidget()
        dl = QVBoxLayout(detail_box)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.details)
        dl.addWidget(self.bottom_tabs, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(table_box)
        split.addWidget(detail_box)
        # Half each: at 1024×700 the list shows 8 runs (2½ under a failed run's error before), and
        # the curves keep 200 px and more.
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([400, 400])
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addWidget(split)

        self.refresh_button.clicked.connect(self.refresh)
        self.config_button.clicked.connect(self._on_open_config)
        self.resume_button.clicked.connect(self._on_resume)
        self.fix_button.clicked.connect(self._on_open_fixed)
        self.folder_button.clicked.connect(self._on_open_folder)
        self.try_button.clicked.connect(self._on_try)
        self.compare_data_button.clicked.connect(self._on_compare_data)
        self.gguf_button.clicked.connect(self._on_gguf)
        self.best_button.clicked.connect(self.use_best_checkpoint)
        self.free_button.clicked.connect(lambda: self.remove_selected(prune=True))
        self.delete_button.clicked.connect(lambda: self.remove_selected(prune=False))
        self.table.installEventFilter(self)  # the Delete key deletes the selected runs (after asking)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self._painted_with = palette_signature()  # the palette its colours are from (FollowsPalette)
        self.table.doubleClicked.connect(lambda _: self._on_open_config())
        self.audit_panel.sig_open_record.connect(self.sig_open_record)
        self.metric_combo.currentIndexChanged.connect(self._replot)
        self.smooth.toggled.connect(self._replot)
        self.log_y.toggled.connect(lambda on: (self.plot.setLogMode(y=on), self._replot()))
        self._live = QTimer(self)
        self._live.setInterval(3000)
        self._live.timeout.connect(self._on_live_tick)
        self.refresh()

    # ---- Public API
    def refresh(self) -> None:
        """Re-read the runs folder; keeps the selection."""
        keep = {str(r.path) for r in self.selected_runs()}
        runs = list_runs()
        self.model.set_runs(runs)
        self.empty.setVisible(not runs)
        self.table.setVisible(bool(runs))
        sel = self.table.selectionModel()
        for row in range(self.proxy.rowCount()):
            info = self.model.runs[self.proxy.mapToSource(self.proxy.index(row, 0)).row()]
            if str(info.path) in keep:
                sel.select(self.proxy.index(row, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)
        if any(r.status == "running" for r in runs) or self.queue_panel.is_running():
            self._live.start()  # a queued run shows up once its worker has written its summary
        else:
            self._live.stop()
        self._on_selection()

    def selected_runs(self) -> list[RunInfo]:
        rows = sorted({self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.runs[r] for r in rows if r < len(self.model.runs)]

    def select_paths(self, paths: list[str | Path]) -> None:
        want = {str(p) for p in paths}
        sel = self.table.selectionModel()
        sel.clearSelection()
        for row in range(self.proxy.rowCount()):
            info = self.model.runs[self.proxy.mapToSource(self.proxy.index(row, 0)).row()]
            if str(info.path) in want:
                sel.select(self.proxy.index(row, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)

    def show_run(self, path: str | Path) -> None:
        """Re-read the runs folder and select run ``path`` alone, scrolled to (the run that just
        ended in the Train area)."""
        self.refresh()
        self.select_paths([path])
        rows = self.table.selectionModel().selectedRows()
        if rows:
            # Current without touching the selection: the view's setCurrentIndex selects by the keyboard's
            # modifiers, so with Ctrl held as the run ended it toggled the run off again (seen in the tests,
            # where an earlier test's Ctrl+1..4 left Qt's modifier state at Ctrl).
            self.table.selectionModel().setCurrentIndex(rows[0], QItemSelectionModel.SelectionFlag.NoUpdate)
            self.table.scrollTo(rows[0])

    def on_shown(self) -> None:
        self.refresh()

    def audit_run(self, path: str | Path) -> bool:
        """Select run ``path``, show its Hardest records and audit it (the Train area's "Audit
        records"). False when it can't be audited (no weights, or an audit is running)."""
        self.refresh()
        self.select_paths([path])
        self.bottom_tabs.setCurrentWidget(self.audit_panel)
        return self.audit_panel.start()

    def shutdown(self) -> None:
        """The window closes: end a running audit (it saves nothing until it finishes). A queue
        that is training goes on: it is a process of its own."""
        self.audit_panel.stop()
        self.queue_panel.shutdown()

    # ---- Internals
    def _current(self) -> RunInfo | None:
        runs = self.selected_runs()
        return runs[0] if len(runs) == 1 else None

    def _on_selection(self, *_: Any) -> None:
        run = self._current()
        self.audit_panel.set_run(run)
        self.config_button.setEnabled(run is not None and (run.path / "run.yaml").exists())
        self.folder_button.setEnabled(run is not None)
        summary = read_summary(run.path) if run is not None else {}
        resumable, why = resume_state(run)
        self.resume_button.setEnabled(resumable)
        self.resume_button.setToolTip(why)
        fix = suggested_fix(summary) if run is not None and run.status != "completed" else {}
        self.fix_button.setVisible(bool(fix))
        self.fix_button.setEnabled(bool(fix) and (run.path / "run.yaml").exists())
        if fix:
            changes = ", ".join(f"{k} = {v}" for k, v in fix.items())
            self.fix_button.setToolTip(
                f"Load this run's config into the Train area with the suggested fix applied ({changes}). "
                + ("Resume there continues this run from its last checkpoint with it; " if resumable else "")
                + "Start there makes a new run with it.")
        self._fill_rewind_menu(run, summary)
        final = run.path / "final" if run is not None else None
        # A bottleneck adapter's final/ is our own format: the playground and Compare can't load it.
        problem = final_problem(final) if final is not None and final.is_dir() else None
        self.try_button.setEnabled(final is not None and final.is_dir() and problem is None)
        self.try_button.setToolTip(try_tip(run, resumable, problem))
        finals = self.selected_finals()
        unloadable = [(r.name, why) for r in self.selected_runs() if str(r.path / "final") in finals
                      and (why := final_problem(r.path / "final"))]
        self.compare_data_button.setEnabled(bool(finals) and len(finals) == len(self.selected_runs())
                                            and not unloadable)
        self.compare_data_button.setToolTip(
            "Score the selected runs' models and their base on a dataset's records, leaving out what each "
            "trained on (Adapters area)" if self.compare_data_button.isEnabled() else
            "Select one or more finished runs (a final/ folder) to compare them on data" if not finals else
            "Every selected run needs a final/ folder; a run that hasn't finished has none yet"
            if len(finals) < len(self.selected_runs()) else
            f"Not for {unloadable[0][0]}: {unloadable[0][1]}")
        unmerged = gguf_problem(final) if final is not None and str(final) in finals else None
        self.gguf_button.setEnabled(final is not None and str(final) in finals and unmerged is None)
        self.gguf_button.setToolTip(
            "Write this run's model (an adapter merged into its base) as one GGUF file for llama.cpp, Ollama "
            "and LM Studio" if self.gguf_button.isEnabled() else
            f"{unmerged} Train a LoRA or IA3 adapter for a GGUF file." if unmerged else
            "Select one finished run (with a final/ folder) to export it as GGUF")
        offer = promotion_offer(run.path) if run is not None else None
        self.best_button.setEnabled(offer is not None and self._promote is None)
        self.best_button.setToolTip(best_tip(run, offer))
        self.config_button.setToolTip(
            "Select one run to open its config" if run is None else
            OPEN_CONFIG_TIP if self.config_button.isEnabled() else
            f"{run.name} has no run.yaml")
        self._update_removal_buttons()
        runs = self.selected_runs()
        self.summary.setToolTip("")  # the differences of an earlier multi-selection
        if run is not None:
            ckpt = last_checkpoint(run.path)
            promoted = summary.get("final_from")
            ggufs = gguf_files(run.path)
            text = html.escape(f"{run.path}" + (f" · last checkpoint {ckpt.name}" if ckpt else "")
                               + (f" · final/ holds {promoted}" if promoted else "")
                               + (" · GGUF: " + ", ".join(g.name for g in ggufs) if ggufs else "")
                               + rewound_text(summary.get("rewound")))
            text += "".join(f"<br><span style='color:{ink('#555')}'>Config changed " + html.escape(line) + "</span>"
                            for line in describe_config_changes(summary.get("config_changes")))
            problem = recorded_config(run.path).problem  # as `runs show` says it, and a resume would refuse it
            if problem:
                text += f"<br><span style='color:{ink('#d0342c')}'>" + html.escape(f"run.yaml can't be read: {problem}") + "</span>"
            failure = failure_text(run)
            if failure:
                text += f"<br><span style='color:{ink('#d0342c')}'>" + html.escape(failure).replace("\n", "<br>") + "</span>"
            elif offer is not None:
                text += f"<br><span style='color:{ink('#8a5a00')}'>" + html.escape(offer_text(offer)) + "</span>"
            elif run.status == "interrupted":  # the curve as it is now (cached while unchanged)
                logged = max((r["step"] for r in self._metrics(run.path) if isinstance(r.get("step"), int)),
                             default=None)
                text += f"<br><span style='color:{ink('#b06f00')}'>" + html.escape(interrupted_text(ckpt, logged)) + "</span>"
            self.summary.setText(text)
        elif len(runs) > 1:
            self.summary.setText(self._differences_text(runs))
        elif self.model.rowCount() and not self.proxy.rowCount():
            self.summary.setText(html.escape(f"No run matches “{self.filter_edit.text()}”: clear the filter to "
                                             f"see all {self.model.rowCount()} runs."))
        elif self.model.rowCount():
            self.summary.setText("Select a run for its actions; select several to compare their curves.")
        else:  # no runs: the empty view says what to do
            self.summary.setText("")
        self._replot()

    def _on_filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        # Again whatever the selection did: when the filter hides every run (nothing was selected,
        # so nothing changed) the summary says so, rather than "Select a run" over an empty list.
        self._on_selection()

    def _gone_since_read(self, runs: list[RunInfo], inside: str = "") -> bool:
        """Whether a run's folder (or its ``inside`` subfolder, e.g. ``final``) was deleted or moved
        since the list was read, in a file manager or another window. If so the list is read again
        and the summary line says which and that nothing was done: the buttons acted on the old
        list, and a click that silently did nothing read as a broken button."""
        gone = [r for r in runs if not (r.path / inside).is_dir()]
        if not gone:
            return False
        whole = not gone[0].path.is_dir()  # the run itself, not only its final/
        what = "folder" if whole or not inside else f"{inside}/ folder"
        names = ", ".join(r.name for r in gone)
        where = gone[0].path if whole or not inside else gone[0].path / inside
        self.refresh()
        self.summary.setText(f"<span style='color:{ink('#d0342c')}'>" + html.escape(
            f"{names}: {'its' if len(gone) == 1 else 'their'} {what} was deleted or moved since the list was read "
            f"({where}{', …' if len(gone) > 1 else ''}). The list was read again; nothing was done.") + "</span>")
        return True

    def _differences_text(self, runs: list[RunInfo], shown: int = 6) -> str:
        """What differs between the selected runs' configs, each value in its curve's colour."""
        runs = runs[: len(CURVE_COLORS)]
        try:
            compared = compare_runs([r.path for r in runs])
        except Exception as e:  # noqa: BLE001 - an unreadable run folder must not break the selection
            return f"{len(runs)} runs selected (their configs could not be compared: {e})"
        diffs = compared["config_differences"]
        note = ("" if compared["same_eval_data"] else
                f"<br><span style='color:{ink('#8a5a00')}'>Note: {html.escape(DIFFERENT_EVAL_DATA)}.</span>")
        note += "".join(f"<br><span style='color:{ink('#d0342c')}'>Note: {html.escape(config_problem_text(d))}.</span>"
                        for d in compared["runs"] if d.get("config_problem"))
        if not diffs:
            return f"{len(runs)} runs selected · same config" + note

        histories = compared["config_histories"]

        def full(key: str, i: int, v: Any) -> str:
            # An empty run_name must not read as nothing; a list reads as the YAML's [a, b], not ['a', 'b'].
            text = "–" if v is None or v == "" else ("[" + ", ".join(map(str, v)) + "]") if isinstance(v, list) \
                else str(v)
            return with_history(text, [tuple(x) for x in histories[key][i]] if key in histories else [], shown=str)

        def value(key: str, i: int, v: Any) -> str:
            text = full(key, i, v)
            most = 60 if key in histories else 40  # a value's history reads whole: "… for steps 1-1200)"
            return html.escape((text[:most - 1] + "…") if len(text) > most else text)

        parts = []
        for key, values in list(diffs.items())[:shown]:
            colored = " / ".join(f"<span style='color:{ink(CURVE_COLORS[i])}'>{value(key, i, v)}</span>"
                                 for i, v in enumerate(values))
            parts.append(f"<b style='color:{ink('#333')}'>{key}</b> {colored}")
        more = f" · +{len(diffs) - shown} more" if len(diffs) > shown else ""
        self.summary.setToolTip("\n".join(f"{k}: {' / '.join(full(k, i, x) for i, x in enumerate(v))}"
                                           for k, v in diffs.items()))
        return f"{len(runs)} runs · differ in: " + " · ".join(parts) + more + note

    def _metrics(self, path: Path) -> list[dict]:
        f = path / "metrics.jsonl"
        mtime = f.stat().st_mtime if f.exists() else 0.0
        cached = self._metrics_cache.get(str(path))
        if cached is None or cached[0] != mtime:
            cached = (mtime, read_metrics(path))
            self._metrics_cache[str(path)] = cached
        return cached[1]

    def _recolor_plot(self) -> None:
        """The plot's background, axes, grid and key in the palette's colours (built, and again on a
        light/dark switch)."""
        colors = self.plot_colors = PlotColors()  # the application's palette (a hidden widget may lag)
        self.plot.setBackground(colors.background)
        for name in ("left", "bottom"):
            axis = self.plot.getAxis(name)
            axis.setTextPen(colors.foreground)
            axis.setPen(pg.mkPen(colors.axis))  # after: it colours the axis label too, as it always did
            axis.setTickPen(pg.mkPen(colors.grid_major if colors.dark else QColor("#e6e6e6")))
        self.legend.setLabelTextColor(colors.foreground)
        self.plot_hint.setColor(colors.hint)

    def _on_palette_change(self) -> None:
        self._recolor_plot()
        self.summary.setStyleSheet(f"color: {ink('#555')};")
        self._replot()
        self._on_selection()  # the summary's coloured notes

    def _replot(self, *_: Any) -> None:
        key = self.metric_combo.currentData()
        runs = self.selected_runs()[: len(CURVE_COLORS)]
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves.clear()
        self.legend.clear()
        plotted = 0
        said = []  # each curve's end in words: the plot is painted
        for i, run in enumerate(runs):
            rows = [r for r in self._metrics(run.path) if r.get(key) is not None and r.get("step") is not None]
            if not rows:
                continue
            x = np.array([r["step"] for r in rows], dtype=float)
            y = np.array([r[key] for r in rows], dtype=float)
            if self.smooth.isChecked() and key in ("loss", "grad_norm", "tokens_per_s"):
                y = debiased_ema(y, 0.9)
            # A line needs two points: a run that logged one step (failed at step 2) gets a dot,
            # or its legend entry would name a curve nobody can see.
            dots = key == "eval_loss" or np.isfinite(y).sum() < 2
            color = self.plot_colors.line(CURVE_COLORS[i])
            curve = self.plot.plot(x, y, pen=pg.mkPen(color, width=2), name=run.name,
                                   symbol="o" if dots else None, symbolSize=5 if key == "eval_loss" else 7,
                                   symbolBrush=color, symbolPen=None)
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            self.legend.addItem(curve, run.name)
            self.curves[str(run.path)] = curve
            plotted += 1
            if np.isfinite(y).any():
                last = int(np.flatnonzero(np.isfinite(y))[-1])
                said.append(f"{run.name}: {y[last]:.4g} at step {x[last]:g}")
        self.plot_hint.setVisible(plotted == 0)
        if plotted == 0:
            hint = ("Select one or more runs to compare their curves" if not runs else
                    f"No {METRICS[key].lower()} recorded for the selected runs")
            self.plot_hint.setText(hint)
            self.plot.setAccessibleDescription(hint)
            self.plot.setXRange(0, 1)
            self.plot.setYRange(0, 1)
        else:
            self.plot.enableAutoRange()
            self.plot.setAccessibleDescription(f"{METRICS[key]}: " + "; ".join(said) + ".")

    def show_queue(self) -> None:
        self.bottom_tabs.setCurrentWidget(self.queue_panel)

    def _on_queue_changed(self, pending: int) -> None:
        self._title_queue(pending)
        self.refresh()  # a queued run started or ended: the history shows it

    def _compare_queued(self, paths: list[str]) -> None:
        self.refresh()
        self.select_paths(paths)
        self.bottom_tabs.setCurrentIndex(0)  # Curves

    def _title_queue(self, pending: int) -> None:
        i = self.bottom_tabs.indexOf(self.queue_panel)
        self.bottom_tabs.setTabText(i, f"Queue ({pending})" if pending else "Queue")

    def _on_live_tick(self) -> None:
        if self.isVisible():
            self.refresh()

    def _on_open_config(self) -> None:
        run = self._current()
        if run is not None and not self._gone_since_read([run]) and (run.path / "run.yaml").exists():
            self.sig_open_config.emit(str(run.path / "run.yaml"))

    def _on_open_fixed(self) -> None:
        run = self._current()
        if run is None or self._gone_since_read([run]) or not (run.path / "run.yaml").exists():
            return
        fix = suggested_fix(read_summary(run.path))
        if fix:
            self.sig_open_config_fixed.emit(str(run.path / "run.yaml"), fix)

    def _on_resume(self) -> None:
        run = self._current()
        if run is not None and not self._gone_since_read([run]) and resume_state(run)[0]:
            self.sig_resume_run.emit(str(run.path))

    def _fill_rewind_menu(self, run: RunInfo | None, summary: dict[str, Any]) -> None:
        """One entry per complete checkpoint before the run's last step, with its eval loss."""
        self.rewind_menu.clear()
        if run is None or run.status == "running":
            self.rewind_button.setEnabled(False)
            self.rewind_button.setToolTip("Select one run that isn't training to go back to one of its checkpoints")
            return
        from engine.promote import eval_losses

        losses = eval_losses(run.path, self._metrics(run.path))
        reached = summary.get("step")
        for ckpt in checkpoints(run.path):
            step = checkpoint_step(ckpt)
            if not (ckpt / "trainer_state.json").exists() or (isinstance(reached, int) and step >= reached):
                continue
            loss = f", eval loss {losses[step]:.4f}" if step in losses else ""
            action = self.rewind_menu.addAction(f"{ckpt.name} (step {step}{loss})")
            action.triggered.connect(lambda _=False, r=run.path, c=ckpt.name: self.go_back_to(r, c))
        has = not self.rewind_menu.isEmpty()
        self.rewind_button.setEnabled(has)
        self.rewind_button.setToolTip(
            "Go back to an earlier checkpoint to train on from there: the run's config opens in the Train area "
            "(change the learning rate, say) and Resume continues from that checkpoint; the later checkpoints "
            "and final/ are kept in superseded-TIME/ in the run folder"
            if has else "This run has no checkpoint before its last step to go back to")

    def go_back_to(self, run_path: str | Path, checkpoint: str) -> bool:
        """``runs rewind`` to ``checkpoint`` (after asking), then open the run's config in the Train
        area, where Resume trains on from that checkpoint with the form's settings."""
        from engine.errors import StudioError
        from engine.rewind import rewind

        run_path = Path(run_path)
        if not self._confirm_rewind(run_path, checkpoint):
            return False
        try:
            done = rewind(run_path, checkpoint)
        except StudioError as e:
            self.summary.setText(f"<span style='color:{ink('#be1e1e')}'>" + html.escape(f"Not rewound: {e.message}")
                                 + "</span>")
            return False
        self.refresh()
        self.summary.setText(html.escape(done.what_happened() + ". Its config is open in the Train area: change "
                                         "what you like, then Resume trains on from there."))
        self.sig_open_config.emit(str(run_path / "run.yaml"))
        return True

    def _confirm_rewind(self, run_path: Path, checkpoint: str) -> bool:  # tests replace this
        step = checkpoint_step(Path(checkpoint))
        later = [c.name for c in checkpoints(run_path) if checkpoint_step(c) > step]
        if (run_path / "final").is_dir():
            later.append("final/")
        moved = (f" {', '.join(later)} move to a superseded-TIME/ folder in the run folder (nothing is deleted)."
                 if later else "")
        answer = QMessageBox.question(
            self, "Go back to an earlier checkpoint",
            f"Make {checkpoint} the newest checkpoint of {run_path.name}, to train on from there?{moved} Its curve "
            "is cut back to that step, and its config opens in the Train area, where Resume continues.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def _on_open_folder(self) -> None:
        run = self._current()
        if run is not None and not self._gone_since_read([run]):
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path)))

    def use_best_checkpoint(self) -> bool:
        """Make the selected run's best checkpoint its final/ (``runs promote`` in a child process:
        a full model's files take a while to copy). False when there is nothing to do."""
        run = self._current()
        if run is None or self._promote is not None or self._gone_since_read([run]) \
                or promotion_offer(run.path) is None:
            return False
        self.best_button.setEnabled(False)
        self.summary.setText("<span>" + html.escape(f"Making the best checkpoint of {run.name} its result…")
                             + "</span>")
        self._promote = run_engine(self, ["runs", "promote", str(run.path), "--json"],
                                   lambda code, output, path=run.path: self._on_promoted(path, code, output))
        return True

    def wait_for_promotion(self, msecs: int = 120_000) -> bool:
        """Block until a running "Use best checkpoint" ends (tests and scripts)."""
        return self._promote is not None and self._promote.waitForFinished(msecs)

    def _on_promoted(self, path: Path, code: int, output: str) -> None:
        self._promote = None
        self.refresh()
        if code == 0:
            text = json_message(output, "final/ now holds the best checkpoint")
            self.summary.setText(f"<span style='color:{ink('#1b5e20')}'>" + html.escape(
                f"{text}. Try it, merge and export use it from now on.") + "</span>")
            self.sig_promoted.emit(str(path))
        else:
            self.summary.setText(f"<span style='color:{ink('#be1e1e')}'>" + html.escape(
                f"Not changed: {cli_failure(output, 'runs promote', code)}") + "</span>")

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        if (watched is self.table and event.type() == QEvent.Type.KeyPress
                and QKeySequence(event.keyCombination()).matches(QKeySequence(QKeySequence.StandardKey.Delete))
                == QKeySequence.SequenceMatch.ExactMatch):
            self.remove_selected(prune=False)
            return True
        return super().eventFilter(watched, event)

    def removal_plans(self, *, prune: bool) -> list[Any]:
        """What Free disk… (``prune``) or Delete… would remove for the selected runs
        (``engine.cleanup.Removal``s); a run that is training, or has nothing to free, has none."""
        from engine.cleanup import delete_plan, prune_plan
        from engine.errors import StudioError

        plans = []
        for run in self.selected_runs():
            try:
                plan = prune_plan(run.path) if prune else delete_plan(run.path)
            except StudioError:
                continue  # training: the buttons' tooltips say so
            if plan.folders:
                plans.append(plan)
        return plans

    def remove_selected(self, *, prune: bool) -> bool:
        """Free disk… (``runs prune``: the older checkpoints) or Delete… (``runs delete``: whole
        runs) for the selected runs, after asking; in a child process, as deleting tens of GB of
        checkpoints takes a while. False when there was nothing to do or the user said no."""
        if self._removing is not None or self._gone_since_read(self.selected_runs()):
            return False
        plans = self.removal_plans(prune=prune)
        if not plans or not self._confirm_removal(plans, prune=prune):
            return False
        total = sum(p.bytes for p in plans)
        what = "Freeing" if prune else "Deleting"
        self.summary.setText(html.escape(f"{what} {format_size(total)}…"))
        self.free_button.setEnabled(False)
        self.delete_button.setEnabled(False)
        args = ["runs", "prune" if prune else "delete", *[str(p.run_dir) for p in plans], "--yes", "--json"]
        self._removing = run_engine(self, args, lambda code, output, plans=plans: self._on_removed(
            plans, code, output, prune=prune))
        return True

    def wait_for_removal(self, msecs: int = 60_000) -> bool:
        """Block until a running Free disk… or Delete… ends (tests and scripts)."""
        return self._removing is not None and self._removing.waitForFinished(msecs)

    def _confirm_removal(self, plans: list[Any], *, prune: bool) -> bool:  # tests replace this
        total = format_size(sum(p.bytes for p in plans))
        if prune:
            lines = [f"• {p.run_dir.name}: {', '.join(f.name for f in p.folders)} ({format_size(p.bytes)})"
                     + (f"; keeps {', '.join(p.kept)}" if p.kept else "") for p in plans]
            title, text = "Free disk", (f"Remove these older checkpoints, {total} in all?\n\n" + "\n".join(lines)
                                        + "\n\nfinal/, the curves, the config and the newest checkpoint stay: "
                                        "the run can still be tried, exported, resumed and trained further.")
        else:
            lines = [f"• {p.run_dir.name} ({format_size(p.bytes)})" for p in plans]
            title, text = "Delete runs", (f"Delete {'this run' if len(plans) == 1 else f'these {len(plans)} runs'}, "
                                          f"{total} in all?\n\n" + "\n".join(lines) + "\n\nTheir checkpoints, "
                                          "final/ (the trained model), curves and model cards are deleted for good.")
        box = QMessageBox(QMessageBox.Icon.Warning if not prune else QMessageBox.Icon.Question, title, text,
                          QMessageBox.StandardButton.Cancel, self)
        go = box.addButton("Delete" if not prune else "Remove checkpoints", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is go

    def _on_removed(self, plans: list[Any], code: int, output: str, *, prune: bool) -> None:
        self._removing = None
        self.refresh()
        if code == 0:
            total = format_size(sum(p.bytes for p in plans))
            names = ", ".join(p.run_dir.name for p in plans)
            self.summary.setText(f"<span style='color:{ink('#1b5e20')}'>" + html.escape(
                f"Freed {total}: older checkpoints of {names} removed." if prune else
                f"Deleted {names} ({total}).") + "</span>")
        else:
            command = "runs prune" if prune else "runs delete"
            self.summary.setText(f"<span style='color:{ink('#be1e1e')}'>" + html.escape(
                f"Not done: {cli_failure(output, command, code)}") + "</span>")
        self.sig_removed.emit([str(p.run_dir) for p in plans])

    def _update_removal_buttons(self) -> None:
        runs = self.selected_runs()
        busy = self._removing is not None
        training = [r for r in runs if r.status == "running"]
        prunable = self.removal_plans(prune=True) if runs and not busy else []
        self.free_button.setEnabled(bool(prunable))
        self.free_button.setToolTip(
            "Select runs to free the disk their older checkpoints take" if not runs else
            f"{training[0].name} is training: stop it first" if training and not prunable else
            "Remove the older checkpoints of the selected runs (" + format_size(sum(p.bytes for p in prunable))
            + "); final/, the curves and the newest checkpoint stay" if prunable else
            "Nothing to free: the selected runs keep only their newest checkpoint")
        self.delete_button.setEnabled(bool(runs) and not busy and len(training) < len(runs))
        self.delete_button.setToolTip(
            "Select runs to delete them" if not runs else
            f"{training[0].name} is training: stop it first" if len(training) == len(runs) else
            "Delete the selected runs' folders, after asking" + (
                f" ({', '.join(r.name for r in training)} is training and stays)" if training else ""))

    def selected_finals(self) -> list[str]:
        """The final/ folders of the selected runs that have one to compare: a PEFT adapter
        (``adapter_config.json``) or a full or freeze run's whole model (``config.json``)."""
        return [str(r.path / "final") for r in self.selected_runs()
                if (r.path / "final" / "adapter_config.json").exists() or (r.path / "final" / "config.json").exists()]

    def _on_compare_data(self) -> None:
        if self._gone_since_read(self.selected_runs(), "final"):
            return
        finals = self.selected_finals()
        if finals:
            self.sig_compare_adapters.emit(finals)

    def open_gguf_dialog(self) -> GgufDialog | None:
        """The GGUF export of the selected run's final/ (None when not exactly one finished run)."""
        run = self._current()
        if run is None or self._gone_since_read([run], "final"):
            return None
        dialog = GgufDialog(str(run.path / "final"), run.path.name, parent=self)
        dialog.sig_exported.connect(lambda _path: self._on_selection())  # the summary lists the new file
        return dialog

    def _on_gguf(self) -> None:
        dialog = self.open_gguf_dialog()
        if dialog is not None:
            dialog.open()

    def _on_try(self) -> None:
        run = self._current()
        if run is not None and not self._gone_since_read([run], "final"):
            self.sig_try_adapter.emit(str(run.path / "final"))
