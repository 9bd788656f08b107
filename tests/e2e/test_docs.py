"""The documentation stays true to the code: the generated reference pages are current, every local link in the
README and docs/ leads to a file, the README stays short, and it speaks the user's words."""

import os
import subprocess
import sys

from conftest import ROOT


def test_generated_pages_are_current():
    """docs/cli.md and docs/schemes.md are written by scripts/make_docs.py from the parser and the registry."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_docs.py"), "--check"],
                            capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
