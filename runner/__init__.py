"""tricks: a lab bench for deep-learning training tricks (package `runner`)."""

import os
import warnings
from pathlib import Path

__version__ = "0.1.0"

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = Path(os.environ.get("TRICKS_CONF_DIR", ROOT / "conf"))
EXPERIMENTS_DIR = ROOT / "experiments"
CACHE_DIR = Path(os.environ.get("TRICKS_CACHE", Path.home() / ".cache" / "tricks"))

# conf/hydra/launcher/joblib.yaml is named like the joblib plugin's schema on purpose (Hydra
# validates it against that schema); Hydra's notice about this matching would otherwise be
# printed by every job process.
warnings.filterwarnings(
    "ignore", message=r"(?s).*is validated against ConfigStore schema", category=UserWarning
)
