"""What libraries rely on in asyncio's TLS layer: a protocol may rebind
``data_received`` on the instance (the TLS layer calls the attribute each
time), and the layer's attributes asyncio's ``SSLProtocol`` keeps
(``_sslcontext``, the timeouts, ``_server_side``, ...) are there to read."""

import asyncio
import ssl

from asyncio import constants

# The certificates, contexts, both loops and the connected pair of test_tls.
from test_tls import certs, client_ctx, close_server, loop, run, server_ctx, tls_pair  # noqa: F401
from support import Recorder


class Rebinding(Recorder):
    """Swaps its data_received for another on the instance once connected."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self.rebound = bytearray()
        self.data_received = self.rebound.extend


def test_tls_calls_the_data_received_the_protocol_rebound_on_itself(loop, server_ctx, client_ctx):
    async def main():
        server, peer, transport, protocol = await tls_pair(
            server_ctx, client_ctx, client_protocol=Rebinding)
        peer.transport.write(b'through the rebound method')
        for _ in range(200):
            if len(protocol.rebound) == len(b'through the rebound method'):
                break
            await asyncio.sleep(0.01)
        transport.close()
        await close_server(server)
        return bytes(protocol.rebound), bytes(protocol.data)

    assert run(loop, main()) == (b'through the rebound method', b'')


def test_tls_layer_keeps_asyncios_attributes(loop, server_ctx, client_ctx):
    async def main():
        server, _, transport, _ = await tls_pair(
            server_ctx, client_ctx, ssl_handshake_timeout=7.5)
        layer = transport._ssl_protocol
        seen = (layer._sslcontext is client_ctx,
                layer._ssl_handshake_timeout, layer._ssl_shutdown_timeout,
                layer._server_side, layer._server_hostname, layer._app_protocol_is_buffer,
                layer._loop is asyncio.get_running_loop(),
                type(layer._incoming), type(layer._outgoing))
        transport.close()
        await close_server(server)
        return seen

    assert run(loop, main()) == (True, constants.SSL_HANDSHAKE_TIMEOUT,
                                 constants.SSL_SHUTDOWN_TIMEOUT, False, 'localhost', False,
                                 True, ssl.MemoryBIO, ssl.MemoryBIO)


def test_tls_server_connection_layer_keeps_the_servers_context(loop, server_ctx, client_ctx):
    layers = []

    class Peer(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            layers.append(transport._ssl_protocol)

    async def main():
        server, _, transport, _ = await tls_pair(
            server_ctx, client_ctx, server_protocol=Peer, ssl_handshake_timeout=7.5)
        seen = (layers[0]._sslcontext is server_ctx, layers[0]._ssl_handshake_timeout)
        transport.close()
        await close_server(server)
        return seen

    assert run(loop, main()) == (True, 7.5)
