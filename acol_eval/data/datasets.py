"""Image decoding and the training data sets (readers live in `readers.py`)."""

from __future__ import annotations

import json
import mmap
import os
import stat
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Sampler
from torchvision import transforms
from torchvision.transforms import functional as TF

from acol_eval.data.readers import Annotations
from acol_eval.util.safeio import atomic_write_text

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Scans and panoramas far above camera sizes are legitimate inputs; keep Pillow's
# decompression-bomb guard, but at 20k x 20k pixels instead of ~90 megapixels.
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000
# JPEGs this many times larger than the model's input are decoded at a reduced DCT
# scale (Pillow's draft mode): much faster, and the result is resized down anyway.
DRAFT_FACTOR = 4
EXIF_ORIENTATION = 0x0112


# --------------------------------------------------------------------------- images


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB (16-bit and float images are rescaled, alpha dropped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low, high = array.min(), array.max()
        scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
        image = Image.fromarray((scaled * 255).astype(np.uint8))
    elif image.mode == "P":
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def check_regular(path: str | Path) -> None:
    """Refuse anything but a regular file before decoding it: a FIFO would wait forever
    for a writer, a device could be read without end, a folder is no image."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise OSError("a folder, not an image file")
    if not stat.S_ISREG(mode):
        raise OSError("not a regular file (a FIFO, device or socket)")


def decode_image(path: str | Path) -> Image.Image:
    """Decode by content (not extension), honour EXIF orientation, return RGB."""
    return decode_for_model(path, None)[0]


def decode_for_model(
    path: str | Path, input_size: int | None
) -> tuple[Image.Image, int, int]:
    """RGB image for the model and the original (EXIF-oriented) width and height.

    Very large JPEGs are decoded at a reduced scale that still leaves every side
    at least `DRAFT_FACTOR * input_size` (full size when `input_size` is None); the
    returned size is the full one.
    """
    check_regular(path)  # before opening: a FIFO blocks open() itself
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
            width, height = height, width
        if (input_size is not None and image.format == "JPEG"
                and min(image.size) > DRAFT_FACTOR * input_size):
            side = DRAFT_FACTOR * input_size
            image.draft("RGB", (side, side))
        image.load()
        return to_rgb(ImageOps.exif_transpose(image)), width, height


# --------------------------------------------------------------------------- data sets


# --------------------------------------------------------------------------- random draws
#
# Every random draw of training comes from a generator seeded by a hash of (--seed,
# the epoch, what is drawn for), never from a process's global RNG: a loader worker's
# global RNG depends on how many workers there are and which one a sample lands on.

SAMPLE_DRAWS = 0x5A4D  # tags keep the streams apart: sample 3's and batch 3's differ
BATCH_DRAWS = 0xBA7C


def draw_seed(seed: int, epoch: int, tag: int, index: int) -> int:
    """A 63-bit seed hashed from (seed, epoch, tag, index): nearby inputs give unrelated
    seeds (numpy's SeedSequence), and nothing else enters it."""
    words = [int(seed), int(epoch), int(tag), int(index)]
    if min(words) < 0:
        raise ValueError(f"draw_seed takes counts, not {words}")
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def sample_generator(seed: int, epoch: int, index: int,
                     tag: int = SAMPLE_DRAWS) -> torch.Generator:
    """The generator of sample `index` (its position in the whole training set) in
    `epoch`. With the default tag it is the augmentation's (crop, flip); a method that
    draws per image passes a tag of its own, so its draws are not the crop's."""
    return torch.Generator().manual_seed(draw_seed(seed, epoch, tag, index))


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The generator for draws made once per batch (Hide-and-Seek's grid, CutMix's box
    and pairing) of the `batch`-th batch of `epoch`, drawn in the training loop. Under
    torchrun a rank numbers its batches `k * world + rank`, so ranks draw apart."""
    return torch.Generator().manual_seed(draw_seed(seed, epoch, BATCH_DRAWS, batch))


class KeyedSampler(Sampler):
    """Wraps a sampler of indices and yields (index, draw seed) pairs: the seed is
    `draw_seed(seed, epoch, SAMPLE_DRAWS, index)`, made in the main process, so a
    sample's augmentation is the same in any worker, with any number of workers, and
    under any world size (the index is the sample's place in the whole training set)."""

    def __init__(self, order: Sampler | list[int], seed: int, epoch: int) -> None:
        self.order, self.seed, self.epoch = order, seed, epoch

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        for index in self.order:
            index = int(index)
            yield index, draw_seed(self.seed, self.epoch, SAMPLE_DRAWS, index)


class EpochOrder(Sampler):
    """A permutation of range(count) from a generator seeded by `order_seed` alone (the
    shuffle of one epoch on a single process)."""

    def __init__(self, count: int, order_seed: int) -> None:
        self.count, self.order_seed = count, order_seed

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.order_seed)
        return iter(torch.randperm(self.count, generator=generator).tolist())


class TrainAugment:
    """The official recipe: resize to a square, random crop, horizontal flip, then the
    tensor normalised. The crop offsets and the flip are drawn from the generator each
    call is given (never the global RNG), in that order: top, left, flip."""

    def __init__(self, input_size: int, resize_size: int, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD) -> None:
        if resize_size < input_size:
            raise ValueError(f"resize size {resize_size} is below the crop {input_size}")
        self.input_size, self.resize_size = input_size, resize_size
        self.mean, self.std = tuple(mean), tuple(std)

    def draws(self, generator: torch.Generator) -> tuple[int, int, bool]:
        """(top, left, flip) of one sample."""
        room = self.resize_size - self.input_size + 1
        top, left = torch.randint(0, room, (2,), generator=generator).tolist()
        flip = bool(torch.rand((), generator=generator) < 0.5)
        return top, left, flip

    def __call__(self, image: Image.Image, generator: torch.Generator) -> torch.Tensor:
        top, left, flip = self.draws(generator)
        side = self.resize_size
        image = TF.resize(image, [side, side])  # a no-op on a cached (already resized) image
        image = TF.crop(image, top, left, self.input_size, self.input_size)
        if flip:
            image = TF.hflip(image)
        return TF.normalize(TF.to_tensor(image), self.mean, self.std)


def train_transform(input_size: int, resize_size: int, mean=IMAGENET_MEAN,
                    std=IMAGENET_STD) -> TrainAugment:
    """The training augmentation (see `TrainAugment`); call it with (image, generator)."""
    return TrainAugment(input_size, resize_size, mean, std)


def eval_transform(
    input_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> transforms.Compose:
    return transforms.Compose([
        transforms.Resize((input_size, input_size)),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


# --------------------------------------------------------------------------- decoded cache

UNSEEN, READY, UNREADABLE = 0, 1, 2
# The in-memory cache may take this fraction of the memory available at start-up;
# a larger set goes to a disk cache in the run folder.
CACHE_MEMORY_FRACTION = 0.25


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; else all physical memory)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def file_keys(root: Path, relatives: list[str]) -> list[list]:
    """(path, size, mtime_ns) of each file: what a disk cache is valid for."""
    keys = []
    for relative in relatives:
        try:
            info = (root / relative).stat()
            keys.append([relative, info.st_size, info.st_mtime_ns])
        except OSError:
            keys.append([relative, -1, -1])
    return keys


class DecodedCache:
    """Decoded RGB images resized to `side` x `side`, one uint8 slot per image, and
    one state byte per slot (UNSEEN, READY, UNREADABLE).

    Both arrays are MAP_SHARED memory: an anonymous mapping (`folder` None) or two
    files in `folder`. Loader workers are forked from the main process, so a slot a
    worker fills is seen by the main process and by every later epoch's workers. A
    disk cache is valid for `key` (side and each file's path, size and mtime): a
    killed run reuses it, a changed file list or a changed file starts it afresh.
    """

    def __init__(self, side: int, count: int, folder: Path | None = None,
                 key: dict | None = None) -> None:
        self.side, self.count = side, count
        self.folder = None if folder is None else Path(folder)
        self.key = key
        self.reused = False
        if self.folder is not None:
            self.reused = self._prepare_folder()
        self._attach()

    @property
    def nbytes(self) -> int:
        return self.count * (self.side * self.side * 3 + 1)

    def _prepare_folder(self) -> bool:
        """Keep the files when they were made for this key, else make them anew."""
        key_path = self.folder / "key.json"
        try:
            if json.loads(key_path.read_text()) == self.key:
                return True
        except (OSError, ValueError):
            pass
        self.folder.mkdir(parents=True, exist_ok=True)
        key_path.unlink(missing_ok=True)  # no key: files being made are never trusted
        for name, size in (("states.u8", self.count),
                           ("pixels.u8", self.count * self.side * self.side * 3)):
            with open(self.folder / name, "wb") as handle:
                handle.truncate(size)  # zeros: every slot UNSEEN
        atomic_write_text(key_path, json.dumps(self.key))
        return False

    def _attach(self) -> None:
        shape = (self.count, self.side, self.side, 3)
        if self.folder is None:
            self._states = np.frombuffer(mmap.mmap(-1, self.count), np.uint8)
            self._pixels = np.frombuffer(mmap.mmap(-1, self.count * self.side ** 2 * 3),
                                         np.uint8).reshape(shape)
        else:
            self._states = np.memmap(self.folder / "states.u8", np.uint8, "r+",
                                     shape=(self.count,))
            self._pixels = np.memmap(self.folder / "pixels.u8", np.uint8, "r+", shape=shape)

    def __getstate__(self) -> dict:  # a spawned worker maps the files again
        state = self.__dict__.copy()
        del state["_states"], state["_pixels"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._attach()

    def state(self, index: int) -> int:
        return int(self._states[index])

    def pixels(self, index: int) -> np.ndarray:
        return self._pixels[index]

    def put(self, index: int, pixels: np.ndarray | None) -> None:
        """Store a decoded image (or that it is unreadable); pixels first, state last."""
        if pixels is not None:
            if pixels.shape != (self.side, self.side, 3):
                return  # not what this cache holds; leave the slot unseen
            self._pixels[index] = pixels
        self._states[index] = READY if pixels is not None else UNREADABLE

    def counts(self) -> dict[str, int]:
        states = np.bincount(np.asarray(self._states), minlength=3)
        return {"unseen": int(states[UNSEEN]), "ready": int(states[READY]),
                "unreadable": int(states[UNREADABLE])}


class LabelledImages(Dataset):
    """(image tensor, class index) pairs; an undecodable file yields None (see collate).

    Random augmentation draws only from the seed its key carries (see `KeyedSampler`),
    so a sample's tensor is the same whichever process loads it.

    With a `DecodedCache`, an image is decoded and resized to `cache.side` once (by
    whichever loader process meets it first) and read back from the cache in later
    epochs; `transform` then starts with a resize to that same side, a no-op, so the
    tensors are those of an uncached run bit for bit.
    """

    def __init__(self, root: Path, items: list[tuple[str, int]], transform,
                 cache: DecodedCache | None = None) -> None:
        self.root = Path(root)
        self.items = items
        self.transform = transform
        self.cache = cache

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]):
        """`key`: an index, or (index, draw seed) from a `KeyedSampler`; a `TrainAugment`
        draws from a generator of that seed (of seed 0, epoch 0 for a bare index)."""
        index, seed = key if isinstance(key, tuple) else (
            key, draw_seed(0, 0, SAMPLE_DRAWS, key))
        image = self._decoded(index)
        if image is None:
            return None
        if isinstance(self.transform, TrainAugment):
            tensor = self.transform(image, torch.Generator().manual_seed(seed))
        else:
            tensor = self.transform(image)
        return tensor, self.items[index][1]

    def _decoded(self, index: int) -> Image.Image | None:
        cache = self.cache
        if cache is not None:
            state = cache.state(index)
            if state == READY:
                return Image.fromarray(cache.pixels(index))
            if state == UNREADABLE:
                return None
        try:
            image = decode_image(self.root / self.items[index][0])
        except Exception:  # noqa: BLE001 - skipped and counted by the caller
            image = None
        if cache is not None:
            if image is not None:
                image = transforms.functional.resize(image, [cache.side, cache.side])
            cache.put(index, None if image is None else np.asarray(image))
        return image


def collate_skipping(batch):
    """Stack the decodable samples; return (images, labels, number skipped)."""
    good = [sample for sample in batch if sample is not None]
    skipped = len(batch) - len(good)
    if not good:
        return None, None, skipped
    images = torch.stack([image for image, _ in good])
    labels = torch.tensor([label for _, label in good], dtype=torch.long)
    return images, labels, skipped


def labelled_items(annotations: Annotations, split: str, classes: list[str]):
    index = {name: i for i, name in enumerate(classes)}
    table = annotations.images[annotations.images["split"] == split]
    return [(image, index[label]) for image, label in zip(table["image"], table["label"])]


class ImagesForModel(Dataset):
    """(position, tensor, width, height, error) per image; an undecodable file gives its reason."""

    def __init__(self, paths: list[Path], input_size: int, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD) -> None:
        self.paths = paths
        self.input_size = input_size
        self.transform = eval_transform(input_size, mean, std)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        try:
            image, width, height = decode_for_model(self.paths[position], self.input_size)
            return position, self.transform(image), width, height, ""
        except Exception as exc:  # noqa: BLE001 - reported in errors.csv, the run goes on
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            return position, None, 0, 0, f"{type(exc).__name__}: {reason}"


def collate_positions(batch):
    """Decoded samples stacked; failures kept aside as (position, reason)."""
    good = [sample for sample in batch if sample[1] is not None]
    failed = [(sample[0], sample[4]) for sample in batch if sample[1] is None]
    images = torch.stack([sample[1] for sample in good]) if good else None
    return (
        [sample[0] for sample in good],
        images,
        [(sample[2], sample[3]) for sample in good],
        failed,
    )
