"""Hessian-vector products through scaled-dot-product attention (the ViTs): the torch quirk the
compat wrap works around, and products under the wrap against finite differences."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flatkd.flatness.attention_compat import second_order_attention
from flatkd.flatness.data import first_samples
from flatkd.flatness.hvp import HessianOperator

CPU = torch.device("cpu")


def _double_backward():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 8, 16, generator=g, requires_grad=True)
    k, v = torch.randn(1, 2, 8, 16, generator=g), torch.randn(1, 2, 8, 16, generator=g)
    out = F.scaled_dot_product_attention(q, k, v)
    (grad,) = torch.autograd.grad(out.square().sum(), q, create_graph=True)
    return torch.autograd.grad(grad.sum(), q)[0]


def test_quirk_fused_attention_has_no_double_backward():
    """Fails once torch implements it: then drop flatkd/flatness/attention_compat.py."""
    with pytest.raises(RuntimeError, match="not implemented"):
        _double_backward()
    with second_order_attention():
        assert torch.isfinite(_double_backward()).all()


class TinyAttention(nn.Module):
    """Patch embedding → one self-attention layer → mean pool → linear head (5 classes)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(3 * 4 * 4, 16)
        self.qkv = nn.Linear(16, 48)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        patches = F.unfold(x, 4, stride=4).transpose(1, 2)            # [N, 4, 48]
        t = self.embed(patches)
        q, k, v = self.qkv(t).view(t.shape[0], t.shape[1], 3, 2, 8).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(t.shape)
        return self.head((t + a).mean(1))


def test_hessian_products_through_attention_match_finite_differences():
    g = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(torch.rand(6, 3, 8, 8, generator=g).double(),
                                          torch.randint(0, 5, (6,), generator=g))
    model = TinyAttention().double().eval()
    batches = first_samples(data, 6, 3, CPU)
    with HessianOperator(model, batches, cache_graphs=True) as op:
        v = torch.randn(op.dim, generator=g, dtype=torch.float64)
        hv = op.matvec(v)
        params = list(model.parameters())
        eps = 1e-5
        grads = []
        for sign in (1, -1):
            with torch.no_grad():
                for p, d in zip(params, op._split(v)):
                    p.add_(sign * eps * d)
            grads.append(op.gradient())
            with torch.no_grad():
                for p, d in zip(params, op._split(v)):
                    p.sub_(sign * eps * d)
    fd = (grads[0] - grads[1]) / (2 * eps)
    assert torch.allclose(hv, fd, rtol=1e-5, atol=1e-7 * float(fd.abs().max()))


@pytest.mark.slow
def test_flatness_suite_runs_on_a_timm_vit():
    """DeiT-Tiny (timm, fused attention by default) through the whole Hessian section: before
    the wrap this raised in the first product. ``auto`` picks ``deflated`` (not piecewise
    linear)."""
    import flatkd.models as models
    from flatkd.flatness.config import HessianConfig, PerturbationConfig
    from flatkd.flatness.suite import run_flatness

    torch.manual_seed(0)
    vit = models.create("deit_tiny", 10, mean=(0.5,) * 3, std=(0.25,) * 3).eval()
    g = torch.Generator().manual_seed(2)
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 32, 32, generator=g),
                                          torch.randint(0, 10, (8,), generator=g))
    res = run_flatness(vit, data, HessianConfig(samples=8, top_k=1, slq_steps=4, trace_hvps=16,
                                                max_iter=6),
                       PerturbationConfig(sigmas=[0.0], repeats=1), seed=0, device=CPU,
                       batch_size=8, progress=False)["hessian"]
    assert res["trace_estimator"] == "deflated" and res["trace"]["n_hvp"] == res["n_hvp_total"]
    assert res["top_eigenvalues"][0] > 0 and res["trace"]["stderr"] > 0
