"""The documentation checks itself: links resolve, the make targets and the command lines it
names exist, and no tracked file names a build machine's paths or a work session."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "systemd" / "README.md", *(ROOT / "docs").glob("*.md")])

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
SHELL = {"sh", "bash", "shell", "console"}
SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
# spelled in pieces so that this file does not match itself
MACHINE_PATH = re.compile("|".join(re.escape(f"/{d}/") for d in ("tmp", "work", "home", "root")))
SESSION = re.compile(r"\bsessions?[ -]\d+", re.I)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(h) for h in HEADING.findall(text)}


def code(text: str) -> list[str]:
    """The code in a markdown text: shell blocks (continuation lines joined) and inline
    spans, one command text per item."""
    out = []
    for info, block in FENCE.findall(text):
        if info.strip() in SHELL:
            out += block.replace("\\\n", " ").splitlines()
    out += SPAN.findall(FENCE.sub("", text))
    return out


def commands(text: str, program: str) -> list[list[str]]:
    """The words after each `program` in the code of a markdown text, one list per command
    (a command ends at a shell separator or a comment)."""
    found = []
    for line in code(text):
        for part in re.split(r"&&|\|\||;|\s\|\s|\s#", line):
            words = part.split()
            for i, word in enumerate(words):
                if word == program or word.endswith("/" + program):
                    found.append([w.rstrip(").,:") for w in words[i + 1:]])
    return found


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", makefile, re.M))


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def flags(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if re.fullmatch(r"--[a-z][\w-]*(=\S*)?", w)]


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z][\w+.-]*:", target):    # http:, https:, mailto: ...
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading '#{anchor}' in {rel(path)}")
    assert not broken, f"{rel(doc)}: broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_make_targets_exist(doc):
    targets = make_targets()
    named = {words[0] for words in commands(doc.read_text(), "make")
             if words and re.fullmatch(r"[a-z][\w-]*", words[0])}
    assert named <= targets, f"{rel(doc)}: no Makefile target {sorted(named - targets)}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_tsd_commands_exist(doc):
    from training.cli import build_parser

    groups = subparsers(build_parser())
    wrong = []
    for words in commands(doc.read_text(), "tsd"):
        if not words or words[0].startswith("-") or words[0] in ("...", "X"):
            continue
        if words[0] not in groups:
            wrong.append(f"tsd {words[0]}: no such command")
            continue
        name, parser, rest = f"tsd {words[0]}", groups[words[0]], words[1:]
        commands_of_group = subparsers(parser)
        if commands_of_group and rest and not rest[0].startswith("-"):
            names = [n for n in rest[0].split("|") if n != "..."]
            unknown = [n for n in names if n not in commands_of_group]
            wrong += [f"{name} {n}: no such command" for n in unknown]
            if unknown:
                continue
            if len(names) == 1:
                name, parser, rest = f"{name} {names[0]}", commands_of_group[names[0]], rest[1:]
        wrong += [f"{name}: no option {f}" for f in flags(rest) if f not in options(parser)]
    assert not wrong, f"{rel(doc)}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("doc", DOCS, ids=rel)
@pytest.mark.parametrize("program", ["edge-run", "edge-receive"])
def test_runtime_options_exist(doc, program):
    if program == "edge-run":
        from edge_runtime.cli import build_parser
    else:
        from edge_runtime.hybrid.receiver import build_parser
    known = options(build_parser())
    wrong = {f for words in commands(doc.read_text(), program) for f in flags(words)} - known
    assert not wrong, f"{rel(doc)}: {program} has no option {sorted(wrong)}"


def tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                                check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in filter(None, listed):
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        files.append(path)
    return files


def offending_lines(pattern: re.Pattern) -> list[str]:
    hits = []
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{rel(path)}:{number}: {line.strip()[:120]}")
    return hits


def test_no_build_machine_paths_in_tracked_files():
    hits = offending_lines(MACHINE_PATH)
    assert not hits, "paths of a build machine (use paths inside the repository):\n" + \
        "\n".join(hits)


def test_no_work_sessions_in_tracked_files():
    hits = offending_lines(SESSION)
    assert not hits, "work-log wording (describe what a thing is, not when it was made):\n" + \
        "\n".join(hits)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The helpers find a planted broken link, an unknown make target and tsd command."""
    doc = tmp_path / "x.md"
    doc.write_text("[a](missing.md) [b](#nowhere)\n\n```sh\nmake no-such-target\n"
                   "tsd no-such-command --x\n```\n")
    targets = [t for t in LINK.findall(doc.read_text())]
    assert targets == ["missing.md", "#nowhere"]
    assert "nowhere" not in anchors(doc)
    assert commands(doc.read_text(), "make") == [["no-such-target"]]
    assert "no-such-target" not in make_targets() and {"demo", "test"} <= make_targets()
    assert commands(doc.read_text(), "tsd") == [["no-such-command", "--x"]]
    assert MACHINE_PATH.search("see " + "/" + "tmp" + "/s13/x.py")
    assert SESSION.search("the Session " + "11 student") and not SESSION.search("test session")
