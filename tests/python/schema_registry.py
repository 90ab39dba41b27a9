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
basic credentials (401 otherwise, as the registry answers). Errors are the registry's JSON bodies with its error codes (40401 subject, 40403 schema not found).
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
        want = os.environ.get("REGISTRY_BASIC_AUTH")
        if not want:
            return True
        given = self.headers.get("Authorization", "")
        if given == "Basic " + base64.b64encode(want.encode()).decode():
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


if __name__ == "__main__":
    load()
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3]) if len(sys.argv) > 3 else 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()
