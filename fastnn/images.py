"""Reading photos and drawings as inputs shaped like the training data (Pillow).

MNIST and Fashion-MNIST images are light objects on a dark background,
centred and filling a 28x28 frame (scikit-learn's digits: 8x8).
:func:`load_image` converts any PNG or JPEG to that: grayscale, inverted
when the picture is dark-on-light (its border is brighter than mid-grey),
the longer side scaled to the model's side and centred on black.
"""

from pathlib import Path

import numpy as np

from .errors import FastnnError

SIZE = 28


def load_image(path, size=SIZE):
    """Read an image file as a (size, size) uint8 array like the training data.

    Returns
    -------
    image : ndarray (size, size) of uint8
    inverted : bool
        True if the picture was dark-on-light and was inverted.

    Raises
    ------
    FastnnError
        Missing file, not an image Pillow can read, or Pillow not installed.
    """
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError as exc:
        raise FastnnError('reading images needs Pillow: pip install "fastnn[image]"') from exc
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            gray = ImageOps.exif_transpose(im).convert("L")
    except FileNotFoundError:
        raise FastnnError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise FastnnError(f"{path}: not a readable PNG/JPEG image ({exc})") from None
    pixels = np.asarray(gray, dtype=np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    inverted = bool(border.mean() > 127.5)
    if inverted:
        gray = ImageOps.invert(gray)
    gray.thumbnail((size, size), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(gray, ((size - gray.width) // 2, (size - gray.height) // 2))
    return np.asarray(canvas, dtype=np.uint8), inverted
