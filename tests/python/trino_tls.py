"""The `trino` Python client over TLS against orderlake-server's Trino front door.

Usage: trino_tls.py HOST PORT USER PASSWORD CA_FILE

A client that trusts the test CA signs in with a password and queries; a plaintext request to the
same port gets no answer. Prints one JSON line per check and exits non-zero on the first failure.
"""

import json
import os
import sys

import requests
import trino
from trino.auth import BasicAuthentication


def check(name, ok, detail=""):
    print(json.dumps({"check": name, "ok": bool(ok), "detail": str(detail)[:500]}), flush=True)
    if not ok:
        sys.exit(1)


def main():
    host, port, user, password, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    # requests lets these variables override a session's `verify` (the client's CA file).
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(variable, None)
    conn = trino.dbapi.connect(
        host=host, port=port, user=user, auth=BasicAuthentication(user, password),
        http_scheme="https", verify=ca, catalog="archive", schema="oms",
    )
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM orders")
    check("query over TLS", cur.fetchall() == [[3]])
    try:
        requests.post(f"http://{host}:{port}/v1/statement", data="SELECT 1", timeout=5)
        check("plaintext refused", False, "a plaintext request got an answer")
    except requests.exceptions.RequestException as e:
        check("plaintext refused", True, e)
    print(json.dumps({"check": "all", "ok": True}), flush=True)


if __name__ == "__main__":
    main()
