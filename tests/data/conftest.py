"""Data tests: the fixture writer (`lmdrive_fixture.py`) imports by name from this folder."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
