"""kcomp's simulated accelerator, in two halves with one target on top.

    machine/    the hardware model: the ISA table, assembler and binary format, the cycle-level
                simulator, configurations (TOML), traces (its API: kcomp.targets.accel.machine)
    compiler/   the backend: recognising contractions in a loop nest (match), laying them onto the
                machine (mapping), writing the instructions (codegen, backend), and the mapping
                decisions the tuner searches (tuning)
    target.py   `AccelTarget`: the accelerator behind kcomp's one pipeline (registered as `accel`)

docs/accel-isa.md is the reference for both.
"""
