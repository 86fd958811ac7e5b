"""Plain-language verdicts on Lemma 4.3, Theorem 4.4 and their assumptions, from the numbers."""
from __future__ import annotations

import pandas as pd

from .dynamics import KDRuns
from .model import MLP, Task


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
