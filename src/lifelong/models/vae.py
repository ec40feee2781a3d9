"""A variational autoencoder over images with values in [0, 1]: the generator of generative
replay (`dgr`).

Owns `VAE`: an MLP encoder to a diagonal Gaussian, an MLP decoder to Bernoulli pixel
probabilities, its loss (the negative evidence lower bound) and sampling from the prior with a
given generator. Not a classifier, so not in the `MODELS` registry: a strategy builds it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.errors import DataError


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no ReLU after the last layer


class VAE(nn.Module):
    """Kingma & Welling 2014 ("Auto-Encoding Variational Bayes", ICLR): q(z|x) a diagonal
    Gaussian from an MLP encoder, p(z) = N(0, I), p(x|z) independent Bernoulli pixels from an
    MLP decoder — the generator Shin et al. 2017 and van de Ven & Tolias 2018 replay from.

    Args:
        input_shape: shape of one image (values in [0, 1]).
        latent: size of z.
        hidden: widths of the encoder's hidden layers; the decoder mirrors them.
    """

    def __init__(self, input_shape: tuple[int, ...], *, latent: int = 32,
                 hidden: tuple[int, ...] | list[int] = (400,)) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.latent = latent
        d = math.prod(self.input_shape)
        widths = [int(h) for h in hidden]
        self.encoder = nn.Sequential(nn.Flatten(), _mlp([d, *widths]), nn.ReLU())
        self.posterior = nn.Linear(widths[-1], 2 * latent)  # mean and log-variance
        self.decoder = _mlp([latent, *reversed(widths), d])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = self.posterior(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Pixel logits, shaped like the images."""
        out: Tensor = self.decoder(z)
        return out.view(len(z), *self.input_shape)

    def loss(self, x: Tensor, noise: Tensor) -> Tensor:
        """The negative ELBO per image averaged over the batch, divided by the number of
        pixels (so its scale, and a good learning rate, do not depend on the image size):
        Bernoulli reconstruction cross-entropy plus KL(q(z|x) ‖ N(0, I)), with z = mean +
        σ·noise (the reparameterisation; `noise` ~ N(0, I), shape (len(x), latent), drawn by
        the caller from its own generator).

        Raises:
            DataError: pixels outside [0, 1] (a Bernoulli likelihood needs them there).
        """
        mean, logvar = self.encode(x)
        z = mean + (0.5 * logvar).exp() * noise
        recon = F.binary_cross_entropy_with_logits(self.decode(z), x, reduction="sum")
        kl = -0.5 * (1 + logvar - mean.square() - logvar.exp()).sum()
        return (recon + kl) / (len(x) * math.prod(self.input_shape))

    @staticmethod
    def check_range(x: Tensor) -> None:
        """Raise one clear error if images are not in [0, 1] (checked once per task)."""
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(f"the VAE generator models pixels in [0, 1], but this stream's "
                            f"images range over [{lo:.3g}, {hi:.3g}]; rescale the source")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """`n` images from the prior: pixel probabilities (the decoder's mean), in [0, 1],
        without gradients. z is drawn from `generator` (never the global RNG) on its device
        and moved here."""
        z = torch.randn(n, self.latent, generator=generator, device=generator.device)
        device = next(self.parameters()).device
        return torch.sigmoid(self.decode(z.to(device)))
