"""The documentation's pictures (scripts/screenshots.py) taken of the session's demo build: real PNGs, not blank."""

from __future__ import annotations

import base64
import importlib.util
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from tests.browser import chromium_page
from tests.helpers import REPO, Built, copy_demo, run_mesh

pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "screenshots.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("screenshots", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG read chunk by chunk: every CRC right, the pixel data exactly the size IHDR says."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    position, kinds, pixels, header = 8, [], b"", b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        kinds.append(kind)
        header = body if kind == b"IHDR" else header
        pixels += body if kind == b"IDAT" else b""
        position += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND", kinds
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    assert len(zlib.decompress(pixels)) == height * (1 + (width * channels * depth + 7) // 8), f"{path}: truncated"
    return width, height


# drawn on a canvas by the browser's own PNG decoder: the number of distinct colours of every pixel
_COLOURS = """async (source) => {
  const image = new Image(); image.src = source; await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  const context = canvas.getContext('2d'); context.drawImage(image, 0, 0);
  const pixels = new Uint32Array(context.getImageData(0, 0, canvas.width, canvas.height).data.buffer);
  return [canvas.width, canvas.height, new Set(pixels).size];
}"""


def test_the_pictures_of_the_demo_build_are_real_images_of_their_size(demo_built: Built, tmp_path: Path) -> None:
    screenshots = load_script()
    written = screenshots.photograph(
        demo_built.root, tmp_path, run=lambda args, cwd: run_mesh(*args, cwd=cwd), build_output=demo_built.output
    )
    assert sorted(p.name for p in written) == sorted(p.name for p in tmp_path.iterdir()) == [
        "build.png", "docs-lineage.png", "docs-site.png", "doctor.png", "health-report.png",
    ]  # fmt: skip
    sizes = {path.name: png_size(path) for path in written}
    assert sizes["docs-site.png"] == (1280, 800)
    width, height = sizes["health-report.png"]  # widened to the products table, cut below it
    assert 1280 <= width <= 1600 and 800 < height < 1600, sizes
    width, height = sizes["docs-lineage.png"]  # the lineage section of one product, cropped
    assert 1000 < width <= 1280 and 150 < height < 500, sizes
    for terminal in ("doctor.png", "build.png"):  # cropped to the terminal window
        width, height = sizes[terminal]
        assert 500 < width < 1280 and 300 < height < 800, sizes
    for path in written:
        assert path.stat().st_size < 300 * 1024, f"{path.name}: {path.stat().st_size // 1024} KB"
    with chromium_page() as page:
        for path in written:
            source = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            width, height, colours = page.evaluate(_COLOURS, source)
            assert (width, height) == sizes[path.name]
            assert colours > 50, f"{path.name}: {colours} colours, a blank picture"


def test_the_terminal_page_shows_colours_and_escapes_the_text() -> None:
    screenshots = load_script()
    assert screenshots.ansi_to_html("a <b>\x1b[1;31mred\x1b[0m \x1b[2Kplain") == (
        'a &lt;b&gt;<span style="font-weight:bold;color:#f14c4c">red</span> plain'
    )
    assert "~/acme$</span> mesh doctor\nnothing would stop" in screenshots.terminal_page(
        "mesh doctor", "nothing would stop `mesh build`.\n"
    )


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_a_folder_without_mesh_yml_is_one_error_and_exit_2(tmp_path: Path) -> None:
    result = run_script("--out", str(tmp_path / "out"), "--mesh", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"screenshots: --mesh {tmp_path}: no mesh.yml in this folder; give the root of a built mesh, "
        "or leave --mesh out to build the demo mesh\n"
    )
    assert not (tmp_path / "out").exists()


def test_without_chromium_it_says_how_to_install_it_before_building_anything(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # a PATH with no chromium on it
    result = run_script("--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 3, result.stderr
    assert result.stderr == (
        "screenshots: chromium is not installed (no `chromium` on PATH): run `make chromium` or "
        "`apt-get install -y chromium`; this script never downloads a browser\n"
    )
    assert result.stdout == "" and not (tmp_path / "out").exists()


def test_an_unbuilt_mesh_is_one_error_and_exit_2_and_nothing_is_written_into_it(tmp_path: Path) -> None:
    screenshots = load_script()
    root = copy_demo(tmp_path / "mesh")
    with pytest.raises(screenshots.ScreenshotError) as raised:
        screenshots.photograph(root, tmp_path / "out", run=lambda args, cwd: run_mesh(*args, cwd=cwd))
    assert raised.value.code == 2
    assert str(raised.value) == f"{root}: its docs site has no data product: build the mesh first (`mesh build`)"
    assert not (root / "health").exists() and not list((tmp_path / "out").iterdir())
