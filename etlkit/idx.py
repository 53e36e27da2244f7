"""IDX files, the format of MNIST and EMNIST: images, labels and EMNIST's label mapping.

An IDX file is a 4-byte magic number (two zero bytes, a type byte, 0x08 for uint8, and the
number of dimensions), one big-endian uint32 per dimension, then the values in C order:
0x00000803 holds images (N, rows, cols), 0x00000801 labels (N,). Files are read whole, gzipped
or not (told by the gzip magic bytes, not the name), and decoded with one `np.frombuffer`.

EMNIST stores every image transposed (column-major); `load` transposes them back so characters
are upright, and maps labels to characters with EMNIST's `*-mapping.txt` ("label codepoint"
lines; emnist-letters lists an upper- and a lower-case codepoint per label, and the class is
named by the first). Without a mapping, labels 0-9 are the digits '0'..'9' (MNIST).

Every problem raises `EtlError` with one line naming the file: a wrong magic number, sizes that
do not match the file's length, a label count that does not match the image count, a label the
mapping lacks, an unreadable gzip.
"""

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EtlError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_KINDS = {"images": (IMAGES_MAGIC, 3), "labels": (LABELS_MAGIC, 1)}
_GZIP_MAGIC = b"\x1f\x8b"


def is_idx_name(path: Path) -> bool:
    """Whether a file name is an IDX name (MNIST's `train-images-idx3-ubyte`, EMNIST's
    `emnist-balanced-test-labels-idx1-ubyte.gz`, mirrors' `train-images.idx3-ubyte`)."""
    return re.search(r"idx[13]", Path(path).name.lower()) is not None


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic (or the name ends .gz)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EtlError(f"{path}: no such file") from None
    except OSError as err:
        raise EtlError(f"{path}: unreadable ({err.strerror or err})") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise EtlError(f"{path}: unreadable gzip ({_one_line(err)})") from None
    if path.name.lower().endswith(".gz"):
        raise EtlError(f"{path}: unreadable gzip (no gzip header: the file is not gzip data)")
    return data


def read_idx(path: Path, kind: str) -> np.ndarray:
    """An IDX file's uint8 array: kind "images" -> (N, rows, cols), "labels" -> (N,).

    The array is a read-only view of the file's bytes (no copy).
    """
    path = Path(path)
    magic, ndim = _KINDS[kind]
    data = read_bytes(path)
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        seen = "the file is shorter than 4 bytes" if found is None else f"found 0x{found:08X}"
        raise EtlError(f"{path}: wrong magic number for IDX {kind}: expected 0x{magic:08X}, "
                       f"{seen}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise EtlError(f"{path}: truncated IDX header: {len(data)} bytes, the header has {header}")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    need = int(np.prod(shape, dtype=np.int64))
    have = len(data) - header
    if have != need:
        what = "truncated" if have < need else f"{have - need} extra bytes"
        dims = " × ".join(map(str, shape))
        raise EtlError(f"{path}: {dims} {kind} need {need} bytes after the {header}-byte header, "
                       f"the file has {have} ({what})")
    return np.frombuffer(data, np.uint8, need, header).reshape(shape)


def read_images(path: Path) -> np.ndarray:
    """uint8 (N, rows, cols) from an IDX images file (magic 0x00000803), as stored."""
    return read_idx(path, "images")


def read_labels(path: Path) -> np.ndarray:
    """uint8 (N,) from an IDX labels file (magic 0x00000801)."""
    return read_idx(path, "labels")


def read_mapping(path: Path) -> dict[int, str]:
    """EMNIST's `*-mapping.txt`: label -> character, from "label codepoint [codepoint…]" lines.

    emnist-letters gives two codepoints per label (upper and lower case); the first names it.
    """
    path = Path(path)
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        raise EtlError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise EtlError(f"{path}: unreadable mapping ({_one_line(err)})") from None
    mapping: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) < 2 or not all(w.isdigit() for w in words):
            raise EtlError(f"{path}: line {number} is not 'label codepoint' ({line.strip()!r})")
        label, codepoint = int(words[0]), int(words[1])
        if label > 255 or codepoint > 0x10FFFF or label in mapping:
            problem = ("repeats label" if label in mapping else "is out of range")
            raise EtlError(f"{path}: line {number} {problem} ({line.strip()!r})")
        mapping[label] = chr(codepoint)
    if not mapping:
        raise EtlError(f"{path}: empty mapping (expected 'label codepoint' lines)")
    return mapping


@dataclass(frozen=True)
class Pair:
    """An images file, its labels file and the partition their names give (train or test)."""

    images: Path
    labels: Path
    part: str  # "train" | "test"


def pair_files(paths: list[Path]) -> list[Pair]:
    """Pair images and labels files by name: "images"/"labels" name the kind and "train" or
    "t10k"/"test" the partition, as MNIST and EMNIST name their files. Sorted, train first."""
    found: dict[tuple[str, str], dict[str, Path]] = {}
    for path in paths:
        name = Path(path).name.lower()
        words = set(re.split(r"[^a-z0-9]+", name))
        kinds = [k for k in ("images", "labels") if k in words]
        parts = ["test"] * bool(words & {"t10k", "test"}) + ["train"] * ("train" in words)
        if len(kinds) != 1 or len(parts) != 1:
            raise EtlError(f"{path}: cannot tell from the name whether this IDX file holds images "
                           "or labels, of train or test (t10k) records; keep MNIST's or EMNIST's "
                           "file names")
        key = re.sub(r"images|labels", "*", name.removesuffix(".gz"))
        key = re.sub(r"idx[13]", "idx", key)
        slot = found.setdefault((parts[0], key), {})
        if kinds[0] in slot:
            raise EtlError(f"{path}: given twice (also as {slot[kinds[0]]})")
        slot[kinds[0]] = Path(path)
    pairs = []
    for (part, _), slot in found.items():
        for kind, other in (("images", "labels"), ("labels", "images")):
            if other not in slot:
                raise EtlError(f"{slot[kind]}: no matching {other} file given (expected one "
                               f"named like it with {other!r} for {kind!r})")
        pairs.append(Pair(slot["images"], slot["labels"], part))
    return sorted(pairs, key=lambda p: (p.part != "train", p.images.name))


def is_emnist(pair: Pair, mapping: dict[int, str] | None) -> bool:
    """EMNIST (images stored transposed): a mapping is given, or the name says emnist."""
    return mapping is not None or pair.images.name.lower().startswith("emnist")


@dataclass(frozen=True)
class Loaded:
    images: np.ndarray  # uint8 (N, rows, cols), upright (a view: transposed for EMNIST)
    codes: np.ndarray  # uint8 (N,), the raw labels
    chars: np.ndarray  # <U1 (N,), each label's character
    transposed: bool


def load(pair: Pair, mapping: dict[int, str] | None = None,
         mapping_path: Path | None = None, transpose: bool | None = None) -> Loaded:
    """A pair's upright images, raw labels and characters, checked against each other.

    `transpose` None: transpose when EMNIST (`is_emnist`). Without a mapping, labels must be
    0-9 (the digits).
    """
    images, codes = read_images(pair.images), read_labels(pair.labels)
    if len(images) != len(codes):
        raise EtlError(f"{pair.labels}: {len(codes)} labels for the {len(images)} images of "
                       f"{pair.images.name}")
    table = np.full(256, "", "<U1")
    if mapping is None:
        table[:10] = list("0123456789")
    else:
        for label, char in mapping.items():
            table[label] = char
    present = np.flatnonzero(np.bincount(codes, minlength=256))
    lacking = [int(c) for c in present if not table[c]]
    if lacking:
        where = (f"in {mapping_path or 'the mapping'}" if mapping is not None else
                 "as a digit 0-9 (EMNIST files need --mapping with their *-mapping.txt)")
        shown = ", ".join(map(str, lacking[:5])) + (" …" if len(lacking) > 5 else "")
        raise EtlError(f"{pair.labels}: label{'s' * (len(lacking) > 1)} {shown} "
                       f"ha{'ve' if len(lacking) > 1 else 's'} no entry {where}")
    flip = is_emnist(pair, mapping) if transpose is None else transpose
    return Loaded(images.transpose(0, 2, 1) if flip else images, codes, table[codes], flip)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
