"""Second-order autograd through attention (one place for a torch quirk).

``F.scaled_dot_product_attention`` dispatches to fused kernels (flash / memory-efficient, CPU
and CUDA) whose backward has no derivative of its own: a Hessian-vector product through a
timm ViT fails with "derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward
is not implemented" (torch 2.14, measured; forward-mode AD through the same kernel is not
implemented either). The math backend is built from differentiable ops, so under
:func:`second_order_attention` Hessian-vector products work for the ViTs; networks without
attention are unaffected. ``tests/test_flatness_attention.py`` fails once torch implements the
double backward, so this wrap can go.
"""
from __future__ import annotations

from contextlib import AbstractContextManager

from torch.nn.attention import SDPBackend, sdpa_kernel


def second_order_attention() -> AbstractContextManager:
    """Context in which scaled-dot-product attention uses its math implementation (double
    backward supported; slower than the fused kernels, used only for Hessian products)."""
    return sdpa_kernel(SDPBackend.MATH)
