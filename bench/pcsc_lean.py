"""A lean PC/SC client for the P1 benchmark: libpcsclite called through ctypes, bytes in, bytes out.

Why not pyscard here: pyscard hands every response to Python as a list of ints (one object per
byte, built by SWIG), and the bench turns it back into bytes. For a 256-byte READ BINARY that
costs the *client* about 10 µs an APDU (measured: an echo card answering READ BINARY with 256
bytes ran at 0.89 the rate of one answering a bare 9000, through the same pyscard loop), which is
more than the whole card core costs (about 2 µs an APDU). The card's real clients (OpenSC, the
JPKI client software, kiosk middleware) are C programs that pass byte buffers, so this client
does the same: one reusable receive buffer, the command passed as a bytes object, no per-byte
objects. Both sides of P1 use the same client, so the ratio is the card's cost on the path a C
client sees; pyscard stays in the bench as a diagnostic row.

Linux pcsc-lite only (its DWORD and SCARDCONTEXT are C `unsigned long` / `long`): the vpcd
reader exists only there. Errors are PcscError with the pcsc-lite return code and its name.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Optional

LONG = ctypes.c_long
DWORD = ctypes.c_ulong

SCARD_SCOPE_SYSTEM = 2
SCARD_SHARE_SHARED = 2
SCARD_PROTOCOL_T0 = 1
SCARD_PROTOCOL_T1 = 2
SCARD_LEAVE_CARD = 0
MAX_RESPONSE = 65536 + 2          # extended Le 0000 plus the status word

# pcsc-lite's return codes a benchmark may meet (pcsclite.h), for readable errors.
_ERRORS = {
    0x80100002: "SCARD_E_CANCELLED", 0x80100003: "SCARD_E_INVALID_HANDLE",
    0x80100008: "SCARD_E_INSUFFICIENT_BUFFER", 0x80100009: "SCARD_E_UNKNOWN_READER",
    0x8010000A: "SCARD_E_TIMEOUT", 0x8010000B: "SCARD_E_SHARING_VIOLATION",
    0x8010000C: "SCARD_E_NO_SMARTCARD", 0x8010000F: "SCARD_E_PROTO_MISMATCH",
    0x80100016: "SCARD_E_NOT_TRANSACTED", 0x80100017: "SCARD_E_READER_UNAVAILABLE",
    0x8010001D: "SCARD_E_NO_SERVICE", 0x8010002E: "SCARD_E_NO_READERS_AVAILABLE",
    0x80100069: "SCARD_W_REMOVED_CARD", 0x80100068: "SCARD_W_RESET_CARD",
    0x80100066: "SCARD_W_UNRESPONSIVE_CARD", 0x80100067: "SCARD_W_UNPOWERED_CARD",
}


class PcscError(RuntimeError):
    """A pcsc-lite call failed; `code` is its return value (e.g. 0x8010000C)."""

    def __init__(self, call: str, code: int):
        self.code = code & 0xFFFFFFFF
        super().__init__(f"{call}: {_ERRORS.get(self.code, 'error')} ({self.code:08X})")


class _IoRequest(ctypes.Structure):
    _fields_ = [("dwProtocol", DWORD), ("cbPciLength", DWORD)]


_lib: Optional[ctypes.CDLL] = None


def library() -> ctypes.CDLL:
    """libpcsclite, loaded once; RuntimeError when it is not installed (Debian libpcsclite1)."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("pcsclite") or "libpcsclite.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise RuntimeError(f"libpcsclite not found ({exc}); install Debian's libpcsclite1") from None
        lib.SCardEstablishContext.argtypes = [DWORD, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(LONG)]
        lib.SCardReleaseContext.argtypes = [LONG]
        lib.SCardListReaders.argtypes = [LONG, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(DWORD)]
        lib.SCardConnect.argtypes = [LONG, ctypes.c_char_p, DWORD, DWORD, ctypes.POINTER(LONG),
                                     ctypes.POINTER(DWORD)]
        lib.SCardDisconnect.argtypes = [LONG, DWORD]
        lib.SCardTransmit.argtypes = [LONG, ctypes.POINTER(_IoRequest), ctypes.c_char_p, DWORD,
                                      ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(DWORD)]
        for fn in ("SCardEstablishContext", "SCardReleaseContext", "SCardListReaders", "SCardConnect",
                   "SCardDisconnect", "SCardTransmit"):
            getattr(lib, fn).restype = LONG
        _lib = lib
    return _lib


def _check(call: str, rv: int) -> None:
    if rv:
        raise PcscError(call, rv)


class Context:
    """One PC/SC context (SCardEstablishContext); use as a context manager or call close()."""

    def __init__(self):
        self._lib = library()
        self.handle = LONG()
        _check("SCardEstablishContext",
               self._lib.SCardEstablishContext(SCARD_SCOPE_SYSTEM, None, None, ctypes.byref(self.handle)))
        self._open = True

    def readers(self) -> list[str]:
        size = DWORD(0)
        rv = self._lib.SCardListReaders(self.handle, None, None, ctypes.byref(size))
        if rv & 0xFFFFFFFF == 0x8010002E:           # no readers at all
            return []
        _check("SCardListReaders", rv)
        buf = ctypes.create_string_buffer(size.value)
        _check("SCardListReaders", self._lib.SCardListReaders(self.handle, None, buf, ctypes.byref(size)))
        return [name.decode() for name in buf.raw[:size.value].split(b"\0") if name]

    def connect(self, reader: str) -> "Connection":
        return Connection(self, reader)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._lib.SCardReleaseContext(self.handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Connection:
    """A shared connection to the card in `reader` (T=0 or T=1, whichever the card offers)."""

    def __init__(self, context: Context, reader: str):
        lib = context._lib
        self._lib = lib
        self.reader = reader
        self.handle = LONG()
        protocol = DWORD()
        _check(f"SCardConnect({reader!r})",
               lib.SCardConnect(context.handle, reader.encode(), SCARD_SHARE_SHARED,
                                SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, ctypes.byref(self.handle),
                                ctypes.byref(protocol)))
        self.protocol = protocol.value
        pci = "g_rgSCardT1Pci" if protocol.value == SCARD_PROTOCOL_T1 else "g_rgSCardT0Pci"
        self._pci = ctypes.pointer(_IoRequest.in_dll(lib, pci))
        self._buf = ctypes.create_string_buffer(MAX_RESPONSE)
        self._len = DWORD()
        self._len_ref = ctypes.pointer(self._len)
        self._transmit = lib.SCardTransmit
        self._open = True

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return the response APDU (data + SW1 SW2)."""
        self._len.value = MAX_RESPONSE
        rv = self._transmit(self.handle, self._pci, apdu, len(apdu), None, self._buf, self._len_ref)
        if rv:
            raise PcscError("SCardTransmit", rv)
        return ctypes.string_at(self._buf, self._len.value)     # copies the answer only

    def close(self) -> None:
        if self._open:
            self._open = False
            self._lib.SCardDisconnect(self.handle, SCARD_LEAVE_CARD)


__all__ = ["Context", "Connection", "PcscError", "library"]
