"""kcomp's simulated accelerator: the machine, its ISA, assembler/disassembler and simulator
(docs/accel-isa.md)."""
