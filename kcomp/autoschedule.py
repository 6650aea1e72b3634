"""The rule-based default scheduler: what a kernel gets when nobody wrote or tuned a schedule.

The result is an ordinary `Schedule` (`kcomp compile --emit schedule` prints it), built by applying
candidate steps one at a time to the lowered nest and keeping those that are legal, so every rule
can be written optimistically and the schedule always replays.

Rules, per top-level loop nest (one per statement, plus initialisations):
  1. Contractions shaped like GEMM (`C[.., i, j] += A[.., i, k] * B[.., k, j]`, f32, j contiguous in C
     and B) get the register-blocked recipe: tile i by MR and j by NR (NR a multiple of the vector
     width, MR*NR/W accumulators fit in the registers), block k by KC, pack B's KC x N panel so the
     micro-kernel reads it contiguously, keep the MR x NR tile of C in registers (cache_write), unroll
     the rows, vectorize the columns, parallelize the row tiles.
  2. Stencil contractions shaped like a direct convolution (`Y[.., m, .., w] += X[.., w + s ..] *
     F[.., m, ..]`: the contiguous output loop w offset by a reduction in the input X, a loop m of
     the output that indexes the weights F but not X) get a register tile of MR rows of m times one
     vector of w: the row's weight broadcast, the window of X one unaligned vector load.  X's window
     for one outer iteration is staged with its halo (cache_read: the padding is done once in the
     copy, so the compute loop loads without bounds tests), the tile of Y stays in registers, and
     the fused outer loops (image x row) are shared by the threads.  Where a vector of output
     channels fills more lanes than the row (56 columns are 3.5 vectors) or the window is strided,
     the channel form takes it instead (kcomp/channel_conv.py): channels x a divisor of the row.
  3. Every other nest: the loop that indexes the stored tensor contiguously moves innermost and is
     vectorized (a reduction innermost gets `vectorize ... reduce` when no such loop exists); the
     outermost independent loop runs in parallel when the nest has enough work to pay for threads.
"""

from __future__ import annotations

from typing import Any

from kcomp.affine import affine
from kcomp.autofuse import Builder, fuse_by_rule
from kcomp.channel_conv import schedule_channel_conv
from kcomp.contraction import classify
from kcomp.expr import Binary, BinaryOp, Const, Load, free_vars, loads, walk
from kcomp.fold_inits import fold_inits
from kcomp.gathered import schedule_gathered
from kcomp.loops import Alloc, Guard, Loop, LoopKind, LoopNest, Stmt, Store, walk_stmts
from kcomp.loops.common import body_exprs
from kcomp.printer import symbol_names
from kcomp.program import Program
from kcomp.scan_rule import is_scan, schedule_scan
from kcomp.schedule import (
    CacheRead,
    CacheWrite,
    ComputeAt,
    Fuse,
    Pack,
    Parallel,
    Phases,
    Reorder,
    Schedule,
    Split,
    Tile,
    Unroll,
    Vectorize,
)

PARALLEL_MIN_WORK = 1 << 15  # loop iterations below which threads cost more than they bring
KC = 256  # k-block of the GEMM recipe: A's MR x KC and B's KC x NR slivers stay in L1/L2


def default_schedule(program: Program, nest: LoopNest, target: object, fuse: bool = True) -> Schedule:
    """Schedule steps for `nest` on `target` (its `vector_bits` and `cores`), chosen by the rules
    above after the fusion rules of `kcomp.autofuse` (`fuse` False: none; the search's fusion
    variants schedule nests they fused themselves)."""
    width = max(1, getattr(target, "vector_bits", 0) // 32)
    cores = getattr(target, "cores", 1)
    l2 = getattr(target, "l2_bytes", 512 << 10)
    b = Builder(nest)
    steps = getattr(getattr(target, "capabilities", None), "steps", None)
    if fuse and (steps is None or ComputeAt in steps):
        fuse_by_rule(b)
    if steps is None or Phases in steps:
        _split_phases(b)
    # NOTE: steps rename loops but never add or remove top-level nests, so a nest's position is
    # how it is found again after each step.
    scans = []
    for pos, top in enumerate(_top_nests(b.nest.body)):
        names = b.names()
        chain = perfect_chain(top)
        gemm = _gemm_like(chain) if width > 1 else None
        if is_scan(chain):
            scans.append(pos)
            _generic(b, pos, width, cores)
        elif _fused(chain):
            _fused_nest(b, pos, width, cores)
        elif (
            gemm is not None
            and gemm[0].extent >= 2 * _tile_sizes(gemm[0].extent, gemm[1].extent, width, True)[0]
        ):
            _gemm(b, pos, chain, names, width, cores)
        elif gemm is not None:
            if not _skinny(b, chain, names, width, cores):
                _generic(b, pos, width, cores)
        elif schedule_gathered(b, chain, names, width, cores, _accumulators(width), _work(chain[0]), l2):
            pass
        elif not _conv(b, pos, chain, names, width, cores):
            _generic(b, pos, width, cores)
    for pos in reversed(scans):  # NOTE: last: the rule adds top-level nests (kcomp/scan_rule.py)
        schedule_scan(b, perfect_chain(_top_nests(b.nest.body)[pos]), width, cores)
    return Schedule(fold_inits(nest, tuple(b.steps)))


def _split_phases(b: Builder) -> None:
    """Rule 0: an update that reads its input only where `(.. h ..) % s == 0` (a transposed
    convolution in gather form) is split into one nest per residue of each such output loop
    (passes/phases.py), so no tap is computed to be multiplied by a masked zero."""
    changed = True
    while changed:
        changed = False
        for top in _top_nests(b.nest.body):
            stmts = [s for s in walk_stmts((top,)) if isinstance(s, Store)]
            if len(stmts) != 1:
                continue
            moduli = [n for n in walk(stmts[0].value) if isinstance(n, Binary) and n.op is BinaryOp.MOD]
            phased = {v for n in moduli for v in free_vars(n.lhs)}
            written = {v for e in stmts[0].index for v in free_vars(e)}
            for lp in perfect_chain(top):
                if lp.var in phased and lp.var in written and b.try_step(Phases(b.name(lp))):
                    changed = True
                    break
            if changed:
                break


def _top_nests(body: tuple[Stmt, ...]) -> list[Loop]:
    out: list[Loop] = []
    for s in body:
        if isinstance(s, Loop):
            out.append(s)
        elif isinstance(s, Alloc | Guard):
            out += _top_nests(s.body)
    return out


def perfect_chain(top: Loop) -> list[Loop]:
    """The perfectly nested loops from `top` down."""
    chain = [top]
    while len(chain[-1].body) == 1 and isinstance(chain[-1].body[0], Loop):
        chain.append(chain[-1].body[0])
    return chain


def _gemm_like(chain: list[Loop]) -> tuple[Loop, Loop, Loop, Store] | None:
    """(i, j, k, store) of a contraction of two tensors in any loop order and layout
    (kcomp.contraction: j indexes C's last dimension, i the other operand)."""
    c = classify(chain)
    return None if c is None else (c.rows, c.cols, c.reduce, c.store)


def _accumulators(width: int) -> int:
    """Vector registers a register tile may hold: 12 of the 16 AVX2 ones, 24 of the 32 AVX-512 ones
    (the rest hold broadcasts and the loaded row)."""
    return 24 if width >= 16 else 12


ROWS_SHARING_L1_SETS = 8  # L1 ways on the x86 cores we meet: strided rows of A beyond this evict each other


def _tile_sizes(m: int, n: int, width: int, strided_rows: bool = False) -> tuple[int, int]:
    """MR rows x NR columns of the register tile.  NR is two vectors; MR uses the accumulator budget
    (12 of the 16 AVX2 registers, 24 of the 32 AVX-512 ones: the rest hold a broadcast of A and
    the row of B).  Remainder rows are computed on clamped reads and not written back (cache_write),
    so MR need not divide M: a full tile with a remainder beats a smaller tile that divides (measured:
    1000^3 ran 118-132 GFLOP/s with 6 x 16 tiles, 102-106 with 5 x 16).  When the broadcast
    operand's rows lie a stride apart (A[i, k] rather than A[k, i]) at most ROWS_SHARING_L1_SETS of
    them: at a power-of-two stride they map to one L1 set (measured on 1024^3 with 16-lane vectors:
    12 x 32 tiles 13.1-16.2 ms, 8 x 32 tiles 11.0 ms)."""
    nr = 2 * width
    if n < nr:
        nr = max(width, -(-n // width) * width)
    budget = _accumulators(width)
    mr = max(1, min(budget // (nr // width), 12))
    if strided_rows:
        mr = min(mr, ROWS_SHARING_L1_SETS)
    return min(mr, m), nr


def _gemm(b: Builder, pos: int, chain: list[Loop], names: dict, width: int, cores: int) -> None:
    c = classify(chain)
    assert c is not None
    i, j, k, store = c.rows, c.cols, c.reduce, c.store
    ni, nj, nk = names[i.var], names[j.var], names[k.var]
    mr, nr = _tile_sizes(i.extent, j.extent, width, c.broadcast.index[-1] is not i.var)
    blocks = -(-k.extent // KC)
    kc = -(-k.extent // blocks)  # equal k-blocks of at most KC: a remainder block would need a guard
    ok = b.try_step(Split(ni, mr)) and b.try_step(Split(nj, min(nr, j.extent)))
    ok = ok and b.try_step(Split(nk, kc))
    if not ok:
        return _generic(b, pos, width, cores)

    def loop(raw: str) -> str:
        return _display(b, pos, raw)

    outer_loops = [lp for lp in chain if lp not in (i, j, k)]
    outer = [names[lp.var] for lp in outer_loops]
    ko, io, jo = loop(f"{nk}_o"), loop(f"{ni}_o"), loop(f"{nj}_o")
    b.try_step(Reorder((*outer, ko, io, jo, loop(f"{nk}_i"), loop(f"{ni}_i"), loop(f"{nj}_i"))))
    b.try_step(Unroll(loop(f"{ni}_i")))
    b.try_step(Vectorize(loop(f"{nj}_i")))
    bname = symbol_names(b.nest)[c.panel.buffer]
    threads = cores > 1 and _work(chain[0]) >= PARALLEL_MIN_WORK
    # NOTE: an outer (batch) loop with an iteration per core is the cheapest place for threads: one
    # parallel region per call instead of two per k-block (the packing and the tiles).
    batch = (
        next((n for n, lp in zip(outer, outer_loops, strict=True) if lp.extent >= cores), None)
        if threads
        else None
    )
    if batch is not None and not b.try_step(Parallel(batch)):
        batch = None
    packed = b.try_step(Pack(bname, ko, c.panel_dim, min(nr, j.extent)))
    if packed and threads and batch is None:
        b.try_step(Parallel(loop(f"{bname}_pack_0")))  # the copy is memory-bound: both cores
    cname = symbol_names(b.nest)[store.buffer]
    b.try_step(CacheWrite(cname, loop(f"{nj}_o")))
    if threads and batch is None:
        for candidate in (loop(f"{ni}_o"), loop(f"{nj}_o")):
            if b.try_step(Parallel(candidate)):
                break


def _display(b: Builder, pos: int, raw: str) -> str:
    """The shown name of top nest `pos`'s loop whose variable a step created as `raw`: steps name
    new loops after the shown names of the time (`k_o`), which a loop elsewhere may already hold."""
    top = _top_nests(b.nest.body)[pos]
    names = b.names()
    for s in walk_stmts((top,)):
        if isinstance(s, Loop) and s.var.name == raw:
            return names[s.var]
    return raw


def _skinny(b: Builder, chain: list[Loop], names: dict, width: int, cores: int) -> bool:
    """A GEMM with a handful of rows (a vector times a matrix) is bound by reading B once: each
    thread streams its own contiguous band of B's rows (`parallel k_o reduce`, private copies of
    the small C), four rows per pass over C so four streams are in flight."""
    c = classify(chain)
    assert c is not None
    i, j, k, store = c.rows, c.cols, c.reduce, c.store
    if j.extent < width or store.buffer.size > (1 << 16) or k.extent < 8 * cores:
        return False
    if c.panel_dim != len(c.panel.index) - 1:
        return False  # NOTE: B's rows are streamed as they lie; a transposed B would be gathered
    ni, nj, nk = names[i.var], names[j.var], names[k.var]
    outer = [names[lp.var] for lp in chain if lp not in (i, j, k)]
    before = (b.nest, b.steps)
    threads = cores > 1 and _work(chain[0]) >= PARALLEL_MIN_WORK
    band = -(-k.extent // cores) if threads else k.extent
    ok = b.try_step(Split(nk, band)) and b.try_step(Split(f"{nk}_i", 4))
    ok = ok and b.try_step(Reorder((*outer, f"{nk}_o", ni, f"{nk}_i_o", nj, f"{nk}_i_i")))
    ok = ok and b.try_step(Unroll(f"{nk}_i_i")) and b.try_step(Vectorize(nj))
    if ok and threads:
        ok = b.try_step(Parallel(f"{nk}_o", reduce=True))
    if not ok:
        b.nest, b.steps = before
    return ok


def _conv_like(chain: list[Loop]) -> tuple[list[Loop], Loop, Loop, list[Loop], Load] | None:
    """(outer loops, m, w, reduction loops, X) for rule 2, in chain order; None if it does not apply."""
    inner = chain[-1].body
    if len(chain) < 4 or len(inner) != 1 or not isinstance(inner[0], Store):
        return None
    s = inner[0]
    ins = [ld for ld in loads(s.value) if ld.buffer is not s.buffer]
    if s.buffer.dtype.value != "f32" or len(ins) != 2 or any(ld.buffer.dtype.value != "f32" for ld in ins):
        return None
    by_var = {lp.var: lp for lp in chain}
    # NOTE: an output index may combine loops (a grouped convolution's `k_o * 8 + k_i` after the
    # group split); the last one must be a loop of its own, the vector loop w
    out_vars = list(dict.fromkeys(v for e in s.index for v in free_vars(e) if v in by_var))
    # NOTE: ... and may step by a stride (a transposed convolution's phase writes `Y[.., 2*w + 1]`)
    last = affine(s.index[-1]) if s.index else None
    wv = [v for v in last or {} if v is not None]
    if last is None or len(wv) != 1 or wv[0] not in by_var or last[wv[0]] < 1:
        return None
    w = by_var[wv[0]]
    x = next((ld for ld in ins if ld.index and w.var in free_vars(ld.index[-1])), None)
    f = next((ld for ld in ins if ld is not x), None)
    if x is None or f is None or any(w.var in free_vars(e) for e in f.index):
        return None
    reductions = [lp for lp in chain if lp.var not in out_vars]
    reduced = {lp.var for lp in reductions}
    stencil = any(free_vars(e) & reduced and free_vars(e) & set(out_vars) for e in x.index)
    x_vars = set().union(*(free_vars(e) for e in x.index))
    f_vars = set().union(*(free_vars(e) for e in f.index))
    m = next((by_var[v] for v in out_vars if v in f_vars and v not in x_vars and v in by_var), None)
    if not stencil or not reductions or m is None:
        return None
    outer = [lp for lp in chain if lp.var in out_vars and lp is not m and lp is not w]
    return outer, m, w, reductions, x


def _conv(b: Builder, pos: int, chain: list[Loop], names: dict, width: int, cores: int) -> bool:
    found = _conv_like(chain) if width > 1 else None
    if found is None and width > 1:
        found, chain, names = _grouped(b, pos, chain, names)
    if found is None:
        return False
    outer, m, w, reductions, x = found
    store = chain[-1].body[0]
    if schedule_channel_conv(
        b, found, store, names, lambda r: _display(b, pos, r), width, cores, _accumulators(width)
    ):
        return True  # NOTE: the form vectorized along the output channels, where it is the better one
    if 2 * w.extent < width:
        return False  # NOTE: a row shorter than a vector still fills most lanes of one masked vector
    budget = _accumulators(width)  # one vector per row here
    mr = max(d for d in range(1, min(budget, 16, m.extent) + 1) if m.extent % d == 0)
    nm, nw = names[m.var], names[w.var]
    before = (b.nest, b.steps)
    ok = b.try_step(Split(nm, mr)) and b.try_step(Split(nw, min(width, w.extent)))

    def loop(raw: str) -> str:
        return _display(b, pos, raw)

    order = (*(names[lp.var] for lp in outer), loop(f"{nm}_o"), loop(f"{nw}_o"))
    order += (*(names[lp.var] for lp in reductions), loop(f"{nm}_i"), loop(f"{nw}_i"))
    ok = ok and b.try_step(Reorder(order)) and b.try_step(Vectorize(loop(f"{nw}_i")))
    if not ok:
        b.nest, b.steps = before
        return False
    b.try_step(Unroll(loop(f"{nm}_i")))
    if outer:
        xname = symbol_names(b.nest)[x.buffer]
        at = names[outer[-1].var]
        # NOTE: a strided window (`X[.., 2*w + s]`) is staged split into its phases, so each
        # phase is read contiguously along w instead of gathered lane by lane
        stride = abs((affine(x.index[-1]) or {}).get(w.var, 1))
        last = len(x.index) - 1
        if stride > 1:  # NOTE: its copy runs in the source's order, phase innermost, unvectorized
            b.try_step(CacheRead(xname, at, last, stride))
        elif b.try_step(CacheRead(xname, at)):
            b.try_step(Vectorize(loop(f"{xname}_local_{last}")))
    b.try_step(CacheWrite(symbol_names(b.nest)[store.buffer], loop(f"{nw}_o")))
    if cores > 1 and _work(chain[0]) >= PARALLEL_MIN_WORK and outer:
        before = (b.nest, b.steps)
        fused = b.names()[outer[0].var]
        for lp in outer[1:]:
            inner = b.names()[lp.var]
            if not b.try_step(Fuse(fused, inner)):
                break
            fused = loop(f"{fused}_{inner}")
        if not b.try_step(Parallel(fused)):
            # NOTE: fused indices the dependence test cannot see through (a group's `q // 48 % 4`):
            # the first outer loop with an iteration per core instead
            b.nest, b.steps = before
            for lp in outer:
                if lp.extent >= cores and b.try_step(Parallel(names[lp.var])):
                    break
    return True


def _grouped(b: Builder, pos: int, chain: list[Loop], names: dict) -> tuple[Any, list[Loop], dict]:
    """A grouped convolution reads the input channels of output channel k's group through
    `k // G`: split k by G and the inner loop is an ordinary output-channel loop (the split folds
    `(G*k_o + k_i) // G` to `k_o`).  Returns `_conv_like` of the new chain, or None and the nest
    as it was."""
    store = chain[-1].body[0] if len(chain[-1].body) == 1 else None
    if not isinstance(store, Store):
        return None, chain, names
    x_index = [e for ld in loads(store.value) if ld.buffer is not store.buffer for e in ld.index]
    for e in x_index:
        for node in walk(e):
            if not (
                isinstance(node, Binary) and node.op is BinaryOp.FLOORDIV and isinstance(node.rhs, Const)
            ):
                continue
            group = int(node.rhs.value)
            lp = next((lp for lp in chain if lp.var in free_vars(node.lhs) and lp.var in store.index), None)
            if lp is None or group <= 1 or lp.extent % group or lp.extent == group:
                continue
            before = (b.nest, b.steps)
            if b.try_step(Split(names[lp.var], group)):
                new_chain = perfect_chain(_top_nests(b.nest.body)[pos])
                found = _conv_like(new_chain)
                if found is not None:
                    return found, new_chain, b.names()
            b.nest, b.steps = before
    return None, chain, names


def _fused(chain: list[Loop]) -> bool:
    """Whether the innermost body of the perfectly nested loops holds other loops (a fused nest)."""
    return any(isinstance(s, Loop) for s in walk_stmts(chain[-1].body))


def _fused_nest(b: Builder, pos: int, width: int, cores: int) -> None:
    """A nest that fusion made: its outer loops run in threads (rule 3's parallel choice) and each
    inner nest, one per fused statement, gets rule 3's vector choice on its own loops."""
    top = _top_nests(b.nest.body)[pos]
    if cores > 1 and _work(top) >= PARALLEL_MIN_WORK:
        _parallelize(b, pos, width, cores)
    if width <= 1:
        return
    _vectorize_inner(b, (pos,), width)


def _vectorize_inner(b: Builder, path: tuple[int, ...], width: int) -> None:
    """Rule 3's vector choice for each inner nest of the fused nest at `path` (positions of nests
    within nests), recursing into inner nests that are fused themselves."""

    def inner_nests() -> list[Loop]:
        # NOTE: vectorizing renames nothing, so the inner nests are found again by position.
        body = b.nest.body
        for k in path:
            body = perfect_chain(_top_nests(body)[k])[-1].body
        return _top_nests(body)

    for k in range(len(inner_nests())):
        chain = perfect_chain(inner_nests()[k])
        stores = [s for s in walk_stmts(chain[-1].body) if isinstance(s, Store)]
        if _fused(chain):
            _vectorize_inner(b, (*path, k), width)
        elif stores:
            _vectorize_innermost(b, chain, stores[-1], width)


def _generic(b: Builder, pos: int, width: int, cores: int) -> None:
    chain = perfect_chain(_top_nests(b.nest.body)[pos])
    body = chain[-1].body
    stores = [s for s in walk_stmts(body) if isinstance(s, Store)]
    if width > 1 and stores:
        _vectorize_innermost(b, chain, stores[-1], width)
        _stage_strided(b, pos)
    if cores > 1 and _work(_top_nests(b.nest.body)[pos]) >= PARALLEL_MIN_WORK:
        _parallelize(b, pos, width, cores)


def _stage_strided(b: Builder, pos: int) -> None:
    """An input the vector loop reads at a stride (a pooling window `X[.., 2*w + s]`) is staged
    split into its phases at the innermost enclosing loop of the output, so each phase is one
    contiguous vector load instead of a lane-by-lane gather."""
    chain = perfect_chain(_top_nests(b.nest.body)[pos])
    vec = chain[-1]
    store = next((s for s in walk_stmts(vec.body) if isinstance(s, Store)), None)
    if vec.kind is not LoopKind.VECTOR or store is None:
        return
    out = {v for e in store.index for v in free_vars(e)}
    at = next((lp for lp in reversed(chain[:-1]) if lp.var in out), None)
    if at is None:
        return
    for ld in loads(store.value):
        if not ld.index or any(vec.var in free_vars(e) for e in ld.index[:-1]):
            continue
        stride = abs((affine(ld.index[-1]) or {}).get(vec.var, 1))
        if stride > 1 and ld.buffer.size >= 1 << 12:
            name = symbol_names(b.nest)[ld.buffer]
            last = len(ld.index) - 1
            if b.try_step(CacheRead(name, b.name(at), last, stride)):
                # NOTE: the copy's loop over the phase's positions: every other element per lane
                b.try_step(Vectorize(f"{name}_local_{last + 1}"))
                # NOTE: the window's max or sum accumulates in a local row; fold_inits starts it from
                # the fill, so no fill pass writes the tensor for each tap to reread
                b.try_step(CacheWrite(symbol_names(b.nest)[store.buffer], b.name(at)))
            return


def _parallelize(b: Builder, pos: int, width: int, cores: int) -> None:
    """The outermost independent loop with an iteration per core; failing that, the vector loop is
    split into one contiguous block per core and its block loop, moved outermost, runs in parallel."""
    chain = perfect_chain(_top_nests(b.nest.body)[pos])
    for lp in chain:
        if lp.extent >= cores and lp.kind.value != "vector" and b.try_step(Parallel(b.name(lp))):
            return
    top = chain[0]
    # NOTE: a loop that sums into a few elements (a loss over rows) runs in threads that each keep
    # a private copy of them, added up at the end
    reducing = top.extent >= cores and top.kind.value != "vector" and _small_reductions(top)
    if reducing and b.try_step(Parallel(b.name(top), reduce=True)):
        return
    vec = chain[-1]
    if vec.kind.value != "vector" or vec.extent < cores * width * 4:
        return
    name = b.name(vec)
    block = -(-vec.extent // cores)
    block = -(-block // width) * width
    before = (b.nest, b.steps)
    names = [b.name(lp) for lp in chain[:-1]]
    ok = b.try_step(Split(name, block)) and b.try_step(Reorder((f"{name}_o", *names, f"{name}_i")))
    ok = ok and b.try_step(Vectorize(f"{name}_i")) and b.try_step(Parallel(f"{name}_o"))
    if not ok:
        b.nest, b.steps = before


def _small_reductions(loop: Loop) -> bool:
    """Whether every buffer `loop` carries a reduction into is small enough to copy per thread."""
    carried = [
        s.buffer
        for s in walk_stmts(loop.body)
        if isinstance(s, Store)
        and loop.var not in {v for e in s.index for v in free_vars(e)}
        and s.buffer.scope.value == "global"
    ]
    return bool(carried) and all(buf.size <= 1024 for buf in carried)


def _vectorize_innermost(b: Builder, chain: list[Loop], store: Store, width: int) -> None:
    """Vectorize the loop most accesses walk contiguously (moved innermost); a reduction loop only
    with the `reduce` strategy and only when it is innermost with a one-statement body."""
    inner = chain[-1].body
    # NOTE: each access weighs by its tensor's size: a row reduction's big input read along a
    # stride costs far more than its small output written contiguously
    weighted = [(s.index, s.buffer.size) for s in walk_stmts(inner) if isinstance(s, Store)]
    weighted += [(ld.index, ld.buffer.size) for e in body_exprs(inner) for ld in loads(e)]
    accesses = [idx for idx, _ in weighted]
    best, best_score = None, 0
    for lp in chain:
        if lp.extent < width:
            continue
        contiguous = sum(w for idx, w in weighted if idx and idx[-1] is lp.var)
        strided = sum(w for idx, w in weighted for e in idx[:-1] if lp.var in free_vars(e))
        score = 2 * contiguous - 3 * strided
        if score > best_score:
            best, best_score = lp, score
    if best is None:
        _block_for_cache(b, chain, accesses)
        return
    reduction = not any(best.var in free_vars(e) for e in store.index)
    if reduction and (best is not chain[-1] or len(best.body) != 1):
        return
    if not reduction and _tile_strided_store(b, chain, store, best, width):
        return
    if best is not chain[-1]:
        names = b.names()
        order = [lp for lp in chain if lp is not best] + [best]
        if not b.try_step(Reorder(tuple(names[lp.var] for lp in order))):
            return
    b.try_step(Vectorize(b.name(best), reduce=reduction))


TRANSPOSE_BLOCK = 32
STORE_ROWS = 16  # rows of a strided store's tile: each row's cache line is filled across them


def _tile_strided_store(b: Builder, chain: list[Loop], store: Store, best: Loop, width: int) -> bool:
    """The vector loop `best` walks the loads contiguously but the store along a stride (a
    transposing gather: `Y[b, o] = Yp[map[o], b]`): tile the store's contiguous loop by STORE_ROWS
    and `best` by one vector, so a tile writes STORE_ROWS consecutive elements of each of `width`
    rows (whole cache lines) instead of one element of each row per vector."""
    last = store.index[-1] if store.index else None
    rows = next((lp for lp in chain if lp.var is last), None)
    if rows is None or rows is best or rows.extent < 2 * STORE_ROWS or best.extent < 2 * width:
        return False
    if (
        any(best.var in free_vars(e) for e in store.index[-1:])
        or rows.extent % STORE_ROWS
        or best.extent % width
    ):
        return False
    before = (b.nest, b.steps)
    names = b.names()
    nr, nb = names[rows.var], names[best.var]
    if b.try_step(Tile((nr, nb), (STORE_ROWS, width))) and b.try_step(Vectorize(f"{nb}_i")):
        return True
    b.nest, b.steps = before
    return False


def _block_for_cache(b: Builder, chain: list[Loop], accesses: list) -> None:
    """Two loops each walking a different access contiguously (a transpose): tile them so both
    accesses stay within a block of cache lines."""
    walkers = [
        lp
        for lp in chain
        if lp.extent >= 2 * TRANSPOSE_BLOCK and any(idx and idx[-1] is lp.var for idx in accesses)
    ]
    if len(walkers) < 2:
        return
    a, c = walkers[-2], walkers[-1]
    names = b.names()
    b.try_step(Tile((names[a.var], names[c.var]), (TRANSPOSE_BLOCK, TRANSPOSE_BLOCK)))


def _work(loop: Loop) -> int:
    """Iterations of the innermost statements of `loop` (an estimate of its cost)."""
    inner = _top_nests(loop.body)
    if not inner:
        return loop.extent
    return loop.extent * max(_work(s) for s in inner)


__all__ = ["default_schedule"]
