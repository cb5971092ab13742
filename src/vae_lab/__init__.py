"""vae_lab: config-driven Variational Autoencoder experiments on Fashion-MNIST."""

__version__ = "0.1.0"
