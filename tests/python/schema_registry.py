"""A stand-in for Confluent's Schema Registry, serving the documented endpoints the clients call
(no Confluent-compatible registry can be installed here; docker-compose runs the real one).

    python schema_registry.py <port file> [<state file> [<port>]]

Listens on loopback (on <port>, else a free one), writes the port to <port file>, and serves until
killed. With a state file, the registered schemas are kept there and read back on start, so a
registry stopped and started again serves the same ids, as the real one does. Endpoints:
  POST /subjects/{s}/versions    register (the same schema text in a subject keeps its id)
  POST /subjects/{s}             look a schema up in a subject
  GET  /schemas/ids/{id}         a schema by id ("schemaType" left out for Avro, as the registry does)
  GET  /schemas/guids/{guid}     a schema by GUID
  GET  /subjects/{s}/versions/latest, /subjects/{s}/versions/{n}
  GET  /subjects, GET|PUT /config, GET|PUT /config/{s}
With REGISTRY_BASIC_AUTH=user:password in the environment, every request must carry those HTTP
basic credentials (401 otherwise, as the registry answers); with REGISTRY_BEARER_TOKEN=t, the
header `Authorization: Bearer t`. With REGISTRY_TLS_DIR=d it serves HTTPS only, with a test CA
(d/ca.crt) and a certificate for 127.0.0.1 and localhost signed by it, made on first use. Errors are the registry's JSON bodies with its error codes (40401 subject, 40403 schema not found).
"""
import base64
import json
import os
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
schemas = []  # [{"id", "guid", "schema", "schemaType", "references"}], index = id - 1
subjects = {}  # subject -> [id of version 1, 2, ...]
config = {"compatibilityLevel": "BACKWARD"}


STATE = sys.argv[2] if len(sys.argv) > 2 else None


def save():
    if STATE:
        with open(STATE + ".tmp", "w") as f:
            json.dump({"schemas": schemas, "subjects": subjects}, f)
        os.replace(STATE + ".tmp", STATE)


def load():
    if STATE and os.path.exists(STATE):
        with open(STATE) as f:
            state = json.load(f)
        schemas.extend(state["schemas"])
        subjects.update(state["subjects"])


def schema_body(entry):
    body = {"schema": entry["schema"], "id": entry["id"], "guid": entry["guid"]}
    if entry["schemaType"] != "AVRO":
        body["schemaType"] = entry["schemaType"]
    if entry["references"]:
        body["references"] = entry["references"]
    return body


def find(schema, schema_type, references):
    for entry in schemas:
        if (entry["schema"], entry["schemaType"], entry["references"]) == (schema, schema_type, references):
            return entry
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self, code, message):
        self.reply(404, {"error_code": code, "message": message})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def path_only(self):
        return self.path.split("?", 1)[0]

    def authorized(self):
        basic = os.environ.get("REGISTRY_BASIC_AUTH")
        bearer = os.environ.get("REGISTRY_BEARER_TOKEN")
        if basic:
            want = "Basic " + base64.b64encode(basic.encode()).decode()
        elif bearer:
            want = "Bearer " + bearer
        else:
            return True
        if self.headers.get("Authorization", "") == want:
            return True
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.reply(401, {"error_code": 401, "message": "Unauthorized"})
        return False

    def do_GET(self):
        if not self.authorized():
            return
        path = self.path_only()
        with lock:
            if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                i = int(m[1])
                if 1 <= i <= len(schemas):
                    return self.reply(200, schema_body(schemas[i - 1]))
                return self.not_found(40403, f"Schema {i} not found")
            if m := re.fullmatch(r"/schemas/guids/([0-9a-f-]+)", path):
                for entry in schemas:
                    if entry["guid"] == m[1]:
                        return self.reply(200, schema_body(entry))
                return self.not_found(40403, f"Schema {m[1]} not found")
            if m := re.fullmatch(r"/subjects/([^/]+)/versions/(latest|\d+)", path):
                ids = subjects.get(m[1])
                if not ids:
                    return self.not_found(40401, f"Subject '{m[1]}' not found.")
                version = len(ids) if m[2] == "latest" else int(m[2])
                if not 1 <= version <= len(ids):
                    return self.not_found(40402, f"Version {m[2]} not found.")
                body = schema_body(schemas[ids[version - 1] - 1])
                body.update(subject=m[1], version=version)
                return self.reply(200, body)
            if path == "/subjects":
                return self.reply(200, sorted(subjects))
            if path == "/config" or path.startswith("/config/"):
                return self.reply(200, config)
        self.not_found(404, f"no endpoint {path}")

    def do_PUT(self):
        if not self.authorized():
            return
        body = self.body()
        if self.path_only().startswith("/config"):
            return self.reply(200, {"compatibility": body.get("compatibility", "BACKWARD")})
        self.not_found(404, "no endpoint")

    def do_POST(self):
        if not self.authorized():
            return
        path = self.path_only()
        body = self.body()
        schema = body.get("schema", "")
        schema_type = body.get("schemaType", "AVRO")
        references = body.get("references") or []
        with lock:
            if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                entry = find(schema, schema_type, references)
                if entry is None:
                    entry = {"id": len(schemas) + 1, "guid": str(uuid.uuid4()), "schema": schema,
                             "schemaType": schema_type, "references": references}
                    schemas.append(entry)
                ids = subjects.setdefault(m[1], [])
                if entry["id"] not in ids:
                    ids.append(entry["id"])
                save()
                return self.reply(200, {"id": entry["id"], "guid": entry["guid"]})
            if m := re.fullmatch(r"/subjects/([^/]+)", path):
                entry = find(schema, schema_type, references)
                ids = subjects.get(m[1], [])
                if entry is None or entry["id"] not in ids:
                    return self.not_found(40403, "Schema not found")
                body = schema_body(entry)
                body.update(subject=m[1], version=ids.index(entry["id"]) + 1)
                return self.reply(200, body)
        self.not_found(404, f"no endpoint {path}")


def tls_context(directory):
    """A server context with the certificate of `directory`, made (with its CA) on first use."""
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")
    if not os.path.exists(key_path):
        now = datetime.datetime.now(datetime.timezone.utc)
        valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))

        def certificate(name, key, issuer, issuer_key, is_ca, extra=()):
            builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(valid[0]).not_valid_after(valid[1])
                       .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
            for extension in extra:
                builder = builder.add_extension(extension, critical=False)
            return builder.sign(issuer_key, hashes.SHA256())

        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry test CA")])
        ca = certificate(ca_name, ca_key, ca_name, ca_key, True)
        names = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                             x509.DNSName("localhost")])
        cert = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), key,
                           ca_name, ca_key, False, [names])
        pem = serialization.Encoding.PEM
        with open(os.path.join(directory, "ca.crt"), "wb") as f:
            f.write(ca.public_bytes(pem))
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(pem))
        with open(key_path + ".tmp", "wb") as f:
            f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        os.replace(key_path + ".tmp", key_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


if __name__ == "__main__":
    load()
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3]) if len(sys.argv) > 3 else 0), Handler)
    if os.environ.get("REGISTRY_TLS_DIR"):
        server.socket = tls_context(os.environ["REGISTRY_TLS_DIR"]).wrap_socket(
            server.socket, server_side=True)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()
