"""Compare the base and the ticked adapters on a dataset's records: a number, not an impression.

Runs ``finetune-studio adapters compare`` in a child process (the GUI process never holds a
model), shows its progress, then the table of answer losses and the answers every model gave
to the records where they differ most, beside the record's own answer. What the dialog runs is
shown as a command line, the same the user could type.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QFont, QGuiApplication, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableView,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine import adapters as lib
from engine.compare import Comparison, describe_saved, format_change, new_comparison_path, saved_comparisons
from gui.engine_process import EngineCommandMixin, command_label, command_text
from gui.scheme import ink, ink_color

HEADERS = ["Model", "Answer loss", "Perplexity", "vs base", "Best on", "Trained on", "Exact", "F1"]
ANSWER_COLUMNS = (6, 7)  # shown when the comparison scored answers (--answer)
ANSWER_CHOICES = ("none", "20 records", "50 records", "100 records", "200 records", "all held-out records")
BASE_NAME = "(base)"
SIZE = QSize(980, 720)
"""The dialog's size where the screen has room: the table and the answers need it."""


@dataclass
class WholeModel:
    """A full or freeze run's trained model, compared beside the adapters (it has no library card)."""

    name: str
    path: str
    dataset: str | None = None
    eval_dataset: str | None = None

    @classmethod
    def of_run(cls, final: str | Path) -> WholeModel:
        """A run's ``final/`` model, named by its run folder, with its run's dataset."""
        from engine.runs import read_run_config

        final = Path(final)
        run = final.parent if final.name == "final" else final
        cfg = read_run_config(run)
        return cls(run.name, str(final), cfg.get("dataset"), cfg.get("eval_dataset") or None)


def compare_problem(cards: list[lib.AdapterCard], matches: dict | None = None) -> str | None:
    """Why these adapters can't be compared, or None when they can. ``matches``: each card's
    ``BaseMatch`` against the current base (a refused one is said before a worker loads the base)."""
    if not cards:
        return "Tick the adapters to compare in the library, or select one."
    for card in cards:
        if not card.loadable:
            return f"{card.name} can't be compared: {card.problem or 'not a PEFT adapter'}"
        match = (matches or {}).get(card.path)
        if match is not None and match.ok is False:
            return f"{card.name} doesn't fit the base: {match.message}"
    return None


def default_dataset(cards: list[lib.AdapterCard | WholeModel]) -> str:
    """The eval file all the runs evaluated on (none of them trained on it), else the dataset the
    runs share (its held-out records are then scored), else ''."""
    evals = {c.eval_dataset for c in cards}
    if len(evals) == 1 and None not in evals:
        return evals.pop()
    found = {c.dataset for c in cards if c.dataset}
    return found.pop() if len(found) == 1 else ""


def size_on_screen(widget: QWidget, wanted: QSize) -> QSize:
    """``wanted``, shrunk to the screen ``widget`` opens on: its free area (without the panels), less
    room for the window's title bar. At 720 px tall the dialog ran past a 1366x768 laptop's screen
    under its panel, and its Compare and Close buttons were off the bottom."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return wanted
    room = screen.availableGeometry()
    return QSize(min(wanted.width(), int(room.width() * 0.95)), min(wanted.height(), int(room.height() * 0.9)))


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    if v != v or v == float("inf"):
        return "inf"
    return f"{v:.{digits}f}" if v < 1e4 else f"{v:.3g}"


class CompareDialog(EngineCommandMixin, QDialog):
    """Ask which records, run the comparison in a child process, show the table and the answers."""

    CLI_COMMAND = "adapters compare"

    sig_starting = Signal()
    """The comparison is about to load the base (a playground holding the GPU may let it go)."""
    sig_compared = Signal(str)
    """The comparison finished: the JSON file it wrote."""

    def __init__(self, base: str, cards: list[lib.AdapterCard | WholeModel], parent: QWidget | None = None, *,
                 dataset: str | None = None, load_in: str = "auto"):
        super().__init__(parent)
        self.setWindowTitle("Compare on a dataset")
        self.resize(size_on_screen(parent or self, SIZE))
        self.base = base
        self.load_in = load_in
        self.cards = list(cards)
        self.result: Comparison | None = None
        self.out_file: Path | None = None

        names = ", ".join(f"<b>{html.escape(c.name)}</b>" for c in cards)
        intro = QLabel(f"Scores <b>{html.escape(base)}</b> and {names} on the same records: each record's answer "
                       "loss, counted as training counts it (lower is better). Records a compared model trained "
                       "on are set aside, so the figures say how each does on data it has not seen. Then every "
                       "model answers the records where they differ most. With <i>Score answers of</i>, every "
                       "model also answers held-out records, scored against the records' own (exact match, F1).")
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)  # the spin boxes stay small
        self.dataset_edit = QLineEdit(dataset if dataset is not None else (default_dataset(cards) or "demo"))
        self.dataset_edit.setToolTip("A dataset file in any format the editor opens ('demo': the embedded one). "
                                     "Best a held-out file; the adapters' own run dataset works too: the "
                                     "records they trained on are set aside.")
        browse = QPushButton("Browse…")
        browse.setAutoDefault(False)  # Return in the form is the dialog's action, not a folder picker
        browse.clicked.connect(self._on_browse)
        row = QHBoxLayout()
        row.addWidget(self.dataset_edit, 1)
        row.addWidget(browse)
        form.addRow("Dataset:", row)
        self.limit = QSpinBox()
        self.limit.setRange(0, 10_000_000)
        self.limit.setSingleStep(100)
        self.limit.setValue(500)
        self.limit.setSpecialValueText("all")
        self.limit.setToolTip("Score a random sample of this many records (seeded, so the same each time); "
                              "'all' scores every record")
        form.addRow("Records:", self.limit)
        self.samples = QSpinBox()
        self.samples.setRange(0, 20)
        self.samples.setValue(3)
        self.samples.setToolTip("How many records every model answers (greedy), where their losses differ most")
        form.addRow("Answers to read:", self.samples)
        self.answer = QComboBox()
        for label in ANSWER_CHOICES:
            self.answer.addItem(label)
        self.answer.setToolTip("Every model also answers this many held-out records (greedy), and each answer is "
                               "scored against the record's own: Exact (labels, figures, JSON compared as values) "
                               "and token F1 (free text). Slow on a CPU: one generation per record and model.")
        form.addRow("Score answers of:", self.answer)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 4096)
        self.max_tokens.setValue(96)
        form.addRow("Max new tokens:", self.max_tokens)
        self.earlier = QComboBox()
        self.earlier.setToolTip("Show a comparison made before (kept in <data home>/comparisons), without "
                                "computing anything")
        self.earlier.activated.connect(self._on_earlier)
        # As wide as the form: its entries are whole sentences ("… best: legal, 0.508 …").
        self.earlier.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.earlier.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.earlier.setMinimumContentsLength(30)
        form.addRow("Earlier:", self.earlier)
        self.reload_earlier()
        for w in (self.dataset_edit, self.limit, self.samples, self.max_tokens):
            (w.textChanged if isinstance(w, QLineEdit) else w.valueChanged).connect(self._update)
        self.answer.currentIndexChanged.connect(self._update)

        self.command_label = command_label()
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)

        self.table_model = QStandardItemModel(0, len(HEADERS), self)
        self.table_model.setHorizontalHeaderLabels(HEADERS)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(HEADERS)):
            self.table.horizontalHeader().setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.answers = QTextBrowser()
        self.answers.setOpenLinks(False)
        # The user can give the table or the answers more room; the answers take what is left.
        self.results = QSplitter(Qt.Orientation.Vertical)
        self.results.setChildrenCollapsible(False)
        self.results.addWidget(self.table)
        self.results.addWidget(self.answers)
        self.results.setStretchFactor(1, 1)
        self.results.setVisible(False)

        self.placeholder = QLabel("Press Compare. The base loads once in a child process; each model's answer "
                                  "loss and the answers where the models differ most appear here.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: palette(mid); padding: 24px;")

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.run_button = self.buttons.addButton("Compare", QDialogButtonBox.ButtonRole.ActionRole)
        self.run_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self._on_close)

        # The settings fold away under one line once there are results: on a 700 px laptop screen
        # they left the answers about 100 px. The line says what Compare runs, and opens them.
        self.setup = QWidget()
        setup_lay = QVBoxLayout(self.setup)
        setup_lay.setContentsMargins(0, 0, 0, 0)
        setup_lay.addWidget(intro)
        setup_lay.addLayout(form)
        setup_lay.addWidget(self.command_label)
        self.setup_toggle = QToolButton()
        self.setup_toggle.setCheckable(True)
        self.setup_toggle.setChecked(True)
        self.setup_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.setup_toggle.setAutoRaise(True)
        self.setup_toggle.setToolTip("Show or hide what Compare scores: the dataset, records, answers")
        self.setup_toggle.toggled.connect(self._on_setup_toggled)
        self.setup_toggle.setVisible(False)

        lay = QVBoxLayout(self)
        lay.addWidget(self.setup_toggle)
        lay.addWidget(self.setup)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.results, 1)
        lay.addWidget(self.placeholder, 1)
        lay.addWidget(self.buttons)
        # Default once the button box is in the dialog: set before, Qt had no dialog to tell, and at show
        # it made the first button after the focus the default: Return in the form pressed Browse….
        self.run_button.setDefault(True)
        self._update()

    # ---- Public API
    def command(self) -> list[str]:
        """The ``finetune-studio adapters compare`` arguments the dialog runs (without the program)."""
        args = ["adapters", "compare", *(c.path for c in self.cards), "--base", self.base,
                "--dataset", self.dataset_edit.text().strip(), "--samples", str(self.samples.value()),
                "--max_new_tokens", str(self.max_tokens.value())]
        if self.limit.value():
            args += ["--limit", str(self.limit.value())]
        if self.answer.currentIndex() > 0:
            args += ["--answer", self.answer.currentText().split()[0]]
        if self.load_in != "auto":
            args += ["--load_in", self.load_in]
        return args

    def start(self) -> bool:
        """Run the comparison; False (with the reason shown) when the dataset is not given."""
        dataset = self.dataset_edit.text().strip()
        if not dataset:
            self._say("Choose a dataset file.", "#be1e1e")
            return False
        if dataset != "demo" and not Path(dataset).expanduser().is_file():
            # Where it looked: a relative name is read from the folder the app started in.
            where = Path(dataset).expanduser().absolute()
            self._say(html.escape(f"Dataset: {dataset} is not a file" + (f" ({where})." if str(where) != dataset
                                                                           else ".")), "#be1e1e")
            return False
        self.out_file = new_comparison_path()
        self.out_file.parent.mkdir(parents=True, exist_ok=True)
        self.sig_starting.emit()
        self.results.setVisible(False)
        self._say("Loading the base once and each adapter beside it, in a child process…")
        self._start_engine([*self.command(), "--json", "--progress", "--out", str(self.out_file)], self.run_button)
        return True

    def show_result(self, comparison: Comparison, kept: bool = False) -> None:
        """Fill the table and the answers from a comparison (``kept``: one made earlier, not the
        models ticked now)."""
        self.result = comparison
        base = comparison.models[0]
        held = comparison.held_out
        headline = bool(held)
        losses = [(m.mean_loss if headline else m.mean_loss_all) for m in comparison.models]
        best = min((v for v in losses if v is not None), default=None)
        self.table_model.removeRows(0, self.table_model.rowCount())
        for m, loss in zip(comparison.models, losses, strict=True):
            vs = m.vs_base(base)
            trained = "–" if m is base else (f"{m.trained_on:,}" if m.train_split_known else "unknown")
            cells = [m.name if m is not base else f"{BASE_NAME} {Path(comparison.base).name}",
                     _fmt(loss), _fmt(m.perplexity if headline else m.perplexity_all, 2),
                     "–" if m is base else format_change(vs), f"{m.best_on:,}", trained,
                     "–" if m.exact is None else f"{m.exact:.0%}", _fmt(m.f1)]
            items = [QStandardItem(c) for c in cells]
            for col, item in enumerate(items):
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(m.path or "")
            if loss is not None and loss == best:
                font = QFont()
                font.setBold(True)
                for item in items:
                    item.setFont(font)
                    item.setForeground(QBrush(ink_color("#1b5e20")))
            self.table_model.appendRow(items)
        for col in ANSWER_COLUMNS:
            self.table.setColumnHidden(col, not base.answered)
        # The table no taller than its rows, and at first as tall as them up to five; the answers get the rest.
        rows = [self.table.rowHeight(r) for r in range(self.table_model.rowCount())]
        frame = self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth() + 4
        self.table.setMinimumHeight(frame + sum(rows[:2]))
        self.table.setMaximumHeight(frame + sum(rows))
        self.results.setSizes([frame + sum(rows[:5]), 10_000])
        scope = (f"over the {held:,} records none of them trained on (the other "
                 f"{len(comparison.records) - held:,} are in a training split)" if held and held < len(comparison.records)
                 else "over every record" if held else "over every record, <b>all of them trained on</b>")
        # Not "the models above": the settings that name them are folded away once results show.
        text = ("<b>A kept comparison</b>, made earlier (Compare scores the models chosen now): " if kept else "")
        text += (f"{len(comparison.records):,} records of {html.escape(Path(comparison.dataset).name)} scored on "
                f"{html.escape(comparison.device)} in {comparison.seconds:.1f} s · answer loss {scope}")
        if base.answered:
            text += (f" · Exact and F1: every model's greedy answers to {base.answered:,} held-out records, "
                     "against the records' own")
        notes = [html.escape(n) for n in comparison.notes]
        if comparison.sampled_from:
            notes.append(f"Set Records: to all to score all {comparison.sampled_from:,} usable records.")
        if notes:
            text += f"<br><span style='color:{ink('#8a5a00')}'>" + "<br>".join(notes) + "</span>"
        if self.out_file is not None:
            text += f"<br><span style='color:palette(mid)'>All scores: {html.escape(str(self.out_file))}</span>"
        self._say(text)
        self.answers.setHtml(self._answers_html(comparison))
        self.placeholder.setVisible(False)
        self.results.setVisible(True)
        self.setup_toggle.setVisible(True)
        self.setup_toggle.setChecked(False)

    def reload_earlier(self) -> None:
        """List the kept comparisons, newest first."""
        self._earlier = saved_comparisons()
        self.earlier.clear()
        if not self._earlier:
            self.earlier.addItem("none yet")
            self.earlier.setEnabled(False)
            return
        self.earlier.setEnabled(True)
        self.earlier.addItem(f"{len(self._earlier)} kept: pick one to show it")
        for path, c in self._earlier:
            self.earlier.addItem(describe_saved(path, c), str(path))

    # ---- Internals
    def _on_earlier(self, index: int) -> None:
        if index <= 0 or index > len(self._earlier):
            return
        path, comparison = self._earlier[index - 1]
        self.out_file = path
        self.show_result(comparison, kept=True)

    @staticmethod
    def _answers_html(c: Comparison) -> str:
        if not c.samples:
            return f"<p style='color:{ink('gray')}'>No answers asked for.</p>"
        parts = ["<h3 style='margin:0'>Where the models differ most</h3>"]
        for s in c.samples:
            parts.append(f"<p style='margin-top:10px'><b>Record {s.record}</b>: {html.escape(s.prompt)}</p>"
                         "<table cellspacing='0' cellpadding='4' width='100%' style='border-collapse:collapse'>")
            rows = [("reference", s.reference, None)] + [(n, t, s.losses.get(n)) for n, t in s.answers.items()]
            for name, text, loss in rows:
                colour = ink("#1b5e20" if name == "reference" else "#333")
                label = html.escape(name) + (f"<br><span style='color:{ink('gray')}'>loss {_fmt(loss)}</span>"
                                             if loss is not None else "")
                parts.append(f"<tr><td width='22%' valign='top' style='color:{colour}'>{label}</td>"
                             f"<td valign='top'>{html.escape(text) or '<i>(empty)</i>'}</td></tr>")
            parts.append("</table>")
        return "".join(parts)

    def _update(self) -> None:
        self.command_label.setText(command_text(self.command()))
        dataset = self.dataset_edit.text().strip()
        self.setup_toggle.setText(
            f"Settings — Dataset: {Path(dataset).name or dataset or '(none)'} · Records: {self.limit.text()} · "
            f"Answers to read: {self.samples.value()} · Score answers of: {self.answer.currentText()} · "
            f"Max new tokens: {self.max_tokens.value()}")

    def _on_setup_toggled(self, shown: bool) -> None:
        had_keyboard = self.setup.isAncestorOf(QApplication.focusWidget())
        self.setup.setVisible(shown)
        if had_keyboard and not shown:  # Qt passed it to the table, framing its first cell: the answers are next
            self.answers.setFocus(Qt.FocusReason.OtherFocusReason)
        self.setup_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def _say(self, text: str, colour: str | None = None) -> None:
        self.status.setStyleSheet(f"color: {ink(colour)};" if colour else "")
        self.status.setText(text)

    def _on_browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Dataset to compare on", "",
                                              "Datasets (*.json *.jsonl *.csv *.parquet);;All files (*)")
        if path:
            self.dataset_edit.setText(path)

    def _on_progress(self) -> None:
        self._say("Scoring each record with each model, then answering…")

    def _on_succeeded(self, output: str) -> None:
        try:
            comparison = Comparison.from_dict(json.loads(output.strip().splitlines()[-1]))
        except (ValueError, IndexError, TypeError, KeyError) as e:
            self._say(html.escape(f"The comparison's result can't be read: {e}"), "#be1e1e")
            return
        self.show_result(comparison)
        self.reload_earlier()
        self.sig_compared.emit(str(self.out_file))

    def _on_failed(self, why: str) -> None:
        self._say(html.escape("The comparison failed: " + why), "#be1e1e")

    def _on_close(self) -> None:
        self._kill_engine()
        self.reject()
