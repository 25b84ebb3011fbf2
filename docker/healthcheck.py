"""The image's HEALTHCHECK: exit 0 when the server's /readyz answers 200, 1 otherwise.

Standard library only, so the image needs no curl. It reads the same BITFIT_HOST and
BITFIT_PORT the server listens on.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def readyz_url(env: dict[str, str]) -> str:
    host = env.get("BITFIT_HOST", "127.0.0.1")
    if host in ("", "0.0.0.0"):  # every IPv4 interface: ask the loopback one
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{env.get('BITFIT_PORT', '8000')}/readyz"


def main() -> int:
    url = readyz_url(dict(os.environ))
    # No proxies: an HTTP(S)_PROXY in the environment must not intercept a loopback probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=4) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:  # HTTPError (503 while loading) is a URLError
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
