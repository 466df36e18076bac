"""The tool's documentation site builds strictly and works opened from disk: pages, pictures and search, with no
request leaving the machine (a reader offline, or behind a proxy, gets the whole site)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.browser import chromium_page

pytestmark = pytest.mark.docs_lane

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = ROOT / ".venv-docs" / "bin" / "mkdocs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MKDOCS.exists():
        if os.environ.get("MESH_TESTS_REQUIRE_DOCS"):
            pytest.fail(f"{MKDOCS} is missing: `make docs` installs it")
        pytest.skip("the documentation environment (.venv-docs) is not installed: `make docs`")
    out = tmp_path_factory.mktemp("docs-site")
    built = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def test_the_site_opened_from_disk_searches_and_shows_its_pictures_without_the_network(site: Path):
    outside: list[str] = []
    with chromium_page(1400, 900) as page:
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:")) else outside.append(r.url))
        page.goto((site / "how-to" / "health.html").as_uri())
        pictures = page.eval_on_selector_all("article img", "imgs => imgs.map(i => [i.src, i.naturalWidth])")
        assert pictures and all(width > 0 for _, width in pictures), pictures
        if not page.is_visible(".md-search__input"):  # a narrow window folds the search into a button
            page.click("label.md-header__button[for=__search]", timeout=5000)
        page.fill(".md-search__input", "publish gate")
        page.wait_for_selector(".md-search-result__item", timeout=10000)
        meta = page.inner_text(".md-search-result__meta")
        titles = page.eval_on_selector_all(".md-search-result__item h1", "hs => hs.map(h => h.textContent)")
        page.goto((site / "index.html").as_uri())
        links = page.eval_on_selector_all("article a[href$='.html']", "as => as.map(a => a.href)")
    assert "matching document" in meta and titles, (meta, titles)
    assert len(links) > 20 and all(link.startswith("file:") for link in links)
    assert outside == []
