"""Hostile and broken input against the running server: never a 500, never a traceback, never half a report.

One real server process (cheap Argon2id, failure budgets opened wide so thousands of wrong
receipts do not slow the test) takes random bytes, invalid UTF-8, huge and empty fields, broken
multipart framing, thousands of parts, path traversal and control characters in file names,
header injection, wrong methods, over-long receipts and passphrases and SQL meta-characters, on
every route of both apps (read from their route tables). Requests go over raw sockets, so nothing
is cleaned up by a client library on the way. At the end the install is checked: every report in
the database is one whose receipt was shown, and each opens whole.
"""

from __future__ import annotations

import asyncio
import os
import random
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropbox.config import Config
from tests.support.data_checks import (
    assert_every_report_opens,
    assert_settled,
    db_snapshot,
    files_of_their_own,
    leftover_staged,
)
from tests.support.forms import find_receipt_digits, multipart, submission_fields
from tests.support.installs import ALICE, new_install
from tests.support.raw_http import RawAnswer, exchange, request
from tests.support.routes import Route, app_routes
from tests.support.server_process import ServerProcess

SETTINGS = settings(deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SQL_META = ["' OR '1'='1", "\"; DROP TABLE reports; --", "1; SELECT * FROM caseworkers", "%' --", "\\'", "`", "*/"]
NASTY_TEXT = ["", " ", "\x00", "\r\n\r\n", "\u202e", "\ud800", "..", "../../etc/passwd", "%00", "%0d%0a",
              "<script>alert(1)</script>", "{{7*7}}", "${jndi:x}", "\u0661\u0662\u0663", "🙈" * 50, *SQL_META]
FIELD_NAMES = ["text", "contact", "channel", "receipt", "csrf_token", "files", "name", "passphrase",
               "answer_q1", "answer_", "status", "note", "lang", "", "a" * 300, "text[]", "../x"]


@dataclass(repr=False)
class Harness:
    server: ServerProcess
    config: Config
    routes: list[Route]
    receipts: set[str] = field(default_factory=set)

    def port(self, route: Route) -> int:
        return self.server.port if route.app == "whistleblower" else self.server.admin_port

    def send(self, port: int, data: bytes, what: str, *, half_close: bool = False, timeout: float = 15) -> RawAnswer:
        answer = exchange(port, data, half_close=half_close, timeout=timeout)
        assert answer.status is None or answer.status < 500 or answer.status in (503, 507), \
            f"{what}: answered {answer.status}"
        assert answer.status != 500
        assert not answer.leaks_traceback(), f"{what}: traceback in the response"
        if answer.status == 200:
            receipt = find_receipt_digits(answer.body.decode("utf-8", "replace"))
            if receipt:
                self.receipts.add(receipt)
        assert self.server.running, f"{what}: the server died\n{self.server.log_tail()}"
        return answer


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("bad-input")
    config = asyncio.run(new_install(root / "data"))
    changes = {"failed_receipt_budget_per_minute": 1_000_000, "failed_login_budget_per_minute": 1_000_000,
               "slowdown_seconds": 0.0}
    server = ServerProcess(data_dir=config.data_dir, log_path=root / "server.log", config_changes=changes)
    server.start()
    try:
        yield Harness(server, config, app_routes("whistleblower") + app_routes("caseworker"))
    finally:
        server.kill()


# -- strategies ------------------------------------------------------------------------------

def _huge(n: int) -> str:
    return "a" * n


field_values = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),  # mostly invalid UTF-8
    st.sampled_from(NASTY_TEXT),
    st.sampled_from([100_001, 2_001, 300_000]).map(_huge),
)
field_names = st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=20))
path_values = st.one_of(st.sampled_from(["x", "0" * 32, "f" * 32, "..", "../../etc/passwd", "%2e%2e",
                                         "a/b", "\x00", "9" * 500, "'", "en"]),
                        st.text(max_size=40))


def _encode_value(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def _body(encoding: str, fields: list[tuple[str, str | bytes]]) -> tuple[bytes, str]:
    if encoding == "multipart":
        return multipart([(name, _encode_value(v), None) for name, v in fields])
    if encoding == "urlencoded":
        pairs = [urllib.parse.quote_from_bytes(_encode_value(n)) + "=" + urllib.parse.quote_from_bytes(_encode_value(v))
                 for n, v in fields]
        return "&".join(pairs).encode(), "application/x-www-form-urlencoded"
    if encoding == "json":
        return b'{"text": "x", "receipt": [1, 2]}', "application/json"
    return b"".join(_encode_value(v) for _, v in fields), "text/plain; charset=x-unknown"


# -- the tests -------------------------------------------------------------------------------

@settings(SETTINGS, max_examples=400)
@given(data=st.data())
def test_every_route_with_random_fields_and_encodings(harness: Harness, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(harness.routes), label="route")
    path = route.path({name: data.draw(path_values) for name in route.placeholders})
    fields = data.draw(st.lists(st.tuples(field_names, field_values), max_size=6), label="fields")
    encoding = data.draw(st.sampled_from(["multipart", "urlencoded", "json", "raw"]), label="encoding")
    cookie = data.draw(st.sampled_from(["", "wb_session=" + "A" * 43, "cw_session=../../x", "wb_session=\x7f"]))
    headers = {"Cookie": cookie} if cookie else {}
    if route.method in ("POST", "PUT", "PATCH"):
        body, content_type = _body(encoding, fields)
        headers["Content-Type"] = content_type
    else:
        query = "&".join(urllib.parse.quote_from_bytes(_encode_value(n)) + "="
                         + urllib.parse.quote_from_bytes(_encode_value(v)) for n, v in fields)
        path, body = (path + "?" + query if query else path), b""
    before = db_snapshot(harness.config)["reports"]
    answer = harness.send(harness.port(route), request(route.method, path, headers=headers, body=body),
                          f"{route.method} {route.pattern}")
    if answer.status != 200 or b'id="receipt"' not in answer.body:
        assert db_snapshot(harness.config)["reports"] == before, "a report was stored without a receipt shown"


@SETTINGS
@given(data=st.binary(max_size=3000),
       prefix=st.sampled_from([b"", b"GET /en/ HTTP/1.1\r\n", b"POST /en/submit HTTP/1.1\r\nHost: x\r\n",
                               b"POST /en/submit HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                               b"boundary=zz\r\nContent-Length: 5000\r\n\r\n--zz\r\n",
                               b"POST /en/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"]),
       admin=st.booleans())
def test_random_bytes_as_requests(harness: Harness, data: bytes, prefix: bytes, admin: bool) -> None:
    port = harness.server.admin_port if admin else harness.server.port
    harness.send(port, prefix + data, "random bytes", half_close=True, timeout=3)


def _valid_submission(rng: random.Random) -> tuple[bytes, str]:
    return multipart(submission_fields(text="broken multipart " + str(rng.random()), contact="c",
                                       files=[("a.txt", b"hello" * 100), ("b.bin", os.urandom(3000))]),
                     boundary="BOUNDARYxyz")


@settings(SETTINGS, max_examples=200)
@given(mutation=st.sampled_from(["truncate", "insert", "replace", "no-final", "boundary", "length-more",
                                 "length-less", "no-disposition", "duplicate", "nested", "bare-lf"]),
       where=st.floats(0, 1), junk=st.binary(min_size=1, max_size=200), seed=st.integers(0, 2**16))
def test_broken_multipart_bodies_on_the_submit_form(harness: Harness, mutation: str, where: float, junk: bytes,
                                                    seed: int) -> None:
    body, content_type = _valid_submission(random.Random(seed))
    at = int(len(body) * where)
    length: int | None = None
    match mutation:
        case "truncate":
            body = body[:at]
        case "insert":
            body = body[:at] + junk + body[at:]
        case "replace":
            body = body[:at] + junk + body[at + len(junk):]
        case "no-final":
            body = body.replace(b"--BOUNDARYxyz--", b"")
        case "boundary":
            content_type = "multipart/form-data; boundary=" + junk.decode("latin-1").replace("\r", "").replace("\n", "")
        case "length-more":
            length = len(body) + 1 + at
        case "length-less":
            length = max(0, len(body) - 1 - at)
        case "no-disposition":
            body = body.replace(b"Content-Disposition: form-data; ", b"X: ", 1)
        case "duplicate":
            body = body.replace(b"--BOUNDARYxyz--", b"--BOUNDARYxyz\r\nContent-Disposition: form-data; "
                                b'name="text"\r\n\r\nagain\r\n--BOUNDARYxyz--')
        case "nested":
            body = body.replace(b'name="contact"\r\n', b'name="contact"\r\nContent-Type: multipart/mixed; '
                                b"boundary=inner\r\n")
        case "bare-lf":
            body = body.replace(b"\r\n", b"\n")
    headers = {"Content-Type": content_type}
    if length is not None:
        headers["Content-Length"] = str(length)
    before = db_snapshot(harness.config)["reports"]
    answer = harness.send(harness.server.port, request("POST", "/en/submit", headers=headers, body=body),
                          f"multipart {mutation}", half_close=mutation in ("length-more", "truncate"), timeout=5)
    stored = db_snapshot(harness.config)["reports"] - before
    assert stored == (1 if answer.status == 200 and find_receipt_digits(answer.body.decode("utf-8", "replace")) else 0)


def test_thousands_of_parts_are_refused_early(harness: Harness) -> None:
    cases = {
        "text parts": [(f"f{i}", "x", None) for i in range(5000)],
        "answer parts": [(f"answer_{i}", "x", None) for i in range(3000)],
        "file parts": [("channel", "default", None), ("text", "t", None)]
        + [("files", b"x", f"{i}.txt") for i in range(3000)],
        "empty file parts": [("channel", "default", None), ("text", "t", None)]
        + [("files", b"", "") for _ in range(5000)],
    }
    for what, fields in cases.items():
        body, content_type = multipart(fields)  # type: ignore[arg-type]
        before = db_snapshot(harness.config)["reports"]
        answer = harness.send(harness.server.port, request("POST", "/en/submit", headers={
            "Content-Type": content_type}, body=body), what)
        assert answer.status is not None and 400 <= answer.status < 500, f"{what}: {answer.status}"
        assert db_snapshot(harness.config)["reports"] == before


def test_huge_and_empty_fields(harness: Harness) -> None:
    cfg = harness.config
    cases: dict[str, tuple[list[tuple[str, str | bytes, str | None]], tuple[int, ...]]] = {
        "empty text": (submission_fields(text=""), (400,)),
        "no fields": ([], (400,)),
        "text one over": (submission_fields(text="a" * (cfg.max_text_chars + 1)), (400, 413)),
        "text 5 MB": (submission_fields(text="a" * 5_000_000), (400, 413)),
        "contact over": (submission_fields(text="t", contact="c" * (cfg.max_field_chars + 1)), (400, 413)),
        "unknown channel": (submission_fields(text="t", channel="nope"), (400, 404)),
        "channel sql": (submission_fields(text="t", channel="default' OR '1'='1"), (400, 404)),
        "invalid utf-8 text": ([("channel", "default", None), ("text", b"\xff\xfe\xc3(", None)], (400,)),
    }
    for what, (fields, expected) in cases.items():
        body, content_type = multipart(fields)
        before = db_snapshot(harness.config)["reports"]
        answer = harness.send(harness.server.port, request("POST", "/en/submit", headers={
            "Content-Type": content_type}, body=body), what)
        assert answer.status in expected, f"{what}: answered {answer.status}, expected {expected}"
        assert db_snapshot(harness.config)["reports"] == before
    # A body far over every limit, declared up front, is refused before it is read.
    answer = harness.send(harness.server.port, request("POST", "/en/submit", headers={
        "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(50 * 2**30)}, body=b"--x\r\n"),
        "50 GiB declared")
    assert answer.status == 413


@SETTINGS
@given(name=st.one_of(st.text(max_size=300), st.sampled_from(
    ["../../../etc/passwd", "..\\..\\boot.ini", "/etc/shadow", "a\x00b.txt", "evil\r\nX-Injected: 1", "\u202etxt.exe",
     "con", ".", "..", "...", " ", "a" * 5000 + ".pdf", "%2e%2e%2f", "\x1b[31mred", "name\".txt", "ok.txt"])))
def test_file_names_with_traversal_and_control_characters(harness: Harness, name: str) -> None:
    raw_name = name.replace("\r", "").replace("\n", "").replace('"', "%22")
    body, content_type = multipart([("channel", "default", None), ("text", "file name test", None),
                                    ("files", b"content", raw_name)])
    answer = harness.send(harness.server.port, request("POST", "/en/submit", headers={
        "Content-Type": content_type}, body=body), "file name")
    assert answer.status in (200, 400, 413), f"answered {answer.status}"
    # The name never becomes a path: nothing appears next to the data folder or in it but ids.
    data = harness.config.data_dir
    assert {p.name for p in data.parent.iterdir()} <= {"data", "server.log"}
    assert files_of_their_own(harness.config) == []


def test_wrong_methods_on_every_route(harness: Harness) -> None:
    for route in harness.routes:
        path = route.path({})
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "get", "CONNECT"):
            if method == route.method:
                continue
            answer = harness.send(harness.port(route), request(method, path), f"{method} {route.pattern}")
            assert answer.status in (400, 404, 405, 501, None) or any(
                r.method == method and r.pattern == route.pattern for r in harness.routes), \
                f"{method} {route.pattern}: {answer.status}"


def test_header_injection_and_malformed_headers(harness: Harness) -> None:
    raw_cases = [
        b"GET /en/ HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\nConnection: close\r\n\r\n",
        b"GET /en/ HTTP/1.1\r\nHost: x\r\nX-A: a\nSet-Cookie: evil=1\r\nConnection: close\r\n\r\n",
        b"GET /en/ HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n",
        b"GET /en/ HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\nConnection: close\r\n\r\n",
        b"GET /en/ HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n",
        b"POST /en/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello",
        b"POST /en/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /en/submit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST /en/submit HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /en/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET /en/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /en/ HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(2000)) + b"\r\n",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /en/\r\n\r\n",
        b"GET /en/ HTTP/9.9\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ]
    for port in (harness.server.port, harness.server.admin_port):
        for i, data in enumerate(raw_cases):
            answer = harness.send(port, data, f"raw case {i}")
            assert not any(h.lower().startswith("evil") for h in answer.header("Set-Cookie"))
    for path in ["/en/submit?x=%0d%0aSet-Cookie:%20evil=1", "/%0d%0aX-Injected:%201", "/en/%0d%0a",
                 "/en/submit?lang=%0d%0aLocation:%20http://evil", "/../../etc/passwd", "/static/../run.py",
                 "/static/%2e%2e/%2e%2e/run.py", "/en/mailbox/..%2f..%2fsubmit", "//evil.example/", "/en//submit"]:
        for port in (harness.server.port, harness.server.admin_port):
            answer = harness.send(port, request("GET", path, headers={"Cookie": "wb_session=a\tb; cw_session=;;"}),
                                  f"GET {path}")
            assert not answer.header("X-Injected")
            assert not any("evil" in h for h in answer.header("Set-Cookie") + answer.header("Location"))
            assert b"import " not in answer.body and b"root:" not in answer.body


@SETTINGS
@given(receipt=st.one_of(
    st.text(max_size=100), st.text(alphabet="0123456789 -", max_size=200),
    st.sampled_from(["١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦", "１２３４５６７８９０１２３４５６", "1234 5678 9012 345\x00", "0" * 16 + "'--",
                     *SQL_META]),
    st.integers(17, 5000).map(lambda n: "1" * n)))
def test_receipt_login_with_hostile_codes(harness: Harness, receipt: str) -> None:
    body = urllib.parse.urlencode({"receipt": receipt}).encode()
    answer = harness.send(harness.server.port, request("POST", "/en/mailbox/login", headers={
        "Content-Type": "application/x-www-form-urlencoded"}, body=body), "receipt login")
    assert answer.status is not None and 400 <= answer.status < 500, f"receipt login answered {answer.status}"
    assert not answer.header("Set-Cookie") or all("Max-Age=0" in c for c in answer.header("Set-Cookie"))


@SETTINGS
@given(name=st.one_of(st.text(max_size=100), st.sampled_from(["alice' --", "alice\x00", "ALICE", " alice", *SQL_META])),
       passphrase=st.one_of(st.text(max_size=100), st.integers(1025, 200_000).map(lambda n: "p" * n),
                            st.sampled_from(SQL_META + ["", ALICE.passphrase + "\x00", ALICE.passphrase.upper()])))
def test_caseworker_login_with_hostile_names_and_passphrases(harness: Harness, name: str, passphrase: str) -> None:
    body = urllib.parse.urlencode({"name": name, "passphrase": passphrase}).encode()
    answer = harness.send(harness.server.admin_port, request("POST", "/en/login", headers={
        "Content-Type": "application/x-www-form-urlencoded"}, body=body), "caseworker login")
    assert answer.status is not None and 400 <= answer.status < 500, f"login answered {answer.status}"


def test_nothing_partial_was_stored_and_nothing_was_logged_as_a_crash(harness: Harness) -> None:
    """Runs last in this module: whatever the examples above did, the install is whole."""
    # every report in the database is one whose receipt a response showed
    assert db_snapshot(harness.config)["reports"] == len(harness.receipts)
    deadline = asyncio.run(_wait_empty(harness.config))
    assert deadline
    assert_settled(harness.config)
    asyncio.run(assert_every_report_opens(harness.config, caseworker=ALICE.name, passphrase=ALICE.passphrase))
    # Stopped first: the whistleblower side logs its problems only as daily counts, written at
    # shutdown at the latest, so an "unhandled" there is in the log only after the stop.
    assert harness.server.stop() == 0
    log = harness.server.log_text()
    assert "Traceback" not in log
    assert "unhandled" not in log, [line for line in log.splitlines() if "unhandled" in line][:5]


async def _wait_empty(config: Config) -> bool:
    for _ in range(200):
        if not leftover_staged(config):
            return True
        await asyncio.sleep(0.05)
    return False
