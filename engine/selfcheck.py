"""``finetune-studio --self-check [--json]``: does the installed app work on this machine?

Checks, in order: the embedded resources; the ML and GUI stack imports (with versions); torch,
CUDA and the GPU; bitsandbytes; the Qt xcb plugin's system libraries (only under a real X
display); the main window, built in a child process; and 3 LoRA training steps on the demo model,
in a child process. Every check that could crash (CUDA, bitsandbytes, Qt) runs in a child
process, so one native crash is reported as a failed row instead of killing the report, and the
engine process never imports Qt (the import-linter contract).

The exit status is 1 when any check fails; warnings (e.g. a CPU build on a machine with an
NVIDIA GPU) do not fail it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import __version__, paths

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STACK = ("torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "PySide6",
         "pyqtgraph", "gguf")
TRAIN_STEPS = 3
WINDOW_AREAS = ("dataset", "train", "adapters", "runs")  # the CLI's --screenshot --tab choices
INSTALL_INFO = "finetune-studio-install.env"  # written into the venv by install.sh / bootstrap.ps1

# Shared library (soname prefix) -> the Debian/Ubuntu package that ships it. Qt's own message for
# a missing xcb library names neither; see ../shared/notes/engineering.md ("Debian 12 packages for
# PySide6 6.12"): since Qt 6.5 xcb needs libxcb-cursor0, and offscreen rendering alone misses it.
DEBIAN_PACKAGES = {
    "libglib-2.0.so": "libglib2.0-0", "libgthread-2.0.so": "libglib2.0-0",
    "libGL.so": "libgl1", "libEGL.so": "libegl1", "libOpenGL.so": "libopengl0",
    "libxkbcommon.so": "libxkbcommon0", "libxkbcommon-x11.so": "libxkbcommon-x11-0",
    "libfontconfig.so": "libfontconfig1", "libfreetype.so": "libfreetype6",
    "libdbus-1.so": "libdbus-1-3", "libX11.so": "libx11-6", "libX11-xcb.so": "libx11-xcb1",
    "libxcb.so": "libxcb1", "libxcb-cursor.so": "libxcb-cursor0", "libxcb-icccm.so": "libxcb-icccm4",
    "libxcb-image.so": "libxcb-image0", "libxcb-keysyms.so": "libxcb-keysyms1",
    "libxcb-render-util.so": "libxcb-render-util0", "libxcb-shape.so": "libxcb-shape0",
    "libxcb-randr.so": "libxcb-randr0", "libxcb-xkb.so": "libxcb-xkb1",
    "libxcb-xinerama.so": "libxcb-xinerama0", "libxcb-xinput.so": "libxcb-xinput0",
    "libxcb-sync.so": "libxcb-sync1", "libxcb-xfixes.so": "libxcb-xfixes0",
    "libxcb-shm.so": "libxcb-shm0", "libxcb-render.so": "libxcb-render0",
    "libxcb-glx.so": "libxcb-glx0", "libSM.so": "libsm6", "libICE.so": "libice6",
}

# Runs in a child process: imports the stack one module at a time, printing a JSON line before
# and after each import, so that a native crash still names the module that caused it; then
# reports torch/CUDA facts and round-trips a tensor through bitsandbytes' 4-bit quantizer.
_PROBE = r"""
import importlib, json, sys, time
def emit(**kw):
    print(json.dumps(kw), flush=True)
mods = sys.argv[1:]
for name in mods:
    emit(start=name)
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(name)
        if name == "PySide6":
            importlib.import_module("PySide6.QtWidgets")  # loads the Qt shared libraries
        version = getattr(mod, "__version__", None)
        if version is None:  # gguf has none: ask the installed distribution
            try:
                from importlib.metadata import version as dist_version
                version = dist_version(name)
            except Exception:
                pass
        emit(module=name, ok=True, version=version,
             seconds=round(time.perf_counter() - t0, 2))
    except BaseException as e:
        emit(module=name, ok=False, error=f"{type(e).__name__}: {e}")
try:
    import torch
except BaseException:
    sys.exit(0)
facts = {"version": torch.__version__, "cuda_build": torch.version.cuda,
         "cuda_available": False, "devices": []}
try:
    facts["cuda_available"] = bool(torch.cuda.is_available())
    for i in range(torch.cuda.device_count() if facts["cuda_available"] else 0):
        p = torch.cuda.get_device_properties(i)
        facts["devices"].append({"name": p.name, "memory_bytes": p.total_memory,
                                 "capability": f"{p.major}.{p.minor}"})
    if facts["cuda_available"]:
        facts["bf16"] = bool(torch.cuda.is_bf16_supported())
        facts["cudnn"] = torch.backends.cudnn.version()
except BaseException as e:
    facts["cuda_error"] = f"{type(e).__name__}: {e}"
emit(torch=facts)
try:
    import bitsandbytes.functional as F
    device = "cuda" if facts["cuda_available"] else "cpu"
    x = torch.randn(64, 64, device=device, dtype=torch.float16 if device == "cuda" else torch.float32)
    q, state = F.quantize_4bit(x, quant_type="nf4")
    y = F.dequantize_4bit(q, state)
    err = ((x - y).abs().mean() / x.abs().mean()).item()
    emit(bnb={"device": device, "nf4_relative_error": err})
except BaseException as e:
    emit(bnb={"error": f"{type(e).__name__}: {e}"})
"""


@dataclass
class Check:
    """One row of the report."""

    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Report:
    """The whole self-check: header facts and the rows."""

    version: str
    python: str
    prefix: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "python": self.python, "prefix": self.prefix,
                "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def debian_package_for(soname: str) -> str | None:
    """The Debian/Ubuntu package that ships a shared library, e.g. ``libxcb-icccm.so.4``.

    Returns:
        The package name, or None when the library is not one Qt is known to need.
    """
    base = soname.split(".so")[0] + ".so"
    if base in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[base]
    match = re.fullmatch(r"(libxcb-[a-z-]+)\.so\.(\d+).*", soname)
    if match:  # Debian names xcb extension packages after the soname: libxcb-foo.so.N -> libxcb-fooN
        return f"{match[1]}{match[2]}"
    return None


def missing_libraries_hint(libs: list[str]) -> str:
    """A line that names the packages to install for ``libs`` (Debian/Ubuntu names)."""
    packages = sorted({p for p in map(debian_package_for, libs) if p})
    unknown = [lib for lib in libs if not debian_package_for(lib)]
    parts = []
    if packages:
        parts.append(f"install them with: sudo apt-get install {' '.join(packages)}")
    if unknown:
        parts.append(f"find the package of {', '.join(unknown)} with: apt-file search <library>")
    return "; ".join(parts)


def xcb_plugin_path() -> Path | None:
    """PySide6's ``libqxcb.so``, located without importing PySide6 (so no Qt in this process)."""
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(list(spec.submodule_search_locations)[0]) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def ldd_missing(library: Path, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[str]:
    """Sonames that ``ldd`` reports as "not found" for ``library`` (each once, in order)."""
    out = run(["ldd", str(library)], capture_output=True, text=True, timeout=60).stdout
    missing: list[str] = []
    for line in out.splitlines():
        if "not found" in line:
            soname = line.split()[0]
            if soname not in missing:
                missing.append(soname)
    return missing


def uses_real_display(env: dict[str, str] | None = None) -> bool:
    """True when Qt would open the xcb platform: Linux, DISPLAY set, no offscreen/other override."""
    env = os.environ if env is None else env
    qpa = env.get("QT_QPA_PLATFORM", "")
    return sys.platform.startswith("linux") and bool(env.get("DISPLAY")) and qpa in ("", "xcb")


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, or None when the file is not a PNG."""
    try:
        head = path.read_bytes()[:24]
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _engine_command(*args: str) -> list[str]:
    # `python -m engine` is the CLI of *this* interpreter's install, whatever PATH holds.
    return [sys.executable, "-m", "engine", *args]


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in (text or "").strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _timed(fn: Callable[[], Check]) -> Check:
    start = time.perf_counter()
    check = fn()
    check.seconds = round(time.perf_counter() - start, 1)
    return check


# ---- The checks ------------------------------------------------------------------------------


def check_install() -> Check:
    """Where the app runs from, and what the installer recorded (variant, lock, date)."""
    info_path = Path(sys.prefix) / INSTALL_INFO
    data: dict[str, Any] = {"executable": sys.executable, "platform": platform.platform(),
                            "data_home": str(paths.data_home()), "settings": str(paths.settings_path())}
    if info_path.exists():
        for line in info_path.read_text(encoding="utf-8").splitlines():
            if "=" in line and not line.startswith("#"):
                key, _, value = line.partition("=")
                parts = shlex.split(value) if value else []
                data[key.strip().lower()] = parts[0] if parts else ""
        detail = (f"installed {data.get('installed', '?')} as the {data.get('variant', '?')} build "
                  f"({data.get('variant_reason', 'no reason recorded')})")
    else:
        detail = "not installed by the installer (source checkout or pip); no variant recorded"
    detail += f"; user data in {data['data_home']}"
    return Check("install", OK, detail, data)


def check_resources() -> Check:
    """The demo model, dataset and presets the app ships with."""
    needed = {"demo model": paths.demo_model_dir() / "config.json",
              "demo dataset": paths.demo_dataset_path(),
              "demo preset": paths.presets_dir() / "demo.yaml"}
    missing = [f"{what} ({p})" for what, p in needed.items() if not p.exists()]
    if missing:
        return Check("resources", FAIL, "missing: " + ", ".join(missing) +
                     "; the wheel was built without resources/ (see packaging/README.md)")
    return Check("resources", OK, f"demo model, dataset and presets in {paths.resources_dir()}",
                 {"resources_dir": str(paths.resources_dir())})


def run_probe(timeout: float = 600) -> tuple[list[dict], dict | None, dict | None, str]:
    """Run the import/torch/bitsandbytes probe in a child process.

    Returns:
        The per-module rows, the torch facts, the bitsandbytes result, and an error text (empty
        when the child exited normally).
    """
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, *STACK], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        proc = subprocess.CompletedProcess(e.cmd, -9, stdout, f"timed out after {timeout:.0f} s")
    modules, torch_facts, bnb, started = [], None, None, None
    for line in proc.stdout.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "start" in row:
            started = row["start"]
        elif "module" in row:
            modules.append(row)
            started = None
        elif "torch" in row:
            torch_facts = row["torch"]
        elif "bnb" in row:
            bnb = row["bnb"]
    error = ""
    if proc.returncode != 0:
        where = f" while importing {started}" if started else ""
        error = f"the probe process exited with {proc.returncode}{where}: {_tail(proc.stderr, 3)}"
        if started:
            modules.append({"module": started, "ok": False, "error": error})
    return modules, torch_facts, bnb, error


def check_imports(modules: list[dict], error: str) -> Check:
    """Every module of the stack imported, with its version."""
    failed = [m for m in modules if not m.get("ok")]
    seen = {m["module"] for m in modules}
    never = [name for name in STACK if name not in seen]
    versions = {m["module"]: m.get("version") for m in modules if m.get("ok")}
    if failed or never:
        lines = []
        for m in failed:
            lib = re.search(r"(lib[\w.+-]+\.so[\w.]*)", m.get("error", ""))
            hint = f" ({missing_libraries_hint([lib[1]])})" if lib else ""
            lines.append(f"{m['module']}: {m.get('error', '?')}{hint}")
        if never:
            lines.append(f"not reached: {', '.join(never)}" + (f" ({error})" if error and not failed else ""))
        return Check("imports", FAIL, "\n".join(lines), {"versions": versions})
    text = ", ".join(f"{name} {versions.get(name) or '?'}" for name in STACK)
    return Check("imports", OK, text, {"versions": versions})


def _nvidia_smi_gpus() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def check_torch(facts: dict | None, smi_gpus: list[str]) -> Check:
    """torch's version and build, whether CUDA works, and the GPUs it sees."""
    if facts is None:
        return Check("torch", FAIL, "torch could not be imported (see imports)")
    build = f"CUDA {facts['cuda_build']} build" if facts.get("cuda_build") else "CPU build"
    head = f"torch {facts['version']} ({build})"
    if facts.get("cuda_available"):
        gpus = "; ".join(f"{d['name']}, {d['memory_bytes'] / 2**30:.1f} GiB, sm_{d['capability'].replace('.', '')}"
                         for d in facts["devices"])
        return Check("torch", OK, f"{head}; CUDA available: {gpus}", facts)
    if smi_gpus:
        seen = "; ".join(smi_gpus)
        if facts.get("cuda_build"):
            why = facts.get("cuda_error", "torch.cuda.is_available() is False")
            return Check("torch", FAIL, f"{head}, but CUDA does not work with the GPU nvidia-smi "
                         f"sees ({seen}): {why}. Compare the driver with the table 'Which torch build' in the "
                         "installer package's README.md, then re-run its install.sh without --variant "
                         "(it picks the build from the driver)", facts)
        return Check("torch", WARN, f"{head} on a machine with an NVIDIA GPU ({seen}): training runs on "
                     "the CPU. Re-run the installer without --variant (it picks the CUDA build from the driver; "
                     "offline, the package needs that build's wheelhouse)", facts)
    return Check("torch", OK, f"{head}; no NVIDIA GPU, training runs on the CPU", facts)


def check_bitsandbytes(bnb: dict | None, modules: list[dict]) -> Check:
    """bitsandbytes round-trips a tensor through its NF4 quantizer (on the GPU when there is one)."""
    if not any(m["module"] == "bitsandbytes" and m.get("ok") for m in modules):
        return Check("bitsandbytes", FAIL, "bitsandbytes could not be imported (see imports)")
    if bnb is None:
        return Check("bitsandbytes", FAIL, "the probe stopped before testing bitsandbytes")
    if "error" in bnb:
        return Check("bitsandbytes", FAIL, f"NF4 quantize/dequantize failed: {bnb['error']}", bnb)
    err = bnb["nf4_relative_error"]
    # NF4 keeps ~4 bits per value: a mean relative error near 0.1 is expected, 0.25 means garbage.
    if not math.isfinite(err) or err > 0.25:
        return Check("bitsandbytes", FAIL, f"NF4 round trip on {bnb['device']} is wrong "
                     f"(mean relative error {err:.3f} > 0.25)", bnb)
    note = "" if bnb["device"] == "cuda" else " (no GPU: 4-bit/8-bit loading will need one)"
    return Check("bitsandbytes", OK, f"NF4 round trip on {bnb['device']}, mean relative error "
                 f"{err:.3f}{note}", bnb)


def check_xcb() -> Check:
    """Under a real X display, every system library of Qt's xcb plugin is present."""
    if not uses_real_display():
        why = ("no DISPLAY" if not os.environ.get("DISPLAY")
               else f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')}")
        if not sys.platform.startswith("linux"):
            why = f"not Linux ({sys.platform})"
        return Check("xcb", SKIP, f"{why}: run under an X display (or xvfb-run) to check the xcb plugin")
    plugin = xcb_plugin_path()
    if plugin is None:
        return Check("xcb", FAIL, "PySide6's platforms/libqxcb.so is missing")
    if not shutil.which("ldd"):
        return Check("xcb", WARN, "ldd is not available: cannot check the xcb plugin's libraries")
    missing = ldd_missing(plugin)
    if missing:
        return Check("xcb", FAIL, f"the Qt xcb plugin ({plugin}) lacks system libraries: "
                     f"{', '.join(missing)}; {missing_libraries_hint(missing)}",
                     {"plugin": str(plugin), "missing": missing,
                      "packages": sorted({p for p in map(debian_package_for, missing) if p})})
    return Check("xcb", OK, f"all libraries of {plugin.name} found (DISPLAY={os.environ['DISPLAY']})",
                 {"plugin": str(plugin)})


def check_window(workdir: Path, timeout: float = 300) -> Check:
    """Build the main window with the demo loaded, one child process per area, and save screenshots."""
    env = dict(os.environ, FINETUNE_STUDIO_HOME=str(workdir / "home"))
    platform_name = "xcb" if uses_real_display(env) else "offscreen"
    env["QT_QPA_PLATFORM"] = platform_name
    sizes = {}
    for area in WINDOW_AREAS:
        out = workdir / f"main-window-{area}.png"
        try:
            proc = subprocess.run(_engine_command("--screenshot", str(out), "--tab", area),
                                  capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return Check("window", FAIL, f"building the main window ({platform_name}, {area} area) "
                         f"took over {timeout:.0f} s")
        size = png_size(out)
        if proc.returncode != 0 or size is None:
            what = f"exit {proc.returncode}" if proc.returncode != 0 else "no PNG written"
            return Check("window", FAIL, f"building the main window ({platform_name}, {area} area) "
                         f"failed ({what}): {_tail(proc.stderr or proc.stdout)}")
        if min(size) < 100:
            return Check("window", FAIL, f"the {area} area rendered as a {size[0]}x{size[1]} image")
        sizes[area] = size
    width, height = sizes[WINDOW_AREAS[0]]
    return Check("window", OK, f"main window built ({platform_name}) with each area "
                 f"({', '.join(WINDOW_AREAS)}), {width}x{height} screenshots",
                 {"platform": platform_name, "width": width, "height": height})


def check_training(workdir: Path, steps: int = TRAIN_STEPS, timeout: float = 900) -> Check:
    """Run ``steps`` LoRA steps on the demo model through the CLI, in a child process."""
    preset = paths.presets_dir() / "demo.yaml"
    run_dir = workdir / "train-run"
    env = dict(os.environ, FINETUNE_STUDIO_HOME=str(workdir / "home"))
    cmd = _engine_command("train", str(preset), "--max_steps", str(steps), "--output_dir", str(run_dir),
                          "--logging_steps", "1", "--save_steps", "1000", "--eval_steps", "1000")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return Check("train", FAIL, f"{steps} LoRA steps on the demo model took over {timeout:.0f} s")
    command = " ".join(shlex.quote(c) for c in cmd)
    if proc.returncode != 0:
        return Check("train", FAIL, f"`{command}` exited with {proc.returncode}: "
                     f"{_tail(proc.stderr or proc.stdout)}")
    problems = []
    summary: dict[str, Any] = {}
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        problems.append(f"summary.json unreadable: {e}")
    losses = []
    try:
        for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("loss") is not None:
                losses.append(float(row["loss"]))
    except (OSError, ValueError) as e:
        problems.append(f"metrics.jsonl unreadable: {e}")
    if summary and summary.get("status") != "completed":
        problems.append(f"status {summary.get('status')!r}, expected 'completed'")
    if not losses or not all(math.isfinite(v) for v in losses):
        problems.append(f"losses {losses} are missing or not finite")
    adapter = run_dir / "final" / "adapter_model.safetensors"
    if not adapter.exists():
        problems.append(f"no adapter saved at {adapter}")
    if problems:
        return Check("train", FAIL, "; ".join(problems), {"run_dir": str(run_dir)})
    device = summary.get("gpu_name") or "CPU"
    return Check("train", OK, f"{len(losses)} LoRA steps on the demo model on {device}, loss "
                 + " -> ".join(f"{v:.3f}" for v in losses),
                 {"losses": losses, "device": device,
                  "peak_gpu_allocated_bytes": summary.get("peak_gpu_allocated_bytes")})


# ---- Report ----------------------------------------------------------------------------------


def self_check(on_check: Callable[[Check], None] | None = None) -> Report:
    """Run every check; ``on_check`` sees each row as soon as it is done (progress output)."""
    report = Report(__version__, platform.python_version(), sys.prefix)

    def add(check: Check) -> None:
        report.checks.append(check)
        if on_check:
            on_check(check)

    add(_timed(check_install))
    add(_timed(check_resources))
    start = time.perf_counter()
    modules, facts, bnb, error = run_probe()
    probe_seconds = round(time.perf_counter() - start, 1)
    imports = check_imports(modules, error)
    imports.seconds = probe_seconds
    add(imports)
    add(check_torch(facts, _nvidia_smi_gpus()))
    add(check_bitsandbytes(bnb, modules))
    add(_timed(check_xcb))
    with tempfile.TemporaryDirectory(prefix="finetune-studio-selfcheck-") as tmp:
        workdir = Path(tmp)
        add(_timed(lambda: check_window(workdir)))
        add(_timed(lambda: check_training(workdir)))
    return report


def format_row(check: Check, width: int = 13) -> str:
    """One table row; a multi-line detail continues indented under the DETAIL column."""
    pad = " " * (width + 8)
    lines = check.detail.splitlines() or [""]
    first = f"{check.name:<{width}} {check.status.upper():<6} {lines[0]}"
    if check.seconds:
        first += f"  [{check.seconds:.1f} s]"
    return "\n".join([first, *(pad + line for line in lines[1:])])


def run_self_check(args: Any) -> int:
    """Entry point of ``finetune-studio --self-check [--json]``.

    Args:
        args: the CLI's argparse namespace; ``args.json`` selects JSON output.

    Returns:
        0 when every check passed (warnings allowed), 1 otherwise.
    """
    as_json = bool(getattr(args, "json", False))
    if not as_json:
        print(f"Finetune Studio {__version__} self-check (Python {platform.python_version()}, {sys.prefix})")
        print(f"{'CHECK':<13} {'STATUS':<6} DETAIL", flush=True)
    report = self_check(None if as_json else lambda c: print(format_row(c), flush=True))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        failed = [c.name for c in report.checks if c.status == FAIL]
        warned = [c.name for c in report.checks if c.status == WARN]
        verdict = f"FAILED: {', '.join(failed)}" if failed else "PASSED"
        if warned:
            verdict += f" (warnings: {', '.join(warned)})"
        print(f"self-check {verdict}")
    return 0 if report.ok else 1
