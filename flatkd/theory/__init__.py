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

Modules: ``model`` (MLP, task), ``hessian`` (Eq. 6–10 maths), ``dynamics`` (online vs spaced
runs), ``measure`` (frames along the runs), ``verdicts`` (statements from the numbers).
"""
from .model import DTYPE, MLP, Task, digits_task
from .hessian import (
    task_loss, kd_loss, beta, output_gradients, output_hessian_traces, kd_hessian, beta_term,
    TraceDecomposition, trace_decomposition, linearised_teacher_offsets, beta_linearised,
    teacher_gap, spaced_teacher_step)
from .dynamics import (
    batch_order, train_teacher, train_student, converge, KDRuns, run_online_and_spaced)
from .measure import gap_frame, record_steps, hessian_frame, sign_step_frame
from .verdicts import lemma_verdicts, theorem_verdicts, assumption_verdicts

__all__ = [
    "DTYPE", "MLP", "Task", "digits_task", "task_loss", "kd_loss", "beta", "output_gradients",
    "output_hessian_traces", "kd_hessian", "beta_term", "TraceDecomposition",
    "trace_decomposition", "linearised_teacher_offsets", "beta_linearised", "teacher_gap",
    "spaced_teacher_step", "batch_order", "train_teacher", "train_student", "converge",
    "KDRuns", "run_online_and_spaced", "gap_frame", "record_steps", "hessian_frame",
    "sign_step_frame", "lemma_verdicts", "theorem_verdicts", "assumption_verdicts"]
