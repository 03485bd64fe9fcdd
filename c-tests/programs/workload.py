#!/usr/bin/python3
"""Allocator workload for scripts/test-programs.sh (python family).

Deterministic: every result printed is a digest that depends only on fixed
seeds, never on addresses, timing or thread scheduling.  Runs once natively
and once under LD_PRELOAD=libmmpool.so; the two stdouts must be identical.
"""
import hashlib
import json
import multiprocessing
import os
import random
import re
import subprocess
import sys
import threading
from collections import Counter, OrderedDict, defaultdict, deque


def digest(obj):
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def word(rng, lo=2, hi=12):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(lo, hi)))


def dict_list_str_churn(seed, rounds):
    rng = random.Random(seed)
    table = {}
    lists = []
    acc = 0
    for r in range(rounds):
        # grow / shrink a dict with string keys and mixed values
        for _ in range(400):
            k = word(rng)
            op = rng.random()
            if op < 0.55:
                table[k] = [rng.randint(0, 1 << 40) for _ in range(rng.randint(0, 20))]
            elif op < 0.8:
                table.pop(k, None)
            else:
                table.setdefault(k, []).append(k * rng.randint(1, 30))
        # lists of varying sizes, some huge to hit large allocations
        lists.append([str(i) * (i % 7) for i in range(rng.randint(10, 3000))])
        if len(lists) > 40:
            del lists[rng.randrange(len(lists))]
        if r % 50 == 0:
            big = bytearray(rng.randint(100_000, 3_000_000))
            big[-1] = r & 0xFF
            acc += big[-1] + len(big)
            s = "-".join(table.keys())
            acc += len(s.upper().split("-"))
    acc += sum(len(v) for v in table.values())
    acc += sum(len(x) for x in lists)
    return {"keys": len(table), "acc": acc, "d": digest(sorted(table.items())[:500])}


def json_roundtrips(seed, n):
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        doc = {
            "id": i,
            "name": word(rng, 3, 20),
            "tags": [word(rng) for _ in range(rng.randint(0, 8))],
            "score": round(rng.random() * 1000, 6),
            "nested": {"a": list(range(rng.randint(0, 50))), "b": {"c": word(rng)}},
        }
        docs.append(doc)
    h = hashlib.sha256()
    for _ in range(6):
        text = json.dumps(docs, sort_keys=True)
        docs = json.loads(text)
        h.update(text.encode())
        # mutate so that each round differs
        for d in docs[:: 7]:
            d["tags"].append(str(d["id"]))
    return h.hexdigest()[:16]


class Particle:
    __slots__ = ("x", "y", "vx", "vy", "hist")

    def __init__(self, rng):
        self.x = rng.randint(0, 999)
        self.y = rng.randint(0, 999)
        self.vx = rng.randint(-5, 5)
        self.vy = rng.randint(-5, 5)
        self.hist = deque(maxlen=16)


class Cell:
    def __init__(self, key):
        self.key = key
        self.members = []
        self.meta = {"visits": 0}


def simulation(seed, steps, count):
    rng = random.Random(seed)
    parts = [Particle(rng) for _ in range(count)]
    collisions = 0
    for step in range(steps):
        grid = {}
        for p in parts:
            p.x = (p.x + p.vx) % 1000
            p.y = (p.y + p.vy) % 1000
            p.hist.append((p.x, p.y))
            key = (p.x // 20, p.y // 20)
            cell = grid.get(key)
            if cell is None:
                cell = grid[key] = Cell(key)
            cell.members.append(p)
            cell.meta["visits"] += 1
        for cell in grid.values():
            if len(cell.members) > 1:
                collisions += len(cell.members) - 1
                for p in cell.members:
                    p.vx, p.vy = -p.vy, p.vx
        if step % 10 == 0:
            # replace a few particles (object churn)
            for _ in range(count // 20):
                parts[rng.randrange(count)] = Particle(rng)
    return {"collisions": collisions, "pos": digest([(p.x, p.y, list(p.hist)) for p in parts])}


def regex_work(seed, n):
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        lines.append(
            "%s user=%s id=%d ip=%d.%d.%d.%d msg=%s"
            % (
                rng.choice(["INFO", "WARN", "ERROR", "DEBUG"]),
                word(rng, 3, 8),
                rng.randint(0, 10**6),
                rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255),
                " ".join(word(rng) for _ in range(rng.randint(1, 6))),
            )
        )
    pat = re.compile(r"^(\w+) user=(\w+) id=(\d+) ip=(\d+)\.(\d+)\.\d+\.\d+ msg=(.*)$")
    levels = Counter()
    users = defaultdict(int)
    subs = hashlib.sha256()
    for line in lines:
        m = pat.match(line)
        levels[m.group(1)] += 1
        users[m.group(2)[:2]] += int(m.group(3)) % 97
        subs.update(re.sub(r"[aeiou]+", lambda mm: str(len(mm.group(0))), m.group(6)).encode())
    words = re.findall(r"\b[a-z]{5,}\b", "\n".join(lines))
    return {
        "levels": dict(sorted(levels.items())),
        "users": digest(sorted(users.items())),
        "subs": subs.hexdigest()[:16],
        "words": len(words),
        "split": len(re.split(r"[=\s]+", " ".join(lines[:5000]))),
    }


def thread_worker(idx, out):
    rng = random.Random(1000 + idx)
    od = OrderedDict()
    total = 0
    for i in range(40_000):
        k = rng.randint(0, 5000)
        if k in od:
            od.move_to_end(k)
            total += len(od.pop(k))
        else:
            od[k] = "x" * rng.randint(1, 200) + str(i)
        if len(od) > 3000:
            od.popitem(last=False)
    blob = json.dumps(list(od.items()))
    out[idx] = {"total": total, "len": len(od), "d": hashlib.sha256(blob.encode()).hexdigest()[:16]}


def threads(nworkers):
    out = [None] * nworkers
    ts = [threading.Thread(target=thread_worker, args=(i, out)) for i in range(nworkers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def fork_while_threads_run(nforks):
    """fork() while other threads are allocating: the child must find the
    allocator usable (no lock left held by a thread that does not exist in
    the child)."""
    stop = threading.Event()

    def churn(i):
        keep = []
        while not stop.is_set():
            keep.append(json.dumps({"i": i, "v": list(range(i % 40)), "s": "y" * (i % 5000)}))
            if len(keep) > 500:
                del keep[:250]
            i += 13

    ts = [threading.Thread(target=churn, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    statuses = []
    try:
        for n in range(nforks):
            pid = os.fork()
            if pid == 0:
                # child: allocate and free a lot, then exit without cleanup
                blobs = [bytearray(64 + (n * 37 + k) % 70000) for k in range(3000)]
                text = json.dumps({str(k): "z" * (k % 100) for k in range(5000)})
                os._exit(0 if len(blobs) == 3000 and len(text) > 5000 else 3)
            _, status = os.waitpid(pid, 0)
            statuses.append(status)
    finally:
        stop.set()
        for t in ts:
            t.join()
    return {"forks": nforks, "ok": sum(1 for st in statuses if st == 0)}


def mp_task(n):
    rng = random.Random(n)
    d = {word(rng): list(range(rng.randint(0, 300))) for _ in range(3000)}
    return n, digest(sorted((k, len(v)) for k, v in d.items()))


def main():
    results = OrderedDict()
    results["churn"] = dict_list_str_churn(1, 600)
    results["json"] = json_roundtrips(2, 3000)
    results["sim"] = simulation(3, 120, 3000)
    results["regex"] = regex_work(4, 30_000)
    results["threads"] = threads(4)
    results["fork_threads"] = fork_while_threads_run(25)
    # fork under the allocator (multiprocessing's default start method on
    # Linux is fork; ask for it explicitly so that stays true)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results["mp"] = pool.map(mp_task, range(12))
    # plain fork+exec of a child that inherits LD_PRELOAD
    child = subprocess.run(
        [sys.executable, "-c", "import sys, json; d = json.load(sys.stdin); print(len(d), sum(map(len, d)))"],
        input=json.dumps([["a" * (i % 50)] * (i % 9) for i in range(20_000)]),
        capture_output=True, text=True, check=True,
    )
    results["subprocess"] = child.stdout.strip()
    for k, v in results.items():
        print(k, json.dumps(v, sort_keys=True))
    print("all", digest(results))


if __name__ == "__main__":
    main()
