"""The VAE LightningModule and its swappable components."""
