"""Every objective on the analytic priors (reference §15): mode occupancy, within-mode spread and
covariance error, written to bench/results/toy_objectives.json.

Mixture: pi = (0.2, 0.3, 0.5), means (-2,0), (2,0), (0,2.5), std 0.3; 512 particles from U[-3,3]^2,
plain SGD, w = sigma^2 unless the objective fixes its own. VSD/ESD/DSD use a KDE fake score
(h = 0.1). Gaussian: Sigma_p = [[1, .6], [.6, .61]], generator x = mu + L c, exact fake score.
DDS is an editing rule (it needs a source) and is left out. Run: python -m bench.toy_objectives
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from dreamer.objectives.asd import ASD, ASDConfig
from dreamer.objectives.base import TimestepSchedule
from dreamer.objectives.bsd import BSD, BSDConfig
from dreamer.objectives.cds import CDS, CDSConfig
from dreamer.objectives.csd import CSD, CSDConfig
from dreamer.objectives.dsd import DSD, DSDConfig
from dreamer.objectives.esd import ESD, ESDConfig
from dreamer.objectives.ism import ISM, ISMConfig
from dreamer.objectives.nfsd import NFSD, NFSDConfig
from dreamer.objectives.sds import SDS, SDSConfig
from dreamer.objectives.toy import (
    GaussianGenerator,
    GeneratorScore,
    ParticleKDE,
    covariance_error,
    mode_stats,
    run_generator,
    run_particles,
)
from dreamer.objectives.vsd import VSD, VSDConfig
from dreamer.priors.analytic import GaussianPrior, MixturePrior

OUT = Path(__file__).parent / "results" / "toy_objectives.json"
FULL = TimestepSchedule(t_min=0.02, t_max=0.98)
SIGMA_P = torch.tensor([[1.0, 0.6], [0.6, 0.61]])


def mixture_rules(prior: MixturePrior) -> dict:
    kde = lambda: ParticleKDE(0.1, prior)  # noqa: E731
    return {
        "sds (t<200)": SDS(prior, SDSConfig(guidance_scale=1.0, timesteps=TimestepSchedule(t_max=0.2))),
        "sds (full t)": SDS(prior, SDSConfig(guidance_scale=1.0, timesteps=FULL)),
        "vsd (KDE)": VSD(prior, VSDConfig(guidance_scale=1.0, timesteps=FULL), fake_score=kde()),
        "esd lam=0.5 (KDE)": ESD(prior, ESDConfig(guidance_scale=1.0, timesteps=FULL), fake_score=kde()),
        "dsd default (KDE)": DSD(prior, DSDConfig(timesteps=FULL), fake_score=kde()),
        "dsd cfg=0,var=1 (KDE)": DSD(
            prior, DSDConfig(cfg_weight=0.0, variational_weight=1.0, timesteps=FULL), fake_score=kde()
        ),
        "asd": ASD(prior, ASDConfig(guidance_scale=1.0, timesteps=FULL)),
        "csd": CSD(prior, CSDConfig(timesteps=FULL, weighting="sds")),
        "bsd": BSD(prior, BSDConfig(timesteps=FULL)),
        "cds": CDS(prior, CDSConfig(guidance_scale=1.0, grad_clip=None)),
        "ism": ISM(prior, ISMConfig(guidance_scale=1.0, timesteps=FULL)),
        "nfsd": NFSD(prior, NFSDConfig(guidance_scale=1.0, timesteps=FULL)),
    }


def main(particles: int = 512, steps: int = 2000, gaussian_steps: int = 1000) -> dict:
    torch.set_num_threads(1)
    prior = MixturePrior(
        torch.tensor([0.2, 0.3, 0.5]), torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]), 0.3
    )
    start = torch.rand(particles, 2, generator=torch.Generator().manual_seed(0)) * 6 - 3
    results: dict = {"mixture": {}, "gaussian": {}, "settings": {"particles": particles, "steps": steps}}
    for name, rule in mixture_rules(prior).items():
        t0 = time.perf_counter()
        out = run_particles(rule, start, steps, 0.02, torch.Generator().manual_seed(1))
        stats = mode_stats(out, prior)
        stats["seconds"] = round(time.perf_counter() - t0, 1)
        results["mixture"][name] = stats
        occ = "/".join(f"{o:.2f}" for o in stats["occupancy"])
        std = "/".join(f"{s:.3f}" for s in stats["within_std"])
        print(f"{name:24s} occupancy {occ}  std {std}  max dist {stats['max_distance_to_mode']:.2f}")
    g_prior = GaussianPrior(torch.tensor([0.5, 0.3]), SIGMA_P)
    for name, lam in [
        ("sds", None),
        ("esd lam=0 (=vsd, Dirac q)", 0.0),
        ("esd lam=0.5", 0.5),
        ("esd lam=1", 1.0),
    ]:
        torch.manual_seed(0)
        gen = GaussianGenerator(2)
        if lam is None:
            rule = SDS(g_prior, SDSConfig(guidance_scale=1.0, timesteps=FULL))
        else:
            cfg = ESDConfig(guidance_scale=1.0, entropy_weight=lam, timesteps=FULL)
            rule = ESD(g_prior, cfg, fake_score=GeneratorScore(gen, g_prior))
        run_generator(rule, gen, gaussian_steps, 256, 0.01, torch.Generator().manual_seed(1))
        cov = gen.covariance()
        results["gaussian"][name] = {
            "cov": cov.tolist(),
            "trace": float(cov.trace()),
            "relative_cov_error": covariance_error(cov, SIGMA_P),
            "mean_error": float((gen.mu.detach() - g_prior.mean).abs().max()),
        }
        print(
            f"gaussian {name:26s} tr Cov {float(cov.trace()):.4f}"
            f"  rel err {covariance_error(cov, SIGMA_P):.3f}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
