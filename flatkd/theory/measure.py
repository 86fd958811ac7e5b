"""Measurements along the runs: teacher gaps, Hessian trace decompositions, β signs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from torch.func import vmap

from .dynamics import KDRuns, _sgd_grad
from .hessian import (
    beta, beta_linearised, beta_term, kd_loss, linearised_teacher_offsets, output_gradients,
    output_hessian_traces, spaced_teacher_step, task_loss, teacher_gap, trace_decomposition)
from .model import MLP, Task


def gap_frame(model: MLP, task: Task, runs: KDRuns, seed: int) -> pd.DataFrame:
    """Teacher gap along training (Def. 4.2, Lemma 4.3), one row per student step t = 1..T.

    Columns: ``seed, step, epoch``, ``u_online`` = u(φ_t), ``u_spaced`` = u(φ_k(t)),
    ``true_gap`` = 1/N Σ |g_φt(x_i) − g_φ*(x_i)| (no linearisation) and ``lin_rel_err`` =
    1/N Σ |g_φt − g_φ* − Δφ_tᵀ∇g_φ*| / true_gap (how wrong Def. 4.1's linearisation is at φ_t).
    """
    x = task.x_train
    jstar = output_gradients(model, runs.phi_star, x)
    steps = np.arange(1, len(runs.teacher))
    delta = runs.teacher - runs.phi_star
    lin = linearised_teacher_offsets(delta, jstar)                     # [T+1, N]
    u = lin.abs().mean(-1)
    true = vmap(model.forward, in_dims=(0, None))(runs.teacher, x) - model.forward(runs.phi_star, x)
    true_gap = true.abs().mean(-1)
    lin_err = (true - lin).abs().mean(-1) / true_gap
    k = spaced_teacher_step(steps, runs.interval)
    return pd.DataFrame({"seed": seed, "step": steps, "epoch": steps / runs.batches_per_epoch,
                         "u_online": u[steps].numpy(), "u_spaced": u[k].numpy(),
                         "true_gap": true_gap[steps].numpy(), "lin_rel_err": lin_err[steps].numpy()})


def record_steps(runs: KDRuns, n_points: int) -> list[int]:
    """``n_points`` steps spread over training, each half-way through a spaced interval
    (t ≡ s/2 mod s), where the spaced teacher is s/2 steps ahead of the online one."""
    n_int = (len(runs.teacher) - 1) // runs.interval
    picks = np.unique(np.linspace(0, n_int - 1, min(n_points, n_int)).round().astype(int))
    return [int(j * runs.interval + max(1, runs.interval // 2)) for j in picks]


def hessian_frame(model: MLP, task: Task, runs: KDRuns, alpha: float, steps: list[int],
                  seed: int) -> pd.DataFrame:
    """Exact Hessian trace and its Eq. 8 decomposition along training, online vs spaced.

    One row per (step, scheme). Columns: ``seed, step, epoch, scheme`` (online | spaced),
    ``teacher_step`` (t or k(t)), ``gauss_newton``, ``beta_term``, ``trace`` (autodiff, exact),
    ``min_eig`` (smallest Hessian eigenvalue), ``grad_norm`` (‖∇_θ L^(KD)‖ at θ_t: 0 at a
    stationary point), ``train_mse`` (task loss of the student), ``test_acc`` (sign accuracy),
    ``u_teacher`` (Def. 4.2 gap of the teacher used), ``beta_lin_rel_err`` (‖β − β_Eq.7‖/‖β‖),
    and — on online rows — ``beta_term_spaced_teacher``: the β term at the *same* θ_t with the
    spaced teacher φ_k(t), i.e. Eq. 9 vs Eq. 10 at one point.
    """
    x, y = task.x_train, task.y_train
    jstar = output_gradients(model, runs.phi_star, x)
    rows = []
    for t in steps:
        k = int(spaced_teacher_step(t, runs.interval))
        for scheme, traj, ts in (("online", runs.online, t), ("spaced", runs.spaced, k)):
            theta, phi = traj[t], runs.teacher[ts]
            g = model.forward(phi, x)
            d = trace_decomposition(model, theta, g, x, y, alpha)
            b = beta(model.forward(theta, x), g, y, alpha)
            b_lin = beta_linearised(phi - runs.phi_star, jstar, alpha)
            row = {"seed": seed, "step": t, "epoch": t / runs.batches_per_epoch,
                   "scheme": scheme, "teacher_step": ts, "gauss_newton": d.gauss_newton,
                   "beta_term": d.beta_term, "trace": d.exact, "min_eig": d.min_eig,
                   "grad_norm": float(_sgd_grad(
                       lambda th: kd_loss(model, th, g, x, y, alpha), theta).norm()),
                   "train_mse": float(task_loss(model, theta, x, y)),
                   "test_acc": float((model.forward(theta, task.x_test).sign()
                                      == task.y_test).double().mean()),
                   "u_teacher": float(teacher_gap(phi - runs.phi_star, jstar)),
                   "beta_lin_rel_err": float((b - b_lin).norm() / b.norm()),
                   "beta_term_spaced_teacher": math.nan}
            if scheme == "online":
                row["beta_term_spaced_teacher"] = beta_term(
                    model, theta, model.forward(runs.teacher[k], x), x, y, alpha)
            rows.append(row)
    return pd.DataFrame(rows)


def sign_step_frame(model: MLP, task: Task, runs: KDRuns, alpha: float, step: int,
                    seed: int) -> dict:
    """The step of the A.1 proof that goes from absolute values to signed sums, at θ = θ^O_step.

    Lemma 4.3 bounds the gaps ``u = 1/N Σ |a_i|`` (``a_i = Δφᵀ∇g_φ*(x_i)``); the proof then
    needs the signed β terms ``1/N Σ β_i c_i`` (``c_i = Tr ∇²f_θ(x_i)``, β_i ≈ −α a_i by Eq. 7)
    to be ordered the same way, which does not follow when the c_i or a_i change sign.
    Returns ``u_online, u_spaced``, the first-order β terms ``beta_lin_online, beta_lin_spaced``
    (= −α/N Σ a_i c_i), the exact β terms at this θ with either teacher, the share of negative
    c_i and the share of samples whose a_i changes sign between the two teachers.
    """
    x, y = task.x_train, task.y_train
    theta = runs.online[step]
    jstar = output_gradients(model, runs.phi_star, x)
    c = output_hessian_traces(model, theta, x)
    k = int(spaced_teacher_step(step, runs.interval))
    a_o = linearised_teacher_offsets(runs.teacher[step] - runs.phi_star, jstar)
    a_s = linearised_teacher_offsets(runs.teacher[k] - runs.phi_star, jstar)
    f = model.forward(theta, x)
    exact = {name: float((beta(f, model.forward(runs.teacher[ts], x), y, alpha) * c).mean())
             for name, ts in (("online", step), ("spaced", k))}
    return {"seed": seed, "step": step, "u_online": float(a_o.abs().mean()),
            "u_spaced": float(a_s.abs().mean()),
            "beta_lin_online": float((-alpha * a_o * c).mean()),
            "beta_lin_spaced": float((-alpha * a_s * c).mean()),
            "beta_exact_online": exact["online"], "beta_exact_spaced": exact["spaced"],
            "share_negative_c": float((c < 0).double().mean()),
            "share_sign_flip_a": float(((a_o * a_s) < 0).double().mean())}
