"""Kiosk decision-time benchmark (not a test): card presented → accept or refuse, against its floor.

The decision time is measured by the kiosk itself (tools/terminal/kiosk.py `timing["decision_s"]`): from
the start of the transaction to the centre's answer, minus the time the municipality spent
rendering the PDF (reported by the centre, `render_s`, and printed apart). Two outcomes:

- accept: a good `adult` persona card, 新方式, 住民票 (the whole CVS-16 path: session, card
  reads, VERIFY, the card's RSA signature, chain + signature + dates at the centre, an OCSP
  round trip to the validity service, routing);
- refuse: a card whose certificate is on hold (一時保留), refused after the same checks.

The floor is what the decision cannot do without, timed in the same run (each floor sample is
taken right after a pair of transactions, so both see the same machine load): the RSA-2048 private
operations (the card's signature over the challenge, the OCSP responder's signature) and public
operations (the centre verifying the card's signature and the certificate's CA signature, the
centre verifying the OCSP response), plus **one** loopback HTTP round trip (urllib to a
loopback http.server answering a small body, on a fresh connection). The ratio decision / floor
says how much the rest (APDUs, three HTTP exchanges, JSON, MACs, certificate parsing) costs.
Since the kiosk keeps its connection to the centre alive, a round trip on a kept-alive
connection is timed too and reported beside the floor (and the ratio against a floor using it),
so the figure can be read either way.

Run from the repository root: `python -m bench.bench_kiosk [--runs N]`; writes
bench/results/kiosk.md. Everything runs in this process on loopback and is stopped at the end.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import http.server
import secrets
import socket
import statistics
import threading
import time
import urllib.request
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "kiosk.md"


from bench.report import machine  # noqa: E402  (one description of the machine for every result)


class Floor:
    """The floor's operations, each one callable once per sample (interleaved with the
    transactions so both see the same machine load)."""

    def __init__(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        from mynaemu.issuance.pki.ca import default_test_pki
        from mynaemu.issuance.pki.keys import generate_rsa_key

        key = generate_rsa_key(2048)
        data = secrets.token_bytes(32)
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        public = key.public_key()
        ca_cert = default_test_pki().auth_ca.certificate
        ca_der = ca_cert.public_bytes(serialization.Encoding.DER)

        class Quiet(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class KeptAlive(Quiet):
            # What the kiosk's link to the centre now is: HTTP/1.1 kept alive, Nagle off.
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.kept_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeptAlive)
        self.kept_server.daemon_threads = True
        threading.Thread(target=self.kept_server.serve_forever, daemon=True).start()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.kept = http.client.HTTPConnection("127.0.0.1", self.kept_server.server_address[1], timeout=5)
        self.kept.connect()
        self.kept.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def kept_round_trip():
            self.kept.request("GET", "/")
            self.kept.getresponse().read()

        self.ops = {
            "rsa_private": lambda: key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
            "rsa_public": lambda: public.verify(sig, data, padding.PKCS1v15(), hashes.SHA256()),
            "chain_verify": lambda: x509.load_der_x509_certificate(ca_der).verify_directly_issued_by(ca_cert),
            # The floor's round trip: a fresh connection, what one transaction of a kiosk that
            # connects for it costs at least.
            "http_round_trip": lambda: opener.open(url, timeout=5).read(),
            # Reported beside it, not in the floor: a round trip on a kept-alive connection.
            "http_kept_alive_round_trip": kept_round_trip,
        }
        self.samples = {name: [] for name in self.ops}

    def sample(self, keep: bool) -> None:
        for name, op in self.ops.items():
            t0 = time.perf_counter()
            op()
            if keep:
                self.samples[name].append(time.perf_counter() - t0)

    def medians(self) -> dict:
        return {name: statistics.median(values) for name, values in self.samples.items()}

    def stop(self) -> None:
        self.kept.close()
        for server in (self.server, self.kept_server):
            server.shutdown()
            server.server_close()


def bench(runs: int) -> tuple[dict, dict]:
    """(decision samples, floor medians), transactions and floor operations interleaved."""
    import tempfile

    from cryptography import x509

    from mynaemu.card.core import Card
    from mynaemu.card.ids import JpkiEF
    from mynaemu.card.image import CardImage
    from mynaemu.issuance.pki.ca import default_test_pki
    from mynaemu.issuance.clock import SettableClock
    from mynaemu.issuance.kiosk.keyfiles import load_or_create_signer
    from mynaemu.issuance.kiosk.municipality import MunicipalityServer
    from mynaemu.issuance.kiosk.records import MemoryCentreTrail, MemoryKioskHistory
    from mynaemu.issuance.kiosk.residents import MemoryResidentDirectory, synthesize_resident
    from mynaemu.issuance.kiosk.services import start_services
    from mynaemu.issuance.kiosk.wire import Refusal
    from mynaemu.issuance.personas import build_persona
    from mynaemu.issuance.policy import JST
    from mynaemu.issuance.pki.revocation import MemoryRevocationSource
    from mynaemu.tools.terminal.client import CardClient, InProcessConnection
    from mynaemu.tools.terminal.kiosk import CentreClient, Kiosk

    issue_at = _dt.datetime(2026, 3, 2, 9, 0, tzinfo=JST)
    clock = SettableClock(_dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST))
    source, directory = MemoryRevocationSource(), MemoryResidentDirectory()
    cards = {}
    for label in ("accept", "refuse"):
        image, info = build_persona("adult", at=issue_at)
        cert = x509.load_der_x509_certificate(image.application("jpki").efs[JpkiEF.AUTH_CERT].data)
        source.add_issued("auth", cert.serial_number, cert.not_valid_after_utc, at=issue_at)
        directory.add(synthesize_resident(info.identity, on=issue_at.date()), auth_serials=[cert.serial_number])
        if label == "refuse":
            source.hold("auth", cert.serial_number, at=issue_at + _dt.timedelta(hours=1))
        # One card presented again and again (power cycled each time, as a card taken out and
        # put back): the first run, dropped, also pays the card's one-off key loading.
        cards[label] = Card(CardImage.from_json(image.to_json()))
    muni_home = tempfile.TemporaryDirectory()
    muni_key = load_or_create_signer(muni_home.name, "13221")
    kiosk_key = secrets.token_bytes(32)
    services = start_services(pki=default_test_pki(), source=source, directory=directory,
                              municipalities={"13221": MunicipalityServer("13221", muni_key, directory,
                                                                             history=MemoryKioskHistory())},
                              kiosk_keys={"TEST-KIOSK-BENCH": kiosk_key}, clock=clock,
                              trail=MemoryCentreTrail())
    kiosk = Kiosk(CentreClient(services.centre_url, "TEST-KIOSK-BENCH", kiosk_key), clock=clock,
                  trust_roots=[muni_key.root])
    floor = Floor()
    out = {"accept": [], "refuse": [], "render": [], "total": [], "first": None}
    try:
        for i in range(runs + 1):
            keep = i > 0
            conn = InProcessConnection(cards["accept"])
            result = kiosk.issue(CardClient(conn), pin="1234", document="juminhyo")
            conn.close()
            if not keep:
                out["first"] = result.timing["decision_s"]
            if keep:
                out["accept"].append(result.timing["decision_s"])
                out["render"].append(result.timing["render_s"])
                out["total"].append(result.timing["total_s"])
            conn = InProcessConnection(cards["refuse"])
            t0 = time.perf_counter()
            try:
                kiosk.issue(CardClient(conn), pin="1234", document="juminhyo")
            except Refusal as refusal:
                if refusal.reason != "cert-hold":
                    raise
                if keep:
                    out["refuse"].append(time.perf_counter() - t0)
            else:
                raise RuntimeError("the held card was accepted")
            finally:
                conn.close()
            floor.sample(keep)
    finally:
        floor.stop()
        services.stop()
        muni_home.cleanup()
    return out, floor.medians()


def measure(runs: int) -> dict:
    """bench() summarised: medians of the accept / refuse decisions and of the rendering, the
    floor's parts and total (2 RSA private + 2 RSA public + chain check + one round trip) and
    the ratios decision / floor. Used by main() and by `python -m bench` (P4)."""
    decisions, parts = bench(runs)
    floor = 2 * parts["rsa_private"] + 2 * parts["rsa_public"] + parts["chain_verify"] + parts["http_round_trip"]
    accept = statistics.median(decisions["accept"])
    refuse = statistics.median(decisions["refuse"])
    kept = floor - parts["http_round_trip"] + parts["http_kept_alive_round_trip"]
    return {"decisions": decisions, "parts": parts, "floor": floor, "floor_kept_alive": kept,
            "accept": accept, "refuse": refuse,
            "render": statistics.median(decisions["render"]),
            "ratio_accept": accept / floor, "ratio_refuse": refuse / floor}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="transactions per outcome (default 30)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"Markdown result file (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error("--runs must be at least 3")

    m = measure(args.runs)
    decisions, parts, floor = m["decisions"], m["parts"], m["floor"]
    accept, refuse, render = m["accept"], m["refuse"], m["render"]
    ms = lambda s: f"{s * 1000:.2f} ms"  # noqa: E731
    rows = [
        "| measure | median |",
        "|---|---:|",
        f"| decision, accept (card presented → centre's yes, PDF rendering excluded) | {ms(accept)} |",
        f"| decision, refuse (certificate on hold, after the same checks) | {ms(refuse)} |",
        f"| PDF rendering at the municipality (timed apart) | {ms(render)} |",
        f"| whole accepted transaction incl. rendering, tamper check, fee | {ms(statistics.median(decisions['total']))} |",
        f"| floor: 2 × RSA-2048 private ({ms(parts['rsa_private'])} each: card signature, OCSP response) | "
        f"{ms(2 * parts['rsa_private'])} |",
        f"| floor: 2 × RSA-2048 public ({ms(parts['rsa_public'])} each: card signature, OCSP response) + "
        f"certificate chain check ({ms(parts['chain_verify'])}) | "
        f"{ms(2 * parts['rsa_public'] + parts['chain_verify'])} |",
        f"| floor: one loopback HTTP round trip (fresh connection) | {ms(parts['http_round_trip'])} |",
        f"| **floor total** | **{ms(floor)}** |",
        f"| not in the floor: a round trip on a kept-alive connection (how the kiosk now talks to the "
        f"centre); floor with it instead | {ms(parts['http_kept_alive_round_trip'])}; {ms(m['floor_kept_alive'])} |",
    ]
    table = "\n".join(rows)
    ratio_line = (f"Ratio decision / floor: accept **{accept / floor:.1f}×**, refuse **{refuse / floor:.1f}×** "
                  f"({args.runs} transactions per outcome); against the floor with a kept-alive round trip: "
                  f"accept {accept / m['floor_kept_alive']:.1f}×, refuse {refuse / m['floor_kept_alive']:.1f}×.")
    print(table)
    print(ratio_line)
    doc = [
        "# Kiosk decision time vs its floor",
        "",
        f"Measured {_dt.datetime.now().astimezone().isoformat(timespec='seconds')} by "
        f"`python -m bench.bench_kiosk --runs {args.runs}` on {machine()}.",
        "",
        "In-process card (`mynaemu.card.core`), centre and JPKI validity service (OCSP) on loopback HTTP, "
        "新方式, 住民票の写し. The decision spans three HTTP exchanges (session, issue, the centre's OCSP "
        "query) and about ten APDUs; the floor counts the RSA work and a single round trip.",
        "",
        f"Each card is presented {args.runs + 1} times (power cycled in between); the first transaction is "
        f"dropped: its decision took {ms(decisions['first'])}, because the card core parses its private "
        "key (PEM, with RSA key validation) on first use.",
        "",
        table,
        "",
        ratio_line,
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(doc), encoding="utf-8")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
