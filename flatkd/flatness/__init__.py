"""Flatness suite: Hessian trace / top eigenvalues / spectral density (native or PyHessian
backend) and Gaussian parameter-perturbation curves. Entry point: :func:`suite.run_flatness`."""
from .config import HessianConfig, PerturbationConfig
from .suite import run_flatness

__all__ = ["HessianConfig", "PerturbationConfig", "run_flatness"]
