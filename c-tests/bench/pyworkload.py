"""Python allocation workload for the mmpool benchmarks.

usage: python3 pyworkload.py SCALE

Dict-, str- and object-heavy work: records as dicts, objects with
attribute dicts, string building and splitting, sorting, grouping, JSON
round trips, and a churned cache. Prints one line whose checksum depends
only on SCALE (run with PYTHONHASHSEED=0; nothing here depends on set
order anyway).
"""

import json
import random
import sys
import zlib


class Node:
    def __init__(self, key, payload, parent=None):
        self.key = key
        self.payload = payload
        self.parent = parent
        self.children = []
        self.meta = {"depth": 0 if parent is None else parent.meta["depth"] + 1}


def records(rng, n):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    out = []
    for i in range(n):
        tags = [rng.choice(words) + str(rng.randrange(100)) for _ in range(rng.randrange(1, 6))]
        out.append({
            "id": i,
            "name": "user%06d" % i,
            "email": "%s.%d@example.%s" % (rng.choice(words), i, rng.choice(["com", "org", "net"])),
            "tags": tags,
            "score": rng.randrange(1_000_000) / 1000.0,
            "bio": " ".join(rng.choice(words) for _ in range(rng.randrange(5, 40))),
        })
    return out


def step(rng, n, crc):
    recs = records(rng, n)
    # group and count
    by_tag = {}
    for r in recs:
        for t in r["tags"]:
            by_tag.setdefault(t, []).append(r["id"])
    top = sorted(by_tag.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:20]
    crc = zlib.crc32(repr(top).encode(), crc)
    # string churn
    lines = ["%s|%s|%s|%.3f" % (r["name"], r["email"].upper(), ",".join(r["tags"]), r["score"])
             for r in recs]
    blob = "\n".join(lines)
    parts = [ln.split("|") for ln in blob.split("\n")]
    crc = zlib.crc32(("".join(p[1][::-1] for p in parts[::7])).encode(), crc)
    # JSON round trip
    text = json.dumps(recs[: n // 2], sort_keys=True)
    back = json.loads(text)
    crc = zlib.crc32(str(sum(len(b["bio"]) for b in back)).encode(), crc)
    # an object tree
    root = Node("root", None)
    nodes = [root]
    for r in recs:
        parent = nodes[rng.randrange(len(nodes))]
        node = Node(r["name"], r["bio"].split(), parent)
        parent.children.append(node)
        nodes.append(node)
    depth = max(x.meta["depth"] for x in nodes)
    crc = zlib.crc32(b"%d" % depth, crc)
    # sort objects by computed keys
    nodes.sort(key=lambda x: (len(x.children), x.key))
    crc = zlib.crc32(nodes[-1].key.encode(), crc)
    # a churned cache: insertions and evictions
    cache = {}
    for i in range(n * 2):
        k = "k%d" % rng.randrange(n)
        cache[k] = [k] * rng.randrange(1, 8)
        if len(cache) > n // 4:
            cache.pop(next(iter(cache)))
    crc = zlib.crc32(("%d" % len(cache)).encode() + "".join(list(cache)[:50]).encode(), crc)
    return crc


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rounds = max(1, round(6 * scale))
    n = 12000 if scale >= 0.5 else max(500, int(24000 * scale))
    rng = random.Random(12345)
    crc = 0
    for _ in range(rounds):
        crc = step(rng, n, crc)
    print("python rounds=%d n=%d checksum=%08x" % (rounds, n, crc))


if __name__ == "__main__":
    main()
