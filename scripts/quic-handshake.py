"""One QUIC handshake between aioquic's client and server on loopback, for the sensor's test
captures (scripts/make-handshake-captures.sh records it). Needs `pip install aioquic`.

Usage: quic-handshake.py PORT CERT KEY SNI VERSION RETRY ALPN...
"""
import asyncio
import ssl
import sys

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration


async def main(port, cert, key, sni, version, retry, alpns):
    server_config = QuicConfiguration(is_client=False, alpn_protocols=alpns)
    server_config.load_cert_chain(cert, key)
    server = await serve("127.0.0.1", port, configuration=server_config, retry=retry)
    client_config = QuicConfiguration(
        is_client=True, alpn_protocols=alpns, server_name=sni, supported_versions=[version]
    )
    client_config.verify_mode = ssl.CERT_NONE
    async with connect("127.0.0.1", port, configuration=client_config) as client:
        await client.ping()
    server.close()


port, cert, key, sni, version, retry = sys.argv[1:7]
asyncio.run(main(int(port), cert, key, sni, int(version, 16), retry == "retry", sys.argv[7:]))
