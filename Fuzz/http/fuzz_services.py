#!/usr/bin/env python3
"""A bad-input campaign against a running coordinator and bank node, driven by the contract.

It starts `arbiter coordinator` and `bank-node` on free 127.0.0.1 ports in a temporary directory
(or is pointed at running ones with --coordinator-url/--bank-url), then sends generated and
mutated requests to every route of both services, with valid and invalid credentials, and checks:

- every answer's status is one schemas/openapi.yaml documents for that route and method, or 405
  (with an `Allow` header naming exactly the documented methods) for a method the path does not
  serve, or 404 for a path the contract does not have; never 5xx (the documented 503/504 of a
  submit are counted apart, as the protocol's answers, not failures); a body the service answers
  with JSON is its documented error body when the status is 4xx;
- requests refused by construction (no or a wrong token, a body that is not JSON, a media type
  that is not JSON, a method the path does not serve) are answered 4xx, and a block of them
  changes nothing: the bank's balances and reservations (`GET /accounts`), its transactions in
  doubt, and the coordinator's transactions (the whole listing) are the same before and after;
- both processes are alive and healthy at the end.

Why our own generator rather than schemathesis: the services must only ever talk to 127.0.0.1 (a
submitted branch makes the coordinator call its participant URL), the bank's payloads must name
its accounts for transactions to commit at all, refused-only blocks need requests that are refused
by construction, and 10^4 requests must fit a CI minute. A small generator over the contract's
schemas with byte- and structure-level mutations does all of that with the standard library and
PyYAML.

Tokens come from files so that credentials per role only change arguments:
--coordinator-token-file (clients' submits and reads), --participant-token-file (the
coordinator-to-participant protocol), --coordinator-operator-token-file and
--bank-operator-token-file (operator routes). When the script starts the services itself it
writes one protocol secret and one operator secret, as the single-secret mode wants.

    python3 Fuzz/http/fuzz_services.py                 # CI: 10,000 requests
    python3 Fuzz/http/fuzz_services.py --long          # 100,000 requests
    python3 Fuzz/http/fuzz_services.py --seed 7 --requests 2000

Exit status 0 when there was no violation; the last line reads
`fuzz: N requests, M refused, V violations`.
"""

import argparse
import concurrent.futures
import copy
import http.client
import json
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
ACCOUNTS = ["alice", "bob", "carol", "dave"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
CLIENT_TIMEOUT_S = 30

# The bank's own routes (examples/bank/Sources/BankExample/BankRoutes.swift), which the protocol's
# contract does not cover: their statuses, and any other method on them (the bank does not list
# them for 405).
BANK_ROUTES = {
    ("POST", "/accounts"): {"201", "400", "401", "403", "409", "413", "415"},
    ("GET", "/accounts"): {"200", "401", "403"},
    ("GET", "/accounts/{id}"): {"200", "400", "401", "403", "404"},
}


# MARK: - The contract


class Contract:
    """The routes of schemas/openapi.yaml: documented statuses, security and request schemas."""

    def __init__(self, path):
        self.document = yaml.safe_load(pathlib.Path(path).read_text())
        self.operations = {}  # (service, method, template) -> operation
        for template, item in self.document["paths"].items():
            for method, operation in item.items():
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                for service in operation.get("tags", []):
                    self.operations[(service, method.upper(), template)] = operation

    def templates(self, service):
        return sorted({template for (s, _, template) in self.operations if s == service})

    def methods(self, service, template):
        return {m for (s, m, t) in self.operations if s == service and t == template}

    def statuses(self, service, method, template):
        return set(self.operations[(service, method, template)]["responses"].keys())

    def security(self, service, method, template):
        operation = self.operations[(service, method, template)]
        security = operation.get("security", self.document.get("security", []))
        return {name for requirement in security for name in requirement}

    def request_schema(self, service, method, template):
        body = self.operations[(service, method, template)].get("requestBody")
        if not body:
            return None
        return body["content"]["application/json"]["schema"]

    def resolve(self, schema):
        while "$ref" in schema:
            name = schema["$ref"].split("/")[-1]
            schema = self.document["components"]["schemas"][name]
        return schema

    def match(self, service, path):
        """The template `path` (no query) matches, or None."""
        segments = path.split("/")
        for template in self.templates(service):
            parts = template.split("/")
            if len(parts) == len(segments) and all(
                p == s or (p.startswith("{") and p.endswith("}")) for p, s in zip(parts, segments)
            ):
                return template
        return None


# MARK: - Generation


class Generator:
    """Valid values of the contract's schemas, bent towards the running services, and mutations."""

    def __init__(self, contract, rng, bank_url, dead_url, coordinator_url):
        self.contract = contract
        self.rng = rng
        self.bank_url = bank_url
        self.dead_url = dead_url
        self.coordinator_url = coordinator_url
        self.counter = 0

    def txid(self):
        self.counter += 1
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789._:-"
        tail = "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 12)))
        return f"fz-{self.counter}-{tail}".rstrip(".") or "fz"

    def payload(self):
        return {
            "op": self.rng.choice(["debit", "credit", "credit", "refund", ""]),
            "account": self.rng.choice(ACCOUNTS + ["nobody", ""]),
            "amount": self.rng.choice([1, 2, 5, 10, 0, -1, 10**12, 1.5]),
        }

    def value(self, schema, name="", depth=0):
        """A value satisfying `schema` most of the time (payloads and URLs are chosen, not drawn)."""
        schema = self.contract.resolve(schema)
        if name == "payload":
            return self.payload()
        if name in ("participant",):
            # Registered names and URLs mostly, now and then one the registry does not hold.
            return self.rng.choice([self.bank_url] * 4 + ["bank"] * 4 + [self.dead_url, "dead", self.bank_url + "/",
                                                                         "http://127.0.0.1:9/unregistered", "nobody"])
        if name == "coordinator":
            return self.coordinator_url
        if name in ("txid", "id"):
            return self.txid()
        if name == "timeoutMs":
            return self.rng.randint(1, 2000)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        if "oneOf" in schema:
            return self.value(self.rng.choice(schema["oneOf"]), name, depth)
        if "allOf" in schema:
            merged = {}
            for part in schema["allOf"]:
                value = self.value(part, name, depth)
                if isinstance(value, dict):
                    merged.update(value)
            return merged
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            out = {}
            for key, sub in schema.get("properties", {}).items():
                if key in schema.get("required", []) or self.rng.random() < 0.5:
                    out[key] = self.value(sub, key, depth + 1)
            return out
        if kind == "array":
            count = self.rng.randint(max(1, schema.get("minItems", 0)), min(3, schema.get("maxItems", 3)))
            return [self.value(schema["items"], name, depth + 1) for _ in range(count)]
        if kind == "integer":
            return self.rng.randint(schema.get("minimum", 0), min(schema.get("maximum", 1000), 1000))
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "string":
            return "s" + str(self.rng.randint(0, 99))
        return None

    # Mutations of a JSON document (structure) and of bytes.

    WEIRD_VALUES = [
        None, True, False, 0, -0.0, 1e308, -1, 2**63, 2**64 + 1, 1.5, "", " ", "\u0000", "\ud7ff",
        "é", "😀", "a" * 200, "x" * 5000, "http://", "https://[::1", "http://u:p@127.0.0.1:1",
        "http://127.0.0.1:1?q", "ftp://127.0.0.1", "../..", "%3A", "a:b", "a/b", [], {}, [[[]]],
        {"nested": {"deep": [1, {"x": None}]}},
    ]

    def mutate_document(self, doc):
        doc = copy.deepcopy(doc)
        for _ in range(self.rng.randint(1, 3)):
            containers = list(self._containers(doc))
            if not containers:
                return self.weird()
            container, key = self.rng.choice(containers)
            action = self.rng.randrange(5)
            if action == 0 and isinstance(container, dict) and key is not None:
                del container[key]
            elif action == 1 and key is not None:
                container[key] = self.weird()
            elif action == 2 and isinstance(container, dict):
                container[self.rng.choice(["extra", "id", "txid", "type", "op", "\u00e9", ""])] = self.weird()
            elif action == 3 and isinstance(container, list) and container:
                container.append(copy.deepcopy(self.rng.choice(container)))
            elif key is not None:
                container[key] = [copy.deepcopy(container[key]) for _ in range(self.rng.randint(0, 3))]
        return doc

    def weird(self):
        """One of WEIRD_VALUES, copied: a shared one mutated later would change them all."""
        return copy.deepcopy(self.rng.choice(self.WEIRD_VALUES))

    def _containers(self, node, depth=0):
        if depth > 32:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                yield node, key
                yield from self._containers(value, depth + 1)
            if not node:
                yield node, None
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield node, index
                yield from self._containers(value, depth + 1)
            if not node:
                yield node, None

    def mutate_bytes(self, data):
        data = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            action = self.rng.randrange(9)
            position = self.rng.randint(0, len(data)) if data else 0
            if action == 0 and data:
                del data[position:position + self.rng.randint(1, 8)]
            elif action == 1:
                data[position:position] = bytes([self.rng.randrange(256) for _ in range(self.rng.randint(1, 4))])
            elif action == 2 and data:
                data[min(position, len(data) - 1)] = self.rng.randrange(256)
            elif action == 3:
                token = self.rng.choice([b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"\\ud800",
                                         b"null", b"1e999", b"-", b"0", b"//", b"/*", b"\xff", b"\xc3", b"\xed\xa0\x80"])
                data[position:position] = token
            elif action == 4 and data:
                data = data[:position]
            elif action == 5:
                # A member repeated: the strict parser refuses duplicate names.
                match = re.search(rb'"[A-Za-z]+"\s*:\s*("[^"]*"|[0-9]+|true|false|null)', data)
                if match:
                    data[match.end():match.end()] = b"," + match.group(0)
            elif action == 6:
                depth = self.rng.choice([64, 127, 128, 129, 1000])
                data[position:position] = b"[" * depth + b"]" * depth
            elif action == 7:
                data = b" \t\r\n" + data + b"\n"
            else:
                data = data + data
            data = bytearray(data)
        return bytes(data)


# MARK: - The services


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_token(path):
    """The first token of a token file: one token per line, optionally `name:token`."""
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.split(":", 1)[1] if ":" in line else line
    raise SystemExit(f"fuzz: no token in {path}")


class Services:
    """The coordinator and the bank: started here (and stopped by pid), or given by URL."""

    def __init__(self, args):
        self.args = args
        self.processes = {}
        self.directory = None
        if args.coordinator_url and args.bank_url:
            self.coordinator_url = args.coordinator_url.rstrip("/")
            self.bank_url = args.bank_url.rstrip("/")
            self.tokens = self._tokens_from_files(args)
            return
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="arbiter-fuzz-"))
        # A credential per role: clients, the coordinator<->participant protocol, operators.
        files = {
            "coordinator_token_file": ("client-tokens", "fuzz-client:client-"),
            "participant_token_file": ("protocol-secret", "protocol-"),
            "coordinator_operator_token_file": ("coordinator-operator-tokens", "fuzz-ops:coordinator-operator-"),
            "bank_operator_token_file": ("bank-operator-tokens", "fuzz-ops:bank-operator-"),
        }
        for name, (file, prefix) in files.items():
            if getattr(args, name) is None:
                path = self.directory / file
                path.write_text(prefix + os.urandom(8).hex() + "\n")
                setattr(args, name, str(path))
        self.tokens = self._tokens_from_files(args)
        coordinator_port, bank_port = free_port(), free_port()
        self.coordinator_url = f"http://127.0.0.1:{coordinator_port}"
        self.bank_url = f"http://127.0.0.1:{bank_port}"
        # The participants the coordinator may call: the bank, and a port nobody listens on.
        self.dead_url = f"http://127.0.0.1:{free_port()}"
        registry = self.directory / "participants"
        registry.write_text(f"bank {self.bank_url}\ndead {self.dead_url}\n")
        build = pathlib.Path(args.build_dir)
        self._start("coordinator", [
            str(build / "arbiter"), "coordinator", "--data", str(self.directory / "coordinator"),
            "--port", str(coordinator_port), "--secret-file", args.participant_token_file,
            "--client-secret-file", args.coordinator_token_file, "--participants", str(registry),
            "--operator-secret-file", args.coordinator_operator_token_file,
            "--prepare-timeout-ms", "1000", "--retry-initial-ms", "50", "--retry-max-ms", "500",
            "--log-level", "error",
        ] + args.coordinator_arg)
        self._start("bank", [
            str(build / "bank-node"), "--data", str(self.directory / "bank"), "--port", str(bank_port),
            "--coordinator", self.coordinator_url, "--secret-file", args.participant_token_file,
            "--client-secret-file", args.coordinator_token_file,
            "--operator-secret-file", args.bank_operator_token_file,
            "--inquiry-timeout-ms", "300", "--inquiry-retry-initial-ms", "100", "--inquiry-retry-max-ms", "500",
            "--log-level", "error",
        ] + args.bank_arg)
        for url in (self.coordinator_url, self.bank_url):
            self._wait_healthy(url)

    @staticmethod
    def _tokens_from_files(args):
        return {
            "client": read_token(args.coordinator_token_file),
            "participant": read_token(args.participant_token_file),
            "coordinatorOperator": read_token(args.coordinator_operator_token_file),
            "bankOperator": read_token(args.bank_operator_token_file),
        }

    def _start(self, name, command):
        log = open(self.directory / f"{name}.log", "wb")
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _wait_healthy(self, url, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SystemExit(f"fuzz: {name} exited at start with {process.returncode}; see {self.directory}/{name}.log")
            try:
                status, _, _ = request(url, "GET", "/healthz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"fuzz: {url} did not become healthy in {seconds}s")

    def alive(self):
        """Names of the started processes that have exited."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self, keep):
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory and not keep:
            shutil.rmtree(self.directory, ignore_errors=True)


# MARK: - HTTP


_local = threading.local()


def request(base, method, path, headers=None, body=None, timeout=CLIENT_TIMEOUT_S):
    """One HTTP/1.1 exchange on this thread's kept-alive connection to `base`."""
    parsed = urllib.parse.urlsplit(base)
    key = (parsed.hostname, parsed.port)
    assert parsed.hostname == "127.0.0.1", "only loopback traffic"
    connections = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    for attempt in range(2):
        connection = connections.get(key)
        if connection is None:
            connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
            connections[key] = connection
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            data = response.read() if method != "HEAD" else b""
            result = (response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connections.pop(key, None)
            return result
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, http.client.CannotSendRequest,
                http.client.ResponseNotReady):
            # A kept-alive connection the server closed meanwhile: once more on a new one.
            connection.close()
            connections.pop(key, None)
            if attempt == 1:
                raise
        except Exception:
            connection.close()
            connections.pop(key, None)
            raise
    raise AssertionError("unreachable")


def raw_exchange(base, data, timeout=10):
    """Bytes that are not a well-formed request, on a fresh connection; the status line's code, or
    None when the server closed without answering (which is fine)."""
    parsed = urllib.parse.urlsplit(base)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while len(received) < 64:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    return match.group(1).decode() if match else None


# MARK: - The campaign


class Violation(Exception):
    pass


class Campaign:
    def __init__(self, args, services, contract, rng):
        self.args = args
        self.services = services
        self.contract = contract
        self.rng = rng
        self.generator = Generator(contract, rng, services.bank_url, getattr(services, "dead_url", f"http://127.0.0.1:{free_port()}"),
                                   services.coordinator_url)
        self.lock = threading.Lock()
        self.sent = 0
        self.refused = 0
        self.accepted = 0
        self.protocol_5xx = 0
        self.violations = []
        self.statuses = {}
        self.blocks_compared = 0
        self.blocks_unsettled = 0

    # Building requests.

    def base(self, service):
        return self.services.coordinator_url if service == "coordinator" else self.services.bank_url

    def valid_token(self, service, template, method):
        """The token a well-behaved caller sends on this route; None for an open route."""
        tokens = self.accepted_tokens(service, template, method)
        return tokens[0] if tokens else None

    def accepted_tokens(self, service, template, method):
        """Every token the route takes, the usual one first."""
        tokens = self.services.tokens
        key = (self.contract_service(service), method, template)
        if key not in self.contract.operations:
            # The bank's own routes take the clients' tokens; a method the route does not serve,
            # whatever the route takes.
            if service == "bank" and (method, template) in BANK_ROUTES:
                return [tokens["client"]]
            for other in METHODS:
                if (self.contract_service(service), other, template) in self.contract.operations:
                    return self.accepted_tokens(service, template, other)
            if service == "bank" and any(t == template for (_, t) in BANK_ROUTES):
                return [tokens["client"]]
            return []
        schemes = self.contract.security(*key)
        if service == "coordinator":
            accepted = []
            if "clientToken" in schemes:
                accepted.append(tokens["client"])
            if "protocolToken" in schemes:
                accepted.append(tokens["participant"])
            if "operatorToken" in schemes:
                accepted.append(tokens["coordinatorOperator"])
            return accepted
        if schemes == {"operatorToken"}:
            return [tokens["bankOperator"]]
        if "protocolToken" in schemes:
            return [tokens["participant"]]
        return []

    @staticmethod
    def contract_service(service):
        return "coordinator" if service == "coordinator" else "participant"

    def bad_authorization(self, service, template, method):
        good = self.valid_token(service, template, method) or "x"
        accepted = set(self.accepted_tokens(service, template, method))
        others = [t for t in self.services.tokens.values() if t not in accepted]
        return self.rng.choice([
            None, "", "Bearer", "Bearer ", "Bearer wrong", "Basic " + good, good, "Bearer " + good[:-1],
            "Bearer " + good + "x", "Bearer  " + good + " x", "bearer" + good,
        ] + (["Bearer " + self.rng.choice(others)] if others else []))

    def path_for(self, template):
        def parameter(_match):
            choice = self.rng.randrange(10)
            if choice < 5:
                return self.generator.txid()
            if choice == 5:
                return urllib.parse.quote(self.generator.txid(), safe="")
            return self.rng.choice([
                "a%3Ab", "a%3ab", "%2F", "..", ".", "a%00b", "%", "%zz", "a%20b", "%C3%A9", "x" * 129, "x" * 128,
                "%E2%80%8B", "a;b", "a,b", "~", "a%2Eb", "-", "_", ":::",
            ])
        return re.sub(r"\{[^}]+\}", parameter, template)

    def query_for(self, template):
        if template != "/v1/transactions" or self.rng.random() < 0.3:
            return ""
        items = []
        for _ in range(self.rng.randint(0, 3)):
            name = self.rng.choice(["state", "limit", "after", "after", "other", "limit"])
            value = self.rng.choice({
                "state": ["preparing", "committing", "aborting", "committed", "aborted", "done", ""],
                "limit": ["1", "100", "1000", "0", "1001", "-1", "ten", "1.0", ""],
                "after": ["0", "1", "17", "9223372036854775807", "9223372036854775808", "transfer-42", "-1", "", "%3A"],
                "other": ["x"],
            }[name])
            items.append(f"{name}={value}")
        return "?" + "&".join(items) if items else ""

    def body_for(self, service, method, template):
        schema = self.contract.request_schema(self.contract_service(service), method, template) if method != "GET" and \
            (self.contract_service(service), method, template) in self.contract.operations else None
        if service == "bank" and template == "/accounts" and method == "POST":
            document = {"id": self.rng.choice(ACCOUNTS + ["fz-" + str(self.rng.randrange(1000)), "", "a b"]),
                        "balance": self.rng.choice([0, 100, 10**9, -1, 1.5])}
        elif schema is None:
            return None
        else:
            document = self.generator.value(schema)
        if self.rng.random() < 0.5:
            document = self.generator.mutate_document(document)
        data = json.dumps(document, ensure_ascii=self.rng.random() < 0.5).encode("utf-8", "surrogatepass")
        if self.rng.random() < 0.3:
            data = self.generator.mutate_bytes(data)
        return data

    def loopback_only(self, template, body):
        """A body the coordinator would act on with a valid token must name only loopback
        participants: otherwise it is made to, or dropped (None)."""
        if template not in ("/v1/transactions", "/v1/transaction-batch") or body is None:
            return body
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return body  # The strict parser refuses whatever Python's lenient one refuses.
        except RecursionError:
            return body  # Nested deeper than Python goes, far beyond the parser's 128 levels.
        if not self._loopback(document):
            return None
        return body

    def _loopback(self, node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "participant" and isinstance(value, str) and "://" in value:
                    try:
                        host = urllib.parse.urlsplit(value.strip()).hostname
                    except ValueError:
                        return False
                    if host not in (None, "127.0.0.1"):
                        return False
                if not self._loopback(value):
                    return False
        elif isinstance(node, list):
            return all(self._loopback(value) for value in node)
        return True

    # One request, generated and checked.

    def routes(self):
        routes = []
        for template in self.contract.templates("coordinator"):
            for method in self.contract.methods("coordinator", template):
                routes.append(("coordinator", method, template))
        for template in self.contract.templates("participant"):
            for method in self.contract.methods("participant", template):
                routes.append(("bank", method, template))
        for (method, template) in BANK_ROUTES:
            routes.append(("bank", method, template))
        return routes

    def one(self, refused_only=False):
        service, method, template = self.rng.choice(self.routes())
        path = self.path_for(template)
        query = self.query_for(template)
        headers = {}
        body = self.body_for(service, method, template)
        expect_refusal = None
        kind = self.rng.randrange(10)
        if refused_only:
            kind = self.rng.choice([0, 1, 2, 3])
        if kind == 0 and self.valid_token(service, template, method):
            expect_refusal = "credentials"
            authorization = self.bad_authorization(service, template, method)
            if authorization is not None:
                headers["Authorization"] = authorization
        else:
            token = self.valid_token(service, template, method)
            if token:
                headers["Authorization"] = "Bearer " + token
        if kind == 1:
            method = self.rng.choice([m for m in METHODS if m not in self.served_methods(service, template)])
            expect_refusal = "method"
        if kind == 2 and body is not None:
            headers["Content-Type"] = self.rng.choice(["text/plain", "text/plain; charset=utf-8", "application/xml",
                                                       "application/x-www-form-urlencoded", "application/json-patch"])
            expect_refusal = expect_refusal or "media type"
        elif body is not None and self.rng.random() < 0.9:
            headers["Content-Type"] = self.rng.choice(["application/json"] * 6 + ["application/json; charset=utf-8", "APPLICATION/JSON"])
        if kind == 3 and body is not None and expect_refusal is None:
            body = body[:max(0, len(body) - self.rng.randint(1, 3))] + b"\x00{"
            expect_refusal = "not JSON"
        if refused_only and expect_refusal is None:
            return self.one(refused_only=True)
        if expect_refusal is None and "Authorization" in headers:
            body = self.loopback_only(template, body)
            if body is None:
                return self.one(refused_only)
        if self.rng.random() < 0.02 and not refused_only:
            return self.raw(service)
        try:
            status, answer_headers, answer = request(self.base(service), method, path + query, headers, body)
        except (OSError, http.client.HTTPException) as error:
            return self.violation(f"{service} {method} {path}: no answer ({error!r})")
        self.check(service, method, template, path, status, answer_headers, answer, expect_refusal)
        return status

    def served_methods(self, service, template):
        methods = set(self.contract.methods(self.contract_service(service), template)) \
            if self.contract.match(self.contract_service(service), template) == template else set()
        methods |= {m for (m, t) in BANK_ROUTES if t == template} if service == "bank" else set()
        return methods

    def raw(self, service):
        data = self.rng.choice([
            b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST /v1/prepare HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00",
        ])
        try:
            status = raw_exchange(self.base(service), data)
        except OSError as error:
            return self.violation(f"{service} raw {data[:20]!r}: {error!r}")
        self.count(status or "closed", refused=True)
        if status and status.startswith("5"):
            self.violation(f"{service} raw {data[:20]!r}: {status}")
        return status

    def check(self, service, method, template, path, status, headers, body, expect_refusal):
        code = str(status)
        contract_service = self.contract_service(service)
        served = self.served_methods(service, template)
        bank_route = service == "bank" and (method, template) in BANK_ROUTES
        documented = self.contract.statuses(contract_service, method, template) \
            if (contract_service, method, template) in self.contract.operations else \
            BANK_ROUTES.get((method, template), set())
        where = f"{service} {method} {path}"
        self.count(code, refused=code.startswith("4"))
        if code.startswith("5"):
            if code in documented and code in ("503", "504") and template in ("/v1/transactions", "/v1/transaction-batch"):
                with self.lock:
                    self.protocol_5xx += 1
                return
            return self.violation(f"{where}: {code} {body[:200]!r}")
        if method not in served:
            if service == "bank" and any(t == template for (_, t) in BANK_ROUTES):
                if code not in ("404", "405"):
                    self.violation(f"{where}: {code} for a method the bank's route does not serve")
                return
            if code != "405":
                return self.violation(f"{where}: {code}, not 405, for a method the contract does not list")
            allowed = {m.strip() for m in headers.get("allow", "").split(",") if m.strip()}
            if allowed != served:
                self.violation(f"{where}: 405 with Allow {headers.get('allow')!r}, the contract lists {sorted(served)}")
            return self.check_error_body(where, code, body, method)
        if code not in documented and not (code == "404" and self.path_unmatched(service, path)):
            # A path parameter that is not one segment once decoded can miss the route: 404.
            return self.violation(f"{where}: {code} is not documented (documented: {sorted(documented)}) {body[:200]!r}")
        if expect_refusal and not code.startswith("4"):
            return self.violation(f"{where}: {code} for a request refused by construction ({expect_refusal})")
        if expect_refusal == "credentials" and code not in ("401", "403") and not bank_route:
            # No known token: 401; another role's token: 403.
            return self.violation(f"{where}: {code}, not 401 or 403, without valid credentials")
        if code.startswith("4"):
            self.check_error_body(where, code, body, method)

    def path_unmatched(self, service, path):
        return self.contract.match(self.contract_service(service), path) is None and \
            not (service == "bank" and re.fullmatch(r"/accounts(/[^/]*)?", path))

    def check_error_body(self, where, code, body, method):
        if method == "HEAD":
            return
        try:
            error = json.loads(body)["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
        except Exception:
            self.violation(f"{where}: {code} without the JSON error body: {body[:200]!r}")

    def count(self, code, refused):
        with self.lock:
            self.sent += 1
            self.statuses[code] = self.statuses.get(code, 0) + 1
            if refused:
                self.refused += 1
            elif code and code.startswith("2"):
                self.accepted += 1

    def violation(self, message):
        with self.lock:
            self.violations.append(message)
            if len(self.violations) <= 20:
                print("VIOLATION:", message, flush=True)
        return None

    # State snapshots for the refused-only blocks.

    def snapshot(self):
        tokens = self.services.tokens
        state = {}
        status, _, body = request(self.services.bank_url, "GET", "/accounts", {"Authorization": "Bearer " + tokens["client"]})
        state["accounts"] = json.loads(body) if status == 200 else status
        status, _, body = request(self.services.bank_url, "GET", "/v1/operator/in-doubt", {"Authorization": "Bearer " + tokens["bankOperator"]})
        state["inDoubt"] = json.loads(body) if status == 200 else status
        listing, after = [], None
        for _ in range(1000):
            query = "?limit=1000" + (f"&after={after}" if after else "")
            status, _, body = request(self.services.coordinator_url, "GET", "/v1/transactions" + query,
                                      {"Authorization": "Bearer " + tokens["coordinatorOperator"]})
            if status != 200:
                listing.append(status)
                break
            page = json.loads(body)
            listing += page["transactions"]
            after = page.get("next")
            if not after:
                break
        state["transactions"] = listing
        return state

    def settled_snapshot(self, seconds=20):
        """A snapshot equal to the one taken half a second before; None when none comes in time."""
        deadline = time.monotonic() + seconds
        previous = self.snapshot()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            current = self.snapshot()
            if current == previous:
                return current
            previous = current
        return None

    def refused_block(self, size):
        before = self.settled_snapshot()
        if before is None:
            with self.lock:
                self.blocks_unsettled += 1
            return
        for _ in range(size):
            self.one(refused_only=True)
        after = self.snapshot()
        with self.lock:
            self.blocks_compared += 1
        if after != before:
            changed = [key for key in before if before[key] != after.get(key)]
            self.violation(f"a block of {size} refused requests changed {changed}")

    # The run.

    def setup_accounts(self):
        for account in ACCOUNTS:
            request(self.services.bank_url, "POST", "/accounts",
                    {"Authorization": "Bearer " + self.services.tokens["client"], "Content-Type": "application/json"},
                    json.dumps({"id": account, "balance": 1_000_000}).encode())

    def run(self, total, workers, deadline):
        self.setup_accounts()
        block = 200
        rounds = max(1, total // 5000)
        # Refused-only blocks at the start, between rounds of mixed traffic, and at the end.
        self.refused_block(block)
        mixed = max(rounds, total - (rounds + 1) * block)
        per_round = max(1, mixed // rounds)
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for round_index in range(rounds):
                count = per_round if round_index < rounds - 1 else mixed - per_round * (rounds - 1)
                futures = []
                for _ in range(count):
                    if time.monotonic() > deadline:
                        break
                    futures.append(pool.submit(self.one))
                for future in futures:
                    future.result()
                if time.monotonic() > deadline:
                    self.violation("the time limit passed before every request was sent")
                    break
                self.refused_block(block)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="100,000 requests instead of 10,000")
    parser.add_argument("--requests", type=int, help="how many requests (overrides --long)")
    parser.add_argument("--seed", type=int, default=None, help="the random seed (printed; default: from the time)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent connections per run (default 8)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds before the run is cut short (a violation); default 600, --long 3600")
    parser.add_argument("--build-dir", default=str(ROOT / ".build" / "debug"), help="where `arbiter` and `bank-node` are")
    parser.add_argument("--schema", default=str(ROOT / "schemas" / "openapi.yaml"))
    parser.add_argument("--coordinator-url", help="a running coordinator (with --bank-url); else one is started")
    parser.add_argument("--bank-url", help="a running bank node (with --coordinator-url)")
    parser.add_argument("--coordinator-token-file", help="clients' token at the coordinator")
    parser.add_argument("--participant-token-file", help="the coordinator-to-participant protocol token (and the participants' inquiries)")
    parser.add_argument("--coordinator-operator-token-file", help="the coordinator's operator token")
    parser.add_argument("--bank-operator-token-file", help="the bank's operator token")
    parser.add_argument("--coordinator-arg", action="append", default=[], help="an extra argument for `arbiter coordinator`")
    parser.add_argument("--bank-arg", action="append", default=[], help="an extra argument for `bank-node`")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    args = parser.parse_args()
    if bool(args.coordinator_url) != bool(args.bank_url):
        parser.error("give both --coordinator-url and --bank-url, or neither")
    if args.coordinator_url and not all([args.coordinator_token_file, args.participant_token_file,
                                         args.coordinator_operator_token_file, args.bank_operator_token_file]):
        parser.error("running services need every --…-token-file")
    total = args.requests or (100_000 if args.long else 10_000)
    time_limit = args.time_limit or (3600 if args.long else 600)
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"fuzz: seed {seed}, {total} requests, {args.workers} workers", flush=True)

    contract = Contract(args.schema)
    started = time.monotonic()
    services = Services(args)
    campaign = Campaign(args, services, contract, random.Random(seed))
    try:
        campaign.run(total, args.workers, started + time_limit)
        for url in (services.coordinator_url, services.bank_url):
            try:
                status, _, _ = request(url, "GET", "/healthz", timeout=10)
            except OSError as error:
                status = repr(error)
            if status != 200:
                campaign.violation(f"{url}/healthz answered {status} at the end")
        for name in services.alive():
            campaign.violation(f"the {name} process exited during the run")
    finally:
        services.stop(keep=args.keep or bool(campaign.violations))
    elapsed = time.monotonic() - started
    statuses = ", ".join(f"{code}: {count}" for code, count in sorted(campaign.statuses.items(), key=lambda item: str(item[0])))
    print(f"fuzz: statuses {{{statuses}}}; {campaign.accepted} accepted; documented 503/504 of submits: {campaign.protocol_5xx}; "
          f"refused-only blocks compared: {campaign.blocks_compared}, not settled: {campaign.blocks_unsettled}; "
          f"{elapsed:.1f} s, {campaign.sent / max(elapsed, 1e-9):.0f} requests/s", flush=True)
    if campaign.violations and services.directory:
        print(f"fuzz: logs and databases kept in {services.directory}")
    print(f"fuzz: {campaign.sent} requests, {campaign.refused} refused, {len(campaign.violations)} violations")
    return 1 if campaign.violations else 0


if __name__ == "__main__":
    sys.exit(main())
