"""Follow docs/tutorial.md in a temporary folder and write what each step prints into the page itself.

The page is the script: its fenced blocks marked ``.tutorial-run`` are typed (one command a line, in a shell
whose working folder carries over as a user's would), those marked ``.tutorial-file`` are written to the file
their ``title`` names (relative to the mesh folder, ``~/acme``), in page order. A ``.tutorial-output`` block
holds what the run block before it printed; a line ``...`` in it stands for lines the page leaves out (a
refresh keeps the cut where the lines around it still match). ``exit="N"`` on a run block says its one command
is expected to exit N (default 0). HOME is the temporary folder, so ``~/acme`` is a fresh folder and the
output reads ``~/acme`` whatever machine ran it.

The output lives in the page, not in files the page includes, because the pages read on GitHub too, where
MkDocs' snippets do not expand.

    python scripts/tutorial.py            # follow the page and write the outputs into it
    python scripts/tutorial.py --check    # exit 1 when an output differs from the page (durations, release ids
                                          # and times aside)

tests/docs/test_tutorial.py runs the same code (``follow``, ``differences``) and checks what the tutorial left.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "tutorial.md"
MESH_FOLDER = "acme"  # the page's ~/acme
Runner = Callable[[list[str], Path, dict[str, str]], tuple[int, str]]

# ```{.bash .tutorial-run exit="1"} ... ``` (superfences' attribute form, as the page writes it)
_FENCE = re.compile(r"^```\{(?P<attrs>[^}\n]*)\}[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One marked fenced block of the page: commands to run, or a file to write."""

    kind: str  # "run", "file" or "output"
    body: str
    attrs: dict[str, str] = field(default_factory=dict)
    line: int = 0
    span: tuple[int, int] = (0, 0)  # the body's place in the page

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
        span = match.span("body")
        if "tutorial-run" in classes:
            block = Block("run", match["body"], attrs, line, span)
            if "exit" in attrs and len(block.commands) != 1:
                raise ValueError(f"docs/tutorial.md:{line}: a block with exit= holds one command")
            found.append(block)
        elif "tutorial-file" in classes:
            if "title" not in attrs:
                raise ValueError(f'docs/tutorial.md:{line}: a .tutorial-file block needs title="<path>"')
            found.append(Block("file", match["body"], attrs, line, span))
        elif "tutorial-output" in classes:
            if not found or found[-1].kind != "run":
                raise ValueError(f"docs/tutorial.md:{line}: a .tutorial-output block follows the run block it shows")
            found.append(Block("output", match["body"], attrs, line, span))
    return found


@dataclass
class Followed:
    """What following the page did: each run block's output (by the block's line), normalised, and the folder."""

    home: Path
    outputs: dict[int, str] = field(default_factory=dict)

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


# A command the runner may take instead of a shell: `mesh ...` or `dbt ...` alone, nothing a shell would expand
_SHELL = re.compile(r"[|&;<>$`~*?\[\]]")


def _plain(command: str) -> list[str] | None:
    """The argv of a plain `mesh`/`dbt` command (quotes removed), or None when it needs a shell."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", command)  # what a shell would read outside quotes
    return argv if argv and argv[0] in ("mesh", "dbt") and not _SHELL.search(unquoted) else None


def follow(page: str, home: Path, *, echo: bool = False, runner: Runner | None = None) -> Followed:
    """Type the page's commands and write its files in ``home`` (an empty folder), in page order.

    ``runner(argv, cwd, env)``: runs a plain `mesh`/`dbt` command instead of a shell and gives back its exit code
    and what it printed (stdout and stderr in one, as a terminal shows them); the tests pass one that forks a warm
    interpreter. Raises AssertionError naming the page line when a command exits other than the page expects.
    """
    bin_dir = home / ".tutorial-bin"
    _shim(bin_dir)
    env = _environment(home, bin_dir)
    followed = Followed(home)
    cwd = home
    where = home / ".tutorial-pwd"
    for block in blocks(page):
        if block.kind == "output":  # what the block before printed: compared or written afterwards
            continue
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
            argv = _plain(command) if runner else None
            if runner and argv:
                returncode, output = runner(argv, cwd, env)
                done = subprocess.CompletedProcess(argv, returncode, output)
            else:
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
        followed.outputs[block.line] = normalise("".join(captured), home)
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


TRIM = "..."  # a line of its own in an output block: the page leaves out the lines the command printed there


def trimmed(shown: str, printed: str) -> str | None:
    """``printed`` cut where the page's ``shown`` block cuts it (its ``...`` lines), or None when the lines the
    page keeps are not what the command printed (volatile parts aside)."""
    segments: list[list[str]] = [[]]
    for line in shown.splitlines():
        if line.strip() == TRIM:
            segments.append([])
        else:
            segments[-1].append(comparable(line))
    lines = printed.splitlines()
    keys = [comparable(line) for line in lines]
    out: list[str] = []
    at = 0
    for index, segment in enumerate(segments):
        first, last = index == 0, index == len(segments) - 1
        starts = [at] if first else range(at, len(lines) - len(segment) + 1)
        if last and not first:
            starts = [len(lines) - len(segment)] if len(lines) - len(segment) >= at else []
        found = next((i for i in starts if keys[i : i + len(segment)] == segment), None)
        if found is None or (first and last and len(segment) != len(lines)):
            return None
        if not first:
            out.append(TRIM)
        out += lines[found : found + len(segment)]
        at = found + len(segment)
    return "\n".join(out) + "\n"


def _shown(page: str) -> list[tuple[Block, Block]]:
    """Each output block of the page with the run block before it."""
    found = blocks(page)
    return [(run, out) for run, out in zip(found, found[1:], strict=False) if out.kind == "output"]


def differences(page: str, followed: Followed) -> list[str]:
    """The output blocks that are not what their run block printed (volatile parts and ``...`` cuts aside)."""
    return [
        f"docs/tutorial.md:{out.line}: the output differs from what `{run.commands[-1]}` prints now:\n"
        f"{followed.outputs[run.line]}"
        for run, out in _shown(page)
        if trimmed(out.body, followed.outputs[run.line]) is None
    ]


def render(page: str, followed: Followed) -> str:
    """The page with each output block holding what its run block printed, cut where the page cuts it (a cut
    that no longer fits shows the whole output: cut it again by hand)."""
    for run, out in reversed(_shown(page)):  # from the end: the spans before stay valid
        printed = followed.outputs[run.line]
        if "```" in printed:
            raise ValueError(f"docs/tutorial.md:{run.line}: the output holds a code fence; it cannot be shown")
        text = trimmed(out.body, printed) if TRIM in out.body else None
        page = page[: out.span[0]] + (text or printed) + page[out.span[1] :]
    return page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the page, write nothing")
    args = parser.parse_args()
    page = PAGE.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="mesh-tutorial-") as tmp:
        followed = follow(page, Path(tmp), echo=True)
    if args.check:
        problems = differences(page, followed)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    PAGE.write_text(render(page, followed), encoding="utf-8")
    print(f"tutorial: {len(_shown(page))} outputs written into {PAGE.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
