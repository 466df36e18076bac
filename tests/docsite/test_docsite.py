"""The documentation site of the demo mesh: pages, lineage across projects, search, in a real browser."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.browser import chromium_page, screenshot
from tests.helpers import Built, run_mesh

pytestmark = pytest.mark.slow


def test_build_writes_the_site(demo_built: Built) -> None:
    assert demo_built.result.returncode == 0, demo_built.output
    assert re.search(r"docs: 11 pages — site/index.html", demo_built.output), demo_built.output
    site = demo_built.root / "site"
    assert sorted(p.name for p in (site / "products").iterdir()) == [
        "customers.dim_customers.html",
        "finance.monthly_revenue.html",
        "marketing.customer_segments.html",
        "sales.fct_orders.v1.html",
        "sales.fct_orders.v2.html",
        "sales.weekly_sales_report.html",
    ]
    # the search index is split per domain, not one file
    assert sorted(p.name for p in (site / "search").iterdir()) == [
        "customers.js",
        "finance.js",
        "marketing.js",
        "sales.js",
    ]
    # nothing on the network: no http(s) reference anywhere in the site
    for page in site.rglob("*"):
        if page.suffix in (".html", ".js", ".css"):
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.read_text()), page


def test_product_page_says_how_to_use_it(demo_built: Built) -> None:
    v1 = (demo_built.root / "site/products/sales.fct_orders.v1.html").read_text()
    assert "{{ ref(&#39;sales&#39;, &#39;fct_orders&#39;, v=1) }}" in v1
    assert "deprecated on 2027-06-30" in v1
    v2 = (demo_built.root / "site/products/sales.fct_orders.v2.html").read_text()
    assert "{{ ref(&#39;sales&#39;, &#39;fct_orders&#39;) }}" in v2
    consumers = v2[v2.index('id="consumers"') :]
    direct, indirect = consumers.split("Indirect")[:2]
    assert "finance · int_order_revenue" in direct and "marketing · int_customer_orders" in direct
    assert "finance · monthly_revenue" in indirect and "marketing · customer_segments" in indirect
    customers = (demo_built.root / "site/products/customers.dim_customers.html").read_text()
    assert "PII may be read by: marketing" in customers
    assert re.search(r'data-column="email"><td><code>email</code> <span class="tag">PII</span>', customers)


def test_a_domain_without_a_manifest_still_gets_a_page(demo_built: Built, tmp_path: Path) -> None:
    root = shutil.copytree(demo_built.root, tmp_path / "mesh", ignore=shutil.ignore_patterns("*.duckdb"))
    (root / "projects/finance/target/manifest.json").write_text("{ not json")
    result = run_mesh("docs", "-o", str(tmp_path / "out"), cwd=root)
    assert result.returncode == 0, result.stderr
    # not a manifest dbt wrote: its pages come from a parse of its files (made outside its target/)
    assert "finance's manifest (projects/finance/target/manifest.json) is not one dbt wrote" in result.stderr
    assert "mesh docs: 11 pages" in result.stdout
    (root / "projects/finance/target/manifest.json").unlink()  # none at all: its domain page stays, the product goes
    result = run_mesh("docs", "-o", str(tmp_path / "out"), cwd=root)
    assert result.returncode == 0, result.stderr
    assert "mesh docs: 10 pages" in result.stdout
    finance = (tmp_path / "out/domains/finance.html").read_text()
    assert "no manifest yet: build the domain with `mesh build finance`." in finance


def test_site_in_headless_chromium(demo_built: Built) -> None:
    site = demo_built.root / "site"
    requested: list[str] = []
    with chromium_page() as page:
        page.on("request", lambda request: requested.append(request.url))
        page.goto((site / "index.html").as_uri())
        assert page.locator("#mesh-map svg g.node").count() == 4
        assert page.locator('.domain-card[data-domain="sales"] [data-health]').first.inner_text() == "healthy"
        # home -> domain
        page.locator('.domain-card[data-domain="sales"] h3 a').click()
        assert page.url.endswith("/domains/sales.html")
        assert page.inner_text("#downstreams") == "finance, marketing"
        # domain -> product
        page.locator("a.product-link", has_text="sales.fct_orders.v2").click()
        assert page.url.endswith("/products/sales.fct_orders.v2.html")
        assert page.inner_text("h1").startswith("sales.fct_orders.v2")
        assert "Sales Analytics" in page.inner_text(".kv")
        # the lineage shows a cross-project edge: sales' product -> finance's model
        cross = page.locator('svg.lineage path.edge.cross[data-from="model.sales.fct_orders.v2"]')
        assert cross.count() >= 2
        targets = {cross.nth(i).get_attribute("data-to") for i in range(cross.count())}
        assert "model.finance.int_order_revenue" in targets
        # indirect upstreams too: on finance's product, sales' sources appear
        page.goto((site / "products/finance.monthly_revenue.html").as_uri())
        assert page.locator('svg.lineage g.node[data-uid="source.sales.shop.orders"]').count() == 1
        # search finds a column in another domain
        page.fill("#search-input", "email_masked")
        page.wait_for_selector("#search-results li.hit-column")
        hit = page.locator("#search-results li.hit-column").first
        assert "marketing.customer_segments" in hit.inner_text()
        hit.locator("a").click()
        assert page.url.endswith("/products/marketing.customer_segments.html")
        screenshot(page, "docs-product.png")
        page.goto((site / "products/sales.fct_orders.v2.html").as_uri())
        screenshot(page, "docs-lineage.png")
    assert requested and all(url.startswith("file://") for url in requested), requested
