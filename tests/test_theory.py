"""flatkd.theory: Eq. 6–8 against autodiff, Eq. 7's linearisation, k(t), the online/spaced runs."""
import math

import numpy as np
import pytest
import torch
from torch.func import hessian, vmap

from flatkd import theory as th

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small():
    task = th.digits_task(n_train=48, dim=4, seed=0)
    model = th.MLP((4, 6, 5, 1))
    return model, task


def test_mlp_shapes_and_digits_task(small):
    model, task = small
    assert model.n_params == 4 * 6 + 6 + 6 * 5 + 5 + 5 + 1
    theta = model.init(0)
    assert theta.shape == (model.n_params,) and theta.dtype == torch.float64
    assert torch.equal(theta, model.init(0)) and not torch.equal(theta, model.init(1))
    assert model.forward(theta, task.x_train).shape == (48,)
    assert task.x_train.shape == (48, 4) and len(task.x_test) == 1797 - 48
    assert set(task.y_train.tolist()) == {-1.0, 1.0}
    assert task.x_train.mean(0).abs().max() < 1e-9
    with pytest.raises(ValueError):
        th.MLP((4, 3, 2))


def test_per_sample_output_hessian_traces_match_autodiff(small):
    model, task = small
    theta = model.init(3)
    x = task.x_train[:10]
    full = vmap(hessian(model.forward), in_dims=(None, 0))(theta, x)
    ref = torch.diagonal(full, dim1=-2, dim2=-1).sum(-1)
    got = th.output_hessian_traces(model, theta, x)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert ref.abs().max() > 0.1  # tanh: ∇²f is not zero, so the check has teeth


def test_eq6_hessian_matrix_is_gauss_newton_plus_beta_weighted(small):
    """Eq. 6 as matrices: autodiff Hessian = 1/N Σ [∇f∇fᵀ + β_i ∇²f_i] (MSE, c = 1)."""
    model, task = small
    x, y = task.x_train[:12], task.y_train[:12]
    theta, phi, alpha = model.init(1), model.init(2), 0.3
    g = model.forward(phi, x)
    H = th.kd_hessian(model, theta, g, x, y, alpha)
    J = th.output_gradients(model, theta, x)
    b = th.beta(model.forward(theta, x), g, y, alpha)
    per = vmap(hessian(model.forward), in_dims=(None, 0))(theta, x)
    eq6 = (J.T @ J + (b[:, None, None] * per).sum(0)) / len(x)
    assert torch.allclose(H, eq6, rtol=1e-10, atol=1e-12)
    # ∇L_i = β_i ∇f_i (stated under Eq. 6)
    gi = vmap(torch.func.grad(lambda t, xi, yi, gi_: th.kd_loss(model, t, gi_[None], xi[None],
                                                                 yi[None], alpha)),
              in_dims=(None, 0, 0, 0))(theta, x, y, g)
    assert torch.allclose(gi, b[:, None] * J, rtol=1e-10, atol=1e-12)


def test_eq8_trace_decomposition_equals_exact_trace(small):
    model, task = small
    x, y = task.x_train, task.y_train
    for seed_t, seed_s, alpha in ((1, 2, 0.3), (4, 5, 0.9)):
        theta, phi = model.init(seed_s), model.init(seed_t)
        d = th.trace_decomposition(model, theta, model.forward(phi, x), x, y, alpha)
        assert d.total == pytest.approx(d.exact, rel=1e-10, abs=1e-12)
        assert abs(d.beta_term) > 1e-3 * abs(d.gauss_newton)  # both terms matter here
        H = th.kd_hessian(model, theta, model.forward(phi, x), x, y, alpha)
        assert d.min_eig == pytest.approx(float(torch.linalg.eigvalsh(H)[0]))
    # the β term is the only place the teacher enters: same θ, other teacher → same GN term
    d2 = th.trace_decomposition(model, theta, model.forward(model.init(9), x), x, y, alpha)
    assert d2.gauss_newton == pytest.approx(d.gauss_newton, rel=1e-12)
    assert d2.beta_term != pytest.approx(d.beta_term, rel=1e-3)


def test_eq7_beta_linearisation_error_is_second_order(small):
    """At θ*, φ* with f_θ* = g_φ* = y: β(i, θ*, φ* + εv) = −α εvᵀ∇g_φ* + O(ε²).

    The paper's Eq. 7 prints +α Δφᵀ∇g_φ*; that version is off at first order."""
    model, task = small
    x = task.x_train
    phi_star = model.init(7)
    y = model.forward(phi_star, x)            # targets the minimisers fit exactly
    theta_star = phi_star.clone()             # student minimiser with f_θ* = y
    v = torch.randn(model.n_params, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    jstar = th.output_gradients(model, phi_star, x)
    errs = []
    for eps in (1e-2, 5e-3):
        phi = phi_star + eps * v
        b = th.beta(model.forward(theta_star, x), model.forward(phi, x), y, 0.3)
        b_lin = th.beta_linearised(phi - phi_star, jstar, 0.3)
        errs.append(float((b - b_lin).abs().max()))
        assert float(b_lin.abs().max()) > 10 * errs[-1]
        assert float((b + b_lin).abs().max()) > float(b_lin.abs().max())  # the printed sign
    assert errs[0] / errs[1] == pytest.approx(4.0, rel=0.05)
    u = th.teacher_gap(eps * v, jstar)
    assert float(u) == pytest.approx(float((eps * jstar @ v).abs().mean()))


def test_spaced_teacher_step():
    assert [th.spaced_teacher_step(t, 4) for t in range(1, 10)] == [4, 4, 4, 4, 8, 8, 8, 8, 12]
    assert list(th.spaced_teacher_step(np.arange(1, 6), 1)) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        th.spaced_teacher_step(3, 0)


def test_batch_order_covers_each_epoch_once():
    b = th.batch_order(10, 4, 7, seed=0)
    assert [len(x) for x in b] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(torch.cat(b[:3]).tolist()) == list(range(10))
    assert all(torch.equal(p, q) for p, q in zip(b, th.batch_order(10, 4, 7, seed=0)))


def test_runs_share_the_teacher_and_interval_one_is_online(small):
    model, task = small
    kw = dict(epochs=4, batch_size=16, lr=0.1, alpha=0.3, seed=0, converge_steps=50)
    r = th.run_online_and_spaced(model, task, interval_epochs=1.0, **kw)
    assert r.interval == 3 and r.batches_per_epoch == 3 and len(r.teacher) == 13
    assert torch.equal(r.online[0], r.spaced[0]) and torch.equal(r.online[0], r.teacher[0])
    assert not torch.allclose(r.online[-1], r.spaced[-1])
    one = th.run_online_and_spaced(model, task, interval_epochs=1 / 3, **kw)
    assert one.interval == 1 and torch.equal(one.online, one.spaced)
    assert torch.equal(one.teacher, r.teacher)  # the spacing never changes the teacher
    # the spaced student's first update used φ_s: redo it by hand
    b = th.batch_order(48, 16, 1, seed=0)[0]
    g = model.forward(r.teacher[3], task.x_train[b])
    q = r.online[0].clone().requires_grad_(True)
    (gr,) = torch.autograd.grad(th.kd_loss(model, q, g, task.x_train[b], task.y_train[b], 0.3), q)
    assert torch.allclose(r.spaced[1], r.online[0] - 0.1 * gr, rtol=0, atol=1e-14)
    # φ* lowers the teacher's loss
    assert th.task_loss(model, r.phi_star, task.x_train, task.y_train) < th.task_loss(
        model, r.teacher[-1], task.x_train, task.y_train)


def test_frames_and_verdicts(small):
    model, task = small
    runs = {s: th.run_online_and_spaced(model, task, epochs=6, batch_size=16, lr=0.1, alpha=0.3,
                                        interval_epochs=1.0, seed=s, converge_steps=100)
            for s in (0, 1)}
    import pandas as pd
    gaps = pd.concat([th.gap_frame(model, task, r, s) for s, r in runs.items()])
    assert len(gaps) == 2 * 18 and (gaps["u_spaced"] >= 0).all()
    r0 = runs[0]
    jstar = th.output_gradients(model, r0.phi_star, task.x_train)
    row = gaps[(gaps["seed"] == 0) & (gaps["step"] == 4)].iloc[0]
    assert row["u_online"] == pytest.approx(float(th.teacher_gap(r0.teacher[4] - r0.phi_star, jstar)))
    assert row["u_spaced"] == pytest.approx(float(th.teacher_gap(r0.teacher[6] - r0.phi_star, jstar)))
    steps = th.record_steps(r0, 3)
    assert steps == [1, 7, 16]  # s = 3: half-way (⌊s/2⌋ = 1) into intervals 0, 2, 5
    hess = pd.concat([th.hessian_frame(model, task, r, 0.3, steps, s) for s, r in runs.items()])
    assert len(hess) == 2 * 3 * 2
    assert np.allclose(hess["gauss_newton"] + hess["beta_term"], hess["trace"], rtol=1e-9)
    on = hess[hess["scheme"] == "online"]
    assert on["beta_term_spaced_teacher"].notna().all()
    assert hess[hess["scheme"] == "spaced"]["beta_term_spaced_teacher"].isna().all()
    sp = hess[(hess["scheme"] == "spaced") & (hess["step"] == 7) & (hess["seed"] == 0)].iloc[0]
    assert sp["teacher_step"] == 9 and on.iloc[1]["teacher_step"] == 7
    sign = th.sign_step_frame(model, task, r0, 0.3, 16, 0)
    assert 0 <= sign["share_negative_c"] <= 1
    for text in (th.lemma_verdicts(gaps), th.theorem_verdicts(hess),
                 th.assumption_verdicts(model, task, runs, hess, gaps)):
        assert text and all(isinstance(s, str) and s for s in text)
    assert "% of the 18 steps" in th.lemma_verdicts(gaps)[0]
    assert math.isfinite(hess["min_eig"].iloc[0])
