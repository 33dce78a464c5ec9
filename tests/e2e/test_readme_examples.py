"""Every example the README marks with `<!-- example -->` runs as written against a fresh
`make run` (the demo model on the default engine, llama.cpp) and prints what the README shows.

A marked ```sh block holds commands, each followed by its output as `# ` lines (`#  ` continues
the line before; `# ...` stands for any lines). A marked ```python block is followed by a ```text
block with what it prints. Ids and timestamps are compared by shape; everything else exactly. The
examples run in the README's order, since a conversation remembers its earlier turns."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, ServerProcess

README = ROOT / "README.md"
VARYING = [(re.compile(r"\b(resp|msg|conv|chatcmpl|cmpl)([-_])[0-9a-f]{32}\b"), r"\1\2ID"),
           (re.compile(r'("created(?:_at)?": ?)\d+(\.\d+)?'), r"\g<1>0")]


def examples() -> list[tuple[str, str, str]]:
    """(language, code, expected output) for each marked block, in order."""
    text = README.read_text()
    found = []
    for match in re.finditer(r"<!-- example -->\n```(\w+)\n(.*?)```\n", text, re.S):
        language, code = match.group(1), match.group(2)
        expected = ""
        if language == "python":
            printed = re.match(r"```text\n(.*?)```\n", text[match.end():], re.S)
            assert printed, f"a python example needs a ```text block after it:\n{code}"
            expected = printed.group(1)
        found.append((language, code, expected))
    return found


def shell_steps(code: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each command of a sh block."""
    steps: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("#  ") and steps and steps[-1][1]:
            steps[-1][1][-1] += line[3:]
        elif line.startswith("# ") or line == "#":
            steps[-1][1].append(line[2:])
        elif line.strip():
            steps.append((line, []))
    return steps


def normalized(text: str) -> str:
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return text


def matches(expected: list[str], actual: list[str]) -> bool:
    """`...` in `expected` stands for any run of lines; blank lines at the end do not count."""
    while actual and not actual[-1].strip():
        actual = actual[:-1]
    pattern = "".join(".*?" if line == "..." else re.escape(normalized(line) + "\n") for line in expected)
    return re.fullmatch(pattern, "".join(normalized(line) + "\n" for line in actual), re.S) is not None


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory):
    server = ServerProcess(db=tmp_path_factory.mktemp("readme") / "conversations.sqlite3", engine="llama.cpp")
    yield server.start()
    server.stop()


def test_the_readme_has_examples():
    languages = [language for language, _, _ in examples()]
    assert languages.count("sh") >= 2 and languages.count("python") >= 2


def test_every_readme_example_prints_what_the_readme_shows(fresh_run):
    address = f"127.0.0.1:{fresh_run.port}"
    failures = []
    for language, code, expected in examples():
        code = code.replace("localhost:5000", address).replace("127.0.0.1:5000", address)
        if language == "python":
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
            actual = (run.stdout + run.stderr).splitlines()
            if not matches(expected.splitlines(), actual):
                failures.append(f"{code}\n--- printed:\n" + "\n".join(actual))
            continue
        for command, lines in shell_steps(code):
            run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                                 cwd=Path(ROOT))
            actual = (run.stdout + run.stderr).splitlines()
            if not matches(lines, actual):
                failures.append(f"{command}\n--- printed:\n" + "\n".join(actual))
    assert not failures, "\n\n".join(failures)
