"""Schedules as data: an immutable tuple of `Step`s with a text form that round-trips.

    split i 6                 i -> i_o * 6 + i_i   (tail: guard, or `split i 6 peel`)
    tile i j 32 64            split i 32, split j 64, reorder i_o j_o i_i j_i
    reorder k_o i_o j_o k_i   the named loops, perfectly nested, take this order
    fuse i_o j_o              two directly nested loops become one, i_o_j_o
    vectorize j_i [reduce]    explicit SIMD along j_i (`reduce`: a reduction into one place)
    parallel i_o              OpenMP threads share i_o (`parallel k reduce`: private partial sums)
    unroll i_i                fully unrolled by the emitter
    cache_write C at j_o      C's tile inside j_o accumulates in a local buffer, written back once
    cache_read B at k_o       B's region read inside k_o is copied first into a contiguous buffer
    pack B at k_o block 1 16  the same, dimension 1 blocked by 16: layout [d1 / 16, d0, d1 % 16]
    cache_read X at h stride 3 2   dimension 3 split into its 2 phases: layout [.., d3 % 2, d3 / 2], so a
                              stride-2 window (`X[.., 2*w + s]`) reads each phase contiguously
    layout T 1 0              an intermediate tensor is stored with its dimensions permuted
    double_buffer [T...]      accelerator: two on-chip buffers per tile of T (all operands when none
                              named), so the next tile's DMA overlaps this tile's compute
    compute_at P at LOOP      the statements producing the intermediate P run inside LOOP of its
                              consumer, for the region of P that LOOP's body reads (docs/fusion.md)
    inline P                  an elementwise P is substituted into its readers; its nest disappears
    materialize P             P keeps its own nest and buffer (the default; records the decision)
    online M S                S += exp(u - M) * v after M max= u: one pass with a running max
    welford M V               M += u / D and V += (u - M)^2 * c: one pass (lane-split Welford updates)
    epilogue Z at LOOP        an elementwise Z of P computed on P's tile where LOOP writes it back
                              (after `cache_write P at LOOP`; docs/fusion.md)
    bind i_o blockIdx.x       CUDA: the iterations of i_o are the blocks (threadIdx.x: the threads) along
                              that axis of the launch (docs/cuda.md); other targets run the loop serially
    bind k_i threadIdx.x reduce   a reduction's loop shared by the threads: partial results combined
                              across the block (warp shuffles, then shared memory)
    phases h                  `Y[..h..] += select((h + p - r) % s == 0, ..)`: a nest per residue of h mod s
    scan_blocks i 8           a scan over i in 8 blocks: their totals, then each block from its offset

A step addresses loops by the names `kcomp compile --emit loops` prints for the nest as it stands
after the steps before it, and tensors by name.  `str(schedule)` is the canonical text (one step
per line), `parse_schedule(str(s)) == s`, `Schedule.hash` is its sha256, and `to_json`/`from_json`
give the same data as JSON.  Nothing read here is ever evaluated: every line is parsed word by word.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields
from typing import ClassVar

from kcomp.errors import SourceError, Span


@dataclass(frozen=True, slots=True)
class Split:
    loop: str
    factor: int
    tail: str = "guard"  # "guard": inner body under `if`; "peel": a separate remainder loop
    verb: ClassVar[str] = "split"

    def words(self) -> list[str]:
        return [self.loop, str(self.factor)] + ([self.tail] if self.tail != "guard" else [])


@dataclass(frozen=True, slots=True)
class Tile:
    loops: tuple[str, ...]
    factors: tuple[int, ...]
    verb: ClassVar[str] = "tile"

    def words(self) -> list[str]:
        return [*self.loops, *map(str, self.factors)]


@dataclass(frozen=True, slots=True)
class Reorder:
    loops: tuple[str, ...]
    verb: ClassVar[str] = "reorder"

    def words(self) -> list[str]:
        return list(self.loops)


@dataclass(frozen=True, slots=True)
class Fuse:
    outer: str
    inner: str
    verb: ClassVar[str] = "fuse"

    def words(self) -> list[str]:
        return [self.outer, self.inner]


@dataclass(frozen=True, slots=True)
class Vectorize:
    loop: str
    reduce: bool = False
    verb: ClassVar[str] = "vectorize"

    def words(self) -> list[str]:
        return [self.loop] + (["reduce"] if self.reduce else [])


@dataclass(frozen=True, slots=True)
class Parallel:
    loop: str
    reduce: bool = False  # each thread accumulates a private copy, combined at the end
    verb: ClassVar[str] = "parallel"

    def words(self) -> list[str]:
        return [self.loop] + (["reduce"] if self.reduce else [])


@dataclass(frozen=True, slots=True)
class Phases:
    loop: str
    verb: ClassVar[str] = "phases"

    def words(self) -> list[str]:
        return [self.loop]


@dataclass(frozen=True, slots=True)
class ScanBlocks:
    loop: str
    blocks: int
    verb: ClassVar[str] = "scan_blocks"

    def words(self) -> list[str]:
        return [self.loop, str(self.blocks)]


BIND_LEVELS = ("blockIdx", "threadIdx")
BIND_AXES = ("x", "y", "z")


@dataclass(frozen=True, slots=True)
class Bind:
    loop: str
    level: str  # "blockIdx" or "threadIdx"
    axis: str  # "x", "y" or "z"
    reduce: bool = False  # threads accumulate partial results, combined across the block
    verb: ClassVar[str] = "bind"

    @property
    def binding(self) -> str:
        return f"{self.level}.{self.axis}"

    def words(self) -> list[str]:
        return [self.loop, self.binding] + (["reduce"] if self.reduce else [])


@dataclass(frozen=True, slots=True)
class Unroll:
    loop: str
    verb: ClassVar[str] = "unroll"

    def words(self) -> list[str]:
        return [self.loop]


@dataclass(frozen=True, slots=True)
class CacheWrite:
    tensor: str
    at: str
    init: bool = False  # the tile starts from the preceding fill's constant, and the fill goes
    verb: ClassVar[str] = "cache_write"

    def words(self) -> list[str]:
        return [self.tensor, "at", self.at, *(["init"] if self.init else [])]


@dataclass(frozen=True, slots=True)
class CacheRead:
    tensor: str
    at: str
    dim: int = 0  # with `stride` > 1: the staged dimension split into `stride` phases
    stride: int = 1
    verb: ClassVar[str] = "cache_read"

    def words(self) -> list[str]:
        extra = ["stride", str(self.dim), str(self.stride)] if self.stride > 1 else []
        return [self.tensor, "at", self.at, *extra]


@dataclass(frozen=True, slots=True)
class Pack:
    tensor: str
    at: str
    dim: int
    factor: int
    verb: ClassVar[str] = "pack"

    def words(self) -> list[str]:
        return [self.tensor, "at", self.at, "block", str(self.dim), str(self.factor)]


@dataclass(frozen=True, slots=True)
class Layout:
    tensor: str
    order: tuple[int, ...]
    verb: ClassVar[str] = "layout"

    def words(self) -> list[str]:
        return [self.tensor, *map(str, self.order)]


@dataclass(frozen=True, slots=True)
class DoubleBuffer:
    tensors: tuple[str, ...] = ()  # empty: every operand of the tiled contraction
    verb: ClassVar[str] = "double_buffer"

    def words(self) -> list[str]:
        return list(self.tensors)


@dataclass(frozen=True, slots=True)
class ComputeAt:
    tensor: str
    at: str
    verb: ClassVar[str] = "compute_at"

    def words(self) -> list[str]:
        return [self.tensor, "at", self.at]


@dataclass(frozen=True, slots=True)
class Inline:
    tensor: str
    verb: ClassVar[str] = "inline"

    def words(self) -> list[str]:
        return [self.tensor]


@dataclass(frozen=True, slots=True)
class Materialize:
    tensor: str
    verb: ClassVar[str] = "materialize"

    def words(self) -> list[str]:
        return [self.tensor]


@dataclass(frozen=True, slots=True)
class Welford:
    mean: str
    var: str
    verb: ClassVar[str] = "welford"

    def words(self) -> list[str]:
        return [self.mean, self.var]


@dataclass(frozen=True, slots=True)
class Epilogue:
    tensor: str
    at: str
    verb: ClassVar[str] = "epilogue"

    def words(self) -> list[str]:
        return [self.tensor, "at", self.at]


@dataclass(frozen=True, slots=True)
class Online:
    max: str  # M[..] max= u
    sum: str  # S[..] += exp(u - M[..]) * v
    verb: ClassVar[str] = "online"

    def words(self) -> list[str]:
        return [self.max, self.sum]


Step = (
    Split
    | Tile
    | Reorder
    | Fuse
    | Vectorize
    | Parallel
    | Unroll
    | CacheWrite
    | CacheRead
    | Pack
    | Layout
    | DoubleBuffer
    | ComputeAt
    | Inline
    | Materialize
    | Online
    | Welford
    | Epilogue
    | Phases
    | ScanBlocks
    | Bind
)
STEP_TYPES: dict[str, type] = {cls.verb: cls for cls in Step.__args__}
USAGE = {
    "split": "split LOOP FACTOR [guard|peel]",
    "tile": "tile LOOP... FACTOR... (as many factors as loops)",
    "reorder": "reorder LOOP LOOP...",
    "fuse": "fuse OUTER INNER",
    "vectorize": "vectorize LOOP [reduce]",
    "parallel": "parallel LOOP [reduce]",
    "unroll": "unroll LOOP",
    "cache_write": "cache_write TENSOR at LOOP [init]",
    "cache_read": "cache_read TENSOR at LOOP [stride DIM FACTOR]",
    "pack": "pack TENSOR at LOOP block DIM FACTOR",
    "layout": "layout TENSOR DIM...",
    "double_buffer": "double_buffer [TENSOR...]",
    "compute_at": "compute_at TENSOR at LOOP",
    "inline": "inline TENSOR",
    "materialize": "materialize TENSOR",
    "online": "online MAX SUM",
    "epilogue": "epilogue TENSOR at LOOP",
    "welford": "welford MEAN VAR",
    "phases": "phases LOOP",
    "scan_blocks": "scan_blocks LOOP BLOCKS",
    "bind": "bind LOOP blockIdx.x|y|z|threadIdx.x|y|z [reduce]",
}


def format_step(step: Step) -> str:
    return " ".join([step.verb, *step.words()])


@dataclass(frozen=True, slots=True)
class Schedule:
    """An immutable sequence of steps; equal schedules have equal text and equal hashes."""

    steps: tuple[Step, ...] = ()

    def __str__(self) -> str:
        return "".join(format_step(s) + "\n" for s in self.steps)

    @property
    def hash(self) -> str:
        """sha256 of the canonical text: the key the cache and the tuning database use."""
        return hashlib.sha256(str(self).encode()).hexdigest()

    def to_json(self) -> list[dict[str, object]]:
        out = []
        for s in self.steps:
            entry: dict[str, object] = {"step": s.verb}
            for f in fields(s):
                value = getattr(s, f.name)
                entry[f.name] = list(value) if isinstance(value, tuple) else value
            out.append(entry)
        return out

    @classmethod
    def from_json(cls, data: object) -> Schedule:
        """The inverse of `to_json`; anything malformed is a `SourceError` naming the entry."""
        if not isinstance(data, list):
            raise SourceError("a schedule in JSON is a list of steps", None)
        steps = []
        for n, entry in enumerate(data):
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("step"), str)
                or entry["step"] not in STEP_TYPES
            ):
                raise SourceError(f"schedule step {n}: expected an object with a known 'step'", None)
            cls_ = STEP_TYPES[entry["step"]]
            kwargs = {}
            for f in fields(cls_):
                if f.name not in entry:
                    continue
                value = entry[f.name]
                value = tuple(value) if isinstance(value, list) else value
                # NOTE: the text form accepts only names and integers; JSON must not smuggle in others.
                what, ok = _FIELD_KINDS[str(f.type)]
                if not ok(value):
                    raise SourceError(
                        f"schedule step {n} ({entry['step']}): {f.name} must be {what}, not {entry[f.name]!r}",
                        None,
                    )
                kwargs[f.name] = value
            try:
                step = cls_(**kwargs)
            except TypeError as e:
                raise SourceError(f"schedule step {n} ({entry['step']}): {e}", None) from None
            steps.append(_validated(step, None))
        return cls(tuple(steps))


NONE = Schedule()
_WORD = re.compile(r"\S+")
_NAME = re.compile(r"[A-Za-z_]\w*$")


def _is_name(v: object) -> bool:
    return isinstance(v, str) and _NAME.match(v) is not None


def _is_int(v: object) -> bool:
    return type(v) is int  # not bool


# A step field's annotation -> (what it must be, in words; its test), for `Schedule.from_json`.
_FIELD_KINDS = {
    "str": ("a name", _is_name),
    "int": ("an integer", _is_int),
    "bool": ("true or false", lambda v: type(v) is bool),
    "tuple[str, ...]": ("a list of names", lambda v: isinstance(v, tuple) and all(map(_is_name, v))),
    "tuple[int, ...]": ("a list of integers", lambda v: isinstance(v, tuple) and all(map(_is_int, v))),
}


def parse_schedule(text: str, file: str = "<schedule>", first_line: int = 1, first_col: int = 1) -> Schedule:
    """Parse the text form: one step per line (or `;`-separated), `#` starts a comment.

    `first_line`/`first_col` place the text inside a larger file (a `schedule` block of a `.kc` file),
    so errors point at the right `file:line:col`.
    """
    steps: list[Step] = []
    for n, raw in enumerate(text.split("\n")):
        line_no = first_line + n
        col0 = first_col if n == 0 else 1
        code = raw.split("#", 1)[0]
        start = 0
        for part in code.split(";"):
            words = [(m.group(), m.start() + start) for m in _WORD.finditer(part)]
            start += len(part) + 1
            if words:
                span = Span(file, line_no, col0 + words[0][1], raw.rstrip(), len(words[0][0]))
                steps.append(_validated(_parse_step(words, span, raw, line_no, col0, file), span))
    return Schedule(tuple(steps))


def _parse_step(words: list[tuple[str, int]], span: Span, raw: str, line: int, col0: int, file: str) -> Step:
    verb, args = words[0][0], words[1:]

    def at(k: int) -> Span:
        word, pos = args[k] if k < len(args) else (words[-1][0], words[-1][1] + len(words[-1][0]) + 1)
        return Span(file, line, col0 + pos, raw.rstrip(), len(word))

    def fail(message: str, k: int | None = None) -> SourceError:
        usage = USAGE.get(verb)
        suffix = f" (usage: {usage})" if usage else ""
        return SourceError(message + suffix, span if k is None else at(k))

    def name(k: int) -> str:
        if k >= len(args):
            raise fail(f"{verb}: missing argument", k)
        if not _NAME.match(args[k][0]):
            raise fail(f"{verb}: expected a name, found {args[k][0]!r}", k)
        return args[k][0]

    def number(k: int) -> int:
        if k >= len(args):
            raise fail(f"{verb}: missing number", k)
        try:
            return int(args[k][0])
        except ValueError:
            raise fail(f"{verb}: expected an integer, found {args[k][0]!r}", k) from None

    def keyword(k: int, word: str) -> None:
        if k >= len(args) or args[k][0] != word:
            raise fail(f"{verb}: expected '{word}'", k)

    def done(k: int) -> None:
        if len(args) > k:
            raise fail(f"{verb}: unexpected {args[k][0]!r}", k)

    match verb:
        case "split":
            loop, factor = name(0), number(1)
            tail = "guard"
            if len(args) > 2:
                tail = args[2][0]
                if tail not in ("guard", "peel"):
                    raise fail(f"split: tail must be 'guard' or 'peel', not {tail!r}", 2)
            done(3)
            return Split(loop, factor, tail)
        case "tile":
            names = [a for a, _ in args if _NAME.match(a)]
            if len(names) * 2 != len(args) or not names:
                raise fail("tile: give the loops, then one factor per loop")
            return Tile(
                tuple(name(k) for k in range(len(names))),
                tuple(number(len(names) + k) for k in range(len(names))),
            )
        case "reorder":
            if len(args) < 2:
                raise fail("reorder: name at least two loops")
            return Reorder(tuple(name(k) for k in range(len(args))))
        case "fuse":
            step = Fuse(name(0), name(1))
            done(2)
            return step
        case "vectorize":
            loop = name(0)
            if len(args) > 1:
                keyword(1, "reduce")
            done(2)
            return Vectorize(loop, len(args) > 1)
        case "parallel":
            loop = name(0)
            if len(args) > 1:
                keyword(1, "reduce")
            done(2)
            return Parallel(loop, len(args) > 1)
        case "unroll" | "phases":
            loop = name(0)
            done(1)
            return Unroll(loop) if verb == "unroll" else Phases(loop)
        case "cache_read" if len(args) > 3:
            tensor = name(0)
            keyword(1, "at")
            loop = name(2)
            keyword(3, "stride")
            dim, stride = number(4), number(5)
            done(6)
            return CacheRead(tensor, loop, dim, stride)
        case "cache_write" if len(args) > 3 and args[3][0] == "init":
            tensor = name(0)
            keyword(1, "at")
            loop = name(2)
            keyword(3, "init")
            done(4)
            return CacheWrite(tensor, loop, True)
        case "cache_write" | "cache_read" | "compute_at" | "epilogue":
            tensor = name(0)
            keyword(1, "at")
            loop = name(2)
            done(3)
            kind = {
                "cache_write": CacheWrite,
                "cache_read": CacheRead,
                "compute_at": ComputeAt,
                "epilogue": Epilogue,
            }[verb]
            return kind(tensor, loop)
        case "inline" | "materialize":
            tensor = name(0)
            done(1)
            return Inline(tensor) if verb == "inline" else Materialize(tensor)
        case "online" | "welford":
            pair = (Online if verb == "online" else Welford)(name(0), name(1))
            done(2)
            return pair
        case "scan_blocks":
            step = ScanBlocks(name(0), number(1))
            done(2)
            return step
        case "bind":
            loop = name(0)
            if len(args) < 2:
                raise fail("bind: missing the axis", 1)
            level, _, axis = args[1][0].partition(".")
            if level not in BIND_LEVELS or axis not in BIND_AXES:
                raise fail(f"bind: {args[1][0]!r} is not blockIdx.x|y|z or threadIdx.x|y|z", 1)
            if len(args) > 2:
                keyword(2, "reduce")
            done(3)
            return Bind(loop, level, axis, len(args) > 2)
        case "pack":
            tensor = name(0)
            keyword(1, "at")
            loop = name(2)
            keyword(3, "block")
            dim, factor = number(4), number(5)
            done(6)
            return Pack(tensor, loop, dim, factor)
        case "layout":
            if len(args) < 2:
                raise fail("layout: name the tensor and its dimensions in the new order")
            return Layout(name(0), tuple(number(k) for k in range(1, len(args))))
        case "double_buffer":
            return DoubleBuffer(tuple(name(k) for k in range(len(args))))
    known = ", ".join(sorted(STEP_TYPES))
    raise SourceError(f"unknown schedule step {verb!r}; steps are: {known}", span)


def _validated(step: Step, span: Span | None) -> Step:
    """Checks that need no loop nest (positive factors, permutations), shared by text and JSON."""
    problem = ""
    match step:
        case Split(factor=f) | Pack(factor=f) | ScanBlocks(blocks=f) if f < 1:
            problem = f"{step.verb}: {'blocks' if isinstance(step, ScanBlocks) else 'factor'} must be a positive integer, not {f}"
        case Pack(dim=d) if d < 0:
            problem = f"pack: dimension must be 0 or more, not {d}"
        case CacheRead(stride=f) if f < 1:
            problem = f"cache_read: stride must be a positive integer, not {f}"
        case CacheRead(dim=d) if d < 0:
            problem = f"cache_read: dimension must be 0 or more, not {d}"
        case Tile(loops=ls, factors=fs) if len(ls) != len(fs) or any(f < 1 for f in fs):
            problem = "tile: give one positive factor per loop"
        case Reorder(loops=ls) | Tile(loops=ls) if len(set(ls)) != len(ls):
            problem = f"{step.verb}: a loop is named twice"
        case DoubleBuffer(tensors=ts) if len(set(ts)) != len(ts):
            problem = "double_buffer: a tensor is named twice"
        case Layout(order=o) if sorted(o) != list(range(len(o))):
            problem = f"layout: {' '.join(map(str, o))} is not a permutation of 0..{len(o) - 1}"
        case Online(max=m, sum=t) | Welford(mean=m, var=t) if m == t:
            problem = f"{step.verb}: name two different tensors"
        case Bind(level=lv, axis=ax) if lv not in BIND_LEVELS or ax not in BIND_AXES:
            problem = f"bind: {lv}.{ax} is not blockIdx.x|y|z or threadIdx.x|y|z"
        case Split(tail=t) if t not in ("guard", "peel"):
            problem = f"split: tail must be 'guard' or 'peel', not {t!r}"
    if problem:
        raise SourceError(problem, span)
    return step
