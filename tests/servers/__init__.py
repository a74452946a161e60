"""Real servers on 127.0.0.1 for tests and benchmarks.

- `NginxServer`: Debian's nginx (dav PUT/DELETE, JSON autoindex), optional TLS with a CA
  made by the `openssl` CLI.
- `FaultServer`: the project's own asyncio HTTP/1.1 server that stores objects in memory
  and injects faults (5xx, 429 with Retry-After, resets, short bodies, stalls, corruption)
  from a per-path queue, recording every request.
- `FaultProxy` / `FaultProxyProcess`: an asyncio reverse proxy in front of any of them that
  injects random faults (seeded) and counts them; the second runs it in a child process.

No pytest import here: benchmarks use these too.
"""
from .faultproxy import FaultProxy, FaultProxyProcess
from .faultserver import FaultServer, RecordedRequest
from .nginx import NginxServer, ServerStartError, free_port

__all__ = ["FaultProxy", "FaultProxyProcess", "FaultServer", "RecordedRequest", "NginxServer",
           "ServerStartError", "free_port"]
