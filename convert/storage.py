"""Where a model's bytes live: a local path, or an object in a store that fsspec reaches (``s3://``,
``gs://``, ``az://``, ``http(s)://``, ``file://``).

    path = storage.as_path("s3://models/churn.joblib")   # a RemotePath (a Path for local paths)
    with path.open("rb") as fh: ...                       # ranged reads; memory bounded, whatever the size
    with storage.local_copy("s3://models/churn.joblib") as local: ...   # a private temporary copy, for loaders

The static side reads an object through ``RemotePath.open``: a seekable file whose reads become ranged
requests, of 64 KB after a seek and growing while reads stay sequential, holding one block of at most
``MAX_BLOCK`` bytes, so a scan that seeks over tensor data never downloads it. Loaders need a real path
(h5py, torch, TensorFlow): ``local_copy`` streams the object (or the folder) into a temporary folder only
this user can read, and removes it afterwards.

Credentials are whatever the store's library reads itself (environment variables, its config files, an
instance role); nothing here takes, prints or stores them, and every message about a store goes through
``redact`` (user:password in a URL, signatures in query strings, the values of the usual credential
variables). fsspec and its back ends are the ``scale`` extra, imported only when a URL is used.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInputError, EnvironmentProblem, ModelportError

MIN_BLOCK = 64 << 10  # bytes fetched after a seek
MAX_BLOCK = 8 << 20  # the largest block a sequential reader fetches (and holds) at once
WHOLE = 4 << 20  # an object this small is fetched in one request, once, however often it is opened
KEPT = 2  # blocks a RemotePath keeps for the next reader (detection and the scans open an object in turn)
EXTRA = "pip install 'modelport[scale]'"
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+)://")
# variables whose values are secrets (the stores' libraries read them); never shown, whatever the message
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AZURE_STORAGE_KEY",
                    "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN",
                    "AZURE_CLIENT_SECRET", "GOOGLE_OAUTH_ACCESS_TOKEN", "HF_TOKEN")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]+://)[^/@\s]+@")
_SIGNED = re.compile(r"(?i)(?P<name>[?&](?:sig|signature|token|code|key|x-amz-signature|x-amz-credential|"
                     r"x-amz-security-token|x-goog-signature|x-goog-credential)=)[^&\s]+")


def is_url(text) -> bool:
    """A URL with a scheme (``s3://``, ``file://``, ...), not a local path."""
    return isinstance(text, str) and _URL.match(text) is not None


def is_remote(path) -> bool:
    """Does reading ``path`` go through a store (not the local filesystem)?"""
    return isinstance(path, RemotePath) or (is_url(path) and not str(path).lower().startswith("file://"))


def as_path(path):
    """``path`` as what the static side reads: a ``RemotePath`` for a store URL, else a ``Path`` (``file://``
    URLs included)."""
    if isinstance(path, (RemotePath, Path)):
        return path
    text = os.fspath(path)
    if isinstance(text, str) and is_url(text):
        if text.lower().startswith("file://"):
            from urllib.parse import unquote, urlparse

            return Path(unquote(urlparse(text).path))
        return RemotePath(text)
    return Path(text)


def readable(path):
    """What zipfile, h5py and onnx open: a local path as a string (their own, faster readers), a store
    object as a ranged-read file object."""
    return path.open("rb") if isinstance(path, RemotePath) else os.fspath(path)


def redact(text: str, url: str | None = None) -> str:
    """``text`` without credentials: user:password in URLs (and, wherever they appear, those of ``url``),
    signatures and tokens in query strings, and the values of the credential variables set here."""
    text = str(text)
    secrets = [os.environ.get(name) for name in SECRET_VARIABLES]
    if url:
        m = re.match(r"[A-Za-z][A-Za-z0-9+.\-]+://([^/@\s]+)@", str(url))
        if m:
            secrets += [m.group(1), *m.group(1).split(":", 1)]
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _SIGNED.sub(r"\g<name>***", text)
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


# ------------------------------------------------------------------------------------------ stores


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for ``url``; one readable error when its back end is missing."""
    scheme = _URL.match(url).group("scheme").lower() if is_url(url) else "file"
    try:
        import fsspec
    except ImportError:
        raise EnvironmentProblem(f"reading {scheme}:// paths needs fsspec", hint=EXTRA) from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise EnvironmentProblem(f"no fsspec back end for {scheme}:// is installed ({redact(str(exc), url).splitlines()[0]})",
                                 hint=EXTRA) from None
    except ValueError as exc:
        raise BadInputError(f"cannot use this URL: {redact(str(exc), url)}", path=redact(url),
                            hint="a local path, or a URL fsspec knows: s3://, gs://, az://, http(s)://, file://") from None


@contextmanager
def store_errors(url: str, doing: str = "read it"):
    """Turn what a store's library raises into one readable line naming the (redacted) URL (exit 2)."""
    try:
        yield
    except ModelportError:
        raise
    except FileNotFoundError:
        raise BadInputError("no such object or prefix", path=redact(url), hint="check the URL") from None
    except PermissionError as exc:
        raise BadInputError(f"the store refused to let modelport {doing} ({_short(exc, url)})", path=redact(url),
                            hint="check the credentials the store's library reads: its environment variables, "
                                 "config files or the machine's role") from None
    except Exception as exc:  # noqa: BLE001 -- botocore, aiohttp, google-auth: each its own family
        raise BadInputError(f"cannot {doing}: {type(exc).__name__}: {_short(exc, url)}", path=redact(url),
                            hint="check the URL, the network and the store's credentials") from None


def _short(exc: BaseException, url: str | None = None) -> str:
    text = redact(str(exc), url).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


@dataclass(frozen=True)
class ObjectInfo:
    """What a store says about an object without reading it: its size, its ETag (or another version tag) and
    when it was last written. ``identity`` is what a result cache keys it by."""

    size: int
    etag: str = ""
    modified: str = ""
    kind: str = "file"  # "file" | "directory"

    @property
    def identity(self) -> str:
        return f"etag={self.etag};size={self.size};modified={self.modified}"

    @classmethod
    def of(cls, info: dict) -> "ObjectInfo":
        etag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("generation") \
            or info.get("version_id") or info.get("crc32c") or ""
        modified = info.get("LastModified") or info.get("last_modified") or info.get("updated") \
            or info.get("mtime") or info.get("created") or ""
        if hasattr(modified, "timestamp"):  # a listing and a HEAD may give the same time in other zones
            modified = f"{modified.timestamp():.0f}"
        return cls(int(info.get("size") or info.get("Size") or 0), str(etag).strip('"'), str(modified),
                   "directory" if info.get("type") == "directory" else "file")

    @classmethod
    def of_folder(cls, members: dict) -> "ObjectInfo":
        """A prefix (a SavedModel folder) from its objects ({relative name: info}): its tag is a digest of
        every member's name and identity, so any member changing changes it."""
        import hashlib

        infos = {rel: cls.of(info) for rel, info in members.items()}
        digest = hashlib.sha256("\n".join(f"{rel}@{i.identity}" for rel, i in sorted(infos.items())).encode())
        return cls(sum(i.size for i in infos.values()), digest.hexdigest(), "", "directory")


class _Stat:
    """The part of ``os.stat_result`` the static side reads."""

    def __init__(self, size: int):
        self.st_size = size
        self.st_mode = 0o100444


class RemotePath:
    """An object (or a prefix) in a store, answering the part of ``pathlib.Path`` the static side uses:
    ``name``, ``suffix``, ``parent``, ``/``, ``stat``, ``is_file``, ``is_dir``, ``exists``, ``glob`` and
    ``open("rb")``. ``str()`` is the URL with any credentials in it redacted. It has no ``__fspath__``: code
    that would hand it to ``open()`` or a C library fails loudly instead of reading a local file."""

    def __init__(self, url: str, fs=None, inner: str | None = None):
        self.url = url
        if fs is None:
            fs, inner = filesystem(url)
        self.fs = fs
        self.inner = inner if inner is not None else fs._strip_protocol(url)
        self._info: dict | None = None
        self._blocks: list[tuple[int, bytes]] = []  # the last KEPT blocks fetched, shared by every open()
        self.fetched = 0  # bytes received through open(), for reports and tests
        self.requests = 0

    # -------------------------------------------------------------- names
    def __str__(self) -> str:
        return redact(self.url, self.url)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(("RemotePath", self.url))

    @property
    def name(self) -> str:
        return posixpath.basename(self.inner.rstrip("/"))

    @property
    def suffix(self) -> str:
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""

    @property
    def parent(self) -> "RemotePath":
        inner = posixpath.dirname(self.inner.rstrip("/"))
        return RemotePath(self.fs.unstrip_protocol(inner), self.fs, inner)

    def __truediv__(self, other) -> "RemotePath":
        inner = posixpath.join(self.inner.rstrip("/"), str(other))
        return RemotePath(self.fs.unstrip_protocol(inner), self.fs, inner)

    def resolve(self) -> "RemotePath":
        return self

    # -------------------------------------------------------------- what the store says
    def info(self) -> dict:
        if self._info is None:
            with store_errors(self.url):
                self._info = self.fs.info(self.inner)
        return self._info

    def object_info(self) -> ObjectInfo:
        info = self.info()
        if info.get("type") != "directory":
            return ObjectInfo.of(info)
        with store_errors(self.url, "list it"):
            found = self.fs.find(self.inner, detail=True)
        prefix = self.inner.rstrip("/") + "/"
        return ObjectInfo.of_folder({k[len(prefix):]: v for k, v in found.items()
                                     if k.startswith(prefix) and v.get("type") != "directory"})

    def stat(self) -> _Stat:
        if self._info is None:
            try:
                self._info = self.fs.info(self.inner)
            except FileNotFoundError:
                raise
            except Exception as exc:  # noqa: BLE001 -- the store's errors, as the OSError the static side expects
                raise OSError(f"{type(exc).__name__}: {_short(exc, self.url)}") from None
        return _Stat(int(self._info.get("size") or 0))

    def fresh(self) -> "RemotePath":
        """The same URL asked anew (no cached answer of the store's library either)."""
        try:
            self.fs.invalidate_cache(self.inner)
        except Exception:  # noqa: BLE001 -- a back end without a listing cache
            pass
        return RemotePath(self.url, self.fs, self.inner)

    def exists(self) -> bool:
        try:
            self.stat()
        except OSError:
            return False
        return True

    def is_file(self) -> bool:
        try:
            self.stat()
        except OSError:
            return False
        return self._info.get("type") != "directory"

    def is_dir(self) -> bool:
        try:
            self.stat()
        except OSError:
            return False
        return self._info.get("type") == "directory"

    def is_symlink(self) -> bool:
        return False

    def glob(self, pattern: str):
        with store_errors(self.url, "list it"):
            found = self.fs.glob(posixpath.join(self.inner.rstrip("/"), pattern))
        return [RemotePath(self.fs.unstrip_protocol(p), self.fs, p) for p in sorted(found)]

    def open(self, mode: str = "rb", buffering: int = MIN_BLOCK):
        if mode != "rb":
            raise ValueError("a store object opens for reading only (mode 'rb')")
        size = self.stat().st_size
        return io.BufferedReader(_Ranged(self, size), buffer_size=buffering)


class _Ranged(io.RawIOBase):
    """A seekable raw reader whose reads are ranged requests: ``MIN_BLOCK`` after a seek, doubling while
    reads stay sequential, up to ``MAX_BLOCK``. It holds one block: memory does not grow with the object."""

    def __init__(self, remote: RemotePath, size: int):
        super().__init__()
        self.remote = remote
        self.size = size
        self.pos = 0
        self.block = b""
        self.start = 0
        self.step = MIN_BLOCK

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(22, "negative seek position")
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        at = self.pos - self.start
        if not 0 <= at < len(self.block):
            self._fetch(want)
            at = self.pos - self.start
        n = min(want, len(self.block) - at)
        buffer[:n] = self.block[at:at + n]
        self.pos += n
        return n

    def _fetch(self, want: int) -> None:
        remote = self.remote
        for start, data in remote._blocks:  # noqa: SLF001 -- the blocks are this module's own
            if start <= self.pos < start + len(data):
                self.block, self.start = data, start
                return
        sequential = self.block and self.pos == self.start + len(self.block)
        self.step = min(MAX_BLOCK, self.step * 2) if sequential else MIN_BLOCK
        start, end = (0, self.size) if self.size <= WHOLE else (self.pos, min(self.size, self.pos + max(want, self.step)))
        self.block = b""  # the old block goes before the new one comes
        try:
            data = remote.fs.cat_file(remote.inner, start=start, end=end)
        except Exception as exc:  # noqa: BLE001 -- the store's errors, as the OSError readers expect
            raise OSError(f"reading bytes {start}-{end} failed: {type(exc).__name__}: "
                          f"{_short(exc, remote.url)}") from None
        if len(data) != end - start:
            raise OSError(f"the store returned {len(data)} bytes for a range of {end - start} (did the object "
                          "change while it was read?)")
        remote.fetched += len(data)
        remote.requests += 1
        remote._blocks = [*remote._blocks[-(KEPT - 1):], (start, data)]  # noqa: SLF001
        self.block, self.start = data, start


# ---------------------------------------------------------------------------------- copies and writes


def private_folder(prefix: str = "modelport-fetch-") -> Path:
    """A new temporary folder only this user can read (mkdtemp makes it 0700), named after this process so
    that copies left by a process killed outright are removed by the next one (``sweep``)."""
    import tempfile

    sweep(prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


_swept: set = set()


def sweep(prefix: str, again: bool = False) -> None:
    """Once per process (or ``again``): remove the temporary folders of ``prefix`` whose process is gone."""
    if prefix in _swept and not again:
        return
    import shutil
    import tempfile

    _swept.add(prefix)
    for folder in Path(tempfile.gettempdir()).glob(prefix + "*"):
        owner = folder.name[len(prefix):].split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue


def fetch(remote: RemotePath, folder: Path) -> Path:
    """Stream ``remote`` (an object, or a prefix such as a SavedModel folder) into ``folder``, keeping its
    name; the local path. Memory stays bounded: the store's library writes in blocks."""
    target = folder / (remote.name or "object")
    with store_errors(remote.url, "download it"):
        if remote.is_dir():
            for inner in sorted(remote.fs.find(remote.inner)):
                rel = inner[len(remote.inner.rstrip("/")) + 1:]
                if not rel or rel.endswith("/") or ".." in rel.split("/"):
                    continue
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                remote.fs.get_file(inner, str(dest))
        else:
            remote.fs.get_file(remote.inner, str(target))
    return target


@contextmanager
def local_copy(path):
    """A local path for ``path``: itself when local, else a private temporary copy (removed afterwards).
    Errors that name the copy name the URL instead."""
    path = as_path(path)
    if not isinstance(path, RemotePath):
        yield path
        return
    import shutil

    folder = private_folder()
    try:
        local = fetch(path, folder)
        try:
            yield local
        except ModelportError as exc:
            if exc.path and exc.path.startswith(str(folder)):
                exc.path = str(path) + exc.path[len(str(local)):]
            raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def put(local: Path, url: str) -> str:
    """Upload a finished local file to ``url`` (one PUT: readers never see half of it); the redacted URL."""
    fs, inner = filesystem(url)
    with store_errors(url, "write it"):
        fs.put_file(str(local), inner)
    return redact(url)


def check_writable(url: str) -> None:
    """Refuse, before any work, an output URL whose store cannot take writes (``http(s)://``)."""
    fs, _ = filesystem(url)
    if type(fs).__name__ == "HTTPFileSystem":
        raise BadInputError("cannot write to an http(s) URL", path=redact(url),
                            hint="write to a local path or to a store that takes writes (s3://, gs://, az://)")


def with_suffix(path, suffix: str):
    """``path`` with its suffix replaced, for a local path or a URL."""
    if is_url(str(path)) and not isinstance(path, Path):
        text = str(path.url if isinstance(path, RemotePath) else path)
        head, name = text.rsplit("/", 1) if "/" in text.split("://", 1)[1] else (text, "")
        stem = name[: name.rfind(".")] if "." in name[1:] else name
        return f"{head}/{stem}{suffix}"
    return Path(path).with_suffix(suffix)
