#!/usr/bin/env python3
"""The registry's own ingest limit, for scripts/bench-small.sh: pushes every
image of an OCI layout into a registry with only the requests the
distribution API needs and nothing else: no HEADs, no pings, no retries.

Per blob, the first time it is seen: `POST /v2/REPO/blobs/uploads/` then one
monolithic `PUT LOCATION?digest=` with the bytes (two requests; the
registry does not take a body on the POST itself, which is tried first and
used when it does); each later repository that needs it: one
`POST …/blobs/uploads/?mount=DIGEST&from=REPO` (answered 201). Then each
manifest once per repository, children before their index (`PUT
/v2/REPO/manifests/REF`). Work is spread over N threads, each with one
kept-alive connection; each image is pushed whole by one thread, and a
blob's first upload finishes before any mount of it is tried.

With THREADS written pN (p8), the work is spread over N processes
instead, each with its own connection, so Python's interpreter lock does
not limit the client: first every distinct blob is uploaded into the
first repository that needs it, then each image gets its mounts and its
manifests (the same requests, in two phases).

Usage: raw-ingest.py LAYOUT HOST:PORT THREADS|pPROCESSES [USER:PASSWORD]
Prints: seconds requests blobs manifests (one line).
"""
import base64
import http.client
import json
import os
import sys
import threading
import time

layout, host = sys.argv[1], sys.argv[2]
procs = int(sys.argv[3][1:]) if sys.argv[3].startswith("p") else 0
threads = 0 if procs else int(sys.argv[3])
auth = None
if len(sys.argv) > 4:
    auth = "Basic " + base64.b64encode(sys.argv[4].encode()).decode()


in_worker = False  # set in the processes of pN, whose errors go back to the parent


def fail(message):
    if in_worker:
        raise RuntimeError(message)
    print(message, file=sys.stderr)
    os._exit(1)


def blob_path(d):
    algo, hexd = d.split(":", 1)
    return os.path.join(layout, "blobs", algo, hexd)


def read(d):
    with open(blob_path(d), "rb") as f:
        return f.read()


# The work: per tagged image, its blobs and its manifests (children first).
index = json.load(open(os.path.join(layout, "index.json")))
images = []
for m in index["manifests"]:
    name = m["annotations"]["org.opencontainers.image.ref.name"]
    repo_tag = name.split("/", 1)[1]
    repo, tag = repo_tag.rsplit(":", 1)
    blobs, docs = [], []

    def walk(desc, ref):
        body = read(desc["digest"])
        doc = json.loads(body)
        if "manifests" in doc:
            for c in doc["manifests"]:
                walk(c, c["digest"])
        else:
            for b in [doc["config"]] + doc["layers"]:
                if b["digest"] not in blobs:
                    blobs.append(b["digest"])
        docs.append((ref, desc["mediaType"], body))

    walk(m, tag)
    images.append((repo, blobs, docs))

lock = threading.Lock()
first_repo = {}  # digest -> (repo, Event set when uploaded)
requests = [0]
next_image = [0]


class Conn:
    def __init__(self):
        self.c = http.client.HTTPConnection(host)
        self.sent = 0

    def do(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if auth:
            h["Authorization"] = auth
        self.c.request(method, path, body=body, headers=h)
        r = self.c.getresponse()
        data = r.read()
        self.sent += 1
        with lock:
            requests[0] += 1
        return r.status, r.getheader("Location"), data


monolithic_post = [None]  # learnt on the first upload


def upload(c, repo, d):
    body = read(d)
    hdr = {"Content-Type": "application/octet-stream"}
    if monolithic_post[0] is not False:
        st, loc, _ = c.do("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", body, hdr)
        if st == 201:
            monolithic_post[0] = True
            return
        monolithic_post[0] = False
    else:
        st, loc, _ = c.do("POST", f"/v2/{repo}/blobs/uploads/")
    if st != 202:
        fail(f"POST upload {repo} {d}: {st}")
    if loc.startswith("http"):
        loc = "/" + loc.split("/", 3)[3]
    sep = "&" if "?" in loc else "?"
    st, _, data = c.do("PUT", f"{loc}{sep}digest={d}", body, hdr)
    if st != 201:
        fail(f"PUT upload {repo} {d}: {st} {data[:200]}")


def worker():
    try:
        work()
    except Exception as e:  # a thread's error ends the run: no figure
        fail(f"raw-ingest: {e!r}")


def work():
    c = Conn()
    while True:
        with lock:
            i = next_image[0]
            next_image[0] += 1
        if i >= len(images):
            return
        repo, blobs, docs = images[i]
        for d in blobs:
            with lock:
                seen = first_repo.get(d)
                if seen is None:
                    first_repo[d] = (repo, threading.Event())
            if seen is None:
                upload(c, repo, d)
                first_repo[d][1].set()
            elif seen[0] != repo:
                seen[1].wait()
                st, _, _ = c.do("POST", f"/v2/{repo}/blobs/uploads/?mount={d}&from={seen[0]}")
                if st != 201:  # not mounted: upload it here
                    upload(c, repo, d)
        for ref, media_type, body in docs:
            st, _, data = c.do("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})
            if st != 201:
                fail(f"PUT manifest {repo}:{ref}: {st} {data[:200]}")


def by_processes():
    import multiprocessing as mp

    first = {}  # digest -> the first repository that needs it
    for repo, blobs, _ in images:
        for d in blobs:
            first.setdefault(d, repo)
    ctx = mp.get_context("fork")
    with ctx.Pool(procs, initializer=proc_init) as pool:
        t0 = time.monotonic()
        try:
            n = sum(pool.imap_unordered(proc_upload, first.items(), chunksize=8))
            n += sum(pool.imap_unordered(proc_image, range(len(images)), chunksize=2))
        except Exception as e:  # a process's error ends the run: no figure
            fail(f"raw-ingest: {e}")
        t1 = time.monotonic()
    docs = sum(len(i[2]) for i in images)
    print(f"{t1 - t0:.3f} {n} {len(first)} {docs}")
    sys.exit(0)


def proc_init():
    global proc_conn, first_of, in_worker
    in_worker = True
    proc_conn = Conn()
    first_of = {}
    for repo, blobs, _ in images:
        for d in blobs:
            first_of.setdefault(d, repo)


def proc_upload(item):
    d, repo = item
    before = proc_conn.sent
    upload(proc_conn, repo, d)
    return proc_conn.sent - before


def proc_image(i):
    repo, blobs, docs = images[i]
    before = proc_conn.sent
    for d in blobs:
        if first_of[d] != repo:
            st, _, _ = proc_conn.do("POST", f"/v2/{repo}/blobs/uploads/?mount={d}&from={first_of[d]}")
            if st != 201:
                upload(proc_conn, repo, d)
    for ref, media_type, body in docs:
        st, _, data = proc_conn.do("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})
        if st != 201:
            fail(f"PUT manifest {repo}:{ref}: {st} {data[:200]}")
    return proc_conn.sent - before


if procs:
    by_processes()

t0 = time.monotonic()
ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
t1 = time.monotonic()
print(f"{t1 - t0:.3f} {requests[0]} {len(first_repo)} {sum(len(i[2]) for i in images)}")
