"""The README stays a short, true page for users: at most 300 lines, every link resolves, every
command in it parses with the real CLI parser, and the extension metadata points at files that
exist. (That the demo writes the files the README's commands use is checked in test_demo.py.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from DiffusionSegLib.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def readme_commands(text: str) -> list[list[str]]:
    """`python -m DiffusionSegLib …` lines of the README's bash blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("python -m DiffusionSegLib "):
                commands.append(shlex.split(line)[3:])
    return commands


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_every_readme_command_parses():
    commands = readme_commands(README.read_text())
    assert {c[0] for c in commands} >= {"demo", "train", "segment", "evaluate"}
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # SystemExit (a failed test) on an unknown option or command


def test_extension_metadata_points_at_files_that_exist():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for variable in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        urls = re.search(rf'set\({variable} "([^"]+)"\)', cmake).group(1).split()
        for url in urls:
            path = ROOT / url.split("/main/", 1)[1]
            assert path.is_file(), url
            if variable == "EXTENSION_SCREENSHOTURLS":
                assert path.stat().st_size < 300_000
    assert (ROOT / "Resources" / "Icons" / "DiffusionSeg.png").read_bytes() == \
        (ROOT / "DiffusionSeg" / "Resources" / "Icons" / "DiffusionSeg.png").read_bytes()


def test_generated_tables_match_the_code():
    """Method parameter tables and the exit-status table are generated from the specs and
    contract/errors.py; after changing either, run `python -m DiffusionSegLib.tools.docs_tables`."""
    from DiffusionSegLib.tools.docs_tables import TABLES, stale_pages

    assert stale_pages() == [], "run `python -m DiffusionSegLib.tools.docs_tables` and commit the pages"
    for page, tables in TABLES.items():
        text = (ROOT / page).read_text()
        for name, make in tables.items():
            table = make()
            assert table.count("\n") >= 3 and table in text  # a real table, present in its page
    adzus = (ROOT / "docs/methods/adzus.md").read_text()
    assert "`seed_threshold`" in adzus and "`proposals`" in adzus
    assert "`gate_threshold`" in (ROOT / "docs/methods/diffugts.md").read_text()


def test_every_page_installs_the_same_test_extras_as_ci():
    """The test install line is the same on every page and in .ci/run."""
    pattern = re.compile(r'pip install (?:--quiet )?-e "\.\[(test[^\]]*)\]"')
    ci = pattern.findall((ROOT / ".ci" / "run").read_text())
    assert len(ci) == 1
    found = {str(page.relative_to(ROOT)): pattern.findall(page.read_text()) for page in PAGES}
    pages = {name: extras for name, extras in found.items() if extras}
    assert {"README.md", "docs/install.md", "docs/development.md"} <= set(pages)
    for name, extras in pages.items():
        assert set(extras) == set(ci), f"{name} installs .[{extras}], CI installs .[{ci[0]}]"
