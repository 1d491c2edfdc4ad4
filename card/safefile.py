"""The project's file primitives: bounded reads of regular files, atomic writes, exclusive locks.

One mechanism for every file the project reads or writes (card images, PDFs, keys, CRLs,
caches), so that no call site has to remember the rules:

* read_regular: the path (symlinks followed) must be a regular file, no larger than the
  caller's limit. A FIFO, device, directory or socket is refused at once with one line naming
  the file: the type is checked with stat() before opening (opening some devices has effects),
  the file is opened with O_NONBLOCK (a FIFO swapped in after the stat cannot hang the open),
  and the opened descriptor is checked again with fstat() (closing the stat/open race). The
  read stops one byte past the limit, so a file that grows after the fstat cannot blow it.
* write_file_atomic: temp file in the target's folder, fsync, rename, fsync of the folder, so
  readers and a kill -9 see the old or the new content, never a torn one. A symlink is
  followed: the target is replaced and the link stays a link. Anything at the path that is not
  a regular file (device, FIFO, directory, socket) is refused, never replaced. New files are
  0600 whatever the umask; a caller publishing a world-readable file passes mode=0o644.
* FileLock: an exclusive flock() on a lock file, waited for up to a bound. The kernel drops it
  when its holder's descriptor closes, including when the holder is killed with SIGKILL.

* parse_json: plain, finite JSON only (no NaN/Infinity, no duplicate keys), its nesting depth
  bounded before the parser runs (no RecursionError).

Every refusal is an UnsafeFile or LockBusy, both OSError, with a one-line message.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import stat
import tempfile
import time
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


class UnsafeFile(OSError):
    """A path that is not a regular file, or a file over its size limit; one-line message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unsafe file"


class LockBusy(OSError):
    """The lock is held by another process (or another door of this one)."""

    def __init__(self, message: str, holder: str = ""):
        super().__init__(message)
        self.holder = holder

    def __str__(self) -> str:
        return str(self.args[0])


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def real_path(path) -> Path:
    """The path with every symlink resolved: the file that is actually read and replaced."""
    return Path(os.path.realpath(os.fspath(path)))


def read_regular(path, *, limit: int) -> bytes:
    """The content of the regular file at `path` (symlinks followed), at most `limit` bytes."""
    name = os.fspath(path)
    st = os.stat(name)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{name}: {kind_of(st.st_mode)}, not a regular file; refusing to read it")
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(f"{name}: {kind_of(st.st_mode)}, not a regular file; refusing to read it")
        if st.st_size > limit:
            raise UnsafeFile(f"{name}: too large ({st.st_size} bytes; the limit is {human_size(limit)})")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise UnsafeFile(f"{name}: too large (grew past the limit of {human_size(limit)} while read)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_replaceable(path, target: Path | None = None, *, follow_symlinks: bool = True) -> Path:
    """The real file a write to `path` replaces; UnsafeFile when something else is there.

    follow_symlinks=False: `path` itself (its folder resolved) is what is replaced, so a
    symbolic link there is refused like any other thing that is not a regular file."""
    if target is None:
        target = real_path(path) if follow_symlinks else real_path(Path(path).parent) / Path(path).name
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return target                      # a new path
    if not stat.S_ISREG(st.st_mode):
        shown = os.fspath(path) if os.fspath(path) == os.fspath(target) else f"{os.fspath(path)} (-> {target})"
        raise UnsafeFile(f"{shown}: {kind_of(st.st_mode)}, not a regular file; refusing to replace it")
    return target


def write_file_atomic(path, data: bytes, *, mode: int = 0o600, single_writer: bool = False,
                      follow_symlinks: bool = True) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: old or new, never torn.

    The file gets `mode` exactly (0600 by default, whatever the umask). Symlinks are followed
    (the target is replaced, the link kept) unless follow_symlinks=False, which refuses a
    symlink at `path` (a file planted to redirect the write elsewhere); a path holding anything
    but a regular file is refused with UnsafeFile and left as it is.

    single_writer: use the fixed temp name `.NAME.tmp` (no pile-up after kills; the caller
    guarantees one writer, e.g. by holding the file's lock); otherwise a unique temp name, so
    concurrent writers of the same file cannot interleave.
    """
    target = check_replaceable(path, follow_symlinks=follow_symlinks)
    folder = target.parent
    if single_writer:
        tmp = str(folder / f".{target.name}.tmp")
        try:
            os.unlink(tmp)                 # a stale temp from a kill (or anything planted there)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)                # exactly `mode`: the umask neither widens nor narrows it
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        check_replaceable(path, target)    # still a regular file or absent at the last moment
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileLock:
    """An exclusive flock() on `lock_path`, held until release() (or the holder's death).

    The lock file is created 0600 next to what it guards and never deleted (deleting lock files
    races with their next user). flock() locks belong to the open file description, so a
    second FileLock on the same file in the same process is refused like another process.
    The holder's PID and `note` are written into the file for the busy message.
    """

    POLL = 0.05

    def __init__(self, lock_path, *, wait: float = 0.0, note: str = ""):
        self.path = Path(lock_path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFile(f"{self.path}: {kind_of(st.st_mode)}, not a regular file; cannot lock with it")
            deadline = time.monotonic() + max(0.0, wait)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        holder = _holder(fd)
                        raise LockBusy(f"{self.path}: locked by {holder or 'another process'}", holder) from None
                    time.sleep(min(self.POLL, left))
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}{', ' + note if note else ''}\n".encode("utf-8", "replace"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)                   # closing the descriptor drops the flock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        self.release()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace")
    except OSError:
        return ""
    return text.splitlines()[0].strip() if text.strip() else ""


# -- JSON -------------------------------------------------------------------------------------

_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_SQUARE = str.maketrans("{}", "[]")


def json_depth(text: str, limit: int) -> int:
    """The nesting depth of the JSON `text`, counted up to limit + 1, with C-speed string ops.

    Escapes are dropped (`\\\\` first, then `\\"`), so every remaining quote opens or closes
    a string; the text between quotes is dropped; of the rest only the brackets are kept; and
    then each round removes the innermost pairs: the number of rounds is the depth.
    """
    bare = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(bare.split('"')[0::2])
    skeleton = _NOT_BRACKETS.sub("", outside).translate(_SQUARE)
    depth = 0
    while skeleton and depth <= limit:
        shorter = skeleton.replace("[]", "")
        if len(shorter) == len(skeleton):
            # Unbalanced, so invalid; what is left is "]]..][[..[" (no "[]" in it), and a
            # parser may open every "[" of it before failing: count them as depth.
            return depth + skeleton.count("[")
        skeleton, depth = shorter, depth + 1
    return depth


def parse_json(raw: bytes, *, max_depth: int = 32):
    """The JSON document in `raw`; ValueError (one line) for anything but plain, finite JSON.

    Refused: invalid UTF-8, NaN/Infinity (and numbers that overflow to them), duplicate keys
    (which value would win is a parser detail), nesting deeper than max_depth (checked before
    parsing, so the parser never recurses deeply).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 at byte {exc.start}") from None
    if json_depth(text, max_depth) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                          object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ValueError(f"truncated or corrupt JSON: {exc}") from None


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_duplicates(pairs):
    doc = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key {key[:40]!r}")
        doc[key] = value
    return doc
