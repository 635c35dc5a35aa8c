"""README.md and docs/ refer only to files in this repository, so a fresh clone is enough to follow them."""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A markdown link target, or a backticked path with a folder or a file suffix.
LINK = re.compile(r"\]\(([^)#\s]+)")
PATH = re.compile(r"`(\.{0,2}/?[\w.-]+(?:/[\w.-]+)*(?:\.(?:md|py|yml|yaml|conf|txt|ini|toml|json)|/))`")
TOP_LEVEL = {path.name for path in ROOT.iterdir()} - {"var", ".venv", "artifacts"}  # those exist only at run time


def repository_paths(text: str) -> set[str]:
    """References into this repository: paths starting at one of its top-level files or folders. Others
    (URL paths such as `/admin/`, API paths such as `runs/`, files of the SDK a source names) are not."""
    return {ref for ref in LINK.findall(text) + PATH.findall(text) if ref.split("/")[0] in TOP_LEVEL}


def test_it_keeps_the_references_into_the_repository() -> None:
    text = (
        "[design](docs/design.md), `tests/test_x.py`, `var/secret_key`, `config/`, `/admin/`, `runs/`, `adobjects/x.py`"
    )
    assert repository_paths(text) == {"docs/design.md", "tests/test_x.py", "config/"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_a_document_points_nowhere_outside_the_repository(doc) -> None:
    assert "../" not in doc.read_text()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_repository_file_a_document_names_exists(doc) -> None:
    assert sorted(ref for ref in repository_paths(doc.read_text()) if not (ROOT / ref).exists()) == []
