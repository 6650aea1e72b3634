"""Invalid-input fuzzing: mutate valid inputs and require a diagnostic, never a traceback or a hang.

    counts = campaign(1000, seed=0)            # {"diagnosed": 803, "valid": 190, "traceback": 0, ...}

Four kinds of valid inputs are mutated at the token level (drop, swap or duplicate tokens; a number
replaced by an out-of-range one: 0, -1, 2**32, 2**63, 1e400, nan, ...; an identifier replaced; the
text truncated; random bytes or unicode inserted):

    kc        the examples/ programs, at small shapes       `kcomp run F.kc --check` (or `kcomp sim`)
    schedule  schedule files and `schedule { }` blocks      `kcomp run F.kc --schedule S --check`
    config    accelerator configurations (TOML)             `kcomp sim F.kc --accel C.toml`
    asm       accelerator assembly and program binaries     `kcomp asm` / `kcomp disasm`, round-tripped

Each mutant runs through the real command line (`kcomp.cli.main(argv)`) in a long-lived spawned
worker (search.measure's `LocalExecutor`) with its output captured and a timeout, and is classified:
`diagnosed` (exit 2 with a message), `valid` (exit 0, and the run's own check against the reference
passed: `--check`, `kcomp sim`'s comparison, or asm -> bin -> disasm -> asm giving the same bytes),
`wrong` (exit 1: a valid mutant that failed its check or whose generated code did not build),
`traceback` (a Python traceback in the output, or exit 3 "internal error"), `hang` (over the timeout)
and `other` (any other exit, a dead worker, exit 2 without a message).  Everything but `diagnosed`
and `valid` is a kcomp bug.  Mutants are deterministic per (seed, index).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcomp.search.measure import LocalExecutor, WorkerTimeout
from kcomp.targets.accel.machine.config import PACKAGED, packaged_text

KINDS = ("kc", "schedule", "config", "asm")
CLASSES = ("diagnosed", "valid", "wrong", "traceback", "hang", "other")
BUGS = ("wrong", "traceback", "hang", "other")
OUT_OF_RANGE = ("0", "-1", "4294967296", "-2147483649", str(2**63), "1" + "0" * 30, "1e400", "nan", "-inf")
JUNK = ("\x00", "\x7f", "\u00e9", "\u202e", "\U0001f600", "\ufeff", "\t", '"', "'", "\\", "{", "}", "[", "]")
IDENTIFIERS = ("i", "j", "x", "kernel", "dim", "schedule", "for", "where", "pad", "inf", "nan", "f32", "i8")
SMALL_DIM = 16  # every dimension literal of an example above this becomes this (derived ones follow)

_TOKEN = re.compile(
    r"\s+|#[^\n]*|0x[0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?"
    r"|[A-Za-z_][A-Za-z_0-9.]*|//|->|<=|>=|==|!=|[+\-*/%]=|.",
    re.S,
)
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d|\.\d")
_IDENT = re.compile(r"[A-Za-z_]")
ACCEL_EXAMPLES = ("matmul", "batched_matmul", "gemm_bias_relu", "matvec")

# ------------------------------------------------------------------------------------------- mutators


def tokenize(text: str) -> list[str]:
    """Tokens that join back to `text` (whitespace and comments are tokens too)."""
    return _TOKEN.findall(text)


def _solid(tokens: list[str]) -> list[int]:
    return [i for i, t in enumerate(tokens) if t.strip() and not t.startswith("#")]


def drop_token(text: str, rng: random.Random) -> str:
    tokens = tokenize(text)
    if spots := _solid(tokens):
        del tokens[rng.choice(spots)]
    return "".join(tokens)


def swap_tokens(text: str, rng: random.Random) -> str:
    tokens = tokenize(text)
    spots = _solid(tokens)
    if len(spots) >= 2:
        a = rng.randrange(len(spots))
        b = a + 1 if a + 1 < len(spots) and rng.random() < 0.6 else rng.randrange(len(spots))
        tokens[spots[a]], tokens[spots[b]] = tokens[spots[b]], tokens[spots[a]]
    return "".join(tokens)


def duplicate_token(text: str, rng: random.Random) -> str:
    tokens = tokenize(text)
    if spots := _solid(tokens):
        i = rng.choice(spots)
        tokens.insert(i, tokens[i] + rng.choice(("", " ")))
    return "".join(tokens)


def replace_number(text: str, rng: random.Random) -> str:
    """A number becomes an out-of-range one (or a neighbour: off-by-one mistakes)."""
    tokens = tokenize(text)
    spots = [i for i, t in enumerate(tokens) if _NUMBER.match(t)]
    if spots:
        i = rng.choice(spots)
        if rng.random() < 0.75:
            tokens[i] = rng.choice(OUT_OF_RANGE)
        else:
            try:
                value = int(tokens[i], 0)
            except ValueError:
                value = 1
            tokens[i] = str(value + rng.choice((-1, 1, 7, value)))
    return "".join(tokens)


def replace_identifier(text: str, rng: random.Random) -> str:
    """An identifier becomes another one of the text, a keyword, or a fresh name."""
    tokens = tokenize(text)
    spots = [i for i, t in enumerate(tokens) if _IDENT.match(t)]
    if spots:
        pool = sorted({tokens[i] for i in spots}) + list(IDENTIFIERS) + ["zz", "A" * 300]
        tokens[rng.choice(spots)] = rng.choice(pool)
    return "".join(tokens)


def truncate(text: str, rng: random.Random) -> str:
    return text[: rng.randrange(len(text) + 1)]


def insert_junk(text: str, rng: random.Random) -> str:
    """Random unicode or control characters at a random place (invalid UTF-8 comes from `_mutate`)."""
    at = rng.randrange(len(text) + 1)
    junk = "".join(rng.choice(JUNK) for _ in range(rng.randint(1, 3)))
    return text[:at] + junk + text[at:]


def duplicate_line(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    if lines:
        i = rng.randrange(len(lines))
        lines.insert(rng.randrange(len(lines) + 1), lines[i])
    return "".join(lines)


SWAPS = (  # families of tokens that mostly keep a program parseable, so its meaning changes instead
    ("+", "-", "*", "/", "//", "%"),
    ("=", "+=", "*=", "max=", "min=", "argmax=", "argmin="),
    ("<", "<=", ">", ">=", "==", "!="),
    ("f32", "f64", "f16", "i32", "i8", "bf16"),
    ("exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "relu", "abs", "max", "min", "pow", "select"),
    ("split", "tile", "reorder", "fuse", "vectorize", "parallel", "unroll", "cache_write", "cache_read"),
    ("guard", "peel", "reduce", "at", "block"),
    ("overwrite", "accumulate", "none", "relu", "sp", "acc", "load", "compute", "store"),
    ("0", "1", "2", "3", "7", "8", "15", "16", "17", "32", "64"),
)
FIELD_EDGES = ("255", "256", "4095", "4096", "65535", "65536", "16777215", "4294967295")  # asm / config


def swap_family(text: str, rng: random.Random) -> str:
    """An operator, type, function, step or small number becomes another of its family."""
    tokens = tokenize(text)
    family = {t: fam for fam in SWAPS for t in fam}
    spots = [i for i, t in enumerate(tokens) if t in family]
    if spots:
        i = rng.choice(spots)
        tokens[i] = rng.choice(family[tokens[i]])
    return "".join(tokens)


def field_edge(text: str, rng: random.Random) -> str:
    """A number becomes the edge of a bit field (kept out of programs: their sizes would only be slow)."""
    tokens = tokenize(text)
    if spots := [i for i, t in enumerate(tokens) if _NUMBER.match(t)]:
        tokens[rng.choice(spots)] = rng.choice(FIELD_EDGES)
    return "".join(tokens)


MUTATORS: dict[str, Callable[[str, random.Random], str]] = {
    "family": swap_family,
    "edge": field_edge,
    "drop": drop_token,
    "swap": swap_tokens,
    "duplicate": duplicate_token,
    "number": replace_number,
    "identifier": replace_identifier,
    "truncate": truncate,
    "junk": insert_junk,
    "line": duplicate_line,
}
WEIGHTS = {  # per kind: token soup mostly meets the parser, swaps within a family reach further
    "kc": {
        "family": 6,
        "drop": 3,
        "swap": 2,
        "duplicate": 2,
        "number": 3,
        "identifier": 3,
        "truncate": 1,
        "junk": 1,
        "line": 1,
    },
    "schedule": {
        "family": 4,
        "drop": 3,
        "swap": 3,
        "duplicate": 2,
        "number": 4,
        "identifier": 4,
        "truncate": 1,
        "junk": 1,
        "line": 3,
    },
    "config": {
        "edge": 3,
        "family": 4,
        "drop": 1,
        "swap": 1,
        "duplicate": 1,
        "number": 8,
        "identifier": 2,
        "truncate": 1,
        "junk": 1,
        "line": 2,
    },
    "asm": {
        "edge": 3,
        "family": 5,
        "drop": 2,
        "swap": 2,
        "duplicate": 1,
        "number": 5,
        "identifier": 3,
        "truncate": 1,
        "junk": 1,
        "line": 3,
    },
}


def mutate(text: str, rng: random.Random, kind: str = "kc") -> tuple[bytes, list[str]]:
    """One to three mutations of `text`; the bytes to write and the mutators' names."""
    weights = WEIGHTS[kind]
    names = rng.choices(list(weights), weights=list(weights.values()), k=rng.choice((1, 1, 1, 2, 3)))
    for name in names:
        text = MUTATORS[name](text, rng)
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.03:  # bytes that are not UTF-8
        at = rng.randrange(len(data) + 1)
        data = data[:at] + bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 3))) + data[at:]
        names.append("bytes")
    return data, names


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """Binary mutants of an accelerator program file: flipped bits, bytes, truncation."""
    buf = bytearray(data)
    names = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.choice(("bit", "byte", "truncate", "drop16", "dup16", "zero"))
        names.append(op)
        if not buf:
            break
        at = rng.randrange(len(buf))
        if op == "bit":
            buf[at] ^= 1 << rng.randrange(8)
        elif op == "byte":
            buf[at] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op == "truncate":
            del buf[at:]
        elif op == "drop16":
            del buf[at : at + 16]
        elif op == "dup16":
            buf[at:at] = buf[at : at + 16]
        else:
            buf[at : at + 4] = b"\0\0\0\0"
    return bytes(buf), names


# ---------------------------------------------------------------------------------------- the bases


def small_example(text: str) -> str:
    """An example with every number over SMALL_DIM in its `dim` lines and schedule blocks lowered to
    it, so that it compiles and runs fast and its blocks' splits still fit."""

    def lower(m: re.Match[str]) -> str:
        return re.sub(r"\b\d+\b", lambda d: str(min(int(d.group()), SMALL_DIM)), m.group())

    text = re.sub(r"^dim [^\n]*", lower, text, flags=re.M)
    return re.sub(r"(?ms)^schedule .*?^\}", lower, text)


def examples_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Bases:
    """The valid inputs the mutants start from: name -> text (binary programs as bytes)."""

    kc: dict[str, str] = field(default_factory=dict)
    cpu_schedules: dict[str, str] = field(default_factory=dict)
    accel_schedules: dict[str, str] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    asm: dict[str, str] = field(default_factory=dict)
    binaries: dict[str, bytes] = field(default_factory=dict)


def collect_bases(executor: Any, timeout_s: float) -> Bases:
    """Small examples, and the schedules, assembly and binaries kcomp itself produces for them."""
    bases = Bases()
    for path in sorted(examples_dir().glob("*.kc")):
        bases.kc[path.stem] = small_example(path.read_text())
    for name in PACKAGED:
        bases.configs[name] = packaged_text(name)
    jobs = {}
    for name, text in bases.kc.items():
        jobs[("compile", name)] = executor.submit(
            run_case,
            {"k.kc": text.encode()},
            [["compile", "k.kc", "--emit", "schedule"]],
            timeout_s=timeout_s,
        )
        if name in ACCEL_EXAMPLES:
            for what, stage in (("sim", "schedule"), ("asm", "source")):
                argv = [["sim", "k.kc", "--accel", "small", "--emit", stage]]
                jobs[(what, name)] = executor.submit(
                    run_case, {"k.kc": text.encode()}, argv, timeout_s=timeout_s
                )
    for (what, name), future in jobs.items():
        r = future.result()
        if r["rc"] != 0:
            raise RuntimeError(f"base {what} of {name} failed (exit {r['rc']}): {r['err'][-2000:]}")
        {"compile": bases.cpu_schedules, "sim": bases.accel_schedules, "asm": bases.asm}[what][name] = r[
            "out"
        ]
        if what == "asm":
            r = executor.submit(
                run_case,
                {"p.s": r["out"].encode()},
                [["asm", "p.s", "-o", "p.bin"]],
                ["p.bin"],
                timeout_s=timeout_s,
            ).result()
            bases.binaries[name] = r["files"]["p.bin"]
    return bases


# ------------------------------------------------------------------------------------------- mutants


@dataclass
class Mutant:
    """Files to write (name -> bytes) and the kcomp commands to run on them, in order, while they succeed.

    `same` names two files that must be byte-identical after a successful run (a round trip)."""

    kind: str
    index: int
    base: str
    ops: list[str]
    files: dict[str, bytes]
    commands: list[list[str]]
    same: tuple[str, str] | None = None


def make_mutant(bases: Bases, kind: str, index: int, seed: int) -> Mutant:
    rng = random.Random(f"kcomp-mutate:{seed}:{kind}:{index}")
    if kind == "kc":
        base = rng.choice(sorted(bases.kc))
        data, ops = mutate(bases.kc[base], rng, kind)
        if base in ACCEL_EXAMPLES and rng.random() < 0.3:
            return Mutant(
                kind, index, base, ops, {"k.kc": data}, [["sim", "k.kc", "--accel", "small", "--seed", "1"]]
            )
        return Mutant(kind, index, base, ops, {"k.kc": data}, [["run", "k.kc", "--check", "--seed", "1"]])
    if kind == "schedule":
        where = rng.choice(("file", "file", "block", "sim"))
        if where == "sim":
            base = rng.choice(sorted(bases.accel_schedules))
            data, ops = mutate(bases.accel_schedules[base], rng, kind)
            files = {"k.kc": bases.kc[base].encode(), "s.txt": data}
            return Mutant(
                kind,
                index,
                f"sim:{base}",
                ops,
                files,
                [["sim", "k.kc", "--accel", "small", "--schedule", "s.txt"]],
            )
        base = rng.choice(sorted(bases.cpu_schedules))
        schedule = bases.cpu_schedules[base]
        if where == "file":
            data, ops = mutate(schedule, rng, kind)
            files = {"k.kc": bases.kc[base].encode(), "s.txt": data}
            return Mutant(
                kind,
                index,
                base,
                ops,
                files,
                [["run", "k.kc", "--schedule", "s.txt", "--check", "--seed", "1"]],
            )
        block = "\n".join(line for line in schedule.splitlines() if not line.startswith("#"))
        kc = re.sub(r"(?ms)^schedule .*?^\}\n?", "", bases.kc[base])
        data, ops = mutate(f"schedule {base} for cpu {{\n{block}\n}}\n", rng, kind)
        files = {"k.kc": kc.encode() + b"\n" + data}
        return Mutant(kind, index, f"block:{base}", ops, files, [["run", "k.kc", "--check", "--seed", "1"]])
    if kind == "config":
        base = rng.choice(sorted(bases.configs))
        data, ops = mutate(bases.configs[base], rng, kind)
        program = rng.choice(("matmul", "gemm_bias_relu"))
        files = {"k.kc": bases.kc[program].encode(), "c.toml": data}
        return Mutant(kind, index, base, ops, files, [["sim", "k.kc", "--accel", "c.toml", "--seed", "1"]])
    if kind == "asm":
        base = rng.choice(sorted(bases.asm))
        if rng.random() < 0.7:
            data, ops = mutate(bases.asm[base], rng, kind)
            commands = [
                ["asm", "p.s", "-o", "p.bin"],
                ["disasm", "p.bin", "-o", "q.s"],
                ["asm", "q.s", "-o", "q.bin"],
            ]
            return Mutant(kind, index, base, ops, {"p.s": data}, commands, ("p.bin", "q.bin"))
        data, ops = mutate_bytes(bases.binaries[base], rng)
        commands = [["disasm", "p.bin", "-o", "q.s"], ["asm", "q.s", "-o", "q.bin"]]
        return Mutant(kind, index, f"bin:{base}", ops, {"p.bin": data}, commands, ("p.bin", "q.bin"))
    raise ValueError(f"unknown mutant kind {kind!r}; kinds are {', '.join(KINDS)}")


# ------------------------------------------------------------------------------------ running, classifying


@functools.cache
def kcomp_command() -> Callable[[list[str]], int]:
    """The installed `kcomp` command's entry point, the program users run.  The mutants drive the
    command line as a black box (in long-lived workers rather than a process per command, for
    speed), so this package depends on the command, never on the modules behind it."""
    found = importlib.metadata.entry_points(group="console_scripts", name="kcomp")
    if not found:
        raise RuntimeError("the kcomp command is not installed (pip install -e . makes it)")
    return next(iter(found)).load()


def run_case(
    files: dict[str, bytes],
    commands: list[list[str]],
    keep: Sequence[str] = (),
    same: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """In a worker: write `files` to a fresh folder, run each kcomp command there (stopping at the first
    non-zero exit) with stdout and stderr captured.  Returns rc, out, err, `files` (those named in
    `keep`, as bytes) and `same` (whether the two files of `same` are identical, None if not compared)."""

    threads = os.environ.get("KCOMP_THREADS")
    os.environ["KCOMP_THREADS"] = threads or "1"  # NOTE: restored below; mutants need no thread pool
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="kcomp-mutant-") as tmp:
        for name, data in files.items():
            Path(tmp, name).write_bytes(data)
        out, err, rc = io.StringIO(), io.StringIO(), 0
        os.chdir(tmp)
        try:
            for argv in commands:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    try:
                        rc = kcomp_command()(list(argv))
                    except SystemExit as e:  # argparse: exit 2 after printing the usage error
                        rc = e.code if isinstance(e.code, int) else 1
                if rc != 0:
                    break
            kept = {n: Path(tmp, n).read_bytes() for n in keep if Path(tmp, n).exists()}
            equal = None
            if rc == 0 and same:
                equal = Path(tmp, same[0]).read_bytes() == Path(tmp, same[1]).read_bytes()
        finally:
            os.chdir(home)
            if threads is None:
                del os.environ["KCOMP_THREADS"]
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "files": kept, "same": equal}


def classify(rc: int | None, out: str, err: str, *, timed_out: bool = False, same: bool | None = None) -> str:
    """The class of one run (see the module docstring); `same` False means a failed round trip."""
    if timed_out:
        return "hang"
    if "Traceback (most recent call last)" in out + err or rc == 3:
        return "traceback"
    if rc == 0:
        return "wrong" if same is False else "valid"
    if rc == 2:
        return "diagnosed" if err.strip() else "other"
    if rc == 1:
        return "wrong"
    return "other"


def _outcome(future: Any) -> dict[str, Any]:

    try:
        r = future.result()
    except WorkerTimeout as e:
        return {"class": "hang", "rc": None, "message": str(e)}
    except Exception as e:  # a dead worker (segfault) or an error in the harness itself
        return {"class": "other", "rc": None, "message": f"{type(e).__name__}: {e}"}
    cls = classify(r["rc"], r["out"], r["err"], same=r["same"])
    message = r["err"].strip() or r["out"].strip()
    if r["same"] is False:
        message = "round trip: assembling the disassembly gives other bytes"
    return {"class": cls, "rc": r["rc"], "message": message[-4000:]}


def _save(out_dir: Path, m: Mutant, outcome: dict[str, Any]) -> None:
    folder = out_dir / outcome["class"] / f"{m.kind}-{m.index:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in m.files.items():
        (folder / name).write_bytes(data)
    lines = [" ".join(["kcomp", *argv]) for argv in m.commands]
    (folder / "commands.txt").write_text("\n".join(lines) + "\n")
    (folder / "output.txt").write_text(
        f"base {m.base}; mutations {', '.join(m.ops)}; exit {outcome['rc']}\n{outcome['message']}\n"
    )


def campaign(
    n: int,
    seed: int,
    timeout_s: float = 30.0,
    kinds: Sequence[str] = KINDS,
    *,
    out_dir: str | Path | None = None,
    workers: int = 2,
    on_result: Callable[[Mutant, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run `n` mutants (spread evenly over `kinds`) and count them per class, in all and per kind.

    Returns {"n", "seed", "wall_s", "diagnosed", "valid", "wrong", "traceback", "hang", "other",
    "bugs", "by_kind": {kind: {class: count}}, "failures": [{"kind", "index", "base", "class", ...}]};
    with `out_dir`, every failure's files, commands and output are saved in `out_dir/CLASS/KIND-INDEX/`."""

    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown mutant kind {unknown[0]!r}; kinds are {', '.join(KINDS)}")
    start = time.perf_counter()
    counts = dict.fromkeys(CLASSES, 0)
    by_kind = {k: dict.fromkeys(CLASSES, 0) for k in kinds}
    failures: list[dict[str, Any]] = []
    with LocalExecutor(workers, preload=("kcomp.cli",)) as executor:
        bases = collect_bases(executor, max(timeout_s, 120.0))
        mutants = [make_mutant(bases, kinds[i % len(kinds)], i, seed) for i in range(n)]
        futures = {
            executor.submit(run_case, m.files, m.commands, (), m.same, timeout_s=timeout_s): m
            for m in mutants
        }
        for future in as_completed(futures):
            m = futures[future]
            outcome = _outcome(future)
            counts[outcome["class"]] += 1
            by_kind[m.kind][outcome["class"]] += 1
            if outcome["class"] in BUGS:
                failures.append({"kind": m.kind, "index": m.index, "base": m.base, "ops": m.ops, **outcome})
                if out_dir is not None:
                    _save(Path(out_dir), m, outcome)
            if on_result:
                on_result(m, outcome)
    failures.sort(key=lambda f: f["index"])
    return {
        "n": n,
        "seed": seed,
        "wall_s": round(time.perf_counter() - start, 2),
        **counts,
        "bugs": sum(counts[c] for c in BUGS),
        "by_kind": by_kind,
        "failures": failures,
    }
