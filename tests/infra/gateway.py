"""A Single Server gateway: a TLS-terminating PostgreSQL proxy in front of a real server.

Azure Single Server puts a gateway between clients and the server. It accepts a login only in the
form `user@servername`, strips the suffix, and forwards the session. This one does the same on
loopback: it answers SSLRequest, requires TLS, checks the suffix of the `user` startup parameter,
then opens its own TLS session to the backend with the bare user name and relays bytes.

Microsoft Entra logins: the gateway checks the token the client sends as its password (issued by the ARM
emulator and not expired, as Azure checks it) and logs in to the backend with the role's own password."""
import asyncio
import ssl
import struct
import threading

from .net import free_port

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
MSG_BAD_USER = ("Invalid Username specified. Please check the Username and retry connection. "
                "The Username should be in <username@hostname> format.")
MSG_NO_SSL = "SSL connection is required. Please specify SSL options and retry."


def error_response(message: str, code: str = "28000") -> bytes:
    pairs = ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    fields = b"".join(k + v.encode() + b"\0" for k, v in pairs)
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def parse_startup(payload: bytes) -> dict:
    parts = payload[4:].split(b"\0")  # skip the protocol version
    return {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2) if parts[i]}


def build_startup(protocol: bytes, params: dict) -> bytes:
    body = protocol + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


class SingleServerGateway:
    def __init__(self, server_name: str, backend_host: str, backend_port: int, certs, host: str = "127.0.0.1"):
        self.server_name = server_name
        self.backend = (backend_host, backend_port)
        self.host, self.port = host, free_port(host)
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_ctx.load_cert_chain(certs.cert, certs.key)
        self.backend_ctx = ssl.create_default_context(cafile=str(certs.ca))
        self.refused = []  # user names the gateway refused, for tests
        self.admits = lambda ip: True  # the firewall: set by the ARM emulator's world
        self.entra_roles = {}          # Entra login -> its backend password
        self.token_status = lambda token: "no token issuer"  # None when a token is good (the emulator's)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> "SingleServerGateway":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close():
            self._server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self):
        self._server = await asyncio.start_server(self._client, self.host, self.port)

    async def _client(self, reader, writer):
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _session(self, reader, writer):
        tls = False
        while True:
            length, code = struct.unpack("!II", await reader.readexactly(8))
            payload = struct.pack("!I", code) + await reader.readexactly(length - 8)
            if code == SSL_REQUEST and not tls:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self.server_ctx)
                tls = True
            elif code == GSSENC_REQUEST:
                writer.write(b"N")
                await writer.drain()
            elif code == CANCEL_REQUEST:
                await self._forward_cancel(struct.pack("!I", length) + payload)
                return
            else:
                break
        params = parse_startup(payload)
        user, _, server = params.get("user", "").rpartition("@")
        client_ip = writer.get_extra_info("peername")[0]
        if not tls:
            writer.write(error_response(MSG_NO_SSL))
        elif not self.admits(client_ip):
            writer.write(error_response(
                f'no pg_hba.conf entry for host "{client_ip}", user "{params.get("user", "")}", '
                f'database "{params.get("database", "")}", SSL on'))
        elif not user or server.lower() != self.server_name.lower():
            self.refused.append(params.get("user", ""))
            writer.write(error_response(MSG_BAD_USER))
        else:
            await self._relay(reader, writer, build_startup(payload[:4], {**params, "user": user}), user)
            return
        await writer.drain()

    async def _backend_tls(self):
        b_reader, b_writer = await asyncio.open_connection(*self.backend)
        b_writer.write(struct.pack("!II", 8, SSL_REQUEST))
        await b_writer.drain()
        if await b_reader.readexactly(1) != b"S":
            raise ConnectionError("backend refused TLS")
        await b_writer.start_tls(self.backend_ctx, server_hostname=self.backend[0])
        return b_reader, b_writer

    async def _relay(self, reader, writer, startup: bytes, user: str):
        b_reader, b_writer = await self._backend_tls()
        b_writer.write(startup)
        if user in self.entra_roles and not await self._entra_login(reader, writer, b_reader, b_writer, user):
            b_writer.close()
            return

        async def pump(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, b_writer), pump(b_reader, writer))

    async def _entra_login(self, reader, writer, b_reader, b_writer, user) -> bool:
        """The backend asks for a cleartext password: the client's token stands for the role's password."""
        asks = await _message(b_reader)
        writer.write(asks)
        await writer.drain()
        if asks[:1] != b"R" or struct.unpack("!I", asks[5:9])[0] != 3:
            return True
        answer = await _message(reader)
        if answer[:1] == b"p":
            refused = self.token_status(answer[5:-1].decode())
            if refused:
                writer.write(error_response(refused))
                await writer.drain()
                return False
            body = self.entra_roles[user].encode() + b"\0"
            answer = b"p" + struct.pack("!I", len(body) + 4) + body
        b_writer.write(answer)
        return True

    async def _forward_cancel(self, message: bytes):
        # PostgreSQL reads a cancel request before any authentication; plain TCP is enough.
        b_reader, b_writer = await asyncio.open_connection(*self.backend)
        b_writer.write(message)
        await b_writer.drain()
        b_writer.close()


async def _message(reader) -> bytes:
    """One protocol message: type byte, length, body."""
    head = await reader.readexactly(5)
    return head + await reader.readexactly(struct.unpack("!I", head[1:])[0] - 4)
