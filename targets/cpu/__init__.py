"""The CPU target: C with OpenMP built by gcc (emit.py, build.py, runtime.py; target.py ties them)."""
