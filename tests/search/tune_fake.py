"""`python tune_fake.py ARGS...` is `kcomp ARGS...` with tests/search/fake_space.py installed as
kcomp.search.space, so `kcomp tune` runs a tiny, fixed space in a subprocess (the kill-and-resume test)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_space

sys.modules["kcomp.search.space"] = fake_space

if __name__ == "__main__":
    from kcomp.cli import main

    sys.exit(main(sys.argv[1:]))
