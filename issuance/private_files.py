"""Private files and directories: the one place that decides the modes of what mynaemu keeps.

The home (MYNAEMU_HOME) holds the store (every live holder's private keys while the card is in
service, the 個人番号 history, the numbering secret, the store's CA keys, store_pki.py) and the
kiosk's keys and secrets. Decision: everything mynaemu creates there is 0600 (files) and 0700
(directories) **whatever the umask** (umask 000 included), and an existing kiosk folder or
store file that is wider — made by an older build — is tightened when it is opened,
as long as this user owns it (the store's files and the kiosk folder; an existing home
directory is never chmod-ed, since a user may point MYNAEMU_HOME at any directory).

- ``private_dir(path)``: create the directory and any missing parent at 0700 (explicit chmod, so
  the umask cannot widen or narrow it); tighten an existing one we own.
- ``private_sqlite(path)``: the SQLite file is created here, empty and 0600, before sqlite3 opens
  it. SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file (unix VFS,
  findCreateFileMode / unixOpenSharedMemory), so they are 0600 too, each time they are made
  again; existing ones of an older store are tightened.
- Files are written with card.image.write_file_atomic (mkstemp: 0600, then rename), which every
  writer here uses: kiosk PDFs, the municipality's public key, the running centre's address.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int) -> None:
    """chmod `path` to `mode` when it is ours and grants anything to group or others."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_IMODE(st.st_mode) & 0o077 == 0:
        return
    if st.st_uid != os.geteuid():
        log.warning("%s is mode %o and belongs to another user: left as it is", path, stat.S_IMODE(st.st_mode))
        return
    os.chmod(path, mode)


def private_dir(path, *, tighten: bool = False) -> Path:
    """`path` as a directory, created 0700 with its missing parents. An existing directory is
    left alone unless `tighten` (only for folders that are mynaemu's own, like <home>/kiosk: a
    home may be any existing directory the user named, /tmp even, and is never chmod-ed)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            continue  # another process made it meanwhile: tightened below if it is the target
        os.chmod(folder, DIR_MODE)  # the umask may have taken bits away (or a weird one added none)
    if not path.is_dir():
        raise NotADirectoryError(f"{path}: not a directory")
    if tighten:
        _tighten(path, DIR_MODE)
    return path


def private_sqlite(path) -> Path:
    """Create the SQLite database file empty and 0600 when missing; tighten it and its journal
    files when they exist. The folder is made private first."""
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        _tighten(candidate, FILE_MODE)
    return path


def create_once(path, data: bytes) -> bool:
    """Create `path` (0600) holding `data` unless it exists; never replace it. True when this
    call created it. For keys and secrets made on first use by whichever process comes first:
    the data goes to a unique temp file (mkstemp: 0600, O_EXCL, no symlink followed), is synced,
    then hard-linked to `path`, which fails if another process got there first, so every
    process ends up reading the one winner's file, never a torn or mixed one."""
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)
