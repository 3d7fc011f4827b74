"""The manual agrees with the CLI, and its links lead somewhere.

The command pages (``docs/commands.md`` and ``docs/commands/*.md``) have one section per
command, on one page only, headed ``slt <command>`` in backticks, with a table whose
first cell names each argument in upper case (`` `MODEL` ``) and each option, both sides
of a switch (`` `--force` / `--no-force` ``). These tests walk the Typer app (no torch is
imported) and compare both ways: every option the CLI has is in its command's table, and
no table or text names an option the CLI does not have. A new option or command needs its
row, or its section on one of the pages. Every relative link of the README, the changelog
and the manual leads to a file, and to a heading of it where it names one.
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
COMMAND_PAGES = [DOCS / "commands.md", *sorted((DOCS / "commands").glob("*.md"))]
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


def _page_sections() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Every command section of the command pages, and the pages each command is on."""
    sections: dict[str, str] = {}
    pages: dict[str, list[str]] = {}
    for page in COMMAND_PAGES:
        for name, text in _sections(page.read_text(encoding="utf-8")).items():
            sections[name] = text
            pages.setdefault(name, []).append(page.relative_to(ROOT).as_posix())
    return sections, pages


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
SECTIONS, SECTION_PAGES = _page_sections()


@pytest.mark.parametrize("path", sorted(CLI))
def test_every_command_has_a_section_listing_exactly_its_options(path: str) -> None:
    assert path in SECTIONS, f"no command page has a section headed `{path}`"
    assert len(SECTION_PAGES[path]) == 1, f"`{path}` has sections on {SECTION_PAGES[path]}"
    page = SECTION_PAGES[path][0]
    documented = _table_names(SECTIONS[path])
    real = _documented_names(CLI[path])
    missing, unknown = sorted(real - documented), sorted(documented - real)
    assert not missing, f"`{path}` in {page}: add a table row for {missing}"
    assert not unknown, f"`{path}` in {page} documents what it lacks: {unknown}"


def test_command_pages_have_no_section_for_a_command_that_does_not_exist() -> None:
    unknown = sorted(set(SECTIONS) - set(CLI))
    assert not unknown, f"the command pages have sections for commands that do not exist: {unknown}"


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_command_pages_name_only_options_that_exist(page: Path) -> None:
    """An option mentioned anywhere on a page (usage lines, prose) is one of the CLI's."""
    real = set().union(*(_documented_names(command) for command in CLI.values())) | {"--help"}
    mentioned = set(OPTION.findall(page.read_text(encoding="utf-8")))
    unknown = sorted(mentioned - real)
    assert not unknown, f"{page.relative_to(ROOT)} names options no command has: {unknown}"


def _manual_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *_manual_pages()]


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


def _links(page: Path) -> list[str]:
    """The targets of a markdown file's links, code blocks skipped."""
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def _broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` whose file, or heading (``#anchor``), does not exist."""
    broken = []
    for target in _links(page):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target} (no file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no heading #{anchor})")
    return broken


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = _broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## `slt data`: inspect, convert\n",
                                       encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[a](other.md#slt-data-inspect-convert) [b](#page) "
                    "[c](https://example.org/x.md) [d](gone.md) [e](other.md#slt-data)\n"
                    "[f](#no-such-heading)\n```\n[g](also-gone.md)\n```\n", encoding="utf-8")
    assert _broken_links(page) == ["gone.md (no file)",
                                   "other.md#slt-data (no heading #slt-data)",
                                   "#no-such-heading (no heading #no-such-heading)"]


def test_the_index_links_every_page_of_the_manual_and_the_readme_links_the_index() -> None:
    index = DOCS / "index.md"
    linked = {(DOCS / target.partition("#")[0]).resolve() for target in _links(index)}
    unlinked = [p.relative_to(DOCS).as_posix() for p in _manual_pages()
                if p != index and p.resolve() not in linked]
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
