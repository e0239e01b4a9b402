#!/usr/bin/env python3
"""A stand-in for huggingface.co, for testing examples/download_model.sh offline.

usage: fake_hf_hub.py ROOT PORT_FILE LOG_FILE

Serves every repository found as ROOT/<owner>/<name>/ (a directory of files):
  GET /api/models/<owner>/<name>/tree/<rev>   the hub's listing: type, oid (git blob sha1),
                                             size, path; *.safetensors also get an "lfs"
                                             object with the sha256, as the hub does
  GET /<owner>/<name>/resolve/<rev>/<file>    small files directly; LFS files through a
                                             302 redirect to /cdn/<sha256>, like the hub's CDN
  GET /cdn/<sha256>                           honours "Range: bytes=N-" (206)
Binds 127.0.0.1 on a free port and writes the port number to PORT_FILE.  Each request
is logged to LOG_FILE as "METHOD PATH RANGE".

Misbehaviour for the tests, from files in ROOT (re-read on every request):
  ROOT/.cut_after     N: the next LFS download sends only N bytes, then drops the connection
                      (the file is removed once used)
  ROOT/.corrupt       serve LFS content with its last byte flipped (listing unchanged)
  ROOT/.no_ranges     ignore Range headers (answer 200 with everything)
  ROOT/.pretty        indent the listing JSON
"""
import hashlib
import http.server
import json
import os
import sys

ROOT, PORT_FILE, LOG_FILE = sys.argv[1], sys.argv[2], sys.argv[3]


def flag(name):
    return os.path.exists(os.path.join(ROOT, name))


def listing(repo_dir):
    entries = []
    for name in sorted(os.listdir(repo_dir)):
        full = os.path.join(repo_dir, name)
        if name.startswith(".") or not os.path.isfile(full):
            continue
        data = open(full, "rb").read()
        entry = {"type": "file", "size": len(data), "path": name}
        if name.endswith(".safetensors"):
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
                       % (sha256, len(data))).encode()
            entry["oid"] = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
            entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": len(pointer)}
        else:
            entry["oid"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        entries.append(entry)
    entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": "subdir"})
    return entries


def find_lfs(sha256):
    for owner in os.listdir(ROOT):
        for repo in (os.listdir(os.path.join(ROOT, owner)) if os.path.isdir(os.path.join(ROOT, owner)) else []):
            repo_dir = os.path.join(ROOT, owner, repo)
            for name in os.listdir(repo_dir):
                full = os.path.join(repo_dir, name)
                if name.endswith(".safetensors") and os.path.isfile(full):
                    data = open(full, "rb").read()
                    if hashlib.sha256(data).hexdigest() == sha256:
                        return data
    return None


class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, code, body, ctype="application/octet-stream", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        rng = self.headers.get("Range", "-")
        with open(LOG_FILE, "a") as log:
            log.write("GET %s %s\n" % (self.path, rng))
        parts = self.path.split("/")
        if self.path.startswith("/api/models/") and len(parts) == 7 and parts[5] == "tree":
            repo_dir = os.path.join(ROOT, parts[3], parts[4])
            if not os.path.isdir(repo_dir):
                return self.send(404, b'{"error":"Repository not found"}', "application/json")
            body = json.dumps(listing(repo_dir), indent=2 if flag(".pretty") else None,
                              separators=None if flag(".pretty") else (",", ":"))
            return self.send(200, body.encode(), "application/json")
        if len(parts) == 6 and parts[3] == "resolve":
            full = os.path.join(ROOT, parts[1], parts[2], parts[5])
            if not os.path.isfile(full) or parts[5].startswith("."):
                return self.send(404, b"Entry not found", "text/plain")
            data = open(full, "rb").read()
            if parts[5].endswith(".safetensors"):
                sha = hashlib.sha256(data).hexdigest()
                return self.send(302, b"", "text/plain", [("Location", "/cdn/" + sha)])
            return self.send(200, data)
        if len(parts) == 3 and parts[1] == "cdn":
            data = find_lfs(parts[2])
            if data is None:
                return self.send(404, b"no such object", "text/plain")
            if flag(".corrupt"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            start = 0
            if rng.startswith("bytes=") and rng.endswith("-") and not flag(".no_ranges"):
                start = int(rng[6:-1])
                if start >= len(data):
                    return self.send(416, b"", "text/plain", [("Content-Range", "bytes */%d" % len(data))])
            body = data[start:]
            cut_file = os.path.join(ROOT, ".cut_after")
            if os.path.exists(cut_file):
                cut = int(open(cut_file).read())
                os.remove(cut_file)
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
                self.end_headers()
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            if start:
                return self.send(206, body, extra=[("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))])
            return self.send(200, body)
        return self.send(404, b"not found", "text/plain")


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that hang up (curl after a cut transfer) are expected


server = Server(("127.0.0.1", 0), Hub)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
