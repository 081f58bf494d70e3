"""The divergence core: the one place where vla-razor computes KL and other divergences.

It knows nothing of robots or tokens. Policies hand it distributions (categorical logits, diagonal
Gaussians, Gaussian denoising chains) or log-probabilities of samples; it returns divergences whose
direction and estimator are part of the name. The headline metric of the project is the forward KL
``KL(pi_0 || pi)`` (base policy first, expectation under the base): :func:`forward_kl`.
"""

from .distributions import Categorical, DiagGaussian, GaussianChain
from .estimators import Estimate, gaussian_js_estimate, kl_from_logprobs, mean_and_stderr
from .kl import f_divergence, forward_kl, kl, reduce, reverse_kl
from .token_kl import categorical_kl

__all__ = [
    "Categorical",
    "DiagGaussian",
    "GaussianChain",
    "Estimate",
    "categorical_kl",
    "f_divergence",
    "forward_kl",
    "gaussian_js_estimate",
    "kl",
    "kl_from_logprobs",
    "mean_and_stderr",
    "reduce",
    "reverse_kl",
]
