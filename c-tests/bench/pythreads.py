"""Python thread-pool workload for the mmpool benchmarks.

usage: python3 pythreads.py THREADS SCALE

Rounds of tasks on a concurrent.futures.ThreadPoolExecutor of THREADS
workers (a fresh pool each round, as a program that opens one per batch of
work does). A task builds records (dicts, strings, lists), groups, sorts
and serialises them, and returns a checksum and a payload of strings. The
main thread keeps the payloads of the last 64 tasks, checks each against
what its task must have produced, and drops it when it falls out of the
window, so objects built on the pool's threads are freed on the main
thread. Run with PYTHONMALLOC=malloc to send every object through malloc.
Prints one line that depends only on SCALE (not on THREADS);
exits with status 3 and "bench: CORRUPTION" on stderr when a payload or a
checksum is wrong.
"""

import collections
import json
import random
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
WINDOW = 64


def payload_item(task, j):
    return "%d:%d:%s" % (task, j, WORDS[(task * 7 + j) % len(WORDS)] * (1 + j % 5))


def task(i):
    rng = random.Random(i)
    n = 60 + rng.randrange(60)
    recs = []
    for k in range(n):
        recs.append({
            "id": k,
            "name": "task%d-item%d" % (i, k),
            "tags": [rng.choice(WORDS) for _ in range(rng.randrange(1, 5))],
            "score": rng.randrange(100000) / 100.0,
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 20))),
        })
    groups = {}
    for r in recs:
        for t in r["tags"]:
            groups.setdefault(t, []).append(r["id"])
    ranked = sorted(recs, key=lambda r: (-r["score"], r["name"]))[:20]
    text = json.dumps({"groups": groups, "top": [r["name"] for r in ranked]}, sort_keys=True)
    back = json.loads(text)
    words = collections.Counter(w for r in recs for w in r["text"].split())
    crc = zlib.crc32(text.encode())
    crc = zlib.crc32(repr(sorted(words.items())).encode(), crc)
    crc = zlib.crc32(str(len(back["top"])).encode(), crc)
    payload = [payload_item(i, j) for j in range(100 + i % 100)]
    return i, crc, payload


def corrupt(msg):
    sys.stderr.write("bench: CORRUPTION: pythreads: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(3)


def check(i, payload):
    if len(payload) != 100 + i % 100:
        corrupt("task %d payload has %d items" % (i, len(payload)))
    for j, s in enumerate(payload):
        if s != payload_item(i, j):
            corrupt("task %d payload item %d is %r" % (i, j, s[:40]))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: pythreads.py THREADS SCALE")
    threads = int(sys.argv[1])
    scale = float(sys.argv[2])
    rounds = 8
    per_round = max(4, int(64 * scale))
    window = collections.deque()
    crc = 0
    done = 0
    for rnd in range(rounds):
        first = rnd * per_round
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for expect, (i, c, payload) in enumerate(pool.map(task, range(first, first + per_round)),
                                                    first):
                if i != expect:
                    corrupt("result %d arrived as %d" % (expect, i))
                crc = zlib.crc32(b"%d:%d" % (i, c), crc)
                window.append((i, payload))
                if len(window) > WINDOW:
                    check(*window.popleft())
                done += 1
    while window:
        check(*window.popleft())
    print("pythreads tasks=%d checksum=%08x" % (done, crc))


if __name__ == "__main__":
    main()
