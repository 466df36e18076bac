"""Follow docs/tutorial.md in a temporary folder and write each step's output into docs/tutorial/<name>.txt.

The page is the script: its fenced blocks marked ``.tutorial-run`` are typed (one command a line, in a shell
whose working folder carries over as a user's would), those marked ``.tutorial-file`` are written to the file
their ``title`` names (relative to the mesh folder, ``~/acme``), in page order. A run block's
``output="name"`` is where its output goes; the page includes it with ``--8<-- "tutorial/name.txt"``.
``exit="N"`` says the block's one command is expected to exit N (default 0). HOME is the temporary folder,
so ``~/acme`` is a fresh folder and the captured output reads ``~/acme`` whatever machine ran it.

    python scripts/tutorial.py            # refresh docs/tutorial/*.txt
    python scripts/tutorial.py --check    # exit 1 when an output differs from the page (durations, release ids
                                          # and times aside)

tests/docs/test_tutorial.py runs the same code (``follow``) and checks what the tutorial left behind.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "tutorial.md"
OUTPUTS = REPO / "docs" / "tutorial"
MESH_FOLDER = "acme"  # the page's ~/acme

# ```{.bash .tutorial-run output="build"} ... ``` (superfences' attribute form, as the page writes it)
_FENCE = re.compile(r"^```\{(?P<attrs>[^}\n]*)\}[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One marked fenced block of the page: commands to run, or a file to write."""

    kind: str  # "run" or "file"
    body: str
    attrs: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def commands(self) -> list[str]:
        """The block's commands: one a line (a trailing backslash continues it), comments and blanks skipped."""
        joined = re.sub(r"\\\n\s*", " ", self.body)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def blocks(page: str) -> list[Block]:
    """The page's marked blocks in order; a marked block without what it needs is an error naming its line."""
    found: list[Block] = []
    for match in _FENCE.finditer(page):
        words = shlex.split(match["attrs"])
        classes = {w[1:] for w in words if w.startswith(".")}
        attrs = dict(w.split("=", 1) for w in words if "=" in w)
        line = page.count("\n", 0, match.start()) + 1
        if "tutorial-run" in classes:
            block = Block("run", match["body"], attrs, line)
            if "exit" in attrs and len(block.commands) != 1:
                raise ValueError(f"docs/tutorial.md:{line}: a block with exit= holds one command")
            found.append(block)
        elif "tutorial-file" in classes:
            if "title" not in attrs:
                raise ValueError(f'docs/tutorial.md:{line}: a .tutorial-file block needs title="<path>"')
            found.append(Block("file", match["body"], attrs, line))
    return found


@dataclass
class Followed:
    """What following the page did: each named output, normalised, and the folder it ran in."""

    home: Path
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.home / MESH_FOLDER


def _environment(home: Path, bin_dir: Path) -> dict[str, str]:
    """A new user's shell: `mesh` and `dbt` on PATH (this checkout's code), HOME the temporary folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "DBT_"))}
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",  # stdout and stderr interleave as on a terminal
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
        COLUMNS="120",
    )
    return env


def _shim(bin_dir: Path) -> None:
    """`mesh` as the installed entry point would be, running this checkout's code."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    mesh = bin_dir / "mesh"
    mesh.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mesh_tools.cli "$@"\n', encoding="utf-8")
    mesh.chmod(0o755)


def normalise(text: str, home: Path) -> str:
    """Output as the page shows it: the temporary folder is ``~``, no trailing blanks."""
    text = text.replace(str(home), "~")
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"


def follow(page: str, home: Path, *, echo: bool = False) -> Followed:
    """Type the page's commands and write its files in ``home`` (an empty folder), in page order.

    Raises AssertionError naming the page line when a command exits other than the page expects.
    """
    bin_dir = home / ".tutorial-bin"
    _shim(bin_dir)
    env = _environment(home, bin_dir)
    followed = Followed(home)
    cwd = home
    where = home / ".tutorial-pwd"
    for block in blocks(page):
        if block.kind == "file":
            target = home / MESH_FOLDER / block.attrs["title"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.body, encoding="utf-8")
            continue
        captured: list[str] = []
        many = len(block.commands) > 1
        for command in block.commands:
            if echo:
                print(f"$ {command}", file=sys.stderr)
            # the working folder carries over to the next command, as in the user's shell
            script = f'{command}\nstatus=$?\npwd > "{where}"\nexit $status\n'
            done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
            cwd = Path(where.read_text(encoding="utf-8").strip())
            expected = int(block.attrs.get("exit", "0"))
            if done.returncode != expected:
                raise AssertionError(
                    f"docs/tutorial.md:{block.line}: `{command}` exited {done.returncode}, the page expects "
                    f"{expected}:\n{done.stdout}"
                )
            captured.append((f"$ {command}\n" if many else "") + done.stdout)
        if "output" in block.attrs:
            followed.outputs[block.attrs["output"]] = normalise("".join(captured), home)
    return followed


# What differs from one run to the next and is not the point: durations, release ids, times, the machine's cores.
_VOLATILE = [
    (re.compile(r"\b\d+(\.\d+)?s\b"), "<s>"),
    (re.compile(r"\br\d{8}T\d{12}Z-[0-9a-f]{6}\b"), "<release>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?"), "<time>"),
    (re.compile(r"\b\d+ at a time\b"), "<n> at a time"),
    (re.compile(r"[ \t]+"), " "),
    (re.compile(r"-{3,}"), "---"),
]


def comparable(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def differences(followed: Followed, folder: Path = OUTPUTS) -> list[str]:
    """The outputs that differ from the page's snippets (volatile parts aside), and snippets nothing wrote."""
    found = []
    for name, text in followed.outputs.items():
        path = folder / f"{name}.txt"
        shown = path.read_text(encoding="utf-8") if path.is_file() else ""
        if comparable(shown) != comparable(text):
            found.append(f"docs/tutorial/{name}.txt differs from what the tutorial prints now:\n{text}")
    found += [
        f"docs/tutorial/{p.name} is written by no step of the page"
        for p in sorted(folder.glob("*.txt"))
        if p.stem not in followed.outputs
    ]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with docs/tutorial/*.txt, write nothing")
    args = parser.parse_args()
    page = PAGE.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="mesh-tutorial-") as tmp:
        followed = follow(page, Path(tmp), echo=True)
    if args.check:
        problems = differences(followed)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    OUTPUTS.mkdir(exist_ok=True)
    for stale in OUTPUTS.glob("*.txt"):
        if stale.stem not in followed.outputs:
            stale.unlink()
    for name, text in followed.outputs.items():
        (OUTPUTS / f"{name}.txt").write_text(text, encoding="utf-8")
    print(f"tutorial: {len(followed.outputs)} outputs written to {OUTPUTS.relative_to(REPO)}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
