"""Hydra configs shipped with vae_lab: the same files as configs/ in the clone (`pkg://vae_lab.configs`)."""
