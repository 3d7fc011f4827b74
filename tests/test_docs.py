"""The manual agrees with the CLI, and its links lead somewhere.

``docs/commands.md`` has one section per command, headed ``slt <command>`` in
backticks, with a table whose first cell names each argument in upper case
(`` `MODEL` ``) and each option, both sides of a switch (`` `--force` / `--no-force` ``).
These tests walk the Typer app (no torch is imported) and compare both ways: every
option the CLI has is in its command's table, and no table or text names an option the
CLI does not have. A new option or command needs its row or section in commands.md.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import typer

from slt_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMANDS_PAGE = DOCS / "commands.md"
README_LIMIT = 10 * 1024  # the README is a front door; the manual lives in docs/

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
COMMAND_HEADING = re.compile(r"^#{1,6}\s+`(slt(?: [a-z][\w-]*)*)`\s*$")
ROW_NAMES = re.compile(r"`([^`]+)`")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _cli_commands() -> dict[str, object]:
    """Every command path (``slt``, ``slt train``, ``slt data inspect``) and its click object."""
    found: dict[str, object] = {}

    def walk(command: object, path: str) -> None:
        found[path] = command
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "slt")
    return found


def _documented_names(command: object) -> set[str]:
    """What the docs must name for a command: ``--options`` (both sides of a
    ``--x/--no-x`` switch) and arguments in upper case."""
    names: set[str] = set()
    for param in command.params:  # type: ignore[attr-defined]
        if getattr(param, "hidden", False):  # not in --help, so not in the docs either
            continue
        if param.param_type_name == "argument":
            names.add(param.name.upper())
        else:
            names.update(opt for opt in (*param.opts, *param.secondary_opts) if opt != "--help")
    return names


def _sections(text: str) -> dict[str, str]:
    """The text under each ``slt ...`` heading, up to the next command heading."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = COMMAND_HEADING.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _table_names(section: str) -> set[str]:
    """The names in the first cell of each table row: ``--force``, ``--no-force``, ``-f``,
    ``MODEL``."""
    names: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        first_cell = line.split("|")[1]
        for name in ROW_NAMES.findall(first_cell):
            if name.startswith("-") or re.fullmatch(r"[A-Z][A-Z_]*", name):
                names.add(name)
    return names


CLI = _cli_commands()
SECTIONS = _sections(COMMANDS_PAGE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(CLI))
def test_every_command_has_a_section_listing_exactly_its_options(path: str) -> None:
    assert path in SECTIONS, f"docs/commands.md has no section headed `{path}`"
    documented = _table_names(SECTIONS[path])
    real = _documented_names(CLI[path])
    missing, unknown = sorted(real - documented), sorted(documented - real)
    assert not missing, f"`{path}` in docs/commands.md: add a table row for {missing}"
    assert not unknown, f"`{path}` in docs/commands.md documents what it lacks: {unknown}"


def test_commands_page_has_no_section_for_a_command_that_does_not_exist() -> None:
    unknown = sorted(set(SECTIONS) - set(CLI))
    assert not unknown, f"docs/commands.md has sections for commands that do not exist: {unknown}"


def test_commands_page_names_only_options_that_exist() -> None:
    """An option mentioned anywhere on the page (usage lines, prose) is one of the CLI's."""
    real = set().union(*(_documented_names(command) for command in CLI.values())) | {"--help"}
    mentioned = set(OPTION.findall(COMMANDS_PAGE.read_text(encoding="utf-8")))
    unknown = sorted(mentioned - real)
    assert not unknown, f"docs/commands.md names options no command has: {unknown}"


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file (code blocks skipped)."""
    anchors: set[str] = set()
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for line in text.splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        title = match.group(2).lower()
        slug = "".join(ch for ch in title
                       if ch in " -_" or unicodedata.category(ch)[0] in "LN")
        slug = slug.replace(" ", "-")
        anchor, count = slug, 1
        while anchor in anchors:
            anchor, count = f"{slug}-{count}", count + 1
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target} (no file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_every_docs_page_is_reachable_from_the_index_and_the_readme_links_the_index() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    unlinked = [p.name for p in DOCS.glob("*.md") if p.name != "index.md" and p.name not in index]
    assert not unlinked, f"docs/index.md does not link {unlinked}"
    assert "docs/index.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_a_front_door() -> None:
    """Short, and its first commands are the fresh-machine ones (CI runs the second)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) < README_LIMIT
    blocks = re.findall(r"^```bash\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert blocks[0].strip().endswith("slt train --stages all --force")
    test_command = 'pip install torch==2.13.0 -e ".[dev]" && python -m pytest -q'
    assert blocks[1].strip().endswith(test_command)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install --quiet torch==2.13.0 -e ".[dev]"' in ci
    assert ci.rstrip().endswith("python -m pytest -q")
