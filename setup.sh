#!/usr/bin/env bash
# setup.sh - install everything mynaemu needs on Debian (bookworm) and make ./.venv.
#
# Debian packages: pcscd + vsmartcard-vpcd (the virtual PC/SC reader), opensc and pcsc-tools
# (real clients the tests drive), what pyscard builds with (swig, gcc, libpcsclite-dev,
# python3-dev), python3-venv, poppler-utils (pdftoppm, pdffonts, pdfsig for the kiosk PDF
# checks), the IPA Japanese fonts (embedded in the kiosk PDFs, drawn on the card-face images),
# postgresql (the store's second backend; the tests start their own server on loopback),
# vsmartcard-vpicc (the peer card OS `python -m bench` compares with), libnss3-tools (certutil:
# a trust store for pdfsig in the document tests). Then a virtualenv in ./.venv with mynaemu
# installed editable with its [dev] extras. Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")"

PKGS=(pcscd vsmartcard-vpcd opensc pcsc-tools libpcsclite-dev libpcsclite1 swig gcc pkg-config
      python3-dev python3-venv poppler-utils poppler-data fonts-ipafont-gothic fonts-ipafont-mincho
      openssl ca-certificates jq postgresql vsmartcard-vpicc libnss3-tools)

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "setup.sh: need root (or sudo) for: $*" >&2; exit 1
    fi
}

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || { echo "setup.sh: apt-get not found (Debian/Ubuntu only)" >&2; exit 1; }
    # The tests start a private PostgreSQL on loopback themselves (tools/harness/pgserver.py); keep
    # Debian from creating and starting a cluster of its own when the package installs.
    if [[ " ${missing[*]} " == *" postgresql "* ]] && [ ! -e /etc/postgresql-common/createcluster.d/mynaemu.conf ]; then
        as_root mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/mynaemu.conf >/dev/null
    fi
    echo "setup.sh: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || { echo "setup.sh: Python 3.11 or newer is needed ($PY is $("$PY" -V 2>&1))" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
    echo "setup.sh: creating .venv with $("$PY" -V 2>&1)"
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
echo "setup.sh: ready (.venv/bin/mynaemu, .venv/bin/pytest)"
