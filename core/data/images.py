"""Image decoding and the ViT originals' transforms, in numpy (Pillow decodes and resizes).

The originals (rentainhe/ViT.pytorch and ViT-TRAR, utils/data_utils.py) train with torchvision's
Resize((S, S)) -> RandomHorizontalFlip -> ToTensor -> Normalize([0.5] * 3, [0.5] * 3) and evaluate without the flip:
an aspect-distorting bilinear resize with no crop, inputs in [-1, 1]. Here the same steps are Pillow's bilinear resize
(what torchvision's Resize calls on a PIL image), a numpy flip, and float32 arithmetic in ToTensor's and Normalize's
order, so the arrays are torchvision's. The flip is drawn from (SEED, epoch, index), not from a process RNG, so both
backends and any number of DataLoader workers see the same images.
"""
import numpy as np

# torchvision.datasets.folder.IMG_EXTENSIONS: the files an ImageFolder reads (compared lower-case)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MEAN = 0.5
STD = 0.5


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("image datasets decode with Pillow: pip install Pillow (requirements.txt pins it)") from None
    return Image


def is_image_file(name):
    return name.lower().endswith(IMG_EXTENSIONS)


def decode_rgb(path):
    """The image at ``path`` as RGB (torchvision's pil_loader: convert('RGB')); a one-line error naming the file."""
    Image = _pil()
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, ValueError) as exc:   # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{path}: cannot decode the image ({exc})") from None


def resize_rgb(img, size):
    """(size, size, 3) uint8: ``img`` (a PIL image or an (H, W, 3) uint8 array) resized bilinearly without a crop."""
    Image = _pil()
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def flip_of(seed, epoch, index):
    """Whether training sample ``index`` is flipped in 0-based ``epoch`` (probability one half)."""
    return bool(np.random.default_rng([int(seed), int(epoch), int(index)]).random() < 0.5)


def to_input(rgb, flip=False, mean=MEAN, std=STD):
    """(S, S, 3) uint8 -> the model input (3, S, S) float32: ToTensor (/ 255) then Normalize((x - mean) / std)."""
    if flip:
        rgb = rgb[:, ::-1]
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)
    return (x - np.float32(mean)) / np.float32(std)


def load_input(path, size, flip=False, mean=MEAN, std=STD):
    """A file as model input: decode, resize to (size, size), flip if asked, normalise."""
    return to_input(resize_rgb(decode_rgb(path), size), flip, mean, std)


def preprocessing(size):
    """How a file becomes model input, as an inference folder's manifest records it (deploy/classifier.py)."""
    return {"size": int(size), "channels": "RGB", "resize": "bilinear, no crop", "scale": 255.0, "mean": MEAN,
            "std": STD, "layout": "NCHW"}
