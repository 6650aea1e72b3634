"""kcomp's torch frontend (needs `pip install -e ".[torch]"`): `torch.compile(model, backend="kcomp")`,
`from_torch(fn, example_inputs)` and `explain(fn, *inputs)`; docs/torch.md."""

from kcomp.torch.backend import Explanation, backend, backend_with, configure, explain, from_torch

__all__ = ["Explanation", "backend", "backend_with", "configure", "explain", "from_torch"]
