#!/usr/bin/env python3
"""Launcher: python pure_model_api.py --model M --device auto --host 127.0.0.1 --port 5000"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from pure_model_api.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
