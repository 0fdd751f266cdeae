"""ImageNet-style folders (DATA_FORMAT imagefolder), read as torchvision's ImageFolder reads them.

    <DATA_ROOT>/train/<class>/<image>.jpg     labelled training images, one folder per class
    <DATA_ROOT>/val/<class>/<image>.jpg       labelled validation images, the same class folders
    <DATA_ROOT>/test/<image>.jpg              optional: images without labels (sub-folders allowed)

Class index = position of the folder name in the sorted list of train/'s class folders (val/'s when there is no
train/), so the indices are ImageFolder's; a sample's files are walked as ImageFolder does (os.walk sorted, files
sorted, extensions of core.data.images.IMG_EXTENSIONS, any case). Image ids are the paths under DATA_ROOT with '/'.
"""
import os

from core.data import images
from core.data.image_dataset import ImageClassificationDataset

SPLIT_DIRS = ("train", "val")
TEST_DIR = "test"


def expected_layout(root):
    return ("expected layout (torchvision ImageFolder):\n  "
            + "\n  ".join([os.path.join(root, "train", "<class>", "<image>.jpg"),
                           os.path.join(root, "val", "<class>", "<image>.jpg"),
                           os.path.join(root, TEST_DIR, "<image>.jpg") + "   (optional, unlabelled)"]))


def class_folders(split_dir):
    """The sorted class-folder names of one split folder."""
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir())


def walk_images(folder):
    """Image files under ``folder``, in ImageFolder's order (sorted walk, sorted names)."""
    found = []
    for dirpath, _, names in sorted(os.walk(folder, followlinks=True)):
        found += [os.path.join(dirpath, n) for n in sorted(names) if images.is_image_file(n)]
    return found


def _rel(path, root):
    return os.path.relpath(path, root).replace(os.sep, "/")


class ImageFolderDataset(ImageClassificationDataset):
    def __init__(self, cfg, mode):
        super().__init__(cfg, mode)
        root = cfg.DATA_ROOT
        self.root = root
        class_dir = next((os.path.join(root, d) for d in SPLIT_DIRS if os.path.isdir(os.path.join(root, d))), None)
        if class_dir is None:
            raise FileNotFoundError(f"{os.path.join(root, 'train')}: no such folder (nor val/)\n{expected_layout(root)}")
        self.class_names = class_folders(class_dir)
        if not self.class_names:
            raise FileNotFoundError(f"{class_dir}: no class folders\n{expected_layout(root)}")
        index = {name: k for k, name in enumerate(self.class_names)}
        paths, labels = [], []
        if mode == "test":
            folder = os.path.join(root, TEST_DIR)
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{folder}: no such folder; a test run reads unlabelled images there\n"
                                        f"{expected_layout(root)}")
            paths = walk_images(folder)
            labels = None
        else:
            for split in cfg.SPLIT[mode].split("+"):
                folder = os.path.join(root, split)
                if not os.path.isdir(folder):
                    raise FileNotFoundError(f"{folder}: no such folder\n{expected_layout(root)}")
                for name in class_folders(folder):
                    if name not in index:
                        raise ValueError(f"{os.path.join(folder, name)}: class folder not in {class_dir} (classes "
                                         "are train/'s folders; give every split the same ones)")
                    files = walk_images(os.path.join(folder, name))
                    paths += files
                    labels += [index[name]] * len(files)
        if not paths:
            raise FileNotFoundError(f"no images ({', '.join(images.IMG_EXTENSIONS)}) for {mode} under {root}\n"
                                    f"{expected_layout(root)}")
        self.paths = paths
        self.labels = labels
        self.image_ids = [_rel(p, root) for p in paths]
        self._finish(verbose=bool(getattr(cfg, "VERBOSE", False)))

    def _decode(self, i):
        return images.decode_rgb(self.paths[i])
