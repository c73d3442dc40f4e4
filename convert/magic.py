"""Byte sniffing, done once: what the first bytes of a file or archive member say it is. Cheap tests only
(magic numbers, header prefixes, the first opcode); confirming a format by reading further is ``detect``'s and
the scanners' job. A leaf: imports nothing of modelport."""

from __future__ import annotations

import pickletools

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
# torch.save's legacy format starts with its magic number pickled at protocol 2
TORCH_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_MAGIC_PICKLE = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e"
# joblib's compressors by their first bytes (zlib and joblib < 0.10's "ZF" need a second look: ``compression``)
COMPRESSION_MAGIC = {"zlib": b"\x78", "gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ\x00",
                     "lzma": b"\x5d\x00\x00", "lz4": b"\x04\x22\x4d\x18", "zfile": b"ZF"}
# every byte that is a pickle opcode: ``pickle.load`` starts reading at whichever comes first
OPCODES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def is_proto_pickle(head: bytes) -> bool:
    """A pickle that starts with PROTO (protocol 2 and later)."""
    return len(head) >= 2 and head[0] == 0x80 and head[1] <= 5


def may_start_pickle(head: bytes) -> bool:
    """Whether ``pickle.load`` would start reading these bytes at all: the first byte is an opcode. (No header
    is needed: protocol 0/1 pickles, and any stream without PROTO, start with whatever opcode they like.)"""
    return bool(head) and head[0] in OPCODES


def compression(head: bytes) -> str | None:
    """joblib's compressor from a file's first bytes (None for uncompressed data)."""
    for name, magic in COMPRESSION_MAGIC.items():
        if head.startswith(magic):
            if name == "zlib" and (len(head) < 2 or (head[0] * 256 + head[1]) % 31 != 0):
                continue
            if name == "zfile" and not head[2:4] == b"0x":
                continue
            return name
    return None


def container(head: bytes) -> str:
    """How a stream whose first bytes are ``head`` is scanned when nothing else says: ``zip``, ``7z``,
    ``torch-legacy``, ``npy``, ``pickle``, or ``joblib:<compression>``."""
    if is_zip(head):
        return "zip"
    if head.startswith(SEVENZIP_MAGIC):
        return "7z"
    if head.startswith(TORCH_MAGIC_PICKLE):
        return "torch-legacy"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if len(head) >= 2 and head[0] == 0x80:
        return "pickle"
    packed = compression(head)
    return f"joblib:{packed}" if packed else "pickle"


NPY_HEADER_MAX = 1 << 20  # longer .npy headers are not numpy's


def npy_header(data: bytes) -> dict | None:
    """A .npy header from the file's first bytes; None when they do not hold a whole, readable one."""
    if not data.startswith(NPY_MAGIC) or len(data) < 10:
        return None
    major = data[6]
    width = 2 if major == 1 else 4
    length = int.from_bytes(data[8:8 + width], "little")
    text = data[8 + width:8 + width + length]
    if len(text) < length or length > NPY_HEADER_MAX:
        return None
    try:
        return parse_npy_header(text, major)
    except ValueError:
        return None


def parse_npy_header(text: bytes, major: int) -> dict:
    """The header dict of a .npy file (a Python literal, read with ast.literal_eval: never code); ValueError
    says why it is not one."""
    import ast

    try:
        header = ast.literal_eval(text.decode("latin-1" if major < 3 else "utf-8"))
    except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable .npy header: {exc}") from None
    if not isinstance(header, dict) or "descr" not in header:
        raise ValueError(".npy header without descr")
    return header


def descr_has_object(descr) -> bool:
    """True when a .npy ``descr`` holds Python objects (then its data is a pickle)."""
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, (list, tuple)):
        return any(descr_has_object(f[1]) for f in descr if isinstance(f, (list, tuple)) and len(f) > 1)
    return False


# ---------------------------------------------------------------------------- naming what is not a model


_MAGIC = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"\x7fELF", "an ELF executable"), (b"MZ", "a Windows executable"),
    (b"\x1f\x8b", "gzip-compressed data that is not a joblib pickle"),
    (b"BZh", "bzip2-compressed data that is not a joblib pickle"),
    (b"\xfd7zXZ\x00", "xz-compressed data that is not a joblib pickle"), (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"), (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
    (b"SQLite format 3", "an SQLite database"), (b"PAR1", "a Parquet file"), (b"ARROW1", "an Arrow file"),
    (b"GGUF", "a GGUF model (llama.cpp), which modelport does not read"), (b"\x00asm", "a WebAssembly module"),
    (b"\x04\x22\x4d\x18", "lz4-compressed data that is not a joblib pickle"),
)


def describe(head: bytes) -> str:
    """A few words on what unknown bytes look like, for error messages."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[4:8] == b"TFL3":
        return "a TensorFlow Lite model, which modelport does not read"
    if head[257:262] == b"ustar":
        return "a tar archive"
    text = as_text(head)
    if text is not None:
        stripped = text.lstrip()
        if stripped[:1] in ("{", "["):
            return "a JSON or other text file"
        if stripped[:1] == "<":
            return "an XML/HTML text file"
        if stripped.startswith(("#!", "import ", "from ", "def ", "class ")):
            return "Python source code (a text file)"
        lines = [line for line in stripped.splitlines()[:6] if line]
        lines = lines[:-1] if len(lines) > 2 else lines  # the last line of the head may be cut short
        if len(lines) > 1 and all(line.count(",") == lines[0].count(",") > 0 for line in lines):
            return "a CSV text file"
        return "a text file"
    if len(head) >= 256 and len(set(head)) > 200:
        return "random bytes (compressed or encrypted data?)"
    return "binary data of a kind modelport does not know"


def as_text(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            return None
        text = head[:exc.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return text if text and printable / len(text) > 0.95 else None
