"""The main window: a sidebar of areas (Dataset, Train, Adapters, Runs) over a stack.

It composes the areas and wires them to each other (a run's "Try it" opens the
Adapters playground; "Resume" opens the Train area); each area owns its own widgets.
Window geometry and the last area are remembered in QSettings.
"""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QActionGroup, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine import __version__
from gui.fonts import set_relative_font
from gui.scheme import SCHEME_KEY, apply_color_scheme, follow_palette, saved_scheme
from gui.settings import last_file, studio_settings

# key -> (label, "module:Class", tooltip)
AREAS = {
    "dataset": ("Dataset", "gui.dataset.editor:DatasetEditor",
                "Edit and lint instruction data (Alpaca, ShareGPT, messages, CSV, Parquet)"),
    "train": ("Train", "gui.train.area:TrainArea",
              "Pick model, method and precision; check memory; run and watch training"),
    "adapters": ("Adapters", "gui.adapters.area:AdaptersArea",
                 "Adapter library and playground: compare adapters side by side"),
    "runs": ("Runs", "gui.runs.area:RunsArea", "Run history: compare curves, resume, try adapters"),
}

NAV_WIDTH = 150  # px at the default font; wider when a raised font's area names need it
NAV_PAD = 14  # an area name's padding left and right, px
NAV_MARGIN = 6  # between an area's highlight and the sidebar's edges, px
STATUS_MS = 30_000
"""How long an area's status message stays (as long as a run's end is said there: gui.train.notify)."""


class MainWindow(QMainWindow):
    """The application window."""

    # ---- Public API
    def __init__(self, *, load_demo: bool = True, restore_geometry: bool = True, reopen_last: bool = False,
                 open_path: Path | None = None):
        super().__init__()
        self.setObjectName("MainWindow")
        self._base_title = "Finetune Studio"
        self.setWindowTitle(self._base_title)
        self.setMinimumSize(QSize(960, 640))
        self.areas: dict[str, QWidget] = {}
        self.failed_areas: dict[str, str] = {}  # key -> the error, for --screenshot/--self-check
        self._area_titles: dict[str, str] = {}

        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setSpacing(2)
        # The font in points above the window's (14 px at the default 9 pt): a style sheet's 14 px
        # stayed put when the desktop font was raised, smaller than the areas' text.
        set_relative_font(self.nav, 1.5)
        self.nav.setStyleSheet(
            "QListWidget#nav { border: none; outline: 0; background: palette(window); padding-top: 8px; }"
            f"QListWidget#nav::item {{ padding: 10px {NAV_PAD}px; border-radius: 6px; margin: 1px {NAV_MARGIN}px; }}"
            "QListWidget#nav::item:selected { background: palette(highlight); color: palette(highlighted-text); }"
        )
        self.stack = QStackedWidget()
        for i, (key, (label, target, tip)) in enumerate(AREAS.items()):
            item = QListWidgetItem(label)
            item.setToolTip(f"{tip} ({self._area_key(i).toString(QKeySequence.SequenceFormat.NativeText)})")
            item.setData(Qt.ItemDataRole.UserRole, key)
            self.nav.addItem(item)
            area = self._build_area(key, target)
            self.areas[key] = area
            self.stack.addWidget(area)
        # As wide as the longest name needs with the item's padding, and never under the 150 px
        # of the default font.
        longest = max(self.nav.fontMetrics().horizontalAdvance(label) for label, _, _ in AREAS.values())
        self.nav.setFixedWidth(max(NAV_WIDTH, longest + 2 * (NAV_PAD + NAV_MARGIN) + 2 * self.nav.frameWidth()))
        version = QLabel(f"v{__version__}")
        version.setStyleSheet("color: palette(mid); padding: 8px 14px;")
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.nav, 1)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 6, 0)
        bottom.addWidget(version)
        bottom.addStretch(1)
        bottom.addWidget(self._appearance_button())
        side_layout.addLayout(bottom)
        splitter = QSplitter()
        splitter.addWidget(side)
        splitter.addWidget(self.stack)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)
        self.nav.currentRowChanged.connect(self._on_nav_changed)
        self._wire_areas()
        for i, key in enumerate(AREAS):
            QShortcut(self._area_key(i), self, activated=lambda k=key: self.show_area(k))
        self.statusBar().showMessage("Ready")
        follow_palette(self)  # a light/dark switch re-colours the areas while the window is open

        s = studio_settings()
        if restore_geometry and s.value("main/geometry"):
            self.restoreGeometry(s.value("main/geometry"))
        else:
            self.resize(1360, 860)
        self.show_area(s.value("main/area", "dataset") if restore_geometry else "dataset")
        for area in self.areas.values():
            if reopen_last and hasattr(area, "restore_form"):
                area.restore_form()  # the Train form, the playground: as the Dataset area's last file
        if load_demo or open_path is not None:
            self.load_demo(reopen_last=reopen_last, path=open_path)

    def show_area(self, key: str) -> None:
        keys = list(AREAS)
        if key not in keys:
            key = "dataset"
        self.nav.setCurrentRow(keys.index(key))

    def current_area(self) -> str:
        return list(AREAS)[max(self.nav.currentRow(), 0)]

    def load_demo(self, *, reopen_last: bool = False, path: Path | None = None) -> None:
        """Open ``path``, or with ``reopen_last`` the file the editor had open when the app last
        closed (an annotator starts where they stopped), else the embedded demo dataset (the demo
        model is the Train default). A file that doesn't open is said so, with the demo opened."""
        from engine.paths import demo_dataset_path

        editor = self.areas.get("dataset")
        if not hasattr(editor, "open_file"):
            return
        wanted = path or (last_file() if reopen_last else None)
        if wanted is not None:
            editor.open_file(wanted)
            if editor.path() == wanted:
                return
        demo = demo_dataset_path()
        if not demo.exists():
            return
        why = editor.banner.label.text() if wanted is not None else ""
        editor.open_file(demo)
        if why:
            origin = "" if path is not None else " It was the file open when Finetune Studio last closed."
            editor.banner.show_message("warning", f"{why}.{origin} The demo dataset is open instead (Open ▾ "
                                       "lists your recent files).")

    def after_show(self) -> None:
        """Things that may ask the user something: crash recovery, re-attaching to live runs."""
        for area in self.areas.values():
            for hook in ("check_recovery", "reattach_running"):
                if hasattr(area, hook):
                    getattr(area, hook)()

    def prepare_screenshot(self, key: str) -> None:
        area = self.areas.get(key)
        if hasattr(area, "prepare_screenshot"):
            area.prepare_screenshot()

    def discard_for_screenshot(self) -> None:
        """A screenshot window must close without prompts or saved state."""
        self._screenshot_mode = True

    # ---- Internals
    @staticmethod
    def _area_key(index: int) -> QKeySequence:
        """The key that shows the ``index``-th area (its sidebar item's tooltip names it)."""
        return QKeySequence(f"Ctrl+{index + 1}")


    def _appearance_button(self) -> QToolButton:
        """A small button beside the version: Appearance, follow the system or force light or dark.
        Qt switches the palette itself where the platform honours the request (Windows, macOS, GNOME,
        KDE); elsewhere ``apply_color_scheme`` sets one. The choice is kept in the settings file."""
        button = QToolButton()
        button.setObjectName("appearanceButton")
        button.setText("◐")
        button.setAccessibleName("Appearance")  # a screen reader would say the symbol's name
        button.setAutoRaise(True)
        button.setToolTip("Appearance: follow the system, or always light or dark")
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu("Appearance", button)
        self.appearance_actions = QActionGroup(menu)
        current = saved_scheme()
        for scheme, label in (("system", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
            action = menu.addAction(label)
            action.setCheckable(True)
            action.setChecked(scheme == current)
            action.setData(scheme)
            self.appearance_actions.addAction(action)
        self.appearance_actions.triggered.connect(self._on_appearance)
        button.setMenu(menu)
        return button

    def _on_appearance(self, action) -> None:
        scheme = action.data()
        studio_settings().setValue(SCHEME_KEY, scheme)
        apply_color_scheme(scheme)

    def _build_area(self, key: str, target: str) -> QWidget:
        module, cls = target.split(":")
        try:
            area = getattr(importlib.import_module(module), cls)()
        except Exception as e:  # noqa: BLE001 - one broken area must not take the app down
            self.failed_areas[key] = f"{type(e).__name__}: {e}"
            label = QLabel(f"The {AREAS[key][0]} area failed to load:\n{type(e).__name__}: {e}")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setWordWrap(True)
            label.setToolTip(traceback.format_exc())
            return label
        if hasattr(area, "sig_title_changed"):
            area.sig_title_changed.connect(lambda text, k=key: self._on_area_title(k, text))
        return area

    def _follow_queue(self) -> None:
        """A queued run started: the Train area shows it live, unless it is busy with its own."""
        runs, train = self.areas["runs"], self.areas["train"]
        current = runs.queue_panel.current_entry()
        if current is not None and current.run_dir and train.run_dir != current.run_dir and not train.run.is_active():
            train.follow_run(current.run_dir)

    @staticmethod
    def _on_run_finished(runs: QWidget, data: dict) -> None:
        """A run ended in the Train area: the Runs area lists it, selected, so its curves and its
        actions (Try it, Export GGUF…) are there when the user looks. A probe's folder is a
        measurement, not a result: the selection stays."""
        path = data.get("output_dir")
        if path and not isinstance(data.get("probe"), dict):
            runs.show_run(path)
        else:
            runs.refresh()

    def _wire_areas(self) -> None:
        runs, adapters, train = self.areas.get("runs"), self.areas.get("adapters"), self.areas.get("train")
        if hasattr(runs, "sig_compare_adapters") and hasattr(adapters, "compare_adapters"):
            runs.sig_compare_adapters.connect(lambda paths: (self.show_area("adapters"),
                                                             adapters.compare_adapters(paths)))
        if hasattr(runs, "sig_try_adapter") and hasattr(adapters, "try_adapter"):
            runs.sig_try_adapter.connect(lambda path: (self.show_area("adapters"), adapters.try_adapter(path)))
        if hasattr(runs, "sig_resume_run") and hasattr(train, "resume_run"):
            runs.sig_resume_run.connect(lambda path: (self.show_area("train"), train.resume_run(path)))
        if hasattr(runs, "sig_open_config") and hasattr(train, "load_config_file"):
            runs.sig_open_config.connect(lambda path: (self.show_area("train"), train.load_config_file(path)))
            runs.sig_open_config_fixed.connect(lambda path, fix: (self.show_area("train"), train.load_config_file(path)
                                                                  and train.apply_fix(fix)))
        if hasattr(train, "sig_run_finished") and hasattr(runs, "show_run"):
            train.sig_run_finished.connect(lambda data: self._on_run_finished(runs, data))
        if hasattr(train, "sig_run_finished") and hasattr(adapters, "refresh"):
            train.sig_run_finished.connect(lambda *_: adapters.refresh())
        if hasattr(train, "sig_audit_run") and hasattr(runs, "audit_run"):
            train.sig_audit_run.connect(lambda path: (self.show_area("runs"), runs.audit_run(path)))
        if hasattr(runs, "sig_promoted") and hasattr(adapters, "refresh"):
            runs.sig_promoted.connect(lambda *_: adapters.refresh())
        if hasattr(runs, "sig_removed") and hasattr(adapters, "refresh"):
            runs.sig_removed.connect(lambda *_: adapters.refresh())
        if hasattr(runs, "sig_removed") and hasattr(train, "forget_runs"):
            runs.sig_removed.connect(train.forget_runs)
        if hasattr(train, "sig_compare_adapters") and hasattr(adapters, "compare_adapters"):
            train.sig_compare_adapters.connect(lambda paths: (self.show_area("adapters"),
                                                              adapters.compare_adapters(paths)))
        if hasattr(train, "sig_try_adapter") and hasattr(adapters, "try_adapter"):
            train.sig_try_adapter.connect(lambda path: (self.show_area("adapters"), adapters.try_adapter(path)))
        if hasattr(train, "sig_queued") and hasattr(runs, "queue_panel"):
            train.sig_queued.connect(lambda *_: runs.queue_panel.reload(force=True))
        if hasattr(runs, "queue_panel") and hasattr(train, "follow_run"):
            runs.queue_panel.sig_changed.connect(lambda *_: self._follow_queue())
        dataset = self.areas.get("dataset")
        if hasattr(dataset, "sig_status"):
            # Saved, exported, a record kept as text, no finding left: said where the user looks.
            dataset.sig_status.connect(lambda text: self.statusBar().showMessage(text, STATUS_MS))
        if hasattr(runs, "sig_open_record") and hasattr(dataset, "show_record"):
            runs.sig_open_record.connect(lambda path, index, expect: (self.show_area("dataset"),
                                                                      dataset.show_record(path, index, expect)))
        if hasattr(train, "sig_open_line") and hasattr(dataset, "show_line"):
            train.sig_open_line.connect(lambda path, line: (self.show_area("dataset"), dataset.show_line(path, line)))
        if hasattr(dataset, "sig_train_on") and hasattr(train, "use_data_files"):
            dataset.sig_train_on.connect(lambda train_file, eval_file: (
                self.show_area("train"), train.use_data_files(train_file, eval_file)))
        if hasattr(train, "config_model") and hasattr(dataset, "lint_panel"):
            # The Checks tab counts truncation against the seq_len the run will use.
            def follow_seq_len(keys: set[str] | None = None) -> None:
                value = train.config_model.values().get("seq_len")
                if (keys is None or "seq_len" in keys) and isinstance(value, int) and not isinstance(value, bool):
                    dataset.lint_panel.seq_len.setValue(value)

            train.config_model.sig_changed.connect(follow_seq_len)
            follow_seq_len()

            # The prompt preview marks what the run will train on.
            def follow_loss_on(keys: set[str] | None = None) -> None:
                values = train.config_model.values()
                if keys is None or "loss_on" in keys:
                    dataset.preview.set_loss_on(values.get("loss_on") or "answers")
                if (keys is None or "template" in keys) and isinstance(values.get("template"), str):
                    dataset.preview.set_template(values["template"])
                if (keys is None or "add_tokens" in keys) and isinstance(values.get("add_tokens"), list):
                    dataset.preview.set_add_tokens(values["add_tokens"])

            train.config_model.sig_changed.connect(follow_loss_on)
            follow_loss_on()

    def _on_nav_changed(self, row: int) -> None:
        self.stack.setCurrentIndex(row)
        key = list(AREAS)[row]
        area = self.areas[key]
        if hasattr(area, "on_shown"):
            area.on_shown()
        self._update_title()

    def _on_area_title(self, key: str, text: str) -> None:
        self._area_titles[key] = text
        self._update_title()

    def _update_title(self) -> None:
        extra = self._area_titles.get(self.current_area()) or self._area_titles.get("dataset")
        self.setWindowTitle(f"{extra} — {self._base_title}" if extra else self._base_title)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if not getattr(self, "_screenshot_mode", False):
            for area in self.areas.values():
                if hasattr(area, "maybe_close") and not area.maybe_close():
                    event.ignore()
                    return
            s = studio_settings()
            s.setValue("main/geometry", self.saveGeometry())
            s.setValue("main/area", self.current_area())
            for area in self.areas.values():
                if hasattr(area, "remember_form"):
                    area.remember_form()
        for area in self.areas.values():
            if hasattr(area, "shutdown"):
                area.shutdown()
        event.accept()
