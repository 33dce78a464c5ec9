#!/usr/bin/env python3
"""Interactive client: python api_client_example.py [--url URL] [--session ID]"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from pure_model_api.client.repl import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
