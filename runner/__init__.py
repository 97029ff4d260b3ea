"""tricks: a lab bench for deep-learning training tricks (package `runner`)."""

from pathlib import Path
import os

__version__ = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = Path(os.environ.get("TRICKS_CONF_DIR", ROOT / "conf"))
EXPERIMENTS_DIR = ROOT / "experiments"
CACHE_DIR = Path(os.environ.get("TRICKS_CACHE", Path.home() / ".cache" / "tricks"))
