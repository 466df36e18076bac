"""Photograph the demo mesh's docs site, health report and terminal output for the documentation (docs/images/).

    .venv/bin/python scripts/screenshots.py --out docs/images            # builds the demo mesh in a temporary folder
    .venv/bin/python scripts/screenshots.py --out docs/images --mesh .   # an already built mesh (its root)

Writes docs-site.png (the site's home page with a search open), docs-lineage.png (a product's lineage across
domains), health-report.png, doctor.png (`mesh doctor` as a terminal shows it) and, when this script built
the demo mesh itself, build.png (`mesh build`'s summary) and health-problem.png (the health report after a
test planted into that copy fails). The browser is the machine's own headless Chromium
(`make chromium`); none is downloaded. The mesh is only read: its site and health report are written again
into a scratch folder (`mesh health` adds one collection to the mesh's health history, as every run does).
Exit codes: 0 written, 2 bad input (--mesh is not a mesh's root, or `mesh` found its configuration wrong),
3 Chromium or Playwright missing, another `mesh` command failed, or a file could not be written.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# this checkout's mesh_tools, even when the virtualenv has another one installed (a worktree, a second clone)
sys.path.insert(0, str(REPO))

# a `mesh` command line: (arguments after `mesh`, working directory) -> its result
Runner = Callable[[list[str], Path], "subprocess.CompletedProcess[str]"]

VIEWPORT = {"width": 1280, "height": 800}
# the prompt the terminal pictures show, and the folder name it stands for
PROMPT_DIR = "~/acme"


class ScreenshotError(Exception):
    """A problem the user can fix, with the script's exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run_mesh(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `mesh ARGS` in ``cwd`` as a new interpreter of this Python, on this checkout's code."""
    env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="False", FORCE_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "mesh_tools.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def checked(run: Runner, args: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> str:
    """The output (stdout, then stderr) of `mesh ARGS`; a ScreenshotError naming the command when it failed."""
    result = run(args, cwd)
    output = result.stdout + result.stderr
    if result.returncode not in ok:
        tail = "\n".join(output.strip().splitlines()[-15:])
        # the mesh's own configuration error stays a bad input (2); anything else could not run (3)
        code = 2 if result.returncode == 2 else 3
        raise ScreenshotError(f"`mesh {' '.join(args)}` failed (exit {result.returncode}) in {cwd}:\n{tail}", code)
    return output


def build_demo(dest: Path, run: Runner = run_mesh) -> str:
    """Copy the repository's demo mesh to ``dest`` and build it, as `make run` does; returns `mesh build`'s output."""
    from mesh_tools.demo_data import copy_demo_mesh

    copy_demo_mesh(REPO, dest)
    checked(run, ["demo-data"], dest)
    return checked(run, ["build"], dest)


def find_chromium() -> str:
    """The machine's Chromium; a ScreenshotError (exit 3) saying how to install it when there is none."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        raise ScreenshotError(
            "chromium is not installed (no `chromium` on PATH): run `make chromium` or "
            "`apt-get install -y chromium`; this script never downloads a browser",
            3,
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise ScreenshotError(f"Playwright is not installed in {sys.executable}: run `make bootstrap`", 3) from None
    return binary


@contextmanager
def chromium(binary: str) -> Iterator[Any]:
    """A headless Chromium launched as tests/browser.py launches it (no sandbox, no GPU, no network chatter);
    a browser error inside the block is a ScreenshotError (exit 3) of one line."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=binary,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
        except PlaywrightError as error:
            raise ScreenshotError(f"{binary} did not start as a headless chromium: {_first_line(error)}", 3) from None
        try:
            yield browser
        except PlaywrightError as error:
            raise ScreenshotError(f"chromium could not take a picture: {_first_line(error)}", 3) from None
        finally:
            browser.close()


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_OTHER_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_COLOURS = {30: "#4d4d4d", 31: "#f14c4c", 32: "#23d18b", 33: "#f5f543", 34: "#3b8eea", 35: "#d670d6", 36: "#29b8db",
            37: "#e5e5e5"}  # fmt: skip


def ansi_to_html(text: str) -> str:
    """Escaped HTML of terminal output, its SGR colours and bold as spans (other escape sequences dropped)."""
    parts: list[str] = []
    style: dict[str, str] = {}
    position = 0
    for match in _SGR.finditer(text):
        parts.append(_span(_OTHER_ESCAPES.sub("", text[position : match.start()]), style))
        position = match.end()
        for code in [int(c) for c in match.group(1).split(";") if c] or [0]:
            if code == 0:
                style = {}
            elif code == 1:
                style["font-weight"] = "bold"
            elif code in (22, 39):
                style.pop("font-weight" if code == 22 else "color", None)
            elif 30 <= code <= 37 or 90 <= code <= 97:
                style["color"] = _COLOURS[code - 60 if code >= 90 else code]
    parts.append(_span(_OTHER_ESCAPES.sub("", text[position:]), style))
    return "".join(parts)


def _span(text: str, style: dict[str, str]) -> str:
    escaped = html.escape(text, quote=False)
    if not style or not text:
        return escaped
    return f'<span style="{";".join(f"{k}:{v}" for k, v in style.items())}">{escaped}</span>'


def terminal_page(command: str, output: str) -> str:
    """A small HTML page showing ``command`` typed at a prompt and its ``output``, styled as a dark terminal."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; padding: 16px; background: #ffffff; }}
.terminal {{ display: inline-block; background: #1e1e1e; color: #d4d4d4; border-radius: 8px; overflow: hidden;
  font: 14px/1.45 "DejaVu Sans Mono", monospace; box-shadow: 0 2px 8px rgba(0, 0, 0, .25); }}
.bar {{ background: #323233; padding: 8px 12px; }}
.bar i {{ display: inline-block; width: 12px; height: 12px; border-radius: 50%; margin-right: 6px; }}
pre {{ margin: 0; padding: 12px 18px 16px; font: inherit; white-space: pre; }}
.prompt {{ color: #23d18b; }}
</style></head><body><div class="terminal"><div class="bar"><i style="background:#ff5f57"></i><i
style="background:#febc2e"></i><i style="background:#28c840"></i></div><pre><span class="prompt">{PROMPT_DIR}$</span> {
        html.escape(command)
    }
{ansi_to_html(output.rstrip())}</pre></div></body></html>"""


def photograph(root: Path, out: Path, run: Runner = run_mesh, build_output: str | None = None,
               binary: str | None = None) -> list[Path]:  # fmt: skip
    """Write the pictures of the built mesh at ``root`` into ``out``; returns their paths.

    ``build_output``: `mesh build`'s output, pictured as build.png when given.
    """
    binary = binary or find_chromium()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mesh-screenshots-") as folder:
        scratch = Path(folder)
        checked(run, ["docs", "--output-dir", str(scratch / "site")], root)
        lineage = _widest_lineage(root, scratch / "site")  # before `mesh health` writes into an unbuilt mesh
        checked(run, ["health", "--output-dir", str(scratch / "health"), "--fail-on", "never"], root)
        # a problem that would stop a build is exit 1, and still worth a picture
        doctor = checked(run, ["doctor"], root, ok=(0, 1)).replace(str(root), PROMPT_DIR)
        terminals = {"doctor.png": ("mesh doctor", doctor)}
        if build_output is not None:
            terminals["build.png"] = ("mesh build", build_output.replace(str(root), PROMPT_DIR))
        with chromium(binary) as browser:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            written = [
                _docs_site(page, scratch / "site", out),
                _lineage(page, lineage, out),
                _health(page, scratch / "health" / "report.html", out / "health-report.png"),
            ]
            for name, (command, text) in terminals.items():
                page.set_viewport_size(VIEWPORT)
                page.set_content(terminal_page(command, text))
                written.append(_shot(page.locator(".terminal"), out / name))
    return written


def _widest_lineage(root: Path, site: Path) -> Path:
    """The product page with the most edges across domains (the demo's: sales.fct_orders.v2)."""
    pages = sorted((site / "products").glob("*.html"))
    if not pages:
        raise ScreenshotError(f"{root}: its docs site has no data product: build the mesh first (`mesh build`)", 2)
    # sorted by name first, so a tie picks the same page every run
    return max(pages, key=lambda page: page.read_text(encoding="utf-8").count('class="edge cross"'))


def _shot(target: Any, path: Path) -> Path:
    target.screenshot(path=str(path), animations="disabled", caret="hide")
    return path


def _docs_site(page: Any, site: Path, out: Path) -> Path:
    """The home page (map of the domains, their products and health) with a search for the first domain open:
    its hits are products, models and columns of several domains (the demo's: customers)."""
    page.goto((site / "index.html").as_uri())
    page.fill("#search-input", page.locator(".domain-card[data-domain]").first.get_attribute("data-domain"))
    page.wait_for_selector("#search-results li", timeout=10_000)
    return _shot(page, out / "docs-site.png")


def _lineage(page: Any, product: Path, out: Path) -> Path:
    """A product's lineage section, its drawing (wider than the page, in a box that scrolls) scrolled to the
    right end: the product and the edges into the domains that read it."""
    page.goto(product.as_uri())
    page.evaluate("() => { const box = document.querySelector('.lineage-box'); box.scrollLeft = box.scrollWidth; }")
    heading = page.locator("h2", has_text="Lineage").bounding_box()
    box = page.locator(".lineage-box").first.bounding_box()
    top = heading["y"] - 12
    clip = {"x": box["x"] - 12, "y": top, "width": box["width"] + 24, "height": box["y"] + box["height"] + 12 - top}
    page.screenshot(path=str(out / "docs-lineage.png"), full_page=True, clip=clip, animations="disabled")
    return out / "docs-lineage.png"


def _health(page: Any, report: Path, path: Path) -> Path:
    """The health report down to the end of its products table: the counts, open problems, domains, products."""
    page.goto(report.as_uri())
    # the products table is wider than 1280 px: widen the window rather than cut its last column
    width = max(VIEWPORT["width"], int(page.evaluate("() => document.documentElement.scrollWidth")))
    page.set_viewport_size({"width": width, "height": VIEWPORT["height"]})
    table = page.locator("#products").bounding_box()
    bottom = table["y"] + table["height"] + 16 if table else VIEWPORT["height"]
    clip = {"x": 0, "y": 0, "width": width, "height": bottom}
    page.screenshot(path=str(path), full_page=True, clip=clip, animations="disabled")
    page.set_viewport_size(VIEWPORT)
    return path


# planted into this script's own copy of the demo mesh only, never into a mesh given with --mesh
PLANTED_TEST = "projects/sales/tests/assert_no_web_orders.sql"
PLANTED_SQL = """-- planted by scripts/screenshots.py: fails on every web order, so the health report shows a problem
select order_id from {{ ref('fct_orders', v=2) }} where channel = 'web'
"""


def photograph_problem(root: Path, out: Path, run: Runner = run_mesh, binary: str | None = None) -> Path:
    """health-problem.png: the health report after a test of sales.fct_orders.v2 fails (a test planted into the
    built demo mesh at ``root``, then `mesh build sales`): an open problem and the consumers it puts at risk."""
    binary = binary or find_chromium()
    (root / PLANTED_TEST).write_text(PLANTED_SQL, encoding="utf-8")
    # --no-state: every model and test of sales runs, as in a scheduled build (a state-aware build would run only
    # the new test, and the report would count that run's tests alone); exit 0 would mean the test did not fail
    checked(run, ["build", "sales", "--no-state"], root, ok=(1,))
    with tempfile.TemporaryDirectory(prefix="mesh-screenshots-") as folder:
        checked(run, ["health", "--output-dir", folder, "--fail-on", "never"], root)
        with chromium(binary) as browser:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            return _health(page, Path(folder) / "report.html", out / "health-problem.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder the PNGs are written to")
    parser.add_argument("--mesh", type=Path, help="root of an already built mesh (default: build the demo mesh)")
    args = parser.parse_args(argv)
    try:
        if args.mesh is not None and not (args.mesh / "mesh.yml").is_file():
            raise ScreenshotError(
                f"--mesh {args.mesh}: no mesh.yml in this folder; give the root of a built mesh, "
                "or leave --mesh out to build the demo mesh",
                2,
            )
        binary = find_chromium()  # before a build of tens of seconds
        if args.mesh is not None:
            written = photograph(args.mesh.resolve(), args.out, binary=binary)
        else:
            with tempfile.TemporaryDirectory(prefix="mesh-demo-") as folder:
                root = Path(folder) / "acme"
                print(f"screenshots: building the demo mesh in {root}", file=sys.stderr)
                output = build_demo(root)
                written = photograph(root, args.out, build_output=output, binary=binary)
                written.append(photograph_problem(root, args.out, binary=binary))
    except ScreenshotError as error:
        print(f"screenshots: {error}", file=sys.stderr)
        return error.code
    except OSError as error:
        print(f"screenshots: {error.filename or args.out}: {error.strerror or error}", file=sys.stderr)
        return 3
    for path in written:
        print(f"{path}: {path.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
