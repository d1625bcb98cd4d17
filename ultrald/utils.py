"""Small helpers shared by the trainer and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

from ultralytics.utils import ONLINE, USER_CONFIG_DIR

PLOT_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")  # the fonts Ultralytics fetches from GitHub for its plots


def ensure_offline_fonts() -> None:
    """Offline, give Ultralytics a local stand-in (matplotlib's DejaVu Sans) for the plot fonts it would download: it
    asks GitHub for Arial.ttf on every dataset check, even with YOLO_OFFLINE=1, unless the file is in its config dir."""
    if ONLINE:
        return
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in PLOT_FONTS:
        target = USER_CONFIG_DIR / name
        if not target.exists() and source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
