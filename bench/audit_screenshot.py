"""A screenshot of the Runs area's "Hardest records" tab on a real demo run, for the docs.

``python bench/audit_screenshot.py [OUT_DIR]`` (default ``docs/img``) trains the demo preset
(LoRA, 120 steps, ~30 s on 2 CPU cores) in a temporary data home, opens the main window
offscreen on the Runs area, audits the run with the panel's own button, compared with the
base model (the child process ``finetune-studio runs audit --compare-base``) and saves ``runs-audit.png`` once the ranked records are in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINETUNE_STUDIO_HOME", tempfile.mkdtemp(prefix="audit-shots-"))
    subprocess.run([sys.executable, "-m", "engine.cli", "train", str(ROOT / "resources/presets/demo.yaml")],
                   check=True, stdout=subprocess.DEVNULL)
    from screens import open_demo_window, spin

    app, win = open_demo_window("runs", size=(1360, 820))
    area = win.areas["runs"]
    area.refresh()
    area.table.selectRow(0)
    area.bottom_tabs.setCurrentIndex(1)
    panel = area.audit_panel
    panel.compare_base.setChecked(True)
    if not panel.start() or not panel.wait(300_000):
        print("the audit did not run", file=sys.stderr)
        return 1
    panel.table.selectRow(0)  # the hardest record, whole, in the preview
    spin(1.0)
    path = out / "runs-audit.png"
    win.grab().save(str(path))
    print(f"wrote {path}: {panel.model.rowCount()} records, {len(panel.model.flagged)} flagged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
