"""A local HTTPS Azure Resource Manager for Microsoft.DBforPostgreSQL, backed by real servers.

It answers what `az` and our extension call: cloud metadata, a managed-identity token endpoint
(for `az login --identity`), subscriptions, and for `flexibleServers` and `servers` (Single):
server GET, databases list, firewall rules list/GET/PUT/DELETE and configurations GET/PUT, the
writes as long-running operations. Each emulated server points at a real PostgreSQL server: its
databases list and its parameters are read from that server. Payload shapes follow Microsoft's
REST examples in rest_examples/."""
import base64
import copy
import ipaddress
import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

from .net import free_port

EXAMPLES = Path(__file__).parent / "rest_examples"
PROVIDER = "Microsoft.DBforPostgreSQL"
TYPES = {"flexible": "flexibleServers", "single": "servers"}
SUBSCRIPTION = "00000000-0000-0000-0000-00000000c0de"
TENANT = "00000000-0000-0000-0000-0000000071d0"
AUDIENCE = "https://management.azext-pgdump.test/"
OSSRDBMS = "https://ossrdbms-aad.azext-pgdump.test"
AZURE_ONLY_PARAMETERS = {"azure.extensions": ""}
# What Flexible Server allows for the parameters of a load (where it narrows PostgreSQL's own range), and what it
# never lets its admin change (see shared/notes/azure-postgres.md).
AZURE_ALLOWED = {"max_wal_size": "2-65536", "checkpoint_timeout": "30-86400", "maintenance_work_mem": "1024-2097151",
                 "work_mem": "4096-2097151", "max_parallel_maintenance_workers": "0-64"}
AZURE_READ_ONLY = {"synchronous_commit", "fsync", "full_page_writes", "wal_recycle", "wal_init_zero",
                   "checkpoint_flush_after", "max_slot_wal_keep_size"}
DATA_TYPES = {"bool": "Boolean", "integer": "Integer", "real": "Numeric", "enum": "Enumeration", "string": "String"}


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def fake_jwt(resource: str, lifetime: int = 3600) -> str:
    """An unsigned JWT with the claims az reads (it checks no signature offline)."""
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    now = int(time.time())
    claims = {"tid": TENANT, "oid": str(uuid.uuid4()), "aud": resource, "iat": now, "exp": now + lifetime,
              "appid": "azext-pgdump-tests", "xms_mirid": "/emulated/identity"}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"


@dataclass
class EmulatedServer:
    kind: str                 # "flexible" or "single"
    resource_group: str
    name: str
    pg: object                # tests.infra.pgserver.PgServer behind it
    connect_host: str         # where clients reach it (the gateway for Single Server)
    connect_port: int
    fqdn: str
    location: str = "eastus"
    public_network_access: str = "Enabled"
    enforce_firewall: bool = False   # when True, only addresses covered by a rule may connect
    firewall_rules: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=lambda: dict(AZURE_ONLY_PARAMETERS))
    storage_gb: int = 128                 # properties.storage.storageSizeGB (P10)
    high_availability: str = "Disabled"   # properties.highAvailability.mode: Disabled, ZoneRedundant, SameZone
    replicas: list = field(default_factory=list)   # names of read replicas of this server

    @property
    def id(self) -> str:
        return (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{self.resource_group}/providers/{PROVIDER}/"
                f"{TYPES[self.kind]}/{self.name}")

    @property
    def type(self) -> str:
        return f"{PROVIDER}/{TYPES[self.kind]}"


class ArmEmulator:
    def __init__(self, certs, host: str = "127.0.0.1"):
        self.certs = certs
        self.host, self.port = host, free_port(host)
        self.servers: dict = {}
        self.resource_groups = {"azext-pgdump-rg"}
        self.requests: list = []          # (method, path, query) of every request, for tests
        self.token_resources: list = []   # resources a token was asked for
        self.operations: dict = {}
        self.entra_logins: list = []      # (PgServer, role) that accept the latest PostgreSQL token
        self.token_lifetime = 3600        # seconds a token lives (tests of long runs shorten it)
        self.tokens: dict = {}            # PostgreSQL token -> when it expires (a gateway checks them)
        self.faults: list = []            # [method, path pattern, status, times left]: see fail()
        self.lock = threading.Lock()
        self._httpd = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def add_server(self, server: EmulatedServer) -> EmulatedServer:
        self.resource_groups.add(server.resource_group)
        self.servers[(server.resource_group.lower(), server.kind, server.name.lower())] = server
        return server

    def start(self) -> "ArmEmulator":
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.certs.cert, self.certs.key)
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def metadata(self) -> dict:
        return {
            "name": "AzextPgdumpLocal", "resourceManager": self.url + "/", "portal": self.url + "/portal",
            "authentication": {"loginEndpoint": self.url + "/aad", "audiences": [AUDIENCE], "tenant": "common",
                               "identityProvider": "AAD"},
            "ossrdbmsResourceId": OSSRDBMS, "media": self.url + "/media", "graphAudience": self.url + "/graph",
            "graph": self.url + "/graph", "batch": self.url + "/batch", "gallery": self.url + "/gallery",
            "sqlManagement": self.url + "/sql", "microsoftGraphResourceId": self.url + "/msgraph",
            "suffixes": {"postgresqlServerEndpoint": "postgres.azext-pgdump.test", "storage": "storage.test",
                         "keyVaultDns": "vault.test", "acrLoginServer": "acr.test",
                         "sqlServerHostname": "sql.test"},
        }

    # ----- resources -------------------------------------------------------------------------
    def server_body(self, s: EmulatedServer) -> dict:
        if s.kind == "flexible":
            body = copy.deepcopy(_example("flexible-ServersGet.json")["responses"]["200"]["body"])
            props = body["properties"]
            props.update(version=str(s.pg.major), minorVersion=str(s.pg.version_num() % 100), state="Ready")
            props["network"]["publicNetworkAccess"] = s.public_network_access
            props["storage"]["storageSizeGB"] = s.storage_gb
            props["highAvailability"] = {"mode": s.high_availability,
                                         "state": "NotEnabled" if s.high_availability == "Disabled" else "Healthy"}
        else:
            body = copy.deepcopy(_example("single-ServerGet.json")["responses"]["200"]["body"])
            props = body["properties"]
            props.update(version=str(s.pg.major), userVisibleState="Ready",
                         publicNetworkAccess=s.public_network_access)
        props.update(fullyQualifiedDomainName=s.fqdn, administratorLogin=s.pg.admin)
        body.update(id=s.id, name=s.name, type=s.type, location=s.location)
        return body

    def replica_body(self, s: EmulatedServer, name: str) -> dict:
        """A read replica of `s` (Replicas_ListByServer): a server of its own, in the replica role."""
        body = self.server_body(s)
        body.update(name=name, id=s.id[:-len(s.name)] + name)
        body["properties"]["replica"] = {"role": "AsyncReplica", "capacity": 0}
        body["properties"]["replicationRole"] = "AsyncReplica"
        return body

    def databases_body(self, s: EmulatedServer) -> dict:
        rows = s.pg.execute("SELECT datname, pg_encoding_to_char(encoding), datcollate FROM pg_database "
                            "WHERE datname <> 'template0' ORDER BY datname")
        return {"value": [{"id": f"{s.id}/databases/{name}", "name": name, "type": f"{s.type}/databases",
                           "properties": {"charset": charset, "collation": collation}}
                          for name, charset, collation in rows]}

    def rule_body(self, s: EmulatedServer, name: str) -> dict:
        start, end = s.firewall_rules[name]
        return {"id": f"{s.id}/firewallRules/{name}", "name": name, "type": f"{s.type}/firewallRules",
                "properties": {"startIpAddress": start, "endIpAddress": end}}

    def parameter_body(self, s: EmulatedServer, name: str) -> Optional[dict]:
        """Configurations_Get as Flexible Server answers it, from the real server's pg_settings."""
        if name in s.parameters:
            return self._body_of(s, name, {"value": s.parameters[name], "defaultValue": AZURE_ONLY_PARAMETERS.get(
                name, ""), "dataType": "Set", "description": "Azure service parameter", "source": "user-override",
                "isReadOnly": False, "isDynamicConfig": True, "isConfigPendingRestart": False, "allowedValues": ""})
        rows = s.pg.execute("SELECT setting, boot_val, vartype, short_desc, source, context, pending_restart, "
                            "coalesce(unit, ''), min_val, max_val, array_to_string(enumvals, ',') FROM pg_settings "
                            "WHERE name = %s", (name,))
        if not rows:
            return None
        value, default, vartype, desc, source, context, pending, unit, low, high, words = rows[0]
        allowed = AZURE_ALLOWED.get(name) or ("on,off" if vartype == "bool" else words if vartype == "enum" else
                                              f"{low}-{high}" if low is not None else "")
        return self._body_of(s, name, {
            "value": value, "defaultValue": default, "dataType": DATA_TYPES.get(vartype, "String"),
            "description": desc, "source": "system-default" if source == "default" else "user-override",
            "isReadOnly": name in AZURE_READ_ONLY or context == "internal",
            "isDynamicConfig": context not in ("postmaster", "internal"), "isConfigPendingRestart": bool(pending),
            "allowedValues": allowed, "unit": unit.upper(),
            "documentationLink": f"https://www.postgresql.org/docs/{s.pg.major}/runtime-config.html"})

    @staticmethod
    def _body_of(s: EmulatedServer, name: str, props: dict) -> dict:
        return {"id": f"{s.id}/configurations/{name}", "name": name, "type": f"{s.type}/configurations",
                "properties": props}

    def set_firewall_rule(self, s, name, start=None, end=None, delete=False):
        with self.lock:
            if delete:
                s.firewall_rules.pop(name, None)
            else:
                s.firewall_rules[name] = (start, end)
        self.apply_firewall(s)

    def fail(self, method: str, pattern: str, status: int, times: int = 1) -> None:
        """Answer the next `times` requests of `method` whose path matches `pattern` with `status`
        (429 throttling, 500 a server error, 403 missing rights, 409 ServerBusy), as ARM does, before recovering."""
        self.faults.append([method, re.compile(pattern, re.I), status, times])

    def fault_for(self, method: str, path: str) -> Optional[int]:
        with self.lock:
            for fault in self.faults:
                if fault[0] == method and fault[1].search(path) and fault[3] > 0:
                    fault[3] -= 1
                    return fault[2]
        return None

    def token_status(self, token: str) -> Optional[str]:
        """None for a PostgreSQL token this emulator issued that has not expired; else why it is refused."""
        expires = self.tokens.get(token)
        if expires is None:
            return "The access token is invalid."
        if time.time() >= expires:
            return "The access token has expired. Acquire a new token and retry."
        return None

    def accept_entra_token(self, token: str) -> None:
        """Entra sign-in on a test server: the Entra login's password becomes the token just issued."""
        for pg, role in self.entra_logins:
            pg.execute(f"ALTER ROLE {role} PASSWORD '{token}'")

    def admitted_cidrs(self, s: EmulatedServer):
        if not s.enforce_firewall:
            return None
        cidrs = []
        for start, end in s.firewall_rules.values():
            cidrs += [str(n) for n in ipaddress.summarize_address_range(ipaddress.IPv4Address(start),
                                                                        ipaddress.IPv4Address(end))]
        return cidrs

    def admits(self, s: EmulatedServer, ip: str) -> bool:
        cidrs = self.admitted_cidrs(s)
        return cidrs is None or any(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(c) for c in cidrs)

    def apply_firewall(self, s: EmulatedServer) -> None:
        """Flexible Server: the rules become pg_hba entries of the real server; Single Server: the
        gateway asks admits() for every connection."""
        if s.kind == "flexible":
            s.pg.set_firewall(self.admitted_cidrs(s))

    def set_parameter(self, s, name, value):
        if name in AZURE_ONLY_PARAMETERS:
            s.parameters[name] = value
        else:
            s.pg.execute(f"ALTER SYSTEM SET {name} = %s".replace("%s", "'" + value.replace("'", "''") + "'"))
            s.pg.execute("SELECT pg_reload_conf()")

    def start_operation(self, apply: Callable) -> str:
        op_id = str(uuid.uuid4())
        self.operations[op_id] = {"apply": apply, "polls": 0, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return op_id


RESOURCE_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.DBforPostgreSQL/"
    r"(?P<type>flexibleServers|servers)/(?P<name>[^/]+)(?:/(?P<child>databases|firewallRules|configurations|replicas)"
    r"(?:/(?P<child_name>[^/]+))?)?$", re.IGNORECASE)


LIST_RE = re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.DBforPostgreSQL/(?P<type>flexibleServers|servers)$",
                     re.IGNORECASE)


class _Handler(BaseHTTPRequestHandler):
    emulator: ArmEmulator = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet; requests are recorded instead
        pass

    def _send(self, status: int, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str):
        self._send(status, {"error": {"code": code, "message": message}})

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def do_GET(self):
        self._dispatch("GET")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        em = self.emulator
        em.requests.append((method, url.path, query))
        if url.path.rstrip("/") == "/metadata/endpoints":
            return self._send(200, em.metadata())
        if url.path == "/msi/token":
            return self._token(query)
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self._error(401, "AuthenticationFailed", "Authentication failed: no bearer token.")
        fault = em.fault_for(method, url.path)
        if fault:
            return self._fault(fault)
        if url.path.startswith("/operations/"):
            return self._operation(url.path.rsplit("/", 1)[-1])
        if url.path.rstrip("/").lower() == "/subscriptions":
            return self._send(200, {"value": [self._subscription()]})
        if url.path.rstrip("/").lower() == "/tenants":
            return self._send(200, {"value": [{"id": f"/tenants/{TENANT}", "tenantId": TENANT}]})
        if url.path.rstrip("/").lower() == f"/subscriptions/{SUBSCRIPTION}":
            return self._send(200, self._subscription())
        listing = LIST_RE.match(url.path)
        if listing and method == "GET":
            kind = "flexible" if listing["type"].lower() == "flexibleservers" else "single"
            return self._send(200, {"value": [em.server_body(s) for s in em.servers.values() if s.kind == kind]})
        match = RESOURCE_RE.match(url.path)
        if not match:
            return self._error(404, "NotFound", f"The emulator does not serve {method} {url.path}.")
        return self._resource(method, match, query)

    def _fault(self, status: int):
        self._body()  # read what was sent, or the connection's next request starts inside it
        if status == 429:
            return self._send(429, {"error": {"code": "TooManyRequests", "message": "The request is being "
                                              "throttled."}}, {"Retry-After": "1"})
        if status == 409:   # what Azure answers a change while another operation runs on the server
            return self._error(409, "ServerBusy", "Server is busy with another operation. Please try again later.")
        if status == 403:
            return self._error(403, "AuthorizationFailed", "The client does not have authorization to perform "
                                                           "action 'Microsoft.DBforPostgreSQL/firewallRules/write'.")
        return self._error(status, "InternalServerError", "An internal server error occurred.")

    def _subscription(self) -> dict:
        return {"id": f"/subscriptions/{SUBSCRIPTION}", "subscriptionId": SUBSCRIPTION, "tenantId": TENANT,
                "displayName": "azext-pgdump emulated subscription", "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "x",
                                         "spendingLimit": "Off"}, "authorizationSource": "RoleBased"}

    def _token(self, query: dict):
        if not self.headers.get("X-IDENTITY-HEADER"):
            return self._error(401, "Unauthorized", "X-IDENTITY-HEADER missing")
        resource = query.get("resource", "")
        self.emulator.token_resources.append(resource)
        lifetime = self.emulator.token_lifetime if resource.rstrip("/") == OSSRDBMS else 3600
        token = fake_jwt(resource, lifetime)
        if resource.rstrip("/") == OSSRDBMS:
            self.emulator.tokens[token] = time.time() + lifetime
            self.emulator.accept_entra_token(token)
        self._send(200, {"access_token": token, "expires_on": str(int(time.time()) + lifetime),
                         "expires_in": str(lifetime),
                         "resource": resource, "token_type": "Bearer", "client_id": "azext-pgdump-tests"})

    def _operation(self, op_id: str):
        op = self.emulator.operations.get(op_id)
        if op is None:
            return self._error(404, "NotFound", "no such operation")
        op["polls"] += 1
        # One InProgress answer first, so clients really poll; the change lands when it succeeds.
        status = "InProgress" if op["polls"] == 1 else "Succeeded"
        if status == "Succeeded" and op["apply"]:
            op["apply"]()
            op["apply"] = None
        self._send(200, {"name": op_id, "status": status, "startTime": op["started"]},
                   {"Retry-After-Ms": "100"} if status == "InProgress" else None)

    def _accepted(self, apply: Callable):
        em = self.emulator
        op_id = em.start_operation(apply)
        api = urlsplit(self.path).query
        op_url = f"{em.url}/operations/{op_id}?{api}"
        self._send(202, None, {"Azure-AsyncOperation": op_url, "Location": op_url, "Retry-After-Ms": "100"})

    def _resource(self, method: str, m, query: dict):
        em = self.emulator
        rg, kind = m["rg"], "flexible" if m["type"].lower() == "flexibleservers" else "single"
        if m["sub"] != SUBSCRIPTION:
            return self._error(404, "SubscriptionNotFound", f"The subscription '{m['sub']}' could not be found.")
        if rg.lower() not in {g.lower() for g in em.resource_groups}:
            return self._error(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        server = em.servers.get((rg.lower(), kind, m["name"].lower()))
        if server is None:
            return self._error(404, "ResourceNotFound",
                               f"The Resource '{PROVIDER}/{m['type']}/{m['name']}' under resource group '{rg}' "
                               "was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")
        child, child_name = m["child"], m["child_name"]
        if child is None and method == "GET":
            return self._send(200, em.server_body(server))
        if child and child.lower() == "databases" and method == "GET" and not child_name:
            return self._send(200, em.databases_body(server))
        if child and child.lower() == "firewallrules":
            return self._firewall(method, server, child_name)
        if child and child.lower() == "configurations":
            return self._configuration(method, server, child_name)
        if child and child.lower() == "replicas" and method == "GET":
            return self._send(200, {"value": [em.replica_body(server, n) for n in server.replicas]})
        return self._error(405, "MethodNotAllowed", f"{method} is not supported here.")

    def _firewall(self, method, server, name):
        em = self.emulator
        if not name and method == "GET":
            return self._send(200, {"value": [em.rule_body(server, n) for n in sorted(server.firewall_rules)]})
        if method == "GET":
            if name not in server.firewall_rules:
                return self._error(404, "ResourceNotFound", f"Firewall rule '{name}' was not found.")
            return self._send(200, em.rule_body(server, name))
        if method == "PUT":
            if server.kind == "flexible" and server.public_network_access != "Enabled":
                return self._error(400, "FirewallRuleNotSupported",
                                   "Firewall rules are not supported on a server with public network access disabled.")
            props = self._body().get("properties", {})
            start, end = props.get("startIpAddress"), props.get("endIpAddress")
            return self._accepted(lambda: em.set_firewall_rule(server, name, start, end))
        if method == "DELETE":
            if name not in server.firewall_rules:
                return self._send(204)
            return self._accepted(lambda: em.set_firewall_rule(server, name, delete=True))
        return self._error(405, "MethodNotAllowed", f"{method} is not supported here.")

    def _configuration(self, method, server, name):
        em = self.emulator
        if not name and method == "GET":
            names = [r[0] for r in server.pg.execute("SELECT name FROM pg_settings ORDER BY name")]
            return self._send(200, {"value": [em.parameter_body(server, n) for n in [*server.parameters, *names]]})
        body = em.parameter_body(server, name)
        if body is None:
            return self._error(404, "ResourceNotFound", f"Configuration '{name}' was not found.")
        if method == "GET":
            return self._send(200, body)
        if method in ("PUT", "PATCH"):
            value = str(self._body().get("properties", {}).get("value", ""))
            props = body["properties"]
            if props["isReadOnly"]:
                return self._error(400, "ServerParameterReadOnly", f"The server parameter '{name}' is read-only.")
            allowed = props.get("allowedValues") or ""
            if allowed and props["dataType"] in ("Integer", "Boolean", "Enumeration") and \
                    not _allowed(allowed, value):
                return self._error(400, "InvalidParameterValue",
                                   f"The value '{value}' for '{name}' is not within the allowed values '{allowed}'.")
            return self._accepted(lambda: em.set_parameter(server, name, value))
        return self._error(405, "MethodNotAllowed", f"{method} is not supported here.")


def _allowed(allowed: str, value: str) -> bool:
    """Azure's check of allowedValues: comma-separated ranges ("2-65536") and words ("on,off")."""
    for item in allowed.split(","):
        span = re.fullmatch(r"(-?[0-9.]+)-(-?[0-9.]+)", item.strip())
        if span and re.fullmatch(r"-?[0-9.]+", value):
            if float(span.group(1)) <= float(value) <= float(span.group(2)):
                return True
        elif item.strip().lower() == value.lower():
            return True
    return False
