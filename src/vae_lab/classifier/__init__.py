"""A Fashion-MNIST classifier whose features FID and KID are measured in.

`python -m vae_lab.classifier` (`make classifier`) trains it and writes it weights-only to
`outputs/classifier/` (vae_lab.classifier.store); `python -m vae_lab.evaluate eval.fid=true`
finds it there.
"""

from pathlib import Path

DEFAULT_DIR = Path("outputs/classifier")  # what `make classifier` writes, from the project root
