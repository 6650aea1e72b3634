"""`python tune_fake.py ARGS...` is `kcomp ARGS...` with tests/search/fake_space.py installed as
kcomp.search.space, so `kcomp tune` runs a tiny, fixed space in a subprocess (the kill-and-resume test)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_space

import kcomp.search.space  # noqa: F401  (loaded first, so only the name is replaced below)

sys.modules["kcomp.search.space"] = fake_space

if __name__ == "__main__":
    import time

    from kcomp.db import store as db

    _record = db.TuningDB.record

    def slow_record(self, *args, **kwargs):
        """Each recorded trial takes a moment, so a test can kill the run half-way on any machine."""
        out = _record(self, *args, **kwargs)
        time.sleep(0.3)
        return out

    db.TuningDB.record = slow_record

if __name__ == "__main__":
    from kcomp.cli import main

    sys.exit(main(sys.argv[1:]))
