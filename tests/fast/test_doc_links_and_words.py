"""The documentation's text: every local link in the README and docs/ leads to a file, the README stays short, and
the pages speak the user's words (none of the project's bookkeeping). Whether the generated reference pages are
current is checked in tests/e2e/test_docs.py."""

import os
import re

import pytest
from conftest import ROOT

PAGES = ["README.md"] + [os.path.join("docs", name) for name in sorted(os.listdir(os.path.join(ROOT, "docs")))
                         if name.endswith(".md")]


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as file:
        return file.read()


@pytest.mark.parametrize("page", PAGES)
def test_local_links_lead_to_files(page):
    folder = os.path.dirname(os.path.join(ROOT, page))
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(page)):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert os.path.exists(os.path.join(folder, target)), f"{page} links to {target}, which does not exist"


def test_readme_is_read_in_minutes():
    assert len(read("README.md").splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES)
def test_pages_speak_the_users_words(page):
    """No words of the project's own bookkeeping: say what is meant instead."""
    text = read(page).lower()
    for word in ("seed lesson", "the issue", "issue's", "this session", "no gpu was lent"):
        assert word not in text, f"{page} says {word!r}"
