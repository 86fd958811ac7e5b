"""Online vs spaced teacher/student SGD runs of the theory experiment (paper Alg. 1–2)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .hessian import kd_loss, spaced_teacher_step, task_loss
from .model import MLP, Task


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
