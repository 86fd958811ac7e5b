"""``robustness.*`` config keys (dataclass defaults = documented defaults)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import FlatkdError
from .bim import BIM_PROTOCOLS
from .corruptions import CONSTANTS, CORRUPTIONS, PAPER_CORRUPTIONS, SEVERITIES, resolve

SOURCES = ("generated", "published")


@dataclass
class RobustnessConfig:
    """Settings of ``flatkd eval --suite robustness``.

    corruptions:  imagecorruptions names, or ``[all]`` (every corruption of the constant set).
                  Default: the paper's six (Tables 5 and 12).
    severities:   integers in 1..5; default 1, 3, 5 (the paper's intensities 1.0, 3.0, 5.0).
    constants:    ``imagenet-c`` (the package's tables, what the paper used) or ``cifar-c``
                  (CIFAR-10-C's tables).
    epsilons:     L∞ radii of every attack (BIM, FGSM, PGD) in units of 1/255 of the [0, 1]
                  pixel range (``2`` means ε = 2/255); result rows record ε as an absolute
                  value in [0, 1]. An empty list skips the attacks.
    bim_protocol: ``kurakin`` (step 1/255, steps = max(1, ⌊min(ε·255 + 4, 1.25·ε·255)⌋)) or
                  ``foolbox-default`` (step 0.2·ε, 10 steps).
    workers:      processes generating corrupted images; 0 = every core this process may use.
    source:       ``generated`` (default: corrupted here from the clean test split with
                  imagecorruptions and cached) or ``published`` (the released CIFAR-10-C /
                  CIFAR-100-C / Tiny-ImageNet-C arrays: one <corruption>.npy per corruption,
                  severities 1-5 stacked, and labels.npy, in the folder CIFAR-10-C/ etc. under
                  data_root; ``all`` = every corruption file present; constants do not apply).
    published_dir: the published folder itself, when it is not <data_root>/CIFAR-10-C (etc.).
    attacks:      adversarial attacks, any of ``bim``, ``fgsm``, ``pgd`` (default ``bim``),
                  each at every ε of ``epsilons``; an empty list skips them.
    pgd_steps:    PGD steps, each of 2.5·ε / pgd_steps, from a random start (default 10).
    pgd_restarts: PGD random restarts; an image counts as robust only if every restart fails
                  (default 1).
    """

    corruptions: list[str] = field(default_factory=lambda: list(PAPER_CORRUPTIONS))
    severities: list[int] = field(default_factory=lambda: [1, 3, 5])
    constants: str = "imagenet-c"
    epsilons: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    bim_protocol: str = "kurakin"
    workers: int = 0
    source: str = "generated"
    published_dir: str | None = None
    attacks: list[str] = field(default_factory=lambda: ["bim"])
    pgd_steps: int = 10
    pgd_restarts: int = 1

    def validate(self) -> None:
        """Raise FlatkdError (naming the valid values) for any out-of-range setting."""
        CONSTANTS.get(self.constants)
        BIM_PROTOCOLS.get(self.bim_protocol)
        if self.source not in SOURCES:
            raise FlatkdError(f"robustness.source: {self.source!r} is not valid; valid choices: "
                              f"{', '.join(SOURCES)}")
        if self.source == "generated":
            resolve(self.corruptions, self.constants)
        else:
            bad = [n for n in self.corruptions if n != "all" and n not in CORRUPTIONS]
            if bad or not self.corruptions:
                raise FlatkdError(f"robustness.corruptions: {bad or 'empty'} not valid; valid: "
                                  f"all, {', '.join(CORRUPTIONS.names())}")
        from .attacks import ATTACKS
        for a in self.attacks:
            ATTACKS.get(a)
        if len(set(self.attacks)) != len(self.attacks):
            raise FlatkdError("robustness.attacks lists an attack twice")
        for name in ("pgd_steps", "pgd_restarts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise FlatkdError(f"robustness.{name} must be an integer >= 1, got {v!r}")
        if not self.severities:
            raise FlatkdError("robustness.severities is empty; valid: integers 1, 2, 3, 4, 5")
        for s in self.severities:
            if isinstance(s, bool) or s not in SEVERITIES:
                raise FlatkdError(f"robustness.severities: {s!r} is not valid; "
                                  "valid: integers 1, 2, 3, 4, 5")
        if len(set(self.severities)) != len(self.severities):
            raise FlatkdError("robustness.severities lists a severity twice")
        for e in self.epsilons:
            if not (isinstance(e, (int, float)) and math.isfinite(e) and 0 <= e <= 255):
                raise FlatkdError(f"robustness.epsilons: {e!r} is not valid; valid: numbers "
                                  "in [0, 255] (units of 1/255, e.g. 0.5,1,2,4,8)")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise FlatkdError(f"robustness.workers: {self.workers!r} is not valid; valid: "
                              "0 (all cores) or a positive integer")

    def corruption_names(self) -> list[str]:
        """The validated corruption list with ``all`` expanded."""
        return resolve(self.corruptions, self.constants)
