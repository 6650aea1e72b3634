"""The CUDA target: C++ kernels for nvcc, proven by a CPU emulation where there is no GPU (docs/cuda.md)."""
