"""Package discovery for the layout DESIGN.md describes: the top-level folders passes/, targets/ and
search/ install as kcomp.passes, kcomp.targets and kcomp.search, with every subpackage found here, so
a new package (a target, say) needs no list edited.  Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

ROOTS = {"kcomp": "kcomp", "kcomp.passes": "passes", "kcomp.targets": "targets", "kcomp.search": "search"}

packages = [
    f"{name}.{sub}" if sub else name for name, folder in ROOTS.items() for sub in ("", *find_packages(folder))
]
setup(packages=packages, package_dir=dict(ROOTS))
