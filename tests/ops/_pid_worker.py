"""A bare gRPC worker for the supervisor tests: answers /test.Pid/Get with its PID.

Binds with ``grpc.so_reuseport`` = 1 like a media server worker, counts every RPC in
MediaMetrics (multiprocess mode when the supervisor set PROMETHEUS_MULTIPROC_DIR), stops on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
from grpc import aio

from webex_byova.media._metrics import MediaMetrics

metrics = MediaMetrics()


async def get_pid(request: bytes, context: object) -> bytes:
    metrics.stream_opened("grpc")
    metrics.stream_closed("grpc")
    return str(os.getpid()).encode()


async def main(port: int) -> None:
    server = aio.server(options=[("grpc.so_reuseport", 1)])
    handler = grpc.method_handlers_generic_handler(
        "test.Pid", {"Get": grpc.unary_unary_rpc_method_handler(get_pid)}
    )
    server.add_generic_rpc_handlers((handler,))
    if not server.add_insecure_port(f"127.0.0.1:{port}"):
        sys.exit(3)
    await server.start()
    # one write (atomic on a pipe): two workers' lines must not interleave
    sys.stdout.write(f"worker {os.getpid()} ready\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
