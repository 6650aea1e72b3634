"""Benchmark suites behind `kcomp bench SUITE`: kcomp against its peers, on this machine, in one run.

    machine.py  the host and its roofs (fp32 FMA peak, copy bandwidth), measured in the run
    peers.py    numpy (a clean subprocess) and torch, timed with kcomp's recipe
    gemm.py     the gemm suite: `run_suite(cases) -> dict`
    report.py   the result as strict JSON or a table with GFLOP/s and % of peak
    cuda.py     the cuda suite: kcomp's CUDA target on the GPU vs torch (no GPU: no rows, one line)
    gpu.py      the GPU and its roofs (fp32 peak with its source, device copy bandwidth), CUDA-event timing
    cli.py      `add_parser(subparsers)`, `run(args)` and the `SUITES` registry

Every suite returns {"suite", "machine", "rows": [{"case", "params", "flops", "times_s", "extra"}]}
(the design notes, "Benchmarks").  Nothing is imported here, so `python -m kcomp.bench.peers` (the
numpy child) loads only what it needs.
"""
