"""`vectorize L` on the CUDA target: a thread's loop of 2 or 4 iterations over consecutive floats as
one `float2`/`float4` access per array (a 16-byte load moves four elements in one instruction and
one memory transaction per lane).

    vector for j_r in 0..4:                  __align__(16) float kc_v[4]; KC_LDGV(B, (k * 64 + j * 4), 4096, 4, kc_v);
      C[i, 4 * j + j_r] = A[i, k] * B[k, 4 * j + j_r]      __align__(16) float kc_o[4];
                                             kc_o[0] = A[..] * kc_v[0]; ... kc_o[3] = A[..] * kc_v[3];
                                             KC_STGV(C, (i * 64 + j * 4), 4096, 4, kc_o);

A read or the written place moves as a vector when it is an f32 global or shared array, its flat
index has coefficient 1 on the loop and multiples of the width on every other variable and in the
constant (so the first element is aligned to the vector: arrays are, by cudaMalloc and `__align__`).
Other reads stay scalar, lane by lane.  The loop's body must be the one statement; anything else
(guards from a split that does not divide, several statements) keeps the scalar loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kcomp.affine import affine, const
from kcomp.dtypes import DType
from kcomp.expr import Buffer, Expr, Load, Scope, Var, rewrite, substitute
from kcomp.loops import Loop, Store

if TYPE_CHECKING:
    from kcomp.targets.cuda.emit import CudaEmitter

WIDTHS = (2, 4)
MACRO = {("global", "load"): "KC_LDGV", ("shared", "load"): "KC_LDSV"}
MACRO |= {("global", "store"): "KC_STGV", ("shared", "store"): "KC_STSV"}


def flat_affine(buf: Buffer, index: tuple[Expr, ...]) -> dict | None:
    """The row-major flat offset of `index` in `buf` as coefficients per variable (None: the constant),
    or None when an index is not affine."""
    out: dict = {}
    stride = 1
    for e, n in zip(reversed(index), reversed(buf.shape), strict=True):
        a = affine(e)
        if a is None:
            return None
        for v, c in a.items():
            out[v] = out.get(v, 0) + c * stride
        stride *= n
    return out


def aligned_run(emitter: CudaEmitter, buf: Buffer, index: tuple[Expr, ...], var: Var, width: int) -> bool:
    """Whether `buf[index]` over `var` in 0..width is `width` consecutive, vector-aligned f32 elements
    of a global or shared array."""
    if buf.dtype is not DType.F32 or emitter.space.get(buf, "global") == "local":
        return False
    flat = flat_affine(buf, index)
    if flat is None or flat.get(var, 0) != 1:
        return False
    return all(c % width == 0 for v, c in flat.items() if v is not var)


def vector_loop(emitter: CudaEmitter, s: Loop, depth: int) -> list[str] | None:
    """The loop as vector accesses (module docstring), or None to leave it to the scalar path."""
    if (
        s.extent not in WIDTHS
        or len(s.body) != 1
        or not isinstance(s.body[0], Store)
        or emitter.kernel is None
    ):
        return None
    store, w, var = s.body[0], s.extent, s.var
    pad, ind, lines = emitter.INDENT * depth, emitter.INDENT, []
    temps: dict[tuple[Buffer, str], Buffer] = {}

    def lane_buffer(hint: str) -> Buffer:
        buf = Buffer(emitter.names.fresh(hint), DType.F32, (w,), Scope.LOCAL)
        emitter.space[buf] = "local"
        lines.append(f"{pad}{ind}__align__({4 * w}) float {emitter.names(buf)}[{w}];")
        return buf

    def vectorized(e: Expr) -> Expr | None:
        if not (isinstance(e, Load) and e.pad is None and aligned_run(emitter, e.buffer, e.index, var, w)):
            return None
        key = (e.buffer, str(e.index))
        if key not in temps:
            temps[key] = lane_buffer("kc_v")
            first = tuple(substitute(i, {var: const(0)}) for i in e.index)
            macro = MACRO[(emitter.space.get(e.buffer, "global"), "load")]
            src = f"{emitter.names(e.buffer)}, {emitter.expr.flat(e.buffer, first)}, {e.buffer.size}"
            lines.append(f"{pad}{ind}{macro}({src}, {w}, {emitter.names(temps[key])});")
            emitter.tallies[emitter.kernel.name].vector(
                e.buffer, first, emitter.trips, emitter.lane, emitter.space
            )
        return Load(temps[key], (var,))

    value = rewrite(store.value, vectorized)
    out = store.buffer
    whole = aligned_run(emitter, out, store.index, var, w) and store.buffer.dtype is DType.F32
    if not temps and not whole:
        return None
    target = lane_buffer("kc_o") if whole else None
    body = (Store(target, (var,), value) if target is not None else Store(out, store.index, value),)
    for k in range(w):
        for stmt in body:
            lanes = substitute(stmt.value, {var: const(k)})
            index = tuple(substitute(i, {var: const(k)}) for i in stmt.index)
            lines += emitter.stmt(Store(stmt.buffer, index, lanes), depth + 1, True)
    if target is not None:
        first = tuple(substitute(i, {var: const(0)}) for i in store.index)
        macro = MACRO[(emitter.space.get(out, "global"), "store")]
        dst = f"{emitter.names(out)}, {emitter.expr.flat(out, first)}, {out.size}"
        lines.append(f"{pad}{ind}{macro}({dst}, {w}, {emitter.names(target)});")
        emitter.tallies[emitter.kernel.name].vector(out, first, emitter.trips, emitter.lane, emitter.space)
    return [f"{pad}{{ /* vector {emitter.names(var)}: float{w} */", *lines, f"{pad}}}"]
