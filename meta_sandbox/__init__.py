"""The Meta sandbox: a local HTTP server speaking the Graph API wire format (see docs/meta-sandbox.md).

Pure standard library and free of Django, so it also runs as ``python -m meta_sandbox``.
"""

from .server import Sandbox, SandboxHTTPServer, make_server, serve
from .store import SeedConfig, Store

__all__ = ["Sandbox", "SandboxHTTPServer", "SeedConfig", "Store", "make_server", "serve"]
