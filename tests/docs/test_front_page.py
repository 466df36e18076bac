"""The README is the repository's front page: every link and picture in it opens, and it stays short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _local_links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_every_link_of_the_readme_opens_in_the_repository():
    links = _local_links((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(links) > 20  # the front page links into the site
    missing = [t for t in links if not (ROOT / t.split("#")[0]).exists()]
    assert missing == []


def test_the_readme_is_a_front_page_not_the_manual():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300
    assert any("docs/images/" in line for line in lines)  # one picture


def test_the_site_front_page_links_every_how_to_guide():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    guides = sorted(p.name for p in (ROOT / "docs" / "how-to").glob("*.md"))
    assert [g for g in guides if f"how-to/{g}" not in index] == []
