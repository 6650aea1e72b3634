"""The C family: what C-like targets (the CPU's C, CUDA) share: statements and expressions as C."""
