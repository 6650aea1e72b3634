"""Every search test runs with a private kcomp cache (shared by the session, so gcc builds are reused)
and its own tuning database, never the user's."""

from __future__ import annotations

import pytest

from kcomp.config import config

TINY_MATMUL = """dim M = 8, N = 8, K = 4
kernel matmul(A: f32[M, K], B: f32[K, N]) -> (C: f32[M, N]) {
    C[i, j] += A[i, k] * B[k, j]
}
"""


@pytest.fixture(scope="session")
def kcache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("kcache")


@pytest.fixture(autouse=True)
def private_cache(kcache, tmp_path, monkeypatch):
    monkeypatch.setenv("KCOMP_CACHE_DIR", str(kcache))
    monkeypatch.setenv("KCOMP_TUNING_DB", str(tmp_path / "tuning.db"))
    monkeypatch.delenv("KCOMP_NO_DB", raising=False)
    config.cache_clear()
    yield
    config.cache_clear()


@pytest.fixture
def matmul_file(tmp_path):
    path = tmp_path / "mm.kc"
    path.write_text(TINY_MATMUL)
    return path
