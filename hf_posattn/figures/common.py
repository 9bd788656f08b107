"""What every figure shares: matplotlib imported only when a figure is drawn (and a clear message when it is not
installed), one resolution, heat maps, and saving through the package's one writer (a figure appears whole).
"""

import io

import torch

from ..files import write_with

DPI = 100


# Jupyter's inline backend (a notebook's default, Colab's too) shows each figure under the cell that drew it. It is
# kept: switching to Agg would stop a notebook's own figures from showing once one of these functions had run.
INLINE_BACKENDS = ("module://matplotlib_inline.backend_inline", "inline")


def pyplot():
    """matplotlib's pyplot on the Agg backend (writes files; needs no screen), or on Jupyter's inline backend in a
    notebook; a clear error without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError('drawing figures needs matplotlib, which is not installed: pip install "hf-posattn[plot]"'
                         ) from None
    # Read as set, without resolving it (rcParams["backend"] would pick and import a GUI backend).
    if dict.__getitem__(matplotlib.rcParams, "backend") not in INLINE_BACKENDS:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: str) -> str:
    """Write `figure` as a PNG at `DPI` (its size in inches times DPI, exactly) and free it. The image is reduced
    to a palette of 256 colours (Pillow comes with matplotlib): a third of the bytes, no visible change. The file
    is written whole (`files.write_with`): a failure leaves the previous one as it was."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=DPI, format="png")
    pyplot().close(figure)
    with Image.open(buffer) as image:
        picture = image.convert("RGB").quantize(colors=256)
    return write_with(path, lambda temporary: picture.save(temporary, format="png", optimize=True))


def heat_map(axes, values, title: str, xlabel: str, ylabel: str, cmap: str = "RdBu_r", symmetric: bool = True,
             **kwargs):
    values = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else values
    if symmetric:
        bound = float(abs(values).max()) or 1.0
        kwargs.setdefault("vmin", -bound)
        kwargs.setdefault("vmax", bound)
    image = axes.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest", **kwargs)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.figure.colorbar(image, ax=axes, fraction=0.046, pad=0.02)
    return image
