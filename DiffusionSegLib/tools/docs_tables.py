"""Tables in docs/ that are generated from the code, so they cannot drift from it.

Each table sits between two HTML comments in its page,

    <!-- generated: NAME (python -m DiffusionSegLib.tools.docs_tables) -->
    …
    <!-- end generated: NAME -->

and is rewritten from its source: a method's parameter table from its spec (`methods/*/spec.py`,
`Sdseg.info`: names, defaults, ranges, meanings), the exit-status table of docs/cli.md from
`contract/errors.py`. After changing a parameter or an exit status, run

    python -m DiffusionSegLib.tools.docs_tables          # rewrite the tables
    python -m DiffusionSegLib.tools.docs_tables --check  # exit 1 when a table differs (the test does this)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m DiffusionSegLib.tools.docs_tables"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(param) -> str:
    if param.default == "":
        return '`""`'
    return f"`{str(param.default).lower() if isinstance(param.default, bool) else param.default}`"


def _values(param) -> str:
    if param.choices:
        return " / ".join(f"`{c}`" for c in param.choices)
    if param.minimum is not None or param.maximum is not None:
        low = "" if param.minimum is None else f"{param.minimum:g}"
        high = "" if param.maximum is None else f"{param.maximum:g}"
        return f"{param.type} {low}–{high}" if high else f"{param.type} ≥ {low}"
    return param.type


def parameter_table(method: str) -> str:
    """The `--param NAME=VALUE` table of one method, from its registry entry."""
    from ..methods import available_methods

    info = available_methods()[method].info
    rows = ["| parameter | default | values | meaning |", "|---|---|---|---|"]
    for param in info.params:
        rows.append(f"| `{param.name}` | {_default(param)} | {_cell(_values(param))} | {_cell(param.help)} |")
    return "\n".join(rows)


def exit_table() -> str:
    """docs/cli.md's exit statuses with their error codes, from contract/errors.py."""
    from ..contract.errors import EXIT_MEANINGS, error_codes

    codes = error_codes()
    rows = ["| exit | error codes | meaning |", "|---|---|---|"]
    for status, meaning in EXIT_MEANINGS.items():
        named = ", ".join(f"`{code}`" for code in codes.get(status, []))
        rows.append(f"| {status} | {named} | {_cell(meaning)} |")
    return "\n".join(rows)


# page (relative to the repository) → {table name: what writes it}
TABLES: dict[str, dict[str, Callable[[], str]]] = {
    "docs/methods/adzus.md": {"parameters": lambda: parameter_table("adzus")},
    "docs/methods/diffugts.md": {"parameters": lambda: parameter_table("diffugts")},
    "docs/methods/sdseg.md": {"parameters": lambda: parameter_table("sdseg")},
    "docs/cli.md": {"exit-statuses": exit_table},
}


def render(text: str, tables: dict[str, Callable[[], str]], page: str = "") -> str:
    """`text` with every named region's body replaced by its table (a missing region is an error)."""
    for name, make in tables.items():
        begin = f"<!-- generated: {name} ({COMMAND}) -->"
        end = f"<!-- end generated: {name} -->"
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"{page}: no region '{name}' (a line `{begin}`, the table, then `{end}`)")
        block = f"{begin}\n{make()}\n{end}"
        text = pattern.sub(lambda _, block=block: block, text)
    return text


def stale_pages(root: Path = ROOT, write: bool = False) -> list[str]:
    """The pages whose generated tables differ from the code; `write` rewrites them."""
    stale = []
    for page, tables in TABLES.items():
        path = root / page
        text = path.read_text(encoding="utf-8")
        fresh = render(text, tables, page)
        if fresh != text:
            stale.append(page)
            if write:
                path.write_text(fresh, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report pages whose tables differ (exit 1)")
    args = parser.parse_args(argv)
    if not (ROOT / "docs").is_dir():
        print(f"No docs/ folder beside the package ({ROOT}): run this from a checkout.", file=sys.stderr)
        return 2
    stale = stale_pages(write=not args.check)
    for page in stale:
        print(f"{page}: {'differs from the code' if args.check else 'rewritten'}")
    if args.check and stale:
        print(f"Run `{COMMAND}` to regenerate.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
