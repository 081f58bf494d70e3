"""`vla-razor results`: docs/results.md and the README's headline block, generated from the archives."""

from __future__ import annotations

from pathlib import Path

from vla_razor.analysis.results_page import headline, replace_headline, results_page
from vla_razor.atomic import atomic_write
from vla_razor.errors import ConfigError


def main(args) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise ConfigError(f"no archives at {root}: pass --root DIR (the committed ones are in docs/results)")
    page = results_page(root)
    if args.out:
        with atomic_write(Path(args.out)) as f:
            f.write(page)
        print(f"results page: {args.out}")
    else:
        print(page, end="")
    if args.readme:
        readme = Path(args.readme)
        try:
            text = replace_headline(readme.read_text(), headline(root))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        with atomic_write(readme) as f:
            f.write(text)
        print(f"headline numbers: {args.readme}")
    return 0
