"""tile: split several loops and move the outer parts outside the inner parts (a compound step).

tile i j 32 64   ==   split i 32; split j 64; reorder i_o j_o i_i j_i
"""

from __future__ import annotations

from kcomp.errors import ScheduleError
from kcomp.loops import LoopNest
from kcomp.loops.common import Resolver
from kcomp.passes.reorder import reorder
from kcomp.passes.split import split
from kcomp.printer import symbol_names
from kcomp.schedule import Reorder, Split, Tile, format_step


def tile(nest: LoopNest, step: Tile) -> LoopNest:
    r = Resolver(nest, format_step(step))
    loops = [r.loop(n) for n in step.loops]  # NOTE: resolve every name before the first split renames
    for loop, f in zip(loops, step.factors, strict=True):
        names = symbol_names(nest)
        try:
            nest = split(nest, Split(names[loop.var], f))
        except ScheduleError as e:
            raise r.error(str(e).split(": ", 1)[-1]) from None
    names = symbol_names(nest)
    shown = {v.name: n for v, n in names.items() if hasattr(v, "uid")}
    outers = [shown.get(f"{n}_o", f"{n}_o") for n in step.loops]
    inners = [shown.get(f"{n}_i", f"{n}_i") for n in step.loops]
    try:
        return reorder(nest, Reorder(tuple(outers + inners)))
    except ScheduleError as e:
        raise r.error(str(e).split(": ", 1)[-1]) from None
