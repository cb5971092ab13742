"""`python -m vae_lab.sample`: PNG grids of what a trained checkpoint generates.

    python -m vae_lab.sample ckpt_path=outputs/runs/<date>/<time> sample.n=64 sample.out=samples.png

Writes, for `sample.out=<dir>/<stem>.png`:

- `<stem>.png`: n draws z ~ p(z), shown as the likelihood's mean E[x|z]; for a
  class-conditional model, n draws of class `sample.label`, or without a label a row per
  class (`sample.nrow` draws of z, the same in every row);
- `<stem>_pixels.png` (with `sample.pixels=true`): x ~ p(x|z) itself;
- `<stem>_reconstructions.png`: test images (row 1) and their reconstructions (row 2);
- `<stem>_interpolation.png`: between the posterior means of two test images;
- `<stem>_traversals.png`: one row per latent dim, swept over [-span, span] (for a model
  with a stack of latent layers, the top layer's dims, the layers below completed from the
  prior);
- `<stem>_manifold.png` for a 2-D (top) latent layer: decodes over a grid of Gaussian
  quantiles.

The same seed gives the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from vae_lab.cli.entry import command
from vae_lab.cli.errors import UserError, from_os_error
from vae_lab.config.checks import check_in_range, check_sample

if TYPE_CHECKING:
    import torch

    from vae_lab.models.vae import VAE


def _check_label(label: object, model: VAE) -> None:
    if label is None:
        return
    if not model.conditional:
        raise UserError(
            f"sample.label={label} asks for one class, but this model is not class-conditional "
            "(trained with conditioning=none); drop sample.label, or train with conditioning=label"
        )
    classes = model.conditioning.num_classes
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
        raise UserError(f"sample.label must be a class index in [0, {classes}), got {label!r}")


def run(cfg: DictConfig) -> list[Path]:
    """Write the grids `cfg.sample` asks for; return their paths."""
    import torch

    from vae_lab.evaluation import pictures
    from vae_lab.evaluation.trained import load_trained, split_data

    check_sample(cfg)
    s = cfg.sample
    trained = load_trained(cfg)
    model = trained.model
    top_dim = model.prior.layer_dims[0]  # the whole latent for a single-latent model
    _check_label(s.label, model)
    images, labels = split_data(trained, cfg, "test")
    dims = check_in_range(s, len(images), top_dim)

    def draws(pixels: bool) -> torch.Tensor:  # the same z both times: one seed
        generator = torch.Generator().manual_seed(cfg.seed)
        return pictures.samples(model, s.n, s.nrow, generator, s.label, pixels)

    torch.manual_seed(cfg.seed)  # pixel draws of `sample.pixels`
    x = images.float() / 255.0
    ends = [int(i) for i in s.interpolation]
    at = slice(s.traversal_image, s.traversal_image + 1)
    z0 = pictures.encode(model, images[at], labels[at]).mean[0]
    label = s.label if s.label is not None else int(labels[s.traversal_image])
    n = s.n_reconstructions
    grids = {
        "": draws(pixels=False),
        "_reconstructions": pictures.reconstructions(model, x[:n], labels[:n]),
        "_interpolation": pictures.interpolation(
            model, x[ends], labels[ends], s.interpolation_steps
        ),
        "_traversals": pictures.traversals(model, z0, dims, s.span, s.steps, label),
    }
    if s.pixels:
        grids["_pixels"] = draws(pixels=True)
    if top_dim == 2:
        grids["_manifold"] = pictures.manifold_2d(model, label=label)

    return _write(grids, Path(s.out))


def _write(grids: dict[str, torch.Tensor], out: Path) -> list[Path]:
    """`<out stem><suffix>.png` for each grid; on a failure to write, none of them."""
    from torchvision.utils import save_image

    written: list[Path] = []
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for suffix, grid in grids.items():
            path = out.with_name(f"{out.stem}{suffix}.png")
            written.append(path)
            save_image(grid, path)
    except OSError as e:  # a read-only place, a full disk: say so, keep nothing half-done
        for done in written:
            done.unlink(missing_ok=True)
        raise from_os_error(e) or UserError(f"cannot write sample.out={out}: {e}") from e
    for path, grid in zip(written, grids.values(), strict=True):
        print(f"Wrote {path} ({grid.shape[2]}x{grid.shape[1]})")
    return written


main = command(run, "sample")


if __name__ == "__main__":
    main()
