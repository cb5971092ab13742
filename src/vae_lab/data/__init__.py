"""Fashion-MNIST: the IDX reader, where the files are found, and the LightningDataModule."""
