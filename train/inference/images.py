"""Photos or scans of single characters -> images like the ones a run's network trained on.

No JAX here: the same preprocessing serves the JAX predictor and exported models. An image is
brought to what the network saw in training: gray, ink high (paper is taken to be
the majority of pixels, whatever its colour), stretched so paper is 0 and the darkest ink 255,
cropped to the ink's bounding box and centred in a square in which the character takes the
share of the side that training images' characters take (the median over the run's training
shards, measured against their own side), area-averaged to 64×64 with etlkit's own code; moved
so its centre of mass sits where the training images have theirs when they are placed that way
(MNIST is: without it a 28×28 digit network reads ~82% of held-out digits instead of 96%; ETL
images are centred by ink box, as here), area-averaged to the network's input size (28 or 64),
then Otsu-binarized exactly when the run's dataset was. The framing is measured once, when the
run trains, and kept in its config.json.
"""

import contextlib
import io
import itertools
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from etlkit import preprocess
from etlkit.errors import EtlError
from etlkit.shards import CHUNK, ShardSet

MAX_BYTES = 50 << 20
MAX_PIXELS = 8000 * 8000
#: A JPEG's scans. Progressive encoders write 6 to 18 (libjpeg: 6 gray, 10 colour, 18 CMYK),
#: and each scan is another pass over every pixel, with no limit in Pillow: one scan repeated
#: a thousand times is a 353 KB file that takes a minute to decode. So at most MAX_JPEG_SCANS,
#: and at most the work of JPEG_SCAN_PASSES scans over the largest image allowed.
MAX_JPEG_SCANS = 100
JPEG_SCAN_PASSES = 32
WORK_SIDE = 1024  # larger images are box-reduced to this first: plenty for a 64×64 result
INK = 128  # a pixel at or above half the full ink counts as ink, in training images too
MIN_CONTRAST = 32  # gray levels between paper and the darkest ink below which there is no ink
SAMPLE = 4096  # training images measured for the framing
DEFAULT_FILL = 0.7  # median of synthetic ETL-1 and ETL-8G shards: for training images all blank


def load_gray(source: Path | bytes, name: str | Path | None = None,
              max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A PNG or JPEG file (or its bytes) as (H, W) uint8 gray, upright (EXIF), transparency
    over white, at most WORK_SIDE a side. Errors are one-line EtlErrors naming `name` (default:
    the path, or "image"), whatever the bytes: Pillow's own exceptions never pass through.

    Memory stays near one decoded image: a JPEG is decoded at a reduced scale (its DCT
    scaling), a PNG is reduced before any conversion."""
    name = name or (source if isinstance(source, Path) else "image")
    if isinstance(source, Path):
        if not source.is_file():
            what = ("a folder, not an image" if source.is_dir() else
                    "not a regular file (a device, pipe or socket)" if source.exists() else
                    "no such file")
            raise EtlError(f"{name}: {what}")
        size = source.stat().st_size
    else:
        size = len(source)
    if size == 0:
        raise EtlError(f"{name}: empty file")
    if size > MAX_BYTES:
        raise EtlError(f"{name}: {size / 2**20:.0f} MB, more than the {MAX_BYTES >> 20} MB an "
                       "image of one character needs")
    data = source.read_bytes() if isinstance(source, Path) else source
    chunks = check_png_chunks(data, name)
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
            if image.width * image.height > max_pixels:
                raise EtlError(f"{name}: {image.width}×{image.height} pixels, more than the "
                               f"{max_pixels:,} allowed")
            if image.format == "JPEG":
                check_jpeg_scans(data, image.size, max_pixels, name)
            else:
                check_png_data(chunks, name)
            stored = image.size
            gray = _gray(image)
    except EtlError:
        raise
    except UnidentifiedImageError:
        kind = ("corrupt PNG: Pillow cannot read its header" if data.startswith(PNG_SIGNATURE)
                else "corrupt JPEG: Pillow cannot read its header" if data.startswith(JPEG_START)
                else "not a PNG or JPEG image")
        raise EtlError(f"{name}: {kind}") from None
    except Image.DecompressionBombError:
        raise EtlError(f"{name}: more than the {max_pixels:,} pixels allowed") from None
    except MemoryError:
        raise EtlError(f"{name}: too large to decode") from None
    except Exception as err:  # noqa: BLE001 - corrupt bytes raise many types inside Pillow
        detail = " ".join(str(err).split())[:120]
        raise EtlError(f"{name}: unreadable image ({type(err).__name__}: {detail})") from None
    pixels = np.asarray(gray)
    if gray.width * gray.height < stored[0] * stored[1] and _is_flat(pixels):
        # ink_high would call it one flat colour, but the full-size image may hold a few dots
        raise EtlError(f"{name}: no ink left after reducing it from {stored[0]}×{stored[1]} "
                       f"to {gray.width}×{gray.height} pixels: too little ink, if any, to read")
    return pixels


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"
#: The chunks a PNG decoder must understand; any other whose type starts with a capital letter
#: (the spec's "critical" bit) must make it refuse the file.
PNG_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")
#: Colour type -> the bit depths the PNG specification allows with it.
PNG_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


@dataclass(frozen=True)
class PngChunks:
    """What `check_png_data` reads of a PNG whose chunks checked out."""
    header: tuple[int, ...]  # IHDR: width, height, depth, colour, compression, filter, interlace
    data: list[memoryview]  # the IDAT chunks' bodies, in file order


def check_png_chunks(data: bytes, name: str | Path) -> PngChunks | None:
    """Refuse PNG bytes whose chunks do not check out: every chunk up to IEND must be whole and
    match its CRC-32, and the file must keep the rules the PNG specification makes a decoder
    refuse it for (libpng does; Pillow reads past them): IHDR first, once, with valid fields;
    chunk types of four letters; no unknown critical chunk; no palette in a gray image.
    Pillow checks the CRCs of the chunks it parses itself but not of the image data (IDAT),
    so a flipped pixel byte would otherwise be decoded and classified. Bytes that are not a
    PNG pass (a JPEG has no checksums to check): None."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    view, at, seen, previous = memoryview(data), len(PNG_SIGNATURE), set(), None
    header, pieces = None, []
    while True:
        if at + 12 > len(view):
            raise EtlError(f"{name}: PNG cut off at byte {at} (no IEND chunk)")
        (length,) = struct.unpack_from(">I", view, at)
        end = at + 8 + length
        if end + 4 > len(view):
            raise EtlError(f"{name}: PNG cut off in the chunk at byte {at}")
        kind = bytes(view[at + 4:at + 8])
        (crc,) = struct.unpack_from(">I", view, end)
        if zlib.crc32(view[at + 4:end]) != crc:
            label = kind.decode("latin-1") if kind.isalpha() else kind.hex()
            raise EtlError(f"{name}: corrupt PNG: the {label} chunk at byte {at} fails its "
                           "CRC check")
        colour = header[3] if header else None
        problem = png_chunk_problem(kind, view[at + 8:end], colour, seen, previous)
        if problem:
            raise EtlError(f"{name}: corrupt PNG: {problem} (the chunk at byte {at})")
        if kind == b"IHDR":
            header = struct.unpack_from(">IIBBBBB", view, at + 8)
        elif kind == b"IDAT":
            pieces.append(view[at + 8:end])
        elif kind == b"IEND":
            return PngChunks(header, pieces)
        seen.add(kind)
        previous, at = kind, end + 4


def png_chunk_problem(kind: bytes, body: memoryview, colour: int | None, seen: set[bytes],
                      previous: bytes | None) -> str | None:
    """Why the PNG specification makes a decoder refuse this chunk, given the colour type of
    the IHDR before it (None: no IHDR yet), the chunk types before it and the one just before
    it, or None."""
    if not kind.isalpha():
        return f"a chunk type {kind.hex()} that is not four letters"
    if colour is None and kind != b"IHDR":
        return f"its first chunk is {kind.decode()}, not IHDR"
    if kind == b"IHDR":
        return "a second IHDR chunk" if colour is not None else _ihdr_problem(body)
    if kind == b"PLTE":
        if colour in (0, 4):
            return "a palette (PLTE) in a gray image"
        if b"PLTE" in seen or b"IDAT" in seen:
            return "a second PLTE chunk" if b"PLTE" in seen else "a PLTE after the image data"
        if not body or len(body) % 3 or len(body) > 3 * 256:
            return f"a PLTE of {len(body)} bytes (3 a colour, 1 to 256 colours)"
    if kind == b"IDAT" and colour == 3 and b"PLTE" not in seen:
        return "a palette image without a PLTE before its image data"
    if kind == b"IDAT" and b"IDAT" in seen and previous != b"IDAT":
        return "IDAT chunks that are not consecutive"
    if not kind[0] & 0x20 and kind not in PNG_CRITICAL:
        return f"an unknown critical chunk {kind.decode()}"
    return None


def _ihdr_problem(body: memoryview) -> str | None:
    """What is invalid in an IHDR chunk's fields, or None."""
    if len(body) != 13:
        return f"an IHDR chunk of {len(body)} bytes, not 13"
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", body)
    if not (0 < width < 1 << 31 and 0 < height < 1 << 31):
        return f"an IHDR size of {width}×{height} pixels"
    if depth not in PNG_BIT_DEPTHS.get(colour, ()):
        return f"an IHDR bit depth {depth} with colour type {colour}"
    if (compression, filtering) != (0, 0) or interlace > 1:
        return (f"IHDR compression {compression}, filter {filtering}, interlace {interlace} "
                "(the specification defines 0, 0, and 0 or 1)")
    return None


#: Adam7 interlacing's passes: (first column, first row, column step, row step).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
INFLATE_STEP = 1 << 20


def png_data_bytes(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """The bytes a PNG's image data inflates to: every row of every pass, a filter byte first."""
    bits = depth * PNG_CHANNELS[colour]
    total = 0
    for x0, y0, dx, dy in ADAM7 if interlace else ((0, 0, 1, 1),):
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            total += rows * (1 + (columns * bits + 7) // 8)
    return total


def check_png_data(chunks: PngChunks, name: str | Path) -> None:
    """Refuse a PNG whose image data inflates to fewer bytes than its IHDR calls for, or whose
    zlib stream is cut short: Pillow fills the missing rows with zeros, which read as ink and
    change the answer. Inflated a step at a time, never whole; run once the pixel bound holds."""
    if not chunks.data:
        return  # Pillow says there is no image data
    width, height, depth, colour, _, _, interlace = chunks.header
    want, got, inflater = png_data_bytes(width, height, depth, colour, interlace), 0, \
        zlib.decompressobj()
    try:
        for piece in chunks.data:
            while piece and got <= want:
                got += len(inflater.decompress(piece, INFLATE_STEP))
                piece = inflater.unconsumed_tail
    except zlib.error as err:
        raise EtlError(f"{name}: corrupt PNG: its image data does not inflate ({err})") from None
    if got < want:
        raise EtlError(f"{name}: corrupt PNG: its image data inflates to {got:,} of the "
                       f"{want:,} bytes its IHDR calls for (rows missing)")
    if got == want and not inflater.eof:
        raise EtlError(f"{name}: corrupt PNG: its image data's zlib stream is cut short (no "
                       "end or Adler-32 checksum)")


def check_jpeg_scans(data: bytes, size: tuple[int, int], max_pixels: int,
                     name: str | Path) -> None:
    """Refuse a JPEG whose scans would cost more decoding than MAX_JPEG_SCANS, or than
    JPEG_SCAN_PASSES scans of a `max_pixels` image, before Pillow decodes any."""
    scans = jpeg_scans(data)
    allowed = min(MAX_JPEG_SCANS, JPEG_SCAN_PASSES * max_pixels // (size[0] * size[1]))
    if scans > allowed:
        raise EtlError(f"{name}: a JPEG of {scans:,} scans, more than the {allowed} allowed at "
                       f"{size[0]}×{size[1]} pixels (each scan decodes every pixel again)")


def jpeg_scans(data: bytes) -> int:
    """The scans (start-of-scan markers) of JPEG bytes, up to its end-of-image marker. The
    header's segments, which may hold any bytes (EXIF, thumbnails), are skipped by their
    lengths; from the first scan on, a 0xFF byte of coded data is always followed by 0x00 or a
    restart marker, so every FF DA there starts a scan."""
    at = 2  # after the start-of-image marker
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xDA:
            end = data.find(b"\xff\xd9", at)
            return data.count(b"\xff\xda", at, end if end >= 0 else len(data))
        if marker == 0xFF:  # a fill byte before a marker
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
        else:
            at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return 0  # no scan: Pillow says what is wrong with the bytes


def _gray(image: Image.Image) -> Image.Image:
    """An opened image as gray, upright, transparency over white, at most WORK_SIDE a side."""
    if image.format == "JPEG":
        image.draft("L", (WORK_SIDE, WORK_SIDE))  # decode at 1/2, 1/4 or 1/8 scale
    image.load()
    factor = math.ceil(max(image.size) / WORK_SIDE)
    if factor > 1 and image.mode in ("L", "RGB", "RGBA", "LA", "I", "F"):
        image = image.reduce(factor)
        factor = 1
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16-bit gray, which convert("L") would clip
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    gray = image.convert("L")
    factor = math.ceil(max(gray.size) / WORK_SIDE)
    return gray.reduce(factor) if factor > 1 else gray


@dataclass(frozen=True)
class Framing:
    """How a character is brought to what the run's network saw in training."""
    fill: float  # the share of the side that a character's longer ink extent takes
    # where its centre of mass goes (row, column, as shares of the side), or None: its ink box
    # is centred
    mass_at: tuple[float, float] | None
    size: int = preprocess.SIZE  # the network's input side
    otsu: bool = False  # Otsu-binarized, as the run's dataset was

    def to_json(self) -> dict:
        return {"fill": self.fill, "mass_at": list(self.mass_at) if self.mass_at else None,
                "size": self.size, "otsu": self.otsu}

    @classmethod
    def from_json(cls, doc: dict) -> "Framing":
        return cls(doc["fill"], tuple(doc["mass_at"]) if doc["mass_at"] else None, doc["size"],
                   doc["otsu"])


def _ink_and_paper(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """(H, W) gray -> it as float32 with ink high, and the paper's level (the majority of
    pixels, whatever its colour) in it."""
    paper, ink = float(np.median(gray)), gray.astype(np.float32)
    if paper > (float(gray.min()) + float(gray.max())) / 2:
        ink, paper = 255 - ink, 255 - paper  # dark ink on light paper
    return ink, paper


def _is_flat(gray: np.ndarray) -> bool:
    """Whether no pixel stands out from the paper by MIN_CONTRAST: no ink to read."""
    ink, paper = _ink_and_paper(gray)
    return float(ink.max()) - paper < MIN_CONTRAST


def ink_high(gray: np.ndarray, name: str | Path) -> np.ndarray:
    """(H, W) gray -> uint8 image with ink high: paper 0 and the darkest ink 255."""
    ink, paper = _ink_and_paper(gray)
    top = float(ink.max())
    if top - paper < MIN_CONTRAST:
        low, high = int(gray.min()), int(gray.max())
        why = ("the image is one flat colour" if low == high else f"its gray levels span only "
               f"{low} to {high} of 255: too little contrast to tell ink from paper")
        raise EtlError(f"{name}: no ink found ({why})")
    return np.rint(np.clip((ink - paper) * (255 / (top - paper)), 0, 255)).astype(np.uint8)


def to_input(gray: np.ndarray, frame: Framing, name: str | Path) -> np.ndarray:
    """(H, W) gray image of one character -> the (S, S) uint8 training-like image, S the
    network's input side: framed at 64×64 (ink box centred at `frame.fill` of the side, then
    moved to put the centre of mass at `frame.mass_at` when that is set), area-averaged to S
    and Otsu-binarized when the run's dataset was."""
    ink = ink_high(gray, name)
    seen = ink >= INK
    rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = math.ceil(max(crop.shape) / frame.fill)
    canvas = np.zeros((side, side), np.uint8)
    y, x = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    canvas[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    factor = math.ceil(side / 256)  # keeps block_sums' integer sums within uint16
    if factor > 1:
        canvas = np.asarray(Image.fromarray(canvas).reduce(factor))
    image = preprocess.finish(*preprocess.block_sums(canvas[None], 255), otsu=False)[0]
    if frame.mass_at:
        mass = np.array(ndimage.center_of_mass(image)) + 0.5
        image = ndimage.shift(image, np.rint(np.array(frame.mass_at) * preprocess.SIZE - mass),
                              order=0)
    if frame.size != preprocess.SIZE:
        image = np.asarray(Image.fromarray(image).resize((frame.size, frame.size),
                                                         Image.Resampling.BOX))
    return preprocess.binarize(image[None])[0] if frame.otsu else image


def ink_extent(images: np.ndarray) -> np.ndarray:
    """(N, H, W) ink-high images -> the longer side of each one's ink bounding box (0: none)."""
    ink = images >= INK
    extents = []
    for axis in (2, 1):
        seen = ink.any(axis)
        first, last = seen.argmax(1), seen.shape[1] - seen[:, ::-1].argmax(1)
        extents.append(np.where(seen.any(1), last - first, 0))
    return np.maximum(*extents)


def framing(doc: dict) -> Framing:
    """How a run frames a user's image: what its config.json records, measured from the
    training shards when it trained (`measure_framing`), so the run folder works wherever it
    goes, shards or not."""
    return Framing.from_json(doc["framing"])


def measure_framing(shards: ShardSet) -> Framing:
    """How a dataset's training images frame characters, measured on up to SAMPLE of them (a
    fixed sample): the median share of the images' own side (28 or 64) that a character's
    longer ink extent takes, and whether they are placed by centre of mass (MNIST is: its
    digits' lie within half a pixel of one point) rather than by ink box (ETL), whichever varies
    less; with the images' side and whether they were Otsu-binarized."""
    size, otsu = shards.info.image_size, shards.info.binarized
    with contextlib.closing(shards.blocks(seed=0, fields=("images",))) as blocks:
        sample = [b["images"] for b in itertools.islice(blocks, -(-SAMPLE // CHUNK))]
    images = np.concatenate(sample)[:SAMPLE] if sample else np.zeros((0, 1, 1), np.uint8)
    images = images[images.max((1, 2)) >= INK]
    if not len(images):
        return Framing(DEFAULT_FILL, None, size, otsu)
    side = images.shape[-1]
    fill = float(np.median(ink_extent(images))) / side
    at = np.arange(side) + 0.5
    weight = images.sum((1, 2), dtype=np.float64)
    mass = np.stack([images.sum(2) @ at, images.sum(1) @ at], 1) / weight[:, None]
    ink = images >= INK
    box = np.stack([_middle(ink.any(2)), _middle(ink.any(1))], 1)
    spread = [np.mean(np.hypot(*(c - np.median(c, 0)).T)) for c in (mass, box)]
    centre = tuple(float(v) for v in np.median(mass, 0) / side)
    return Framing(fill, centre if spread[0] < spread[1] else None, size, otsu)


def _middle(seen: np.ndarray) -> np.ndarray:
    """(N, L) bool -> the middle of each row's True run, in pixels from the start."""
    first, last = seen.argmax(1), seen.shape[1] - seen[:, ::-1].argmax(1)
    return (first + last) / 2
