"""``make serve``: the reference application on fixed loopback ports, until Ctrl-C.

It migrates and seeds the shared development database (as ``make demo`` does), then runs
the gateway on ``PORT`` (default 8000), the admin server on ``PORT+1`` and two
customer-services instances on ``PORT+2`` and ``PORT+3``, and prints where they are. The
demo accounts' password is ``EXAMPLE_DEMO_PASSWORD`` when set (``make serve
EXAMPLE_DEMO_PASSWORD=...``); otherwise they keep theirs (a new account gets a random one,
never shown). The services' output goes to ``.insightdb/logs/``. Ctrl-C stops them, each by
its PID; the shared database keeps running (``insightdb server stop`` stops it).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from examples.launcher import ServiceError, Stack, child_env, prepare_database

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Serve until interrupted; return the exit status."""
    port = int(os.environ.get("PORT", "8000"))
    env = child_env()
    try:
        for line in prepare_database(ROOT, env):
            print(line)
        stack = Stack(
            cwd=ROOT,
            env=env,
            log_dir=ROOT / ".insightdb" / "logs",
            customers=2,
            gateway_port=port,
            service_ports=(port + 1, port + 2, port + 3),
        )
        stack.start()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print("\nserving (Ctrl-C stops):")
        for service in stack.services:
            print(f"  {service.name:<10} {service.url}  pid {service.pid}  log {service.log}")
        print(f"\n  gateway health   {stack.gateway.url}/health/ready")
        print(f"  admin OpenAPI    {stack.admin.url}/docs")
        print(f"  customer OpenAPI {stack.customers[0].url}/docs")
        while all(s.running for s in stack.services):
            time.sleep(0.5)
        stopped = [s.name for s in stack.services if not s.running]
        print(f"error: {', '.join(stopped)} exited; see its log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        print("stopped the services")


if __name__ == "__main__":
    sys.exit(main())
