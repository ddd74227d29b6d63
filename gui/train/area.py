"""The Train area: choose (model, method, precision, hyperparameters), check that it fits,
then start, watch, fix and resume a run.

Left, the run config as a form built from ``RunConfig.field_meta()``; right, the live VRAM
gauge, the progress line, the curves, the advisor and the log. The config being edited is
a :class:`~gui.train.config_model.ConfigModel`; every widget is a view of it. Training runs
in a worker process; :class:`~gui.train.worker_thread.RunClient` turns its events into
signals that arrive here at most 10 times a second.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

import yaml
from PySide6.QtCore import QDeadlineTimer, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.config import RunConfig, parse_override
from engine.errors import ConfigError, ConfigErrors, StudioError
from engine.methods import rate_note
from engine.paths import presets_dir
from engine.probe import PROBE_STEPS
from engine.runs import format_duration, mean_of_last, read_samples, steps_in_mean
from gui.adapters.gguf_dialog import GgufDialog
from gui.elided_combo import ElidedComboBox
from gui.flow_layout import FlowLayout
from gui.scheme import error_banner_style, keep_styled
from gui.settings import kept_dict, studio_settings
from gui.train.advisor import Advice, Advisor, AdvisorPanel
from gui.train.background import BackgroundCalls
from gui.train.config_model import ConfigModel
from gui.train.estimator import DataLengthsScheduler, EstimateScheduler, data_inputs
from gui.train.fields import ChoiceEditor, FieldEditor, format_number, label_for, make_editor, tooltip_for
from gui.train.gpu_monitor import GpuMonitor
from gui.train.gpu_panel import GpuPanel, cancel_detection, detect_environment_isolated
from gui.train.log_console import LogConsole
from gui.train.method_picker import MethodPicker, PrecisionGrid, switch_changes
from gui.train.model_picker import ModelPicker, remember_model
from gui.train.notify import notify
from gui.train.plots import LOSS_MIN_SIZE, SMALL_MIN_SIZE, TrainPlots
from gui.train.samples_panel import SamplesPanel
from gui.train.vram_gauge import FitDialog, VramGauge
from gui.train.worker_thread import RunClient

TABS_MIN_HEIGHT = 180
"""Advice, Answers and Log: room for an advice card's first lines and its buttons."""
PLOTS_STRETCH = 3
"""The plots' share of a taller pane against the tabs' 1 (none while Answers is open)."""
ANSWERS_ROOM = 260
"""The Answers tab's height before the loss plot gives way (two records and their references in
view): on a short window the loss plot goes below its readable height for it, down to the small
plots' (SMALL_MIN_SIZE)."""
PRESETS = {"demo": "Demo (tiny, CPU)", "lora": "LoRA", "qlora": "QLoRA (4-bit)",
           "full": "Full fine-tuning"}
FORM_KEY = "train/form"
"""The settings key of the form's values when the app last closed (JSON)."""
LAST_RUN_KEY = "train/last_run"
"""The settings key of the run folder Resume continued when the app last closed."""
# Applying a preset changes the recipe, not what it is applied to.
KEEP_ON_PRESET = ("model", "dataset", "dataset_format", "template", "add_tokens", "output_dir", "run_name",
                  "trust_remote_code", "allow_pickle")
SECTIONS = {
    "Precision and memory": ("optimizer", "gradient_checkpointing", "batch_size",
                             "gradient_accumulation_steps"),
    "Data": ("dataset", "dataset_format", "template", "add_tokens", "seq_len", "loss_on", "group_by_length", "packing", "eval_split", "eval_dataset"),
    "Training": ("learning_rate", "lr_scheduler", "min_lr_ratio", "warmup_ratio", "warmup_steps", "num_epochs", "max_steps", "weight_decay",
                 "max_grad_norm", "neftune_noise_alpha", "seed"),
    "Run and checkpoints": ("run_name", "output_dir", "save_steps", "save_total_limit", "logging_steps",
                            "eval_steps", "early_stopping_patience", "early_stopping_threshold", "sample_answers",
                            "sample_max_new_tokens", "nan_policy", "oom_recovery", "keep_awake"),
    "Advanced": ("device", "attn_implementation", "adam_epsilon", "int8_threshold", "trust_remote_code",
                 "allow_pickle", "deepspeed"),
}
PROBE_TIP = (f"Train {PROBE_STEPS} steps of this config to measure its time per step, how long the full run will "
             "take and, on a GPU, its real peak memory beside the estimate. Nothing is saved; if the micro-batch "
             "doesn't fit, the probe finds the one that does.")
# Keys with a widget of their own (model picker, method combo, precision grid).
OWN_WIDGETS = ("model", "method", "load_in", "mixed_precision")


# A CPU-training worker saturates every core; at this niceness it still gets ~90% of the
# CPU while the GUI gets the few milliseconds it needs per frame (docs/ui-stall.md).
CPU_TRAINING_NICE = 10
OTHERS_STEP = 128 << 20
"""Estimate again when the memory other programs hold on the GPU moved by this much."""


def cpu_training_env() -> dict[str, str]:
    """Leave one core to the window when the worker trains on the CPU.

    torch's CPU kernels use a thread per core; with every core busy the GUI thread waits for
    the scheduler (stalls of 30-60 ms on 2 cores). One thread fewer cost the demo run nothing
    measurable and brought the UI's p99 stall from ~10 ms to ~2.5 ms (docs/ui-stall.md). A
    thread count the user set (``OMP_NUM_THREADS``) is kept.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) - 1))}


def preset_path(name: str) -> Path:
    return presets_dir() / f"{name}.yaml"


def override_text(key: str, value: Any) -> str:
    """A value as ``--key VALUE`` text that ``engine.config.parse_override`` reads back exactly:
    a text as typed where it reads back so (``--run_name 'my run'``, not ``"'my run'"``)."""
    if isinstance(value, str) and parse_override(key, value) == value:
        return value  # an empty text too: shell-quoted as '', read back as empty
    if isinstance(value, float):
        text = format_number(value)
        if yaml.safe_load(text) == value:
            return text
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    return text


def shell_quote(text: str) -> str:
    """Quote for a POSIX shell; prefer "..." when the text holds single quotes (YAML's 'no')."""
    if "'" in text and not any(c in text for c in '"$`\\!'):
        return f'"{text}"'
    return shlex.quote(text)


TRY_TIP = "Open the trained adapter in the Adapters playground"
COMPARE_TIP = ("Score the trained model and its base on the run's held-out records, side by side, and read their "
               "answers (Adapters area, Compare on data)")


class TrainArea(QWidget):
    """Choose, check, run, watch, fix and resume a fine-tuning run."""

    sig_run_finished = Signal(dict)
    """A run ended (its finished event, with output_dir)."""
    sig_try_adapter = Signal(str)
    """Open a finished run's adapter in the Adapters playground: the ``final`` folder."""
    sig_audit_run = Signal(str)
    """Audit a finished run's records (the Runs area's Hardest records): the run folder."""
    sig_compare_adapters = Signal(list)
    """Compare a finished run's model with its base on data: ``[final folder]``."""

    sig_open_line = Signal(str, int)
    """Show a record in the Dataset area: its file and line (one a run left out)."""
    sig_queued = Signal(int)
    """Runs were added to the queue (how many)."""

    # ---- Public API
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("TrainArea")
        self.config_model = ConfigModel(self)
        self.editors: dict[str, FieldEditor] = {}
        self.advisor = Advisor()
        self.run = RunClient(self)
        self.estimator = EstimateScheduler(self)
        # The records' lengths for the estimate with the data: a process of their own, so measuring
        # a large dataset never holds up the live estimate.
        self.data_lengths = DataLengthsScheduler(self)
        self._data_key: tuple | None = None  # data_inputs() of the lengths asked for last
        self._data: dict | None = None       # their answer (DataLengths.to_dict()), once it came
        # The GPU now (nvidia-smi every few seconds while this area shows): memory other programs
        # hold is memory a run can't have, so the estimate's verdict judges what they leave.
        self.gpu_monitor = GpuMonitor(parent=self)
        self._gpu_others: tuple[int, list] | None = None  # (bytes, processes) of the last reading
        self._calls = BackgroundCalls(self, max_threads=1)
        self.env: Any = None
        self.estimate: Any = None
        self.run_dir: str | None = None      # the run being watched, or the last one
        self._probing = False                # the run being watched is a probe (engine/probe.py)
        self._following = False              # the run being watched was started by the queue
        self._promote: Any = None            # the `runs promote` child of "Use the best checkpoint"
        self._before_probe: str | None = None  # run_dir before the probe: Resume still means that run
        self.last_finished: dict | None = None
        self.notifications: list[tuple[str, str]] = []
        self._base_path: Path | None = None  # the YAML that "Copy as command" starts from
        self._base_values: dict[str, Any] = {}
        self._started_at: float | None = None
        self._max_steps = 0
        self._progress_shown = 0.0
        self._resume_point: Any = None  # engine.resume.ResumePoint of run_dir, read when the run changes
        self._resume_config: dict = {}  # run_dir's run.yaml, read with it
        self._tokens_checked: tuple | None = None  # the settings the format-token check last ran for
        self._tokens_timer = QTimer(self)
        self._tokens_timer.setSingleShot(True)
        self._tokens_timer.setInterval(400)
        self._tokens_timer.timeout.connect(self._check_format_tokens)
        self._lr_noted: tuple | None = None  # the (method, learning rate) the advice last spoke of
        self._lr_timer = QTimer(self, singleShot=True, interval=400)  # once typing in the field pauses
        self._lr_timer.timeout.connect(self._note_learning_rate)
        # The run line's text before Start was refused, and the refusal it shows now (see _say_refused).
        self._line_before_refusal: str | None = None
        self._refusal_line: str | None = None
        self._split_before_answers: list[int] = []  # the plots' and tabs' heights before Answers took room
        # What the estimate found the form's config can't do with its model (a ConfigError the run would
        # stop at once the model is loaded): said at its field and in the banner, and Start waits for it.
        self._model_problem: ConfigError | None = None

        self._build()
        self._connect()
        self.apply_preset("demo")
        self._calls.submit("env", detect_environment_isolated)
        self._on_config_changed({"*"})

    def config(self) -> RunConfig:
        """The form's run config (raises ``ConfigErrors`` naming each bad key)."""
        return self.config_model.config()

    def set_config(self, cfg: RunConfig) -> None:
        self.config_model.set_config(cfg)

    def apply_preset(self, name: str) -> None:
        """Load a preset's recipe; keeps the chosen model and dataset (except for the demo)."""
        path = preset_path(name)
        try:
            cfg = RunConfig.load(path)
        except ConfigErrors as e:
            self._show_banner(f"Preset {name} is broken: {e.message}")
            return
        values = cfg.to_dict()
        if name != "demo" and self._base_path is not None:
            current = self.config_model.values()
            values.update({k: current[k] for k in KEEP_ON_PRESET})
        self.config_model.update(values)
        self._set_base(path)
        index = self.preset_combo.findData(name)
        if index >= 0:
            self.preset_combo.setCurrentIndex(index)

    def use_data_files(self, train_file: str, eval_file: str) -> None:
        """Train on these files (the Dataset area's Split… "Train on these"): the dataset and the eval
        file, every record of the first training; the form shows where they went."""
        self.config_model.update({"dataset": train_file, "eval_dataset": eval_file, "eval_split": 0.0})
        editor = self.editors.get("dataset")
        if editor is not None:
            QTimer.singleShot(0, lambda: self.form_scroll.ensureWidgetVisible(editor, 0, 40))

    def remember_form(self) -> None:
        """Keep the form's values for the next start (the main window calls this as it closes)."""
        try:
            text = json.dumps(self.config_model.values())
        except (TypeError, ValueError):
            return  # a value JSON can't hold: the next start shows the preset rather than half a form
        studio_settings().setValue(FORM_KEY, text)
        # The run Resume continues (not a probe's throwaway folder), so Resume still works next time.
        studio_settings().setValue(LAST_RUN_KEY, self.run_dir or "")

    def restore_form(self) -> bool:
        """Put back the form as it was when the app last closed (what the researcher set up, their
        dataset and eval file included; a file gone since is said beside its field). False when
        there is none: the demo preset stays."""
        values, _ = kept_dict(FORM_KEY)
        if values is None:
            return False
        known = self.config_model.values()
        self.config_model.update({k: v for k, v in values.items() if k in known})
        self.log.append("the form is as it was when Finetune Studio last closed")
        last = studio_settings().value(LAST_RUN_KEY, "")
        if isinstance(last, str) and last and not self.run_dir and (Path(last) / "run.yaml").is_file():
            self.run_dir = last  # Resume continues it, as before the restart (if it can be resumed)
            self._set_base(Path(last) / "run.yaml")
            self._update_buttons(run_changed=True)
            self.log.append(f"the last run here was {Path(last).name}")
        return True

    def apply_fix(self, changes: dict[str, Any]) -> None:
        """Apply run-config changes (from the advisor or the gauge) to the form."""
        changes = {k: v for k, v in changes.items() if k in self.config_model.values() and v is not None}
        self.config_model.update(changes)
        self.log.append("applied to the run config: " + ", ".join(f"{k} = {v}" for k, v in changes.items()))

    def load_config_file(self, path: str | Path) -> bool:
        """Open a run config YAML (or a run folder's run.yaml) into the form."""
        path = Path(path)
        if path.is_dir():
            path = path / "run.yaml"
        try:
            cfg = RunConfig.load(path)
        except ConfigErrors as e:
            self._show_banner(f"Could not open {path}:\n{e.message}")
            return False
        run_folder = (path.parent / "summary.json").exists()
        if run_folder:
            # A finished run's config: Start makes a new run from it, in a folder of its own;
            # Resume continues that run with the form (after a fix, or with a larger max_steps).
            cfg = cfg.replace(output_dir="", run_name="")
        self.config_model.set_config(cfg)
        self._set_base(path)
        self.log.append(f"opened run config {path}")
        if run_folder and not self.run.is_active():  # never retarget the run being watched
            self.run_dir = str(path.parent)
            self._update_buttons(run_changed=True)
        return True

    def save_config_file(self, path: str | Path) -> Path:
        """Write the form's config as commented YAML (machine-specific problems are allowed)."""
        cfg = self.config_model.config_ignoring_machine()
        if cfg is None:
            raise ConfigErrors([])  # the banner already lists the problems
        written = cfg.save(path)
        self._set_base(Path(path))
        return written

    def command_line(self) -> str:
        """The ``finetune-studio train RUN.yaml --key value ...`` line for the form's config."""
        base = self._base_path or preset_path("demo")
        current = self.config_model.values()
        parts = ["finetune-studio", "train", shell_quote(str(base))]
        given = {k: v for k, v in current.items() if k not in self._base_values or self._base_values[k] != v}
        try:
            # A key the YAML leaves out takes the method's default there (method: full trains at 2e-5):
            # one the form holds at another value is given too, so the line trains what the form shows.
            read = RunConfig.load(base, given).to_dict()
            given.update({k: v for k, v in current.items() if read.get(k) != v})
        except (ConfigErrors, OSError):
            pass
        for key, value in current.items():
            if key not in given:
                continue
            text = override_text(key, value)
            if text.startswith("-"):
                parts.append(f"--{key}={shell_quote(text)}")
            else:
                parts += [f"--{key}", shell_quote(text)]
        return " ".join(parts)

    def copy_command(self) -> str:
        line = self.command_line()
        QGuiApplication.clipboard().setText(line)
        self.log.append(f"copied: {line}")
        return line

    def start_run(self, *, resume: bool = False, run_dir: str | Path | None = None, probe: bool = False) -> bool:
        """Start training the form's config (or resume ``run_dir`` with it, or probe it: a few
        steps in a folder of their own, saving nothing); returns at once."""
        if self.run.is_active():
            self._show_banner("A run is already in progress; stop it first.")
            return False
        button = "Resume" if resume else "Probe" if probe else "Start"
        self.config_model.recheck_files()  # a dataset saved or removed since the form last changed
        try:
            cfg = self.config_model.config()
        except ConfigErrors as e:
            self._on_config_changed(set())  # shows the problems in the banner
            self._say_refused(_refusal_line(e.errors, button))
            return False
        if self._model_problem is not None:  # Start pressed before the button followed the estimate
            self._on_model_problem(self._model_problem.to_dict())
            self._say_refused(_refusal_line([self._model_problem], button))
            return False
        from engine.train import missing_inputs

        # A model folder that isn't there (or was removed since it was picked) is refused here, as Queue and
        # `train` refuse it, not by a worker that loads libraries for seconds and then fails.
        missing = missing_inputs(cfg)
        if self._refuse_missing(missing, "Not started"):
            self._say_refused(_refusal_line(missing, button))
            return False
        other = self._other_live_run()
        if other is not None and not self._ask_start_beside(other):
            self._show_banner(f"Not started: {other} is training on this machine. Queue ▸ Add this run trains "
                              "this one after it.")
            self._say_refused(f"Not started: {other} is training on this machine.")
            return False
        if resume:
            run_dir = str(run_dir or self.run_dir or "")
            if not run_dir:
                self._show_banner("Nothing to resume: no run folder.")
                self._say_refused("Nothing to resume: no run folder.")
                return False
            from engine.runs import read_metrics, read_run_config

            # The form's run_name is for new runs (empty once a run's config is opened): the run keeps its own.
            cfg = cfg.replace(output_dir=run_dir,
                              run_name=cfg.run_name or str(read_run_config(Path(run_dir)).get("run_name") or ""))
            self.plots.load_metrics(read_metrics(Path(run_dir)))
        else:
            self.plots.clear()
            self._before_probe = self.run_dir if probe else None
            self.run_dir = None if probe else cfg.output_dir or None
        self._probing = probe
        self._following = False
        self.advisor.reset(cfg.learning_rate)
        self.advisor_panel.clear()
        self.last_finished = None
        self._show_after_run(False)
        self._max_steps = 0
        self._started_at = time.time()
        self.log.append(("resuming " + run_dir if resume else f"probing ({PROBE_STEPS} steps, nothing saved)"
                         if probe else "starting a new run") + f": {cfg.method} on {cfg.model}")
        remember_model(cfg.model)
        on_cpu = cfg.device == "cpu" or self.env is None or not self.env.cuda
        self.run.start(cfg, resume=resume, nice=CPU_TRAINING_NICE if on_cpu else None,
                       env=cpu_training_env() if on_cpu else None, probe_steps=PROBE_STEPS if probe else 0)
        self.progress.setRange(0, 0)  # busy until the worker reports its step count
        self._line_before_refusal = self._refusal_line = None
        self.progress_label.setText("Starting the worker (loading libraries, model and data)…")
        window = self.window()
        if hasattr(window, "statusBar"):  # not the last run's "finished" line for 30 s more
            window.statusBar().showMessage(("Probing " if probe else "Resuming " if resume else "Training ")
                                           + f"{cfg.method} on {Path(cfg.model).name or cfg.model}…", 10_000)
        self._update_buttons()
        return True

    def queue_run(self, grid: str = "") -> int:
        """Queue the form's config, or one run per point of ``grid`` (``"learning_rate=1e-4,3e-4;
        lora_r=8,16"``). Returns how many runs were queued (0: the banner says why)."""
        from engine.runqueue import RunQueue, advice_for, parse_grid
        from engine.train import missing_inputs

        q = RunQueue()
        notes: list[str] = []
        try:
            points = parse_grid([part.strip() for part in grid.replace("\n", ";").split(";") if part.strip()],
                                notes=notes)
        except ConfigErrors as e:
            self._show_banner("Not queued: " + "; ".join(x.message for x in e.errors))
            return 0
        self.config_model.recheck_files()  # as Start: a data file saved or removed since the form last changed
        try:
            # A point's own values decide: the form's missing dataset doesn't count when the grid gives
            # every point one (each point's files are checked below, with the point).
            cfg = self.config_model.config(files_elsewhere=points)
        except ConfigErrors:
            self._on_config_changed(set())  # shows the problems in the banner
            return 0
        problem = self._model_problem
        if problem is not None and problem.key not in points and "model" not in points:
            # The estimate found it (freeze_trainable_layers past the model's layers): each run would stop at it.
            self._on_model_problem(problem.to_dict())
            self._show_banner(f"Not queued: {problem.message}")
            return 0
        # As `queue add`: a run whose model or data files aren't there is refused now, not failed later,
        # unattended. The form's own (a key the grid doesn't set) is said beside its field too, as Start does.
        if self._refuse_missing([x for x in missing_inputs(cfg) if x.key not in points], "Not queued"):
            return 0
        try:
            # A grid point's (dataset=a.jsonl,b.jsonl) is said with the point, as the CLI says it.
            # A point over methods takes what picking its method in the form would (qlora: nf4, full: 2e-5).
            added = q.add(cfg, grid=points, check=missing_inputs,
                          fill=lambda point: switch_changes(cfg.to_dict(), point["method"], self.env,
                                                            keep=point) if "method" in point else {})
        except ConfigError as e:
            errors = e.errors if isinstance(e, ConfigErrors) else [e]  # a lone problem is raised as itself
            self._show_banner("Not queued: " + "; ".join(x.message for x in errors))
            return 0
        except StudioError as e:
            self._show_banner(f"Not queued: {e}")
            return 0
        self._show_banner("")
        pending = len(q.pending())
        names = ", ".join(e.name for e in added[:4]) + (f" and {len(added) - 4} more" if len(added) > 4 else "")
        state = "the queue is training" if q.runner_pid() else "start it in Runs › Queue"
        notes += advice_for(added, short=True)  # a far learning rate: said now, the queue trains unattended
        said = "".join(f" Note: {n}" + ("" if n.endswith(".") else ".") for n in notes)  # a value given twice is queued once
        self.progress_label.setText(f"Queued {names} ({pending} pending; {state}).{said}")
        self.log.append(f"queued {len(added)} run(s): {names}{said}")
        self.sig_queued.emit(len(added))
        return len(added)

    def follow_run(self, path: str | Path) -> bool:
        """Show a run that trains without this window (one the queue started): its plots,
        progress and Stop/Save now. The form is left as it is. False when busy."""
        if self.run.is_active():
            return False
        path = Path(path)
        self._watch(path, time.time(), following=True)
        self.log.append(f"following {path.name} from the queue (the form keeps your config; the run's own is "
                        "its run.yaml)")
        self.progress_label.setText(f"Following {path.name} from the queue…")
        return True

    def _watch(self, path: Path, started_at: float, *, following: bool) -> None:
        """Show a live run this window did not start: plots and progress from its events."""
        self.run_dir = str(path)
        self.plots.clear()
        self.advisor_panel.clear()
        self.last_finished = None
        self._show_after_run(False)
        self._probing = False
        self._following = following
        self._started_at = started_at
        self.run.attach(path)
        self.progress.setRange(0, 0)
        self._update_buttons(run_changed=True)

    def _on_sweep(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        text, ok = QInputDialog.getText(
            self, "Queue a sweep", "One run per value, every combination; keys apart with ';'\n"
            "e.g. learning_rate=1e-4,3e-4; lora_r=8,16", text="learning_rate=1e-4,2e-4,5e-4")
        if ok and text.strip():
            self.queue_run(text)

    def resume_run(self, path: str | Path) -> bool:
        """Resume a stopped or interrupted run from its last checkpoint (the Runs area's Resume)."""
        path = Path(path)
        if self.run.is_active():
            self._show_banner("A run is already in progress; stop it before resuming another.")
            return False
        from engine.resume import resume_point, resume_verdict

        point = resume_point(path)
        verdict = resume_verdict(point)
        # A run that could continue but whose run.yaml can't be read is no "nothing to resume": the load
        # below says what is wrong with the file, where.
        if not verdict.ok and not (point.config_problem and
                                   resume_verdict(dataclasses.replace(point, config_problem=None)).ok):
            self._show_banner(f"Nothing to resume in {path.name}: {verdict.reason}")
            self._say_refused(f"Nothing to resume in {path.name} (see above).")
            return False
        try:
            cfg = RunConfig.load(path / "run.yaml")
        except ConfigErrors as e:
            self._show_banner(f"Can't resume {path.name}: {e.message}")
            self._say_refused(f"Not resumed: {path.name}'s run config has problems (see above).")
            return False
        self.config_model.set_config(cfg.replace(output_dir="", run_name=""))
        self._set_base(path / "run.yaml")
        self.run_dir = str(path)
        return self.start_run(resume=True, run_dir=path)

    def stop_run(self) -> None:
        if self.run.is_active():
            self.run.stop()
            self.progress_label.setText("Stopping after this step, with a checkpoint…")
            self._update_buttons()

    def save_now(self) -> None:
        if self.run.is_active() and self.run.save():
            self.log.append("asked the worker to save a checkpoint now")

    def reattach_running(self) -> str | None:
        """Follow a run that kept going after the app closed; returns its folder."""
        from engine.runqueue import RunQueue
        from engine.runs import list_runs

        if self.run.is_active():
            return None
        live = [r for r in list_runs() if r.status == "running"]
        if not live:
            return None
        r = live[0]
        current = RunQueue().current()
        if current is not None and current.run_dir == str(r.path):  # the queue's run: the form stays yours
            self.follow_run(r.path)
            return str(r.path)
        try:
            cfg = RunConfig.load(r.path / "run.yaml")
            self.config_model.set_config(cfg.replace(output_dir="", run_name=""))
            self._set_base(r.path / "run.yaml")
        except ConfigErrors:
            pass
        self._watch(r.path, r.started or time.time(), following=False)
        self.log.append(f"re-attached to the running run {r.path}")
        if len(live) > 1:
            self.log.append("other runs are still running: " + ", ".join(x.name for x in live[1:]), "warning")
        self.progress_label.setText(f"Re-attached to {r.name}; replaying its events…")
        return str(r.path)

    def maybe_close(self) -> bool:
        """The window is closing: ask what to do with a live run. False = don't close."""
        if not self.run.is_active():
            return True
        if self._following:  # the queue's run: the queue goes on without the window, as it was started to
            self.run.detach()
            return True
        choice = self._ask_close_choice()
        if choice == "cancel":
            return False
        if choice == "stop":
            self.run.stop()
        self.run.detach()
        return True

    def shutdown(self) -> None:
        self.gpu_monitor.shutdown()
        self.run.shutdown()
        self.estimator.shutdown()
        self.data_lengths.shutdown()
        cancel_detection()
        self._calls.wait(30_000)
        self.model_picker.wait(30_000)

    def wait_ready(self, msecs: int = 60_000) -> bool:
        """Block (processing events) until the GPU is detected, the model described, the records
        measured and the estimate current. For tests and screenshots; the GUI itself never waits."""
        deadline = QDeadlineTimer(msecs)
        while self.env is None or (self.model_picker.info is None and self.model_picker.problem.isHidden()):
            if deadline.hasExpired():
                return False
            QApplication.processEvents()
            self._calls.wait(10)
            self.model_picker.wait(10)
        # The estimate, then the records' lengths (measured once it is in), then the estimate with them.
        return (self.estimator.wait(max(deadline.remainingTime(), 1))
                and self.data_lengths.wait(max(deadline.remainingTime(), 1))
                and self.estimator.wait(max(deadline.remainingTime(), 1)))

    def prepare_screenshot(self) -> None:
        self.wait_ready(60_000)

    def on_shown(self) -> None:
        pass

    # ---- Building
    def _build(self) -> None:
        m = self.config_model
        # Top bar: presets, files, command, run controls.
        self.preset_combo = ElidedComboBox()
        for name, label in PRESETS.items():
            if preset_path(name).exists():
                self.preset_combo.addItem(label, name)
        self.preset_combo.setToolTip("A starting recipe; your model and dataset are kept")
        self.preset_button = QPushButton("Apply")
        self.preset_button.setToolTip("Apply the preset's method and hyperparameters to the form")
        # The config's file actions share one menu button, so the top bar fits a 1024-px window
        # with the run controls on it.
        self.open_action = QAction("Open…", self)
        self.open_action.setToolTip("Load a run config YAML")
        self.save_action = QAction("Save…", self)
        self.save_action.setToolTip("Save the run config as commented YAML")
        self.command_action = QAction("Copy as command", self)
        self.command_action.setToolTip("Copy the exact `finetune-studio train` line for this config")
        config_menu = QMenu(self)
        config_menu.setToolTipsVisible(True)
        for action in (self.open_action, self.save_action, self.command_action):
            config_menu.addAction(action)
        self.config_button = QPushButton("Config")
        self.config_button.setToolTip("Open or save the run config as YAML, or copy it as a command line")
        self.config_button.setMenu(config_menu)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("startButton")
        self.start_button.setStyleSheet("QPushButton#startButton { font-weight: bold; padding: 4px 18px; }")
        self.start_button.setToolTip("Start training this config in a worker process")
        self.probe_button = QPushButton("Probe")
        self.probe_button.setToolTip(PROBE_TIP)
        self.queue_action = QAction("Add this run", self)
        self.queue_action.setToolTip("Queue the form's run as it is now, to train after the runs before it")
        self.sweep_action = QAction("Add a sweep…", self)
        self.sweep_action.setToolTip("Queue one run per value of one or more keys (every combination), "
                                     "e.g. learning_rate=1e-4,3e-4; lora_r=8,16")
        queue_menu = QMenu(self)
        queue_menu.setToolTipsVisible(True)
        queue_menu.addAction(self.queue_action)
        queue_menu.addAction(self.sweep_action)
        self.queue_button = QPushButton("Queue")
        self.queue_button.setToolTip("Line this run, or a sweep of it, up in the queue (Runs › Queue): they "
                                     "train one after another, also with the window closed")
        self.queue_button.setMenu(queue_menu)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the last run from its newest checkpoint, with the form's "
                                      "settings (e.g. after applying a fix or raising max_steps)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and save a checkpoint")
        self.save_now_button = QPushButton("Save now")
        self.save_now_button.setToolTip("Save a checkpoint now and keep training")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        # Tighter than the default: at 1024 px the bar then has room for the preset's whole name.
        top.setSpacing(4)
        top.addWidget(QLabel("Preset"))
        top.addWidget(self.preset_combo)
        top.addWidget(self.preset_button)
        top.addSpacing(8)
        top.addWidget(self.config_button)
        top.addStretch(1)
        for b in (self.queue_button, self.probe_button, self.start_button, self.resume_button, self.stop_button,
                  self.save_now_button):
            top.addWidget(b)

        self.banner = QLabel("")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        keep_styled(self.banner, error_banner_style)
        self.banner.hide()

        # Left: the form.
        form_widget = QWidget()
        form_layout = QVBoxLayout(form_widget)
        form_layout.setContentsMargins(0, 0, 6, 0)
        form_layout.setSpacing(8)
        self.model_picker = ModelPicker(m)
        self.gpu_panel = GpuPanel()
        box = QGroupBox("Model and machine")
        lay = QVBoxLayout(box)
        lay.addWidget(self.model_picker)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        lay.addWidget(line)
        lay.addWidget(self.gpu_panel)
        form_layout.addWidget(box)

        self.method_picker = MethodPicker(m)
        self.editors.update(self.method_picker.editors)
        box = QGroupBox("Method")
        QVBoxLayout(box).addWidget(self.method_picker)
        form_layout.addWidget(box)

        self.precision_grid = PrecisionGrid(m)
        placed = set(OWN_WIDGETS) | set(self.editors) | {k for keys in SECTIONS.values() for k in keys}
        # A key added to RunConfig later still gets an editor (under Advanced) until it is placed.
        sections = {**SECTIONS, "Advanced": SECTIONS["Advanced"] + tuple(k for k in RunConfig.field_names()
                                                                         if k not in placed)}
        for title, keys in sections.items():
            box = QGroupBox(title)
            outer = QVBoxLayout(box)
            if title == "Precision and memory":
                outer.addWidget(self.precision_grid)
            form = QFormLayout()
            form.setContentsMargins(0, 0, 0, 0)
            for key in keys:
                editor = make_editor(m, key)
                self.editors[key] = editor
                label = QLabel(label_for(key))
                label.setToolTip(tooltip_for(key))
                form.addRow(label, editor)
            outer.addLayout(form)
            if title == "Precision and memory":
                self.effective_batch = QLabel("")
                self.effective_batch.setStyleSheet("color: palette(mid);")
                self.effective_batch.setWordWrap(True)
                outer.addWidget(self.effective_batch)
            form_layout.addWidget(box)
        form_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(form_widget)
        scroll.setMinimumWidth(400)
        self.form_scroll = scroll
        # Near the window's minimum width the form is wider than its pane: scroll, never cut a field.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)

        # Right: gauge, progress, plots, advice and log.
        self.gauge = VramGauge()
        # Untitled: the gauge's first line is its title ("GPU memory estimate"); a "Memory" over it said
        # the same again in 20 px that the pane lacked at 1360x860 after a run (it scrolled).
        gauge_box = QGroupBox()
        box_layout = QVBoxLayout(gauge_box)
        box_layout.setContentsMargins(9, 6, 9, 6)  # (Qt's 9 above and below left a run's pane scrolling 6 px)
        box_layout.addWidget(self.gauge)
        # Not Maximum: that capped the box at its size hint, which a wrapped label reckons at a wider
        # width than a 960- or 1024-px window's pane gives it, and cut the gauge's last line in half.
        gauge_box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("no run yet")
        self.progress.setTextVisible(True)
        self.progress_label = QLabel("No run yet. Press Start to train the form's config.")
        self.progress_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A finished run's line ends with its folder: wrapped, and never widening the right pane
        # (its one-line width squeezed the form on the left until its fields were clipped).
        self.progress_label.setWordWrap(True)
        policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # A new policy drops the height-for-width that setWordWrap set: without it the layout gave
        # the label the height of its text wrapped at its size hint's width, 3 lines for 1 or 2,
        # and the pane scrolled at 1360x860 after a run.
        policy.setHeightForWidth(True)
        self.progress_label.setSizePolicy(policy)
        self.try_button = QPushButton("Try it")
        self.try_button.setToolTip(TRY_TIP)
        self.try_button.hide()
        self.audit_button = QPushButton("Audit records")
        self.audit_button.setToolTip("Rank this run's records by how unlikely the trained model still finds their "
                                     "answers (the Runs area's Hardest records): the top ones are often annotation "
                                     "mistakes")
        self.audit_button.hide()
        self.compare_button = QPushButton("Compare with base")
        self.compare_button.setToolTip(COMPARE_TIP)
        self.compare_button.hide()
        self.gguf_button = QPushButton("Export GGUF…")
        self.gguf_button.setToolTip("Write the trained model (an adapter merged into its base) as one GGUF file for "
                                    "llama.cpp, Ollama and LM Studio, into the run folder")
        self.gguf_button.hide()
        self.after_run_buttons = [self.try_button, self.audit_button, self.compare_button, self.gguf_button]
        # On their own row, wrapping when the pane is narrow: beside the progress bar a
        # 1024-px window cut them to "mpare with ba" and "Export GGUF..".
        self.after_run_row = QWidget()
        after_row = FlowLayout(self.after_run_row)
        for button in self.after_run_buttons:
            after_row.addWidget(button)
        self.after_run_row.hide()
        self.plots = TrainPlots()
        self.advisor_panel = AdvisorPanel()
        self.log = LogConsole()
        self.tabs = QTabWidget()
        self.samples = SamplesPanel()
        self.tabs.addTab(self.advisor_panel, "Advice")
        self.tabs.addTab(self.samples, "Answers")
        self.tabs.addTab(self.log, "Log")
        self.lower_split = lower = _CompactSplitter(Qt.Orientation.Vertical)
        lower.sig_resized.connect(self._on_lower_resized)
        lower.addWidget(self.plots)
        lower.addWidget(self.tabs)
        lower.setStretchFactor(0, PLOTS_STRETCH)
        lower.setStretchFactor(1, 1)
        lower.setChildrenCollapsible(False)
        # The plots first: on a 720-pixel-high window the advice panel's share left the loss
        # plot ~90 pixels; advice is a few lines, and the splitter gives it more on demand.
        lower.setSizes([600, 90])
        # Enough for a card's first lines and its buttons (the panel scrolls the rest).
        self.tabs.setMinimumHeight(TABS_MIN_HEIGHT)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 0, 0, 0)
        right_layout.setSpacing(6)
        right_layout.addWidget(gauge_box)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.after_run_row)
        right_layout.addWidget(self.progress_label)
        right_layout.addWidget(lower, 1)
        # The plots and the advice keep readable minimum heights; on a short window the pane
        # scrolls instead of squeezing them (the loss plot was 40 px tall at 1024x700).
        self.right_scroll = QScrollArea()
        self.right_scroll.setWidgetResizable(True)
        self.right_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.right_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.right_scroll.setWidget(right)
        # Never narrower than its content plus the scroll bar: the form gives way first
        # (down to its own minimum), so the pane never scrolls sideways.
        self.right_scroll.setMinimumWidth(right.minimumSizeHint().width()
                                          + self.right_scroll.verticalScrollBar().sizeHint().width())

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(self.right_scroll)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([440, 760])
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addWidget(self.banner)
        layout.addWidget(split, 1)
        self._update_buttons()

    def forget_runs(self, paths: list[str]) -> None:
        """Runs deleted or pruned in the Runs area: Resume looks at what is left of them."""
        if self.run_dir and not self.run.is_active() and any(Path(p) == Path(self.run_dir) for p in paths):
            self._update_buttons(run_changed=True)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        # Back from the Dataset area (or another program), a dataset may have been saved or removed.
        super().showEvent(event)
        self._recheck_files()
        self._follow_gpu()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().hideEvent(event)
        self._follow_gpu()

    def _on_app_state(self, state: Qt.ApplicationState) -> None:
        if state == Qt.ApplicationState.ApplicationActive and self.isVisible():
            self._recheck_files()
        self._follow_gpu()

    def _follow_gpu(self) -> None:
        """Read the GPU every few seconds while this area shows in the active window, on a GPU
        machine; not otherwise (nvidia-smi wakes the driver)."""
        active = QGuiApplication.applicationState() == Qt.ApplicationState.ApplicationActive
        if self.env is not None and self.env.cuda and self.isVisible() and active:
            self.gpu_monitor.start(self.env.gpu_name)
        else:
            self.gpu_monitor.stop()

    def _on_gpu_reading(self, reading: dict | None) -> None:
        self.gpu_panel.set_reading(reading)
        others = (reading["others_bytes"], reading["others"]) if reading else None
        before = self._gpu_others[0] if self._gpu_others else 0
        now = others[0] if others else 0
        # Estimate again when what others hold changed by more than the estimate's own rounding
        # (a desktop's few MiB come and go every second).
        changed = abs(now - before) >= OTHERS_STEP or (others is None) != (self._gpu_others is None)
        self._gpu_others = others
        if changed:
            self._request_estimate()

    def _recheck_files(self) -> None:
        """A data file saved since (the Dataset area's annotator, another program): what the form says
        of it, and the records' lengths for the estimate with the data, which are measured again when
        its modification time or size changed (data_inputs)."""
        if self.config_model.recheck_files():
            return  # it said something new of them: the form re-estimates (and re-measures) as on any change
        cfg = self.config_model.config_ignoring_machine()
        if cfg is not None and data_inputs(cfg) != self._data_key:
            self._request_estimate()

    def _connect(self) -> None:
        self.config_model.sig_changed.connect(self._on_config_changed)
        self.gpu_monitor.sig_reading.connect(self._on_gpu_reading)
        QGuiApplication.instance().applicationStateChanged.connect(self._on_app_state)
        self.preset_button.clicked.connect(lambda: self.apply_preset(self.preset_combo.currentData()))
        self.open_action.triggered.connect(self._on_open)
        self.save_action.triggered.connect(self._on_save)
        self.command_action.triggered.connect(self.copy_command)
        self.start_button.clicked.connect(lambda: self.start_run())
        self.probe_button.clicked.connect(lambda: self.start_run(probe=True))
        self.queue_action.triggered.connect(lambda: self.queue_run())
        self.sweep_action.triggered.connect(self._on_sweep)
        self.resume_button.clicked.connect(lambda: self.start_run(resume=True))
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.save_now_button.clicked.connect(self.save_now)
        self.try_button.clicked.connect(self._on_try)
        self.compare_button.clicked.connect(
            lambda: self.run_dir and self.sig_compare_adapters.emit([str(Path(self.run_dir) / "final")]))
        self.audit_button.clicked.connect(lambda: self.run_dir and self.sig_audit_run.emit(str(self.run_dir)))
        self.gguf_button.clicked.connect(self._on_gguf)
        self.gauge.sig_fit_requested.connect(self._on_fit)
        self.gauge.sig_target_changed.connect(lambda _: self._request_estimate())
        self.estimator.sig_estimate.connect(self._on_estimate)
        self.estimator.sig_problem.connect(self._on_model_problem)
        self.estimator.sig_failed.connect(self.gauge.set_error)
        # The records are measured once the estimate process has answered: never before the first estimate.
        self.estimator.sig_failed.connect(lambda _: self.data_lengths.release())
        self.estimator.sig_slow.connect(self.gauge.set_updating)
        self.data_lengths.sig_lengths.connect(self._on_data_lengths)
        self.data_lengths.sig_failed.connect(self._on_data_failed)
        self._calls.sig_done.connect(self._on_background_done)
        self._calls.sig_failed.connect(self._on_background_failed)
        self.advisor_panel.sig_apply_fix.connect(self.apply_fix)
        self.advisor_panel.sig_action.connect(self._on_advice_action)
        self.advisor_panel.sig_open_line.connect(self.sig_open_line)
        self.advisor_panel.sig_count_changed.connect(
            lambda n: self.tabs.setTabText(0, f"Advice ({n})" if n else "Advice"))
        self.tabs.currentChanged.connect(self._on_tab_changed)
        r = self.run
        r.sig_launched.connect(self._on_launched)
        r.sig_started.connect(self._on_started)
        r.sig_steps.connect(self._on_steps)
        r.sig_eval.connect(self._on_eval)
        r.sig_checkpoint.connect(self._on_checkpoint)
        r.sig_samples.connect(self._on_samples)
        r.sig_warning.connect(lambda d: self._on_problem("warning", d))
        r.sig_error.connect(lambda d: self._on_problem("error", d))
        r.sig_recovered.connect(lambda d: self._on_problem("recovered", d))
        r.sig_log.connect(lambda text: self.log.append(text))
        r.sig_finished.connect(self._on_finished)

    # ---- Config state
    def _set_base(self, path: Path) -> None:
        try:
            self._base_values = RunConfig.load(path).to_dict()
            self._base_path = path.resolve()
        except ConfigErrors:
            self._base_values, self._base_path = {}, None

    def _on_config_changed(self, keys: set[str]) -> None:
        self._unsay_refused()  # the form changed: the banner's "Not started" goes, and the run line's with it
        self._model_problem = None  # the estimate asked for below says it again if it still holds
        values = self.config_model.values()
        if "eval_dataset" in keys and "eval_split" not in keys and values["eval_dataset"] \
                and values["eval_split"]:
            # Picking an eval file replaces the held-out share: the whole dataset trains.
            self.config_model.set("eval_split", 0.0)
            return
        split = self.editors.get("eval_split")
        if split is not None:
            split.setEnabled(not values["eval_dataset"] or bool(values["eval_split"]))
            split.set_note("The eval file is the evaluation data; every record of the dataset trains. Empty the "
                           "eval file to hold out a share of the dataset instead." if values["eval_dataset"] else "")
        ratio = self.editors.get("warmup_ratio")
        if ratio is not None:
            ratio.setEnabled(not values["warmup_steps"])
            ratio.set_note(f"Warm-up steps ({values['warmup_steps']}) replace the ratio." if values["warmup_steps"]
                           else "")
        if not keys or keys & {"method", "learning_rate"}:
            self._lr_timer.start()
        errors = self.config_model.errors()
        for key, editor in self.editors.items():
            editor.set_error(errors.get(key))
        # A failed run's "Config problem" card goes once its key is fixed in the form.
        for card_key in [c for c in self.advisor_panel.cards if c.startswith("config:")]:
            key = card_key.split(":")[1]
            if key and key in keys and key not in errors:
                self.advisor_panel.remove(card_key)
        if errors:
            lines = [f"• {label_for(k) + ' (' + k + ')' if k else 'Config'}: {_without_key(k, msg)}"
                     for k, msg in errors.items()]
            self._show_banner("This config can't run here yet:\n" + "\n".join(lines))
        else:
            self._show_banner("")
        values = self.config_model.values()
        try:
            eff = int(values["batch_size"]) * int(values["gradient_accumulation_steps"])
            self.effective_batch.setText(f"Effective batch: {eff} sequences per optimizer step")
        except (TypeError, ValueError):
            pass
        self._update_buttons()
        self._request_estimate()
        self._tokens_timer.start()

    def _note_learning_rate(self) -> None:
        """Say it, at the field and as advice with a fix, when the learning rate is far from the
        method's usual one (engine.methods.rate_note); the run warns the same. Checked once typing
        pauses; a card the user dismissed stays away until the method or the rate changes."""
        values = self.config_model.values()
        key = (values["method"], values["learning_rate"])
        note = rate_note(*key)
        editor = self.editors.get("learning_rate")
        if editor is not None:
            editor.set_warning(note["message"][:1].upper() + note["message"][1:] + "." if note else None)
        if self.run.is_active() or key == self._lr_noted:
            return  # the run's own warnings hold the panel; or this rate was said (or dismissed) already
        self._lr_noted = key
        self.advisor_panel.remove("warning:learning_rate")
        if note:
            self.advisor_panel.add_all(self.advisor.on_event("warning", note))

    def _check_format_tokens(self) -> None:
        """Before a run, in the estimate's child process: does the model know the special tokens its
        format writes? (Rows read from the weight files; the run checks again once it has loaded it.)"""
        cfg = self.config_model.config_ignoring_machine()
        if cfg is None:
            return
        key = (cfg.model, cfg.template, tuple(cfg.add_tokens), cfg.method, cfg.trust_remote_code)
        if key == self._tokens_checked:
            return
        self._tokens_checked = key

        process = self.estimator.process  # the GUI process never imports torch (docs/ui-stall.md)
        self._calls.submit("format_tokens", lambda: (key, process.format_tokens(cfg)))

    def _request_estimate(self) -> None:
        cfg = self.config_model.config_ignoring_machine()
        if cfg is None:
            self.estimator.cancel()
            self.gauge.set_error("fix the config problems listed above first")
            return
        self._follow_data(cfg)
        target = self.gauge.target_bytes()
        detected = bool(self.env is not None and self.env.cuda and target == self.env.gpu_total_bytes)
        self.estimator.request(cfg, target, self.env.gpu_name if detected else None, self._data,
                               self._gpu_others if detected else None)

    def _follow_data(self, cfg: RunConfig) -> None:
        """Ask for the records' lengths again when what they depend on changed (a few stat calls):
        the dataset, its format or file, the model, the template, loss_on, add_tokens or seq_len; a
        change of batch, rank or precision keeps them. Until they come, the estimate is at seq_len."""
        key = data_inputs(cfg)
        if key == self._data_key:
            return
        self._data_key, self._data = key, None
        self.gauge.set_data_measuring()
        self.data_lengths.request(key, cfg)

    def _on_data_lengths(self, key: tuple, lengths: dict) -> None:
        if key != self._data_key:
            return  # asked for an earlier form
        self._data = lengths
        self._request_estimate()  # milliseconds: now with the data

    def _on_data_failed(self, key: tuple, message: str) -> None:
        if key == self._data_key:
            self.gauge.set_data_failed(message)

    def _refuse_missing(self, problems: list[ConfigError], verb: str) -> bool:
        """Say each missing model or data file beside its field (the model under its picker) and in the
        banner, after ``verb`` ("Not started"); returns whether there was any."""
        for x in problems:
            if x.key == "model":
                self.model_picker.show_problem(x.message)
            elif x.key in self.editors:
                self.editors[x.key].set_error(x.message)
        if problems:
            self._show_banner(f"{verb}: " + "; ".join(x.message for x in problems))
        return bool(problems)

    def _say_refused(self, line: str) -> None:
        """The run line under the progress bar says Start (Probe, Resume) was refused, as the banner
        does: left at "No run yet. Press Start…" it read as if nothing had been tried. The line it
        replaces comes back when the form changes (:meth:`_unsay_refused`)."""
        if self._refusal_line is None or self.progress_label.text() != self._refusal_line:
            self._line_before_refusal = self.progress_label.text()
        self._refusal_line = line
        self.progress_label.setText(line)

    def _unsay_refused(self) -> None:
        """Put back the run line a refusal replaced, unless something else has been said there since."""
        if self._refusal_line is not None and self.progress_label.text() == self._refusal_line:
            self.progress_label.setText(self._line_before_refusal or "")
        self._line_before_refusal = self._refusal_line = None

    def _show_banner(self, text: str) -> None:
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def _update_buttons(self, *, run_changed: bool = False) -> None:
        active = self.run.is_active()
        valid = not self.config_model.errors() and self._model_problem is None
        if run_changed:  # reads the run folder: only when the run's state changed, not per keystroke
            from engine.resume import resume_point
            from engine.runs import read_run_config

            self._resume_point = resume_point(Path(self.run_dir)) if self.run_dir else None
            self._resume_config = read_run_config(Path(self.run_dir)) if self.run_dir else {}
        resumable, why = self._resume_state(active, valid)
        self.start_button.setEnabled(not active and valid)
        self.probe_button.setEnabled(not active and valid)
        self.probe_button.setToolTip(PROBE_TIP if valid else "Fix the problems listed above first")
        self.start_button.setToolTip("Start training this config in a worker process" if valid else
                                     "Fix the problems listed above first")
        self.resume_button.setEnabled(resumable)
        self.resume_button.setToolTip(why)
        self.stop_button.setEnabled(active)
        self.stop_button.setText("Kill…" if active and self.run.stop_requested else "Stop")
        self.save_now_button.setEnabled(active and not self.run.stop_requested)
        self.preset_button.setEnabled(not active)
        self.open_action.setEnabled(not active)

    def _resume_state(self, active: bool, valid: bool) -> tuple[bool, str]:
        """Whether Resume would continue the last run with the form's plan, and why (not)."""
        if active:
            return False, "A run is in progress"
        if self._resume_point is None or not self.run_dir:
            return False, ("No run to resume: Resume continues the last run started here, or the run whose "
                           "config you opened from the Runs area")
        from engine.resume import resume_verdict

        values = self.config_model.values()
        max_steps, epochs = values.get("max_steps"), values.get("num_epochs")
        verdict = resume_verdict(self._resume_point, max_steps=max_steps if isinstance(max_steps, int) else None,
                                 num_epochs=epochs if isinstance(epochs, (int, float)) else None)
        name = Path(self.run_dir).name
        if not verdict.ok:
            tip = f"{name}: {verdict.reason}"
            return False, tip + (" Raise max_steps in the form to continue it." if verdict.finished else "")
        if not valid:
            return False, f"{name} can be resumed; fix the problems listed above first"
        from engine.resume import fixed_on_resume

        changed = fixed_on_resume(self._resume_config, values)
        if changed:  # the engine refuses it too; said here before the worker starts
            said = ", ".join(f"{k} {before!r} → {after!r}" for k, before, after in changed)
            return False, (f"{name}: a resume can't change what its checkpoints hold ({said}). Set it back to "
                           "resume, or Start a new run with the new settings.")
        return True, f"{name}: {verdict.reason} Resume uses the form's settings (e.g. after applying a fix)."

    def _on_tab_changed(self, index: int) -> None:
        """Answers are read, not glanced at, and at their 180 px a record and a half showed (the
        plots' minimum heights filled the rest of the pane, which scrolled). While that tab is open
        the gauge folds to its header line, the plots keep the loss only (its eval points are the
        steps the answers were made at) and the tabs take the rest of the pane (:meth:`_fit_answers`);
        the gauge, the small plots and the split come back with Advice or Log."""
        reading = self.tabs.widget(index) is self.samples
        if reading != self.plots.diagnostics_shown:
            return
        split = self.lower_split
        self.gauge.set_folded(reading)
        if reading:
            self._split_before_answers = split.sizes()
            self.plots.show_diagnostics(False, ("Small plots hidden while Answers is open", "Small plots hidden"))
            split.setStretchFactor(0, 0)  # a taller window: more answers, not a taller loss plot
            self._fit_answers()  # and again once the folded gauge's room reaches the split (_on_lower_resized)
        else:
            self.plots.set_loss_min_height(None)
            self.plots.show_diagnostics(True)
            split.setStretchFactor(0, PLOTS_STRETCH)
            if sum(self._split_before_answers):  # (none before the pane was first laid out)
                split.setSizes(self._split_before_answers)

    def _fit_answers(self) -> None:
        """Split the pane's lower part for reading answers: the loss plot at its readable height and
        the Answers tab the rest; where that leaves the tab under ANSWERS_ROOM (a 640- or 700-px-high
        window), the loss plot gives way down to the small plots' height, and the tab takes that too."""
        split = self.lower_split
        room = sum(split.sizes())
        if not room:
            return
        give = LOSS_MIN_SIZE[1] - SMALL_MIN_SIZE[1]
        self.plots.set_loss_min_height(SMALL_MIN_SIZE[1])
        compact = self.plots.minimumSizeHint().height()
        plots = compact + give if room - compact - give >= ANSWERS_ROOM else max(compact, room - ANSWERS_ROOM)
        split.setSizes([plots, max(room - plots, TABS_MIN_HEIGHT)])

    def _on_lower_resized(self) -> None:
        if not self.plots.diagnostics_shown:  # Answers open: the window or the pane above it changed
            self._fit_answers()

    # ---- Slots: background jobs
    def _on_background_done(self, tag: str, result: Any) -> None:
        if tag == "env":
            self._set_environment(result)
        elif tag == "format_tokens":
            key, warning = result
            if key != self._tokens_checked or self.run.is_active():
                return  # the form changed since, or the run's own warnings hold the panel
            self.advisor_panel.remove("warning:untrained_tokens")
            if warning:
                self.advisor_panel.add_all(self.advisor.on_event("warning", warning))

    def _on_background_failed(self, tag: str, message: str, trace: str) -> None:
        if tag == "env":
            self.gpu_panel.set_error(message)
            self.log.append(trace, "error")
        elif tag == "format_tokens":
            # A model or template that can't be read: the model picker and the run say so.
            self.log.append(f"format-token check skipped: {message}")

    def _set_environment(self, env: Any) -> None:
        self.env = env
        self.gpu_panel.set_environment(env)
        self.gauge.set_detected_gpu(env.gpu_name if env.cuda else None, env.gpu_total_bytes if env.cuda else None)
        self._follow_gpu()
        self.plots.set_gpu_available(bool(env.cuda))
        self.config_model.set_environment(env)
        opt = self.editors.get("optimizer")
        if isinstance(opt, ChoiceEditor):
            from engine.precision import environment_errors

            for choice in opt.meta["choices"]:
                probe = RunConfig(optimizer=choice, load_in="fp32", mixed_precision="no", method="lora")
                errs = [e.message for e in environment_errors(probe, env) if e.key == "optimizer"]
                opt.set_item_enabled(choice, not errs, " ".join(errs))

    def _on_model_problem(self, problem: dict) -> None:
        """The estimate found that the config can't work with its model (``problem``: a ConfigError's
        ``to_dict()``): said beside the key's field and in the banner, in the words `finetune-studio
        estimate` and `train` use, and Start waits until the form changes. The config's own rules
        can't see it (it needs the model's structure: its layer count, its module names)."""
        key, message = problem.get("key") or "", problem.get("message") or ""
        self._model_problem = ConfigError(message, key=key or None, fix=problem.get("fix"), hint=problem.get("hint"))
        if key == "model":
            self.model_picker.show_problem(message)
        elif key in self.editors:
            self.editors[key].set_error(message)
        if not self.config_model.errors():  # else the banner lists those, and this one once they are fixed
            field = f"{label_for(key)} ({key})" if key else "Config"
            hint = problem.get("hint")
            self._show_banner(f"This config can't run with this model:\n• {field}: {_without_key(key, message)}"
                              + (f"\n  {hint}" if hint else ""))
        self._update_buttons()

    def _on_estimate(self, est: Any, latency_ms: float) -> None:
        self.estimate = est
        self.gauge.set_estimate(est)
        self.data_lengths.release()

    def _on_fit(self) -> None:
        suggestions = getattr(self.estimate, "suggestions", None) or []
        if not suggestions:
            return
        dialog = FitDialog(suggestions, self.gauge.target_bytes(), self, data=self.gauge.judged_data(),
                           seq_len=getattr(self.estimate, "seq_len", None))
        if dialog.exec():
            self.apply_fix(dialog.chosen_changes())

    # ---- Slots: the run
    def _on_launched(self, output_dir: str) -> None:
        self.run_dir = output_dir
        self.log.append(f"worker started; run folder {output_dir}")

    def _on_started(self, data: dict) -> None:
        ds = data.get("dataset") or {}
        self.advisor.on_event("started", data)
        self.run_dir = data.get("output_dir") or self.run_dir
        # A resumed run shows the answers it made before; a new one starts empty.
        self.samples.set_rows(read_samples(Path(self.run_dir)) if data.get("resumed") and self.run_dir else [])
        self.tabs.setTabText(self.tabs.indexOf(self.samples), "Answers")
        self.log.append(f"training {data.get('trainable_params', 0):,} of {data.get('total_params', 0):,} "
                        f"parameters on {data.get('device')}; {ds.get('train', '?')} train / "
                        f"{ds.get('eval', '?')} eval records" + (" (resumed)" if data.get("resumed") else ""))
        awake = data.get("keep_awake") or {}
        if awake.get("held"):
            self.log.append(f"keeping the computer awake until training ends ({awake.get('how')})")
        elif awake and not awake.get("needed", True):
            self.log.append(f"not keeping the computer awake: {awake.get('problem')}")
        self.progress_label.setText("Training started; waiting for the first step…")
        # Lay the x axes out now, while nothing else is drawn, rather than in the first
        # frame with data (max_steps 0 means epochs: the first step event says how many).
        max_steps = (data.get("config") or {}).get("max_steps")
        if isinstance(max_steps, int) and max_steps > 0 and not data.get("resumed"):
            self.plots.set_step_range(max_steps)
        self._update_buttons()

    def _on_steps(self, rows: list[dict]) -> None:
        if rows[-1].get("max_steps"):
            self.plots.set_step_range(int(rows[-1]["max_steps"]))
        self.plots.add_steps(rows)
        # Redraw now, with the progress and log updates of this batch, so the window
        # paints once per drain instead of once for the widgets and once for the plots.
        self.plots.redraw()
        self.advisor_panel.add_all(self.advisor.on_steps(rows))
        self.log.append_many([("info", f"step {r.get('step')}/{r.get('max_steps')} loss {r.get('loss', 0):.4f} "
                                       f"lr {r.get('lr', 0):.2e} grad {r.get('grad_norm') or 0:.3f} "
                                       f"{r.get('tokens_per_s', 0):.0f} tok/s") for r in rows])
        last = rows[-1]
        self._max_steps = int(last.get("max_steps") or self._max_steps or 0)
        if self._max_steps:
            if self.progress.maximum() != self._max_steps:
                self.progress.setFormat("%v / %m steps")
                self.progress.setRange(0, self._max_steps)
            value = min(int(last.get("step", 0)), self._max_steps)
            now = time.monotonic()
            # QProgressBar repaints synchronously when its text changes (~3 ms here), so
            # it moves at most 4 times a second; the label below says the exact step.
            if self.progress.value() != value and now - self._progress_shown >= 0.25:
                self._progress_shown = now
                self.progress.setValue(value)
        eta = last.get("eta_s")
        eta_text = f"ETA {_duration(eta)}" if eta is not None else "ETA –"
        stopping = " · stopping after this step…" if self.run.stop_requested else ""
        following = f"{Path(self.run_dir).name} (queued) · " if self._following and self.run_dir else ""
        self.progress_label.setText(
            f"{following}Step {last.get('step')} of {self._max_steps} · epoch {last.get('epoch', 0):.2f} · {eta_text} · "
            f"loss {last.get('loss', 0):.4f} · {last.get('tokens_per_s', 0):,.0f} tokens/s{stopping}")

    def _on_eval(self, data: dict) -> None:
        self.plots.add_eval(data)
        self.log.append(f"eval at step {data.get('step')}: eval_loss {data.get('eval_loss', 0):.4f}")

    def _on_samples(self, data: dict) -> None:
        self.samples.add(data)
        self.tabs.setTabText(self.tabs.indexOf(self.samples), f"Answers (step {data.get('step')})")
        self.log.append(f"sample answers at step {data.get('step')} ({data.get('time_s', 0):.1f} s)")

    def _on_checkpoint(self, data: dict) -> None:
        self.log.append(f"checkpoint saved at step {data.get('step')}: {data.get('path')}")
        self._update_buttons(run_changed=True)

    def _on_problem(self, kind: str, data: dict) -> None:
        level = {"warning": "warning", "error": "error", "recovered": "warning"}[kind]
        text = data.get("message", "")
        if data.get("hint"):
            text += f"\n  hint: {data['hint']}"
        self.log.append(f"{kind}: {text}", level)
        advice = self.advisor.on_event(kind, data)
        self.advisor_panel.add_all(advice)
        if advice and level == "error":
            self.tabs.setCurrentWidget(self.advisor_panel)

    def _whole_run_took(self) -> str:
        """" in 1 min 35 s (2 legs)": a resumed run's training time over all its legs, as the Runs
        area and ``runs list`` say it ("" when the run folder can't be read)."""
        from engine.runs import duration_text, run_info

        try:
            info = run_info(Path(self.run_dir)) if self.run_dir else None
        except (OSError, ValueError):
            return ""
        return f" in {duration_text(info)}" if info is not None and info.legs > 1 and info.duration_s else ""

    def _on_finished(self, data: dict) -> None:
        self.last_finished = data
        status = data.get("status", "?")
        self.run_dir = data.get("output_dir") or self.run_dir
        advice = self.advisor.on_event("finished", data)
        self.advisor_panel.add_all(advice)
        peak = data.get("peak_gpu_device_bytes") or data.get("peak_gpu_reserved_bytes")
        if peak:
            self.gauge.set_measured(int(peak), "(as nvidia-smi counts it)" if data.get("peak_gpu_device_bytes") else "")
        elif status in ("completed", "stopped"):
            self.gauge.set_measured(None, "The last run trained on the CPU: no GPU peak to compare.")
        final_loss = data.get("final_loss_mean")
        if not isinstance(final_loss, (int, float)):
            final_loss = data.get("final_loss")
        loss_text = f"; final loss {final_loss:.4f}" if isinstance(final_loss, (int, float)) else ""
        if isinstance(data.get("final_loss_mean"), (int, float)):
            # With logging_steps above 1 the window's logged losses cover more steps than their number.
            window = int(data.get("final_loss_window") or 10)
            steps = steps_in_mean(Path(self.run_dir), window) if self.run_dir else window
            loss_text += f" ({mean_of_last(window, steps).removeprefix('the ').removesuffix(chr(39) + 's')})"
        self._show_progress_end(status, data)
        took = f" in {format_duration(time.time() - self._started_at)}" if self._started_at else ""
        if not self._probing:
            took = self._whole_run_took() or took  # a resumed run: all its legs
        name = Path(self.run_dir).name if self.run_dir else "the run"
        report = data.get("probe") if isinstance(data.get("probe"), dict) else None
        if report is not None and status in ("completed", "stopped"):
            from engine.probe import format_probe

            lines = format_probe(report)
            key = next((ln for ln in lines if ln.startswith("full run")), lines[0])
            self.progress_label.setText(f"Probe {status}{took}, nothing saved. {key[0].upper()}{key[1:]}. "
                                        "The rest is under Advice.")
            self._notify("Probe finished", "; ".join(lines[:2]), ok=True)
            self.log.append(f"probe {status}{took}: " + "; ".join(lines))
            self.tabs.setCurrentWidget(self.advisor_panel)
            self._show_after_run(False)
            self._probing = False
            self.run_dir = self._before_probe  # Resume still means the last real run
            self._update_buttons(run_changed=True)
            self.sig_run_finished.emit(data)
            return
        if self._probing:  # a probe that failed: its folder is nothing to resume
            self._probing = False
            self.run_dir, probe_dir = self._before_probe, self.run_dir
            name = Path(probe_dir).name if probe_dir else "the probe"
        if status in ("completed", "stopped"):
            self.progress_label.setText(f"Run {status}{took}{loss_text}. Folder: {self.run_dir}")
            title = "Training finished" if status == "completed" else "Training stopped"
            self._notify(title, f"{name} {status}{loss_text}", ok=True)
        else:
            message = data.get("message") or (data.get("error") or {}).get("message") or "see Advice and Log"
            self.progress_label.setText(f"Run {status}: {message.splitlines()[0]}")
            self._notify("Training failed", f"{name}: {message.splitlines()[0]}", ok=False)
            self.tabs.setCurrentWidget(self.advisor_panel if self.advisor_panel.cards else self.log)
        self.log.append(f"run {status}{took}{loss_text}", "info" if status in ("completed", "stopped") else "error")
        final = Path(self.run_dir) / "final" if self.run_dir else None
        self._show_after_run(bool(final and status == "completed" and final.is_dir()))
        self._update_buttons(run_changed=True)
        self.sig_run_finished.emit(data)

    def _show_progress_end(self, status: str, data: dict) -> None:
        """The progress bar says how the run ended: "no run yet" after a run that failed
        while loading, or "3 / 40 steps" after one that failed at step 5, read as if nothing
        had gone wrong."""
        if status == "completed" and self._max_steps:
            self.progress.setRange(0, self._max_steps)
            self.progress.setValue(self._max_steps)
            self.progress.setFormat("%v / %m steps")
            return
        if self.progress.maximum() == 0 or not self._max_steps:  # never reported a step count
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat(f"{status} before the first step" if status != "completed" else status)
            return
        step = data.get("step")
        if isinstance(step, int) and 0 <= step <= self._max_steps:
            self.progress.setValue(step)  # the bar's own value may lag its last update by 0.25 s
        failed_at = (data.get("error") or {}).get("step")
        if status == "failed" and isinstance(failed_at, int):
            self.progress.setFormat(f"failed at step {failed_at} of %m")
        else:
            self.progress.setFormat(f"{status} at step %v of %m")

    def _show_after_run(self, visible: bool) -> None:
        """Try it, Audit records, Compare with base and Export GGUF: for a run that completed. Try it and
        Compare load its final/ as a whole model or a PEFT adapter: for a bottleneck adapter (Finetune
        Studio's own format) they are greyed, with the reason the Adapters area would give after switching."""
        for button in self.after_run_buttons:
            button.setVisible(visible)
        self.after_run_row.setVisible(visible)
        problem = None
        if visible and self.run_dir:
            from engine.adapters import final_problem

            problem = final_problem(Path(self.run_dir) / "final")
        for button, tip in ((self.try_button, TRY_TIP), (self.compare_button, COMPARE_TIP)):
            button.setEnabled(problem is None)
            button.setToolTip(tip if problem is None else f"Not for this run: {problem}")

    def open_gguf_dialog(self) -> GgufDialog | None:
        """The GGUF export of the finished run's final/ (None without one)."""
        final = Path(self.run_dir) / "final" if self.run_dir else None
        if final is None or not final.is_dir():
            return None
        return GgufDialog(str(final), Path(self.run_dir).name, parent=self)

    def _on_gguf(self) -> None:
        dialog = self.open_gguf_dialog()
        if dialog is not None:
            dialog.open()

    def _notify(self, title: str, message: str, ok: bool) -> None:
        self.notifications.append((title, message))
        notify(self, title, message, ok=ok)

    # ---- Slots: buttons
    def _on_stop_clicked(self) -> None:
        if not self.run.stop_requested:
            self.stop_run()
            return
        answer = QMessageBox.question(self, "Kill the worker?", "The run was asked to stop and is finishing "
                                      "its step and checkpoint. Kill it now? Progress since the last "
                                      "checkpoint is lost.")
        if answer == QMessageBox.StandardButton.Yes:
            self.run.kill()

    def _on_try(self) -> None:
        if self.run_dir:
            self.sig_try_adapter.emit(str(Path(self.run_dir) / "final"))

    def _on_advice_action(self, action: str) -> None:
        if action == "stop":
            self.stop_run()
        elif action == "resume":
            self.start_run(resume=True)
        elif action == "promote":
            self.promote_best()

    def promote_best(self) -> bool:
        """Make the last run's best-evaluated checkpoint its final/ (``runs promote`` in a child
        process: a full model's files take a while to copy)."""
        if not self.run_dir or self.run.is_active() or self._promote is not None:
            return False
        from gui.engine_process import run_engine

        run_dir = str(self.run_dir)
        self.log.append(f"making the best checkpoint of {Path(run_dir).name} its result")
        self._promote = run_engine(self, ["runs", "promote", run_dir, "--json"],
                                   lambda code, output: self._on_promoted(run_dir, code, output))
        return True

    def _on_promoted(self, run_dir: str, code: int, output: str) -> None:
        from gui.engine_process import cli_failure, json_message

        self._promote = None
        self.advisor_panel.remove("promote")
        if code == 0:
            text = json_message(output, "final/ now holds the best checkpoint")
            self.log.append(text)
            self.advisor_panel.add_all([Advice("ok", "The best checkpoint is the result", text + ". Try it, merge "
                                               "and export use it.", None, key="promoted")])
            self.sig_run_finished.emit({"output_dir": run_dir, "status": "promoted"})
        else:
            self.log.append(f"not promoted: {cli_failure(output, 'runs promote', code)}", "error")

    def _on_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open run config", str(presets_dir()),
                                              "Run configs (*.yaml *.yml);;All files (*)")
        if path:
            self.load_config_file(path)

    def _on_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save run config", "run.yaml", "Run configs (*.yaml *.yml)")
        if not path:
            return
        try:
            written = self.save_config_file(path)
        except ConfigErrors:
            QMessageBox.warning(self, "Can't save", "Fix the problems listed at the top first.")
            return
        self.log.append(f"saved run config {written}")

    @staticmethod
    def _other_live_run() -> str | None:
        """The name of a run training on this machine without this window (the queue's, or a
        terminal's), if any."""
        from engine.runs import list_runs

        return next((r.name for r in list_runs() if r.status == "running"), None)

    def _ask_start_beside(self, other: str) -> bool:
        """Start a second run beside ``other``? (tests replace this)."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Another run is training")
        box.setText(f"{other} is training on this machine. Start this run beside it?")
        box.setInformativeText("Both share the GPU: the memory estimate doesn't count the other run, so this one "
                               "may run out of memory, and both train slower. Queue ▸ Add this run trains it "
                               "after the other instead.")
        start = box.addButton("Start anyway", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is start

    def _ask_close_choice(self) -> str:
        """'stop', 'keep' or 'cancel' (tests replace this)."""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("A run is in progress")
        box.setText("Training is still running. Stop it, or keep it running in the background?")
        box.setInformativeText("A run kept running goes on without the window; Finetune Studio re-attaches "
                               "to it the next time it starts. A stopped run saves a checkpoint and can be "
                               "resumed later.")
        stop = box.addButton("Stop the run", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep it running", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        clicked = box.clickedButton()
        return "stop" if clicked is stop else "keep" if clicked is keep else "cancel"


class _CompactSplitter(QSplitter):
    """A splitter that asks for no more than its minimum: in a scroll area that sizes its
    widget by height-for-width (the wrapped labels), the plots' preferred heights made the
    pane scroll on every window; this way it takes the space left and scrolls only below
    the minimum."""

    sig_resized = Signal()
    """Its height changed (the window, or a widget above it in the pane)."""

    def sizeHint(self):  # noqa: N802 (Qt's name)
        return self.minimumSizeHint()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        if event.size().height() != event.oldSize().height():
            self.sig_resized.emit()


def _refusal_line(problems: list[ConfigError], button: str) -> str:
    """The run line after a refused Start: its first problem (the banner's first) with a path in it
    cut to its name (the banner and the field say it whole), as in: Not started: model 'llama-7b': no
    such folder. Fix it in the form, then press Start again."""
    first = problems[0].message.splitlines()[0].rstrip(".")
    first = re.sub(r"'((?:/|~|\.|[A-Za-z]:[\\/])[^']*)'",
                   lambda m: f"'{Path(m.group(1)).name or m.group(1)}'", first)
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    it = "it" if len(problems) == 1 else "them"
    return f"Not started: {first}{more}. Fix {it} in the form, then press {button} again."


def _without_key(key: str, message: str) -> str:
    """A config error after its field's label: "Learning rate (learning_rate): must be between…",
    not "…: 'learning_rate' must be between…" nor "…: 'ia3_target_modules': x matches no module…" (each
    line of it, when several problems share the key)."""
    if not key:
        return message
    return "\n".join(line.removeprefix(f"'{key}': ").removeprefix(f"'{key}' ") for line in message.split("\n"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


__all__ = ["TrainArea"]
