"""Paper §4.2 made numerical: exact Hessians of a KD loss on a model small enough to hold them.

Setting of the paper's analysis (§4.2, "Setup"): one output (c = 1), MSE task and KD losses
``l(ŷ, y) = ½ (ŷ − y)²``, student ``f_θ`` and teacher ``g_φ`` of the same architecture, KD risk

    L^(KD)(θ, φ) = 1/N Σ_i [(1 − α) ½ (f_θ(x_i) − y_i)² + α ½ (f_θ(x_i) − g_φ(x_i))²].

Its Hessian in θ is exactly (Eq. 6)

    H_φ(θ) = 1/N Σ_i [∇f ∇fᵀ + β(i, θ, φ) ∇²f],   β = (1 − α)(f − y) + α (f − g),

so ``Tr H = 1/N Σ ‖∇f(x_i)‖² + 1/N Σ β_i Tr ∇²f(x_i)`` (Eq. 8): a Gauss–Newton term that does not
see the teacher and a β-weighted term through which the teacher enters. Near minimisers with
``f_θ*(x_i) = g_φ*(x_i) = y_i`` (the over-parameterised assumption) β is approximately
``−α Δφᵀ ∇g_φ*(x_i)`` (Eq. 7; the paper prints it without the minus sign), and the teacher gap of Def. 4.2 is ``u(φ) = 1/N Σ |Δφᵀ ∇g_φ*(x_i)|``.
In spaced KD the student at step t learns from ``φ_k(t)``, ``k(t) = ⌈t/s⌉ s`` (Eq. 5), in online KD
from ``φ_t``. Lemma 4.3 claims ``E u(φ_k(t)) ≤ E u(φ_t)``; Theorem 4.4 claims
``E Tr H^(S) ≤ E Tr H^(O)`` at a converged student.

Everything here is float64 and functional: a model is a flat parameter vector ``θ`` of length P
plus an :class:`MLP` description; ``x`` is ``[N, d]``, outputs are ``[N]``. Exact Hessians use
``torch.func``. The notebook ``notebooks/01_theory.ipynb`` runs the experiment.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.func import grad, hessian, jacrev, vmap

DTYPE = torch.float64


@dataclass(frozen=True)
class MLP:
    """Fully connected tanh network with one output: layer widths ``sizes = (d, h1, ..., 1)``.

    Parameters live in one flat vector, layer by layer, each layer as (weight [out, in], bias).
    tanh (not ReLU) keeps ∇²f non-zero and smooth, so the β term of Eq. 6 is visible.
    """

    sizes: tuple[int, ...]

    def __post_init__(self):
        if len(self.sizes) < 2 or self.sizes[-1] != 1:
            raise ValueError(f"MLP sizes must be (d_in, ..., 1), got {self.sizes}")

    @property
    def n_params(self) -> int:
        return sum(o * i + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))

    def init(self, seed: int) -> torch.Tensor:
        """LeCun-uniform weights, zero biases, from ``torch.Generator().manual_seed(seed)``: [P]."""
        g = torch.Generator().manual_seed(seed)
        parts = []
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            bound = math.sqrt(3.0 / i)
            parts += [(torch.rand(o * i, generator=g, dtype=DTYPE) * 2 - 1) * bound,
                      torch.zeros(o, dtype=DTYPE)]
        return torch.cat(parts)

    def forward(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``f_θ(x)``: x [N, d] (or [d]) → outputs [N] (or scalar)."""
        h, k = x, 0
        n_layers = len(self.sizes) - 1
        for j, (i, o) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w = theta[k:k + o * i].reshape(o, i)
            b = theta[k + o * i:k + o * i + o]
            k += o * i + o
            h = h @ w.T + b
            if j < n_layers - 1:
                h = torch.tanh(h)
        return h[..., 0]


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class Task:
    """A binary regression task with targets ±1: x [N, d] float64, y [N] float64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_task(n_train: int = 256, dim: int = 8, seed: int = 0) -> Task:
    """scikit-learn's bundled digits, PCA to ``dim`` standardised components, target +1 for
    digits 5–9 and −1 for 0–4 (c = 1 as in §4.2). ``n_train`` samples for training, the rest
    for testing; split and PCA depend only on ``seed`` (PCA fitted on the training part)."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    data = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data.target))
    tr, te = idx[:n_train], idx[n_train:]
    pca = PCA(n_components=dim, random_state=seed).fit(data.data[tr])
    z_tr, z_te = pca.transform(data.data[tr]), pca.transform(data.data[te])
    mu, sd = z_tr.mean(0), z_tr.std(0)
    y = np.where(data.target >= 5, 1.0, -1.0)

    def t(a):
        return torch.as_tensor(a, dtype=DTYPE)

    return Task(t((z_tr - mu) / sd), t(y[tr]), t((z_te - mu) / sd), t(y[te]))


# ---------------------------------------------------------------- losses and Eq. 6-8

def task_loss(model: MLP, phi: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Teacher's risk ``1/N Σ ½ (g_φ(x_i) − y_i)²`` (the learning rule of Eq. 3 with MSE)."""
    return 0.5 * ((model.forward(phi, x) - y) ** 2).mean()


def kd_loss(model: MLP, theta: torch.Tensor, teacher_out: torch.Tensor, x: torch.Tensor,
            y: torch.Tensor, alpha: float) -> torch.Tensor:
    """``L^(KD)(θ, φ) = 1/N Σ [(1−α) ½ (f−y)² + α ½ (f−g)²]`` with ``g = teacher_out`` [N] fixed."""
    f = model.forward(theta, x)
    return ((1 - alpha) * 0.5 * (f - y) ** 2 + alpha * 0.5 * (f - teacher_out) ** 2).mean()


def beta(f: torch.Tensor, g: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """``β(i, θ, φ) = (1 − α)(f_θ(x_i) − y_i) + α (f_θ(x_i) − g_φ(x_i))`` (Eq. 6), shape [N].
    Also the per-sample gradient factor: ``∇_θ L_i = β_i ∇_θ f_θ(x_i)``."""
    return (1 - alpha) * (f - y) + alpha * (f - g)


def output_gradients(model: MLP, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ``∇_θ f_θ(x_i)``: [N, P]."""
    return vmap(grad(model.forward), in_dims=(None, 0))(theta, x)


def output_hessian_traces(model: MLP, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ``Tr ∇²_θ f_θ(x_i)``, [N], exactly, without forming P × P Hessians.

    In layer j, ``z_j = W_j h_j + b_j`` and f depends on ``W_j[a, b]`` only through ``z_j[a]``,
    so ``∂²f/∂W_j[a,b]² = h_j[b]² ∂²f/∂z_j[a]²`` and ``∂²f/∂b_j[a]² = ∂²f/∂z_j[a]²``. Hence
    ``Tr ∇²_θ f = Σ_j (‖h_j‖² + 1) Σ_a ∂²f/∂z_j[a]²``, where the second derivatives with respect to
    the (width-sized) pre-activations come from small exact per-sample Hessians. The last layer is
    linear in its pre-activation and contributes 0.
    """
    n_layers = len(model.sizes) - 1
    offsets = np.cumsum([0] + [o * i + o for i, o in zip(model.sizes[:-1], model.sizes[1:])])

    def layer(j, h):
        i, o = model.sizes[j], model.sizes[j + 1]
        w = theta[offsets[j]:offsets[j] + o * i].reshape(o, i)
        return h @ w.T + theta[offsets[j] + o * i:offsets[j + 1]]

    def tail(z, j):  # f as a function of layer j's pre-activation (one sample)
        h = torch.tanh(z)
        for jj in range(j + 1, n_layers):
            h = layer(jj, h)
            if jj < n_layers - 1:
                h = torch.tanh(h)
        return h[0]

    total = torch.zeros(len(x), dtype=theta.dtype)
    h = x
    for j in range(n_layers - 1):
        z = layer(j, h)
        d2 = vmap(hessian(tail), in_dims=(0, None))(z, j)          # [N, w, w]
        total = total + ((h ** 2).sum(1) + 1) * torch.diagonal(d2, dim1=-2, dim2=-1).sum(-1)
        h = torch.tanh(z)
    return total


def kd_hessian(model: MLP, theta: torch.Tensor, teacher_out: torch.Tensor, x: torch.Tensor,
               y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Exact ``H_φ(θ) = ∇²_θ L^(KD)(θ, φ)``, [P, P], by automatic differentiation (no Eq. 6)."""
    return jacrev(grad(lambda th: kd_loss(model, th, teacher_out, x, y, alpha)))(theta)


def beta_term(model: MLP, theta: torch.Tensor, teacher_out: torch.Tensor, x: torch.Tensor,
              y: torch.Tensor, alpha: float) -> float:
    """``1/N Σ β_i Tr ∇²f_θ(x_i)``: the second term of Eq. 8 (the only place the teacher enters)."""
    b = beta(model.forward(theta, x), teacher_out, y, alpha)
    return float((b * output_hessian_traces(model, theta, x)).mean())


@dataclass(frozen=True)
class TraceDecomposition:
    """``total = gauss_newton + beta_term`` (Eq. 8). ``exact`` is Tr of the autodiff Hessian
    when it was computed (else NaN); ``min_eig`` its smallest eigenvalue (< 0: not a minimum)."""

    gauss_newton: float
    beta_term: float
    exact: float
    min_eig: float

    @property
    def total(self) -> float:
        return self.gauss_newton + self.beta_term


def trace_decomposition(model: MLP, theta: torch.Tensor, teacher_out: torch.Tensor,
                        x: torch.Tensor, y: torch.Tensor, alpha: float,
                        exact: bool = True) -> TraceDecomposition:
    """Eq. 8 at ``θ``: ``1/N Σ ‖∇f_i‖²`` + ``1/N Σ β_i Tr ∇²f_i``, and (``exact=True``) the trace
    and smallest eigenvalue of the full autodiff Hessian for comparison."""
    gn = float((output_gradients(model, theta, x) ** 2).sum(1).mean())
    bt = beta_term(model, theta, teacher_out, x, y, alpha)
    if exact:
        h = kd_hessian(model, theta, teacher_out, x, y, alpha)
        tr, lmin = float(torch.trace(h)), float(torch.linalg.eigvalsh(h)[0])
    else:
        tr = lmin = math.nan
    return TraceDecomposition(gn, bt, tr, lmin)


def linearised_teacher_offsets(delta_phi: torch.Tensor, teacher_grads_star: torch.Tensor
                               ) -> torch.Tensor:
    """``Δφᵀ ∇_φ g_φ*(x_i)`` (Def. 4.1 applied to the teacher): delta_phi [..., P],
    teacher_grads_star [N, P] → [..., N]."""
    return delta_phi @ teacher_grads_star.T


def beta_linearised(delta_phi: torch.Tensor, teacher_grads_star: torch.Tensor,
                    alpha: float) -> torch.Tensor:
    """Eq. 7 to first order: ``β(i, θ*, φ) ≈ −α Δφᵀ ∇_φ g_φ*(x_i)``, [..., N].

    With ``f_θ*(x_i) = g_φ*(x_i) = y_i``, ``β = α (f_θ* − g_φ) = −α (g_φ − g_φ*)``: the paper
    prints ``+α Δφᵀ∇g_φ*``, which has the wrong sign (``tests/test_theory.py`` checks this one is
    second-order accurate and the printed one is not). Valid only near φ* and at such a θ*.
    """
    return -alpha * linearised_teacher_offsets(delta_phi, teacher_grads_star)


def teacher_gap(delta_phi: torch.Tensor, teacher_grads_star: torch.Tensor) -> torch.Tensor:
    """Def. 4.2: ``u(φ) = 1/N Σ_i |Δφᵀ ∇_φ g_φ*(x_i)|``; delta_phi [..., P] → [...]."""
    return linearised_teacher_offsets(delta_phi, teacher_grads_star).abs().mean(-1)


def spaced_teacher_step(t: int | np.ndarray, s: int) -> int | np.ndarray:
    """``k(t) = ⌈t/s⌉ s`` (§4.2): the teacher step a spaced student learns from at step t ≥ 1.
    ``s`` in optimizer steps; s = 1 gives k(t) = t (online KD)."""
    if s < 1:
        raise ValueError(f"interval s must be ≥ 1 step, got {s}")
    return -(-np.asarray(t) // s) * s if isinstance(t, np.ndarray) else -(-t // s) * s


# ---------------------------------------------------------------- training

def batch_order(n: int, batch_size: int, steps: int, seed: int) -> list[torch.Tensor]:
    """Index tensors of ``steps`` mini-batches: a fresh permutation each epoch, the last partial
    batch of an epoch kept (no drop_last), from ``torch.Generator().manual_seed(seed)``."""
    g = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=g)
        out += list(perm.split(batch_size))
    return out[:steps]


def _sgd_grad(loss: Callable[[torch.Tensor], torch.Tensor], p: torch.Tensor) -> torch.Tensor:
    """``∇ loss(p)`` by reverse-mode autograd (≈ 3× cheaper per call than torch.func.grad on
    these tiny models, which matters for thousands of SGD steps)."""
    q = p.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(q), q)
    return g


def train_teacher(model: MLP, phi0: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  batches: list[torch.Tensor], lr: float) -> torch.Tensor:
    """Plain mini-batch SGD on the task loss; returns the trajectory ``φ_0 .. φ_T``: [T+1, P]."""
    traj = [phi0]
    phi = phi0
    for b in batches:
        phi = phi - lr * _sgd_grad(lambda p: task_loss(model, p, x[b], y[b]), phi)
        traj.append(phi)
    return torch.stack(traj)


def train_student(model: MLP, theta0: torch.Tensor, teacher_traj: torch.Tensor, x: torch.Tensor,
                  y: torch.Tensor, batches: list[torch.Tensor], lr: float, alpha: float,
                  teacher_step: Callable[[int], int]) -> torch.Tensor:
    """Mini-batch SGD on the KD loss; the t-th update (t = 1..T) uses batch ``batches[t-1]`` and
    the frozen teacher ``φ_{teacher_step(t)}`` (Eq. 5). Online KD: ``t ↦ t`` (Alg. 1: the teacher
    steps first); spaced KD: ``t ↦ k(t)``. Returns ``θ_0 .. θ_T``: [T+1, P]."""
    traj = [theta0]
    theta = theta0
    for t, b in enumerate(batches, start=1):
        g = model.forward(teacher_traj[teacher_step(t)], x[b])
        theta = theta - lr * _sgd_grad(lambda th: kd_loss(model, th, g, x[b], y[b], alpha), theta)
        traj.append(theta)
    return torch.stack(traj)


def converge(model: MLP, phi: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: float,
             steps: int) -> torch.Tensor:
    """Full-batch gradient descent on the task loss from ``phi``: the teacher's minimiser φ*
    that Def. 4.2 measures the gap to."""
    for _ in range(steps):
        phi = phi - lr * _sgd_grad(lambda p: task_loss(model, p, x, y), phi)
    return phi


@dataclass(frozen=True)
class KDRuns:
    """One seed of the experiment: a shared teacher trajectory and two students.

    ``teacher`` [T+1, P]; ``online``/``spaced`` students [T+1, P]; ``phi_star`` [P];
    ``interval`` s in steps; ``batches_per_epoch``.
    """

    teacher: torch.Tensor
    online: torch.Tensor
    spaced: torch.Tensor
    phi_star: torch.Tensor
    interval: int
    batches_per_epoch: int


def run_online_and_spaced(model: MLP, task: Task, *, epochs: float, batch_size: int, lr: float,
                          alpha: float, interval_epochs: float, seed: int,
                          converge_steps: int = 3000) -> KDRuns:
    """Train one teacher and, from the same init and batch order, an online and a spaced student.

    The teacher takes the same SGD steps in both schemes (spaced KD only changes which teacher
    state the student sees), and is initialised with the student's seed as in paper §4.1.
    The interval ``floor(interval_epochs × batches_per_epoch)`` steps; the step count T is
    rounded down to a multiple of it, so every k(t) ≤ T exists.
    """
    n = len(task.x_train)
    bpe = math.ceil(n / batch_size)
    s = max(1, int(interval_epochs * bpe))
    steps = max(s, int(epochs * bpe) // s * s)
    batches = batch_order(n, batch_size, steps, seed)
    x, y = task.x_train, task.y_train
    theta0 = model.init(seed)
    teacher = train_teacher(model, theta0.clone(), x, y, batches, lr)
    phi_star = converge(model, teacher[-1], x, y, lr, converge_steps)
    online = train_student(model, theta0, teacher, x, y, batches, lr, alpha, lambda t: t)
    spaced = train_student(model, theta0, teacher, x, y, batches, lr, alpha,
                           lambda t: spaced_teacher_step(t, s))
    return KDRuns(teacher, online, spaced, phi_star, s, bpe)


# ---------------------------------------------------------------- measurements

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


# ---------------------------------------------------------------- verdicts in words

def lemma_verdicts(gaps: pd.DataFrame, lin_ok: float = 0.1) -> list[str]:
    """Sentences on Lemma 4.3 from the seed-averaged gaps: where E u(φ_k(t)) ≤ E u(φ_t) holds,
    split by whether the linearisation of Def. 4.1 is accurate (``lin_rel_err < lin_ok``)."""
    m = gaps.groupby("step")[["u_online", "u_spaced", "lin_rel_err", "epoch"]].mean()
    holds = m["u_spaced"] <= m["u_online"]
    ok = m["lin_rel_err"] < lin_ok
    out = [f"Lemma 4.3 (E u_k(t) ≤ E u_t, averaged over {gaps['seed'].nunique()} seeds) holds at "
           f"{holds.mean():.0%} of the {len(m)} steps."]
    for name, mask in (("accurate", ok), ("inaccurate", ~ok)):
        if mask.any():
            out.append(f"Where the linearisation is {name} (relative error "
                       f"{'<' if name == 'accurate' else '≥'} {lin_ok:g}; {mask.mean():.0%} of "
                       f"steps, epochs {m['epoch'][mask].min():.1f}–{m['epoch'][mask].max():.1f}) "
                       f"it holds at {holds[mask].mean():.0%} of them.")
    n = len(m)
    for name, part in (("first", m.iloc[: n // 4]), ("last", m.iloc[-(n // 4):])):
        h = (part["u_spaced"] <= part["u_online"]).mean()
        out.append(f"In the {name} quarter of training it holds at {h:.0%} of steps "
                   f"(mean u_t {part['u_online'].mean():.3g}, mean u_k(t) "
                   f"{part['u_spaced'].mean():.3g}).")
    return out


def theorem_verdicts(hess: pd.DataFrame) -> list[str]:
    """Sentences on Theorem 4.4 from the seed-averaged Hessian traces: (a) each student at its
    own θ_t (what experiments measure), (b) one θ_t with the two teachers (Eq. 9 vs 10)."""
    piv = hess.pivot_table(index="step", columns="scheme", values="trace", aggfunc="mean")
    own = piv["spaced"] <= piv["online"]
    on = hess[hess["scheme"] == "online"].groupby("step")[
        ["beta_term", "beta_term_spaced_teacher"]].mean()
    same = on["beta_term_spaced_teacher"] <= on["beta_term"]
    last = piv.index.max()
    fin = hess[hess["step"] == last].pivot_table(index="seed", columns="scheme", values="trace")
    wins = int((fin["spaced"] <= fin["online"]).sum())
    beta_share = (hess["beta_term"].abs() / hess["trace"].abs()).median()
    return [
        f"(a) Own trajectories: E Tr H^(S) ≤ E Tr H^(O) at {own.mean():.0%} of the {len(piv)} "
        f"recorded steps; at the last one (step {last}) spaced {piv['spaced'][last]:.4g} vs "
        f"online {piv['online'][last]:.4g}, spaced flatter in {wins} of {len(fin)} seeds.",
        f"(b) Same θ, two teachers (Eq. 9 vs Eq. 10): the β term with the spaced teacher is ≤ the "
        f"one with the online teacher at {same.mean():.0%} of recorded steps.",
        f"Median |β term| / |Tr H| = {beta_share:.2%}: " + (
            "the Gauss–Newton term, which the teacher does not enter, dominates the trace, so "
            "differences between the students' traces come mostly from where θ ended up, not "
            "from the teacher term of Eq. 9–10." if beta_share < 0.5 else
            "the teacher-dependent β term is a large part of the trace here."),
    ]


def assumption_verdicts(model: MLP, task: Task, runs_by_seed: dict[int, KDRuns],
                        hess: pd.DataFrame, gaps: pd.DataFrame) -> list[str]:
    """Sentences on the three assumptions of §4.2: over-parameterised (P vs N and interpolation
    of the training set), converged (gradient norm, negative Hessian eigenvalues), and local
    linearisation (relative error of Def. 4.1 for the teacher)."""
    x, y = task.x_train, task.y_train
    resid = max(float((model.forward(r.phi_star, x) - y).abs().max()) for r in runs_by_seed.values())
    last = hess[hess["step"] == hess["step"].max()]
    first = hess[hess["step"] == hess["step"].min()]
    g = gaps.groupby("step")["lin_rel_err"].mean()
    n = len(g)
    return [
        f"Over-parameterised: P = {model.n_params} parameters for N = {len(x)} samples; the "
        f"teacher's minimiser φ* fits the targets up to max |g_φ*(x_i) − y_i| = {resid:.3g} "
        f"(the proof assumes 0); students end at train MSE {last['train_mse'].mean():.3g}, so "
        f"f_θ(x_i) = y_i {'is not' if last['train_mse'].mean() > 1e-3 else 'is nearly'} reached.",
        f"Converged: ‖∇L^(KD)‖ falls from {first['grad_norm'].mean():.3g} (step "
        f"{int(first['step'].iloc[0])}) to {last['grad_norm'].mean():.3g} (step "
        f"{int(last['step'].iloc[0])}); the smallest Hessian eigenvalue at the end is "
        f"{last['min_eig'].mean():.3g} ({'negative: a saddle/non-minimum' if last['min_eig'].mean() < 0 else 'non-negative'}).",
        f"Local linearisation: the teacher's Def. 4.1 relative error is {g.iloc[: max(1, n // 10)].mean():.2f} "
        f"in the first tenth of training and {g.iloc[-max(1, n // 10):].mean():.2f} in the last; "
        f"Eq. 7's β approximation has relative error {last['beta_lin_rel_err'].mean():.2f} at the "
        "end (it also assumes f_θ* = y).",
    ]
