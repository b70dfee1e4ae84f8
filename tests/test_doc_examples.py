"""Every shell (and Python) example in README.md and api/README_API.md runs against the demo index, and shows its
real output.

Convention (README.md, "Development"): a fenced `sh`/`bash`/`python` block is run as written, with `localhost:5000`
pointed at a server these tests start on the demo index (built as `make demo-index` builds it). The block's trailing
`# ` comment lines are its expected output, compared exactly. A block that must not run (installing, starting a
server) is preceded by `<!-- doc-test: skip: <why> -->`. DOC_EXAMPLES_UPDATE=1 rewrites the expected output of
every block from a real run (then review the diff)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ops_helpers import REPO, Server, running_server

DOCS = ["README.md", "api/README_API.md"]
LANGUAGES = {"sh": "bash", "bash": "bash", "python": "python"}
SKIP = re.compile(r"<!-- doc-test: skip: (.+\S) -->")
HOST = re.compile(r"(localhost|127\.0\.0\.1):5000")
UPDATE = os.environ.get("DOC_EXAMPLES_UPDATE") == "1"


@dataclass(frozen=True)
class Example:
    doc: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    expected: list[str]  # the trailing "# " lines, without the "# "
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def examples(doc: str) -> list[Example]:
    lines = (REPO / doc).read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)", lines[i])
        if not fence:
            i += 1
            continue
        end = lines.index("```", i + 1)
        if fence.group(1) in LANGUAGES:
            body = lines[i + 1 : end]
            tail = len(body)
            while tail > 0 and (body[tail - 1] == "#" or body[tail - 1].startswith("# ")):
                tail -= 1
            previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
            skip = SKIP.search(previous)
            expected = [line[2:] for line in body[tail:]]
            code = "\n".join(body[:tail])
            found.append(Example(doc, i + 1, fence.group(1), code, expected, skip.group(1) if skip else None))
        i = end + 1
    return found


ALL = [example for doc in DOCS for example in examples(doc)]
RUNNABLE = [example for example in ALL if example.skip is None]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo index, built by the Makefile's demo-index command, served by one worker."""
    root = tmp_path_factory.mktemp("demo") / "indexes"
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\n$(INDEX_ROOT)/current:", 1)[1].split("\n", 2)[1].strip()
    assert "index-builder build data/demo/products.jsonl" in recipe
    command = recipe.replace("$(BIN)/", str(Path(sys.executable).parent) + "/").replace("$(INDEX_ROOT)", str(root))
    subprocess.run(command, shell=True, cwd=REPO, check=True, capture_output=True)
    with running_server(root, tmp_path_factory.mktemp("demo-logs"), workers=1) as server:
        yield server


def run(example: Example, server: Server) -> str:
    code = HOST.sub(server.base.removeprefix("http://"), example.code)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = ["bash", "-eo", "pipefail", "-c", code] if LANGUAGES[example.language] == "bash" else [sys.executable]
    done = subprocess.run(
        command,
        input=code if command == [sys.executable] else None,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, f"{example.where} failed ({done.returncode}):\n{done.stderr}\n{done.stdout}"
    return done.stdout.rstrip("\n")


def rewrite(example: Example, output: str) -> None:
    """Replace the block's expected output with `output` (DOC_EXAMPLES_UPDATE=1)."""
    path = REPO / example.doc
    lines = path.read_text().splitlines()
    code = example.code.splitlines()
    # found by its code, not its line number: blocks rewritten before this one may have changed length
    (fence,) = [
        i
        for i in range(len(lines))
        if lines[i] == f"```{example.language}" and lines[i + 1 : i + 1 + len(code)] == code
    ]
    start = fence + 1 + len(code)
    end = lines.index("```", start)
    lines[start:end] = [f"# {line}".rstrip() for line in output.splitlines()] or ["#"]
    path.write_text("\n".join(lines) + "\n")


def test_the_docs_have_runnable_examples_and_skips_say_why() -> None:
    assert {example.doc for example in RUNNABLE} == set(DOCS)
    assert len(RUNNABLE) >= 8
    assert all(example.expected for example in RUNNABLE), [e.where for e in RUNNABLE if not e.expected]
    for doc in DOCS:  # no code block (JSON shapes included) shows what the demo would refuse
        blocks = re.findall(r"```(?:json|sh|bash|python)\n(.*?)```", (REPO / doc).read_text(), re.DOTALL)
        for placeholder in ("[...", ", ...]", "floats]", '"p17"', '"aisle"', '"department"'):
            assert not any(placeholder in block for block in blocks), f"{doc}: placeholder {placeholder!r}"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("example", RUNNABLE, ids=[example.where for example in RUNNABLE])
def test_example_runs_and_shows_its_real_output(example: Example, demo: Server) -> None:
    output = run(example, demo)
    if UPDATE:
        rewrite(example, output)
        return
    assert output.splitlines() == example.expected, f"{example.where}: the output shown is not what it prints"
