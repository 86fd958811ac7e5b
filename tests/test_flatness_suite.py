"""run_flatness: the result's "flatness" section, deterministic, model untouched."""
import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from flatkd.flatness.config import HessianConfig, PerturbationConfig
from flatkd.flatness.suite import run_flatness
from flatkd.flatness.trace import MIN_PROBES

from flatness_nets import conv_bn_net, random_images

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets: one thread (2 threads on a loaded 2-core machine spin and run ~4× slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

SMALL = dict(samples=20, top_k=3, trace_hvps=12, slq_probes=1, slq_steps=10, density_grid=32)


def run(model, hcfg, pcfg, seed=0, progress=False):
    return run_flatness(model, random_images(30), hcfg, pcfg, seed=seed, device=CPU, batch_size=8,
                        progress=progress)


def test_section_schema_deterministic_and_model_untouched():
    model = conv_bn_net()
    before = copy.deepcopy(model.state_dict())
    pcfg = PerturbationConfig(sigmas=[0.0, 0.1], repeats=2)
    a = run(model, HessianConfig(**SMALL, trace_estimator="deflated"), pcfg, progress=True)
    b = run(model, HessianConfig(**SMALL, trace_estimator="deflated"), pcfg)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert set(a) == {"hessian", "perturbation"}
    h = a["hessian"]
    assert set(h) >= {"trace", "top_eigenvalues", "density", "backend", "n_samples"}
    assert set(h["trace"]) == {"mean", "stderr", "n_hvp"}
    steps = h["lanczos_steps"]
    assert h["trace"]["n_hvp"] == steps + max(12 - steps, MIN_PROBES) == h["n_hvp_total"]
    assert steps >= 10
    assert set(h["density"]) == {"grid", "values"} and len(h["density"]["grid"]) == 32
    assert (h["backend"], h["n_samples"], len(h["top_eigenvalues"])) == ("native", 20, 3)
    assert h["top_eigenvalues"] == sorted(h["top_eigenvalues"], reverse=True)
    assert [r["sigma"] for r in a["perturbation"]] == [0.0, 0.1]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    c = run(model, HessianConfig(**SMALL, trace_estimator="deflated"), pcfg, seed=1)
    assert c["hessian"]["trace"] != a["hessian"]["trace"]


def test_perturbation_on_the_whole_train_split():
    out = run(conv_bn_net(), HessianConfig(**SMALL), PerturbationConfig(sigmas=[0.0], data="train"))
    x, y = random_images(30).tensors
    with torch.no_grad():
        loss = float(nn.functional.cross_entropy(conv_bn_net()(x), y))
    assert out["perturbation"][0]["loss_mean"] == pytest.approx(loss, rel=1e-6)


@pytest.mark.crosslib
@pytest.mark.slow
def test_acceptance_resnet8_digits_matches_independent_lanczos_and_hutchinson():
    """hessian.samples=256, top_k=3 on a ResNet-8 on digits, checked against scipy eigsh and a
    Hutchinson estimate built on plain autograd double-backward (no flatkd code)."""
    import scipy.sparse.linalg as sla

    import flatkd.datasets as datasets
    import flatkd.models as models

    spec = datasets.spec("digits")
    ds = datasets.get("digits", split="train", augment=False)
    model = models.create("resnet8", spec.num_classes, mean=spec.mean, std=spec.std).eval()
    out = run_flatness(model, ds, HessianConfig(samples=256, top_k=3), PerturbationConfig(),
                       seed=0, device=CPU, batch_size=256, progress=False)
    h = out["hessian"]

    x = torch.stack([ds[i][0] for i in range(256)])
    y = torch.tensor([int(ds[i][1]) for i in range(256)])
    params = list(model.parameters())
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params, create_graph=True)

    def hvp(v):
        parts = torch.split(torch.as_tensor(v, dtype=torch.float32).reshape(-1),
                            [p.numel() for p in params])
        hv = torch.autograd.grad(grads, params, [c.view_as(p) for c, p in zip(parts, params)],
                                 retain_graph=True)
        return torch.cat([t.reshape(-1) for t in hv]).double().numpy()

    dim = sum(p.numel() for p in params)
    op = sla.LinearOperator((dim, dim), matvec=hvp, dtype=np.float64)
    ref = np.sort(sla.eigsh(op, k=3, which="LA", tol=1e-5, ncv=20,
                            return_eigenvectors=False))[::-1]
    assert np.allclose(h["top_eigenvalues"], ref, rtol=1e-3)
    g = torch.Generator().manual_seed(123)
    z = [torch.randint(0, 2, (dim,), generator=g).double().numpy() * 2 - 1 for _ in range(100)]
    samples = np.array([v @ hvp(v) for v in z])
    se = np.hypot(samples.std(ddof=1) / 10, h["trace"]["stderr"])
    assert abs(samples.mean() - h["trace"]["mean"]) <= 3 * se
