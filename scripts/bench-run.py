#!/usr/bin/python3
"""Runs the mmpool benchmark suite; called by scripts/bench.sh.

Every workload runs under every allocator, interleaved (round r runs the
allocators rotated by r: A B C D E, B C D E A, ...) so drift on a shared
machine hits all alike. Each run is measured as a whole process by the
small `measure` wrapper (c-tests/bench/measure.c): wall time from fork to
exit and peak RSS from wait4()'s rusage (ru_maxrss), the numbers GNU time's
`%e %M` reports. A run fails on a crash, a non-zero
exit, a timeout, or output different from the glibc reference; a failed
allocator is not run again on that workload.

A secure-build phase runs the C and real-program workloads again under
glibc (the reference), mmpool, mmpool-secure (the `make secure` build) and
scudo, interleaved the same way, with --secure-runs runs (default
min(runs, 3)). The heap-bug suite
(scripts/security.sh) is run by scripts/bench.sh; its per-class table is
read from target/security/results.md (--security-md) and kept in the JSON.

Writes OUT/results.json (everything) and OUT/results.csv (raw runs), then
calls scripts/bench-report.py for OUT/results.md and OUT/results.svg.
Standard library only.
"""

import argparse
import collections
import csv
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ALLOCATORS = ["glibc", "jemalloc", "mimalloc", "tcmalloc", "mmpool"]
# The secure-build phase: the secure build between the default one and scudo,
# with glibc for the reference outputs.
SECURE_ALLOCATORS = ["glibc", "mmpool", "mmpool-secure", "scudo"]
SECURE_MAX_RUNS = 3
PACKAGES = {"jemalloc": "libjemalloc2", "mimalloc": "libmimalloc2.0",
            "tcmalloc": "libtcmalloc-minimal4", "scudo": "libclang-rt-14-dev"}
LIBNAMES = {"jemalloc": "libjemalloc.so.2", "mimalloc": "libmimalloc.so.2",
            "tcmalloc": "libtcmalloc_minimal.so.4"}
# Environment variables that change an allocator's behaviour are dropped so
# every allocator runs with its defaults.
SCRUB = re.compile(r"^(LD_PRELOAD|MALLOC_.*|GLIBC_TUNABLES|MIMALLOC_.*|TCMALLOC_.*|"
                   r"JE_MALLOC_CONF|SCUDO_OPTIONS|MMPOOL_.*|PYTHONMALLOC|PYTHONHASHSEED)$")
IGNORED_TOKENS = re.compile(r"\s*\S*rss\S*=\S+")

# name, default threads, what it is
C_WORKLOADS = [
    ("fastpath", 2, "malloc(32)/free loop per thread"),
    ("mixed", 2, "16 B-4 KiB skewed small + rare 64 KiB-1 MiB, random lifetimes, ~40 MiB live"),
    ("prodcons", 6, "THREADS/2 producer/consumer pairs, batched cross-thread frees"),
    ("server", 4, "simulated HTTP requests: strings, realloc-built responses, shared cache, logger"),
    ("churn", 4, "12,000 short-lived threads, THREADS alive at once, graveyard cross-frees"),
    ("realloc", 2, "builders growing by 16-256 B steps, buffers doubling/shrinking to 8 MiB"),
    ("large", 2, "64 KiB-32 MiB blocks, every page written"),
    ("frag", 2, "small blocks, every other freed, then larger ones; RSS at end"),
    ("arena-malloc", 2, "per-request objects (16-512 B, strings, 8-64 KiB buffers), each freed with free()"),
    ("arena-pool", 2, "the same requests from a per-thread arena reset after each request "
                      "(mmpool's arena under mmpool, a built-in bump arena under the others)"),
    ("xserver", 4, "larson-style server: THREADS chains of short-lived threads, each freeing "
                   "its predecessor's 8-1000 B blocks and refilling the array"),
    ("prodcons-pairs", 4, "THREADS/2 producer/consumer pairs passing single blocks, "
                          "freed in random order"),
    ("remote-mix", 4, "16 B-16 KiB random replacement, a quarter of the blocks freed "
                      "by another thread"),
    ("random-mix", 1, "malloc/free/realloc random mix, realistic sizes to 256 KiB, ~10 MiB live"),
    ("random-mix-2t", 2, "the same on 2 threads, each with half the slots"),
    ("batch", 2, "batches of 100-2,000 blocks of one size (8 B-1 KiB) allocated, then all freed"),
]
# workloads whose program is not named after them
C_BINARIES = {"arena-malloc": "arena_bench", "arena-pool": "arena_bench",
              "prodcons-pairs": "prodcons_pairs", "remote-mix": "remote_mix",
              "random-mix": "random_mix", "random-mix-2t": "random_mix"}
SCALING_WORKLOADS = ["fastpath", "mixed", "prodcons", "server", "churn", "realloc",
                     "xserver", "prodcons-pairs", "remote-mix"]
SCALING_THREADS = [1, 2, 4, 8, 16]
# One Rust program built once per global allocator (scripts/bench.sh builds
# c-tests/bench/rust-workload): the binary for each column, and whether the
# column preloads its library (tcmalloc has no crate: the System build on
# libtcmalloc).
RUST_WORKLOADS = [
    ("rust", 4, "one Rust program (c-tests/bench/rust-workload) built per global allocator: "
                "collections, channels with cross-thread drops, large Vec growth, 4096-aligned "
                "boxes; glibc = std::alloc::System, jemalloc = tikv-jemallocator, mimalloc = the "
                "mimalloc crate, mmpool = mmpool::MmPool (no preload), tcmalloc = the System "
                "build with libtcmalloc preloaded"),
]
RUST_BINS = {"glibc": "system", "jemalloc": "jemalloc", "mimalloc": "mimalloc",
             "tcmalloc": "system", "mmpool": "mmpool"}
REAL_WORKLOADS = [
    ("python", 1, "/usr/bin/python3 pyworkload.py (dicts, str, objects, json; pymalloc on)"),
    ("python-malloc", 1, "the same with PYTHONMALLOC=malloc (every object from malloc)"),
    ("python-threads", 4, "/usr/bin/python3 pythreads.py: tasks on a ThreadPoolExecutor, "
                          "results freed on the main thread; PYTHONMALLOC=malloc"),
    ("sqlite", 1, "sqlite3 CLI on a temp db: inserts, indexes, sorts, group_concat, updates"),
    ("redis", 1, "redis-server on 127.0.0.1 loaded by redis-benchmark (time = benchmark, RSS = server)"),
]


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------- processes

class Proc:
    """A command run under the `measure` wrapper, in its own process group.

    `measure` (c-tests/bench/measure.c) forks and execs the command, waits
    for it with wait4 and writes its exit status, wall time and ru_maxrss to
    a result file; `preload` becomes the command's LD_PRELOAD only. A
    timeout kills the whole group.
    """

    measure = None  # path of the wrapper, set by Context

    def __init__(self, cmd, env, preload=None, stdin=None, cwd=None):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        fd, self.resfile = tempfile.mkstemp(prefix="measure-")
        os.close(fd)
        os.unlink(self.resfile)
        env = dict(env)
        env.pop("LD_PRELOAD", None)
        if preload:
            env["MEASURE_PRELOAD"] = preload
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        self.t0 = time.perf_counter()
        try:
            self.p = subprocess.Popen([Proc.measure, self.resfile] + list(cmd), env=env,
                                      stdin=fin, stdout=self.out, stderr=self.err, cwd=cwd,
                                      start_new_session=True)
        finally:
            if stdin:
                fin.close()
        self.status = None

    def alive(self):
        if self.status is not None:
            return False
        pid, status, _ = os.wait4(self.p.pid, os.WNOHANG)
        if pid == 0:
            return True
        self._reaped(status, False)
        return False

    def _reaped(self, status, timed_out):
        self.status = status
        self.timed_out = timed_out
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.killpg()  # anything it left behind in its group
        self.result = None
        try:
            with open(self.resfile) as f:
                kind, code, wall, rss = f.read().split()
            self.result = (kind, int(code), float(wall), int(rss))
            os.unlink(self.resfile)
        except (OSError, ValueError):
            pass
        self.wall = self.result[2] if self.result else time.perf_counter() - self.t0
        self.maxrss_kib = self.result[3] if self.result else None

    def killpg(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout):
        if self.status is not None:
            return self
        fired = threading.Event()

        def expire():
            fired.set()
            self.killpg()

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            _, status, _ = os.wait4(self.p.pid, 0)
        finally:
            timer.cancel()
        self._reaped(status, fired.is_set())
        return self

    def text(self, which):
        f = self.out if which == "out" else self.err
        f.seek(0)
        return f.read().decode("utf-8", "replace")

    def verdict(self):
        """(status, detail) of a reaped process."""
        if self.timed_out:
            return "timeout", "killed after %.0f s" % (time.perf_counter() - self.t0)
        if self.result is None:
            return "crash", "measure wrapper died (status %#x)%s" % (
                self.status, stderr_hint(self.text("err")))
        kind, code = self.result[0], self.result[1]
        if kind == "signal":
            try:
                name = signal.Signals(code).name
            except ValueError:
                name = "signal %d" % code
            return "crash", name + stderr_hint(self.text("err"))
        if code != 0:
            return "exit", "exit %d%s" % (code, stderr_hint(self.text("err")))
        return "ok", ""


def stderr_hint(err):
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    if not lines:
        return ""
    pick = next((ln for ln in lines if "CORRUPTION" in ln or "mmpool" in ln), lines[-1])
    return ": " + pick[:160]


def run_once(cmd, env, timeout, preload=None, stdin=None, cwd=None):
    pr = Proc(cmd, env, preload, stdin, cwd).wait(timeout)
    status, detail = pr.verdict()
    return {"wall_s": pr.wall, "maxrss_kib": pr.maxrss_kib, "status": status,
            "detail": detail, "stdout": pr.text("out")}


# ------------------------------------------------------------------ context

class Context:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.bin)
        self.src = os.path.abspath(args.src)
        self.out = os.path.abspath(args.out)
        self.work = os.path.join(self.out, "work")
        os.makedirs(self.work, exist_ok=True)
        self.base_env = {k: v for k, v in os.environ.items() if not SCRUB.match(k)}
        self.libdir = args.libdir
        self.libs = {"glibc": None}
        for a in ("jemalloc", "mimalloc", "tcmalloc"):
            self.libs[a] = os.path.join(self.libdir, LIBNAMES[a])
        self.libs["mmpool"] = os.path.abspath(args.mmpool)
        self.libs["mmpool-secure"] = os.path.abspath(args.secure_lib)
        self.libs["scudo"] = os.path.abspath(args.scudo) if args.scudo else None
        self.avail = {}       # allocator -> None (usable) or reason
        self.libc_path = None  # for the redis glibc column
        self.rust_bin = os.path.abspath(args.rust_bin)
        Proc.measure = os.path.join(self.bin, "measure")

    def env(self, extra=None):
        env = dict(self.base_env)
        if extra:
            env.update(extra)
        return env

    def run(self, alloc, cmd, timeout, extra=None, stdin=None):
        """run_once of cmd with alloc's library preloaded."""
        return run_once(cmd, self.env(extra), timeout, self.libs[alloc], stdin)

    def probe(self, allocators):
        """Check each allocator exists and that LD_PRELOAD really swaps malloc."""
        for a in allocators:
            lib = self.libs[a]
            note = {"mmpool": self.args.mmpool_note,
                    "mmpool-secure": self.args.secure_note}.get(a)
            if note:
                self.avail[a] = note
                log("  %-13s %s" % (a, self.avail[a]))
                continue
            if a == "scudo" and not lib:
                self.avail[a] = "not installed (%s)" % PACKAGES[a]
                log("  %-13s %s" % (a, self.avail[a]))
                continue
            if lib and not os.path.exists(lib):
                self.avail[a] = ("%s not built" % lib if a.startswith("mmpool") else
                                 "not installed (%s)" % PACKAGES.get(a, lib))
                log("  %-13s %s" % (a, self.avail[a]))
                continue
            r = self.run(a, [os.path.join(self.bin, "whichmalloc")], 30)
            if r["status"] != "ok":
                # still run it: every workload will show its own failure
                self.avail[a] = None
                log("  %-9s probe FAILED: %s %s" % (a, r["status"], r["detail"]))
                continue
            m = re.search(r"malloc=(\S+)", r["stdout"])
            got = os.path.realpath(m.group(1)) if m else "?"
            if a == "glibc":
                self.libc_path = got if "libc.so" in got else None
                ok = "libc.so" in got
            else:
                ok = got == os.path.realpath(lib)
            self.avail[a] = None if ok else "LD_PRELOAD ineffective: malloc comes from %s" % got
            log("  %-13s %s" % (a, "malloc from " + got if ok else self.avail[a]))


# ---------------------------------------------------------------- workloads

class Workload:
    def __init__(self, name, threads, desc, kind):
        self.name, self.threads, self.desc, self.kind = name, threads, desc, kind

    def prepare(self, ctx, scale):
        pass

    def unavailable(self, ctx, alloc):
        """Why `alloc` cannot run this workload, or None."""
        return ctx.avail.get(alloc)

    def run(self, ctx, alloc, threads, scale, timeout):
        raise NotImplementedError


class CWorkload(Workload):
    def run(self, ctx, alloc, threads, scale, timeout):
        prog = os.path.join(ctx.bin, C_BINARIES.get(self.name, self.name))
        cmd = [prog, str(threads), "%g" % scale]
        if self.name.startswith("arena-"):
            cmd.append("malloc" if self.name == "arena-malloc" else "arena")
        r = ctx.run(alloc, cmd, timeout)
        if self.name == "frag":
            m = re.search(r"\brss_kib=(\d+)", r["stdout"])
            f = re.search(r"\brss_free_kib=(\d+)", r["stdout"])
            live = re.search(r"\blive_kib=(\d+)", r["stdout"])
            r["extra"] = {"vmrss_end_kib": int(m.group(1)) if m else None,
                          "vmrss_after_free_kib": int(f.group(1)) if f else None,
                          "live_kib": int(live.group(1)) if live else None}
        return r


class PythonWorkload(Workload):
    def run(self, ctx, alloc, threads, scale, timeout):
        extra = {"PYTHONHASHSEED": "0"}
        if self.name == "python-malloc":
            extra["PYTHONMALLOC"] = "malloc"
        cmd = ["/usr/bin/python3", os.path.join(ctx.src, "pyworkload.py"), "%g" % scale]
        return ctx.run(alloc, cmd, timeout, extra)


class PythonThreadsWorkload(Workload):
    def run(self, ctx, alloc, threads, scale, timeout):
        extra = {"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"}
        cmd = ["/usr/bin/python3", os.path.join(ctx.src, "pythreads.py"), str(threads),
               "%g" % scale]
        return ctx.run(alloc, cmd, timeout, extra)


class SqliteWorkload(Workload):
    def prepare(self, ctx, scale):
        self.exe = shutil.which("sqlite3")
        rows = max(1000, int(250000 * scale))
        self.script = os.path.join(ctx.work, "sqlite-%d.sql" % rows)
        with open(os.path.join(ctx.src, "sqlite-workload.sql")) as f:
            body = f.read()
        with open(self.script, "w") as f:
            f.write(".parameter set @rows %d\n" % rows + body)
        self.db = os.path.join(ctx.work, "sqlite-bench.db")

    def run(self, ctx, alloc, threads, scale, timeout):
        if not self.exe:
            return unavailable("sqlite3 not installed")
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.unlink(self.db + suffix)
            except FileNotFoundError:
                pass
        r = ctx.run(alloc, [self.exe, self.db], timeout, stdin=self.script)
        try:
            os.unlink(self.db)
        except FileNotFoundError:
            pass
        return r


class RustWorkload(Workload):
    """The Rust program, one binary per allocator: no LD_PRELOAD, except
    for tcmalloc (the System build on the preloaded library)."""

    def exe(self, ctx, alloc):
        return os.path.join(ctx.rust_bin, "rust-workload-" + RUST_BINS[alloc])

    def unavailable(self, ctx, alloc):
        if ctx.args.rust_note:
            return ctx.args.rust_note
        if not os.path.exists(self.exe(ctx, alloc)):
            return "%s not built" % self.exe(ctx, alloc)
        # tcmalloc's column preloads its library; the others link theirs.
        return ctx.avail.get(alloc) if alloc == "tcmalloc" else None

    def run(self, ctx, alloc, threads, scale, timeout):
        preload = ctx.libs[alloc] if alloc == "tcmalloc" else None
        return run_once([self.exe(ctx, alloc), str(threads), "%g" % scale], ctx.env(), timeout,
                        preload)


def resp(*args):
    out = ["*%d\r\n" % len(args)]
    for a in args:
        a = str(a)
        out.append("$%d\r\n%s\r\n" % (len(a.encode()), a))
    return "".join(out)


class RedisWorkload(Workload):
    TESTS = "set,get,incr,lpush,lpop,sadd,hset"

    def prepare(self, ctx, scale):
        self.server = shutil.which("redis-server")
        self.bench = shutil.which("redis-benchmark")
        self.cli = shutil.which("redis-cli")
        self.requests = max(2000, int(100000 * scale))
        self.dir = os.path.join(ctx.work, "redis")
        os.makedirs(self.dir, exist_ok=True)
        # a deterministic data set loaded after the benchmark; its DEBUG
        # DIGEST is the run's output, compared across allocators
        self.check = os.path.join(self.dir, "check.resp")
        with open(self.check, "w") as f:
            f.write(resp("FLUSHALL"))
            for i in range(30000):
                f.write(resp("SET", "key:%d" % i, "v" * (i % 300) + str(i)))
                if i % 3 == 0:
                    f.write(resp("RPUSH", "list:%d" % (i % 97), "item%d" % i))
                if i % 5 == 0:
                    f.write(resp("HSET", "hash:%d" % (i % 53), "f%d" % i, str(i * i)))
                if i % 7 == 0:
                    f.write(resp("SADD", "set:%d" % (i % 31), "m%d" % i))
                if i % 11 == 0 and i >= 5:
                    f.write(resp("DEL", "key:%d" % (i - 5)))
                if i % 13 == 0:
                    f.write(resp("APPEND", "key:%d" % i, "t" * (i % 500)))

    def cli_run(self, ctx, port, *args, stdin=None):
        return run_once([self.cli, "-h", "127.0.0.1", "-p", str(port)] + list(args),
                        ctx.env(), 60, stdin=stdin)

    def run(self, ctx, alloc, threads, scale, timeout):
        missing = [n for n, p in (("redis-server", self.server), ("redis-benchmark", self.bench),
                                  ("redis-cli", self.cli)) if not p]
        if missing:
            return unavailable("%s not installed" % ", ".join(missing))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        logfile = os.path.join(self.dir, "server.log")
        # Debian's redis-server links libjemalloc; for the glibc column
        # preload libc itself so glibc's malloc comes first in lookup order.
        preload = ctx.libc_path if alloc == "glibc" else ctx.libs[alloc]
        server = Proc([self.server, "--port", str(port), "--bind", "127.0.0.1",
                       "--protected-mode", "yes", "--save", "", "--appendonly", "no",
                       "--daemonize", "no", "--dir", self.dir, "--logfile", logfile,
                       "--enable-debug-command", "local"],
                      ctx.env(), preload)
        try:
            return self._drive(ctx, server, port, timeout)
        finally:
            if server.status is None:
                server.killpg()
                server.wait(10)

    def _server_fail(self, server, what):
        server.wait(10)
        status, detail = server.verdict()
        if status == "ok":
            status, detail = "exit", "server exited"
        return {"wall_s": None, "maxrss_kib": server.maxrss_kib, "status": status,
                "detail": "%s: %s" % (what, detail), "stdout": ""}

    def _drive(self, ctx, server, port, timeout):
        deadline = time.monotonic() + 20
        while True:
            if not server.alive():
                return self._server_fail(server, "server died at start")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                server.killpg()
                return self._server_fail(server, "server not ready after 20 s")
            time.sleep(0.05)
        b = run_once([self.bench, "-h", "127.0.0.1", "-p", str(port), "-n", str(self.requests),
                      "-c", "50", "-P", "8", "-r", "200000", "-d", "256", "-t", self.TESTS,
                      "--csv"], ctx.env(), timeout)
        if not server.alive():
            return self._server_fail(server, "server died under load")
        if b["status"] != "ok":
            b["detail"] = "redis-benchmark " + b["status"] + " " + b["detail"]
            return b
        rps = {}
        for row in csv.reader(b["stdout"].splitlines()):
            if len(row) >= 2 and row[0] != "test":
                try:
                    rps[row[0]] = float(row[1])
                except ValueError:
                    pass
        ntests = len(self.TESTS.split(","))
        pipe = self.cli_run(ctx, port, "--pipe", stdin=self.check)
        digest = self.cli_run(ctx, port, "DEBUG", "DIGEST")
        dbsize = self.cli_run(ctx, port, "DBSIZE")
        if not server.alive():
            return self._server_fail(server, "server died in the check")
        if re.search(r"errors: 0\b", pipe["stdout"]) is None:
            out = "redis check load failed: " + pipe["stdout"].strip()[-120:]
        else:
            out = "redis dbsize=%s digest=%s" % (dbsize["stdout"].strip(),
                                                 digest["stdout"].strip())
        self.cli_run(ctx, port, "SHUTDOWN", "NOSAVE")
        server.wait(30)
        status, detail = server.verdict()
        if status != "ok":
            detail = "server at shutdown: " + detail
        return {"wall_s": b["wall_s"], "maxrss_kib": server.maxrss_kib, "status": status,
                "detail": detail, "stdout": out,
                "extra": {"rps": round(self.requests * ntests / b["wall_s"]),
                          "rps_by_test": rps}}


def unavailable(reason):
    return {"wall_s": None, "maxrss_kib": None, "status": "unavailable", "detail": reason,
            "stdout": ""}


def all_workloads():
    ws = [CWorkload(n, t, d, "c") for n, t, d in C_WORKLOADS]
    for n, t, d in REAL_WORKLOADS:
        cls = {"python": PythonWorkload, "python-malloc": PythonWorkload,
               "python-threads": PythonThreadsWorkload, "sqlite": SqliteWorkload, "redis": RedisWorkload}[n]
        ws.append(cls(n, t, d, "program"))
    ws += [RustWorkload(n, t, d, "rust") for n, t, d in RUST_WORKLOADS]
    return ws


# ------------------------------------------------------------------ running

def normalize(out):
    return IGNORED_TOKENS.sub("", out).strip()


def fmt_run(rec):
    if rec["status"] != "ok":
        return "%s %s" % (rec["status"].upper(), rec["detail"])
    return "%7.3f s %9.1f MiB" % (rec["wall_s"], rec["maxrss_kib"] / 1024.0)


def run_matrix(ctx, workloads, allocators, runs, scale, phase, thread_counts=None):
    """Runs every workload (x thread count) under every allocator, interleaved."""
    records = []
    for wl in workloads:
        wl.prepare(ctx, scale)
        for threads in (thread_counts or [wl.threads]):
            recs = []
            failed = set()
            for a in allocators:
                why = wl.unavailable(ctx, a)
                if why:
                    rec = unavailable(why)
                    rec.update(workload=wl.name, allocator=a, run=0, threads=threads,
                               scale=scale, phase=phase, output=rec.pop("stdout"))
                    recs.append(rec)
                    failed.add(a)
            for r in range(runs):
                order = allocators[r % len(allocators):] + allocators[:r % len(allocators)]
                for a in order:
                    if a in failed:
                        continue
                    oks = [x["wall_s"] for x in recs if x["status"] == "ok"]
                    timeout = ctx.args.timeout or (max(20.0, 15 * max(oks)) if oks else 180.0)
                    try:
                        rec = wl.run(ctx, a, threads, scale, timeout)
                    except OSError as e:  # e.g. a program that cannot be started
                        rec = {"wall_s": None, "maxrss_kib": None, "status": "exit",
                               "detail": "harness: %s" % e, "stdout": ""}
                    rec.update(workload=wl.name, allocator=a, run=r + 1, threads=threads,
                               scale=scale, phase=phase)
                    rec["output"] = normalize(rec.pop("stdout"))
                    recs.append(rec)
                    log("  %-14s t=%-2d %-13s run %d/%d %s" % (wl.name, threads, a, r + 1, runs,
                                                            fmt_run(rec)))
                    if rec["status"] != "ok":
                        failed.add(a)
            check_outputs(recs)
            records.extend(recs)
    return records


def check_outputs(recs):
    """Every successful run must print what glibc printed."""
    oks = [r for r in recs if r["status"] == "ok"]
    ref_from = [r for r in oks if r["allocator"] == "glibc"] or oks
    if not ref_from:
        return
    ref = collections.Counter(r["output"] for r in ref_from).most_common(1)[0][0]
    for r in recs:
        r["reference"] = ref if ref_from[0]["allocator"] == "glibc" else "(majority) " + ref
        if r["status"] == "ok" and r["output"] != ref:
            r["status"] = "wrong-output"
            r["detail"] = "printed %r, expected %r" % (r["output"][:100], ref[:100])
            log("  %-14s %-9s run %d WRONG OUTPUT: %s" % (r["workload"], r["allocator"],
                                                         r["run"], r["detail"]))


def callgrind(ctx, allocators, iters):
    """Instructions per malloc/free pair from two callgrind runs (N and 2N)."""
    valgrind = shutil.which("valgrind")
    results = {}
    modes = ["lifo32", "mix"]
    jobs = [(a, m) for a in allocators for m in modes] + [("glibc", "empty")]
    for a, mode in jobs:
        key = "%s/%s" % (a, mode)
        if not valgrind:
            results[key] = {"status": "unavailable", "detail": "valgrind not installed"}
            continue
        if ctx.avail.get(a):
            results[key] = {"status": "unavailable", "detail": ctx.avail[a]}
            continue
        irs = []
        res = None
        for n in (iters, 2 * iters):
            f = os.path.join(ctx.work, "callgrind.out")
            cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=" + f,
                   os.path.join(ctx.bin, "callloop"), mode, str(n)]
            r = ctx.run(a, cmd, 900)
            if r["status"] != "ok":
                res = {"status": r["status"], "detail": r["detail"]}
                break
            total = None
            with open(f) as fh:
                for line in fh:
                    if line.startswith(("totals:", "summary:")):
                        total = int(line.split()[1])
            os.unlink(f)
            if total is None:
                res = {"status": "exit", "detail": "no totals in callgrind output"}
                break
            irs.append(total)
        if res is None:
            res = {"status": "ok", "ir_n": irs[0], "ir_2n": irs[1], "iters": iters,
                   "per_pair": (irs[1] - irs[0]) / float(iters)}
            log("  callgrind %-9s %-7s %.1f instructions/pair" % (a, mode, res["per_pair"]))
        else:
            log("  callgrind %-9s %-7s %s %s" % (a, mode, res["status"].upper(), res["detail"]))
        results[key] = res
    return results


def csv_output(out):
    """One-line outputs as they are; long or multi-line ones (sqlite) as a digest."""
    if "\n" not in out and len(out) <= 120:
        return out
    return "sha1:%s (%d lines)" % (hashlib.sha1(out.encode()).hexdigest()[:16],
                                   out.count("\n") + 1)


# ----------------------------------------------------------------- metadata

def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(ctx):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = "%.1f GiB" % (kib / 1048576.0)
    except (OSError, ValueError, IndexError):
        pass
    versions = {"glibc": os.confstr("CS_GNU_LIBC_VERSION").replace("glibc ", "")}
    for a, pkg in PACKAGES.items():
        versions[a] = sh(["dpkg-query", "-W", "-f", "${Version}", pkg]) or "not installed"
    rev = sh(["git", "-C", ctx.args.repo, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", ctx.args.repo, "status", "--porcelain", "--", "src", "Cargo.toml"])
    versions["mmpool"] = (rev + ("+dirty" if dirty else "")) if rev else "?"
    versions["mmpool-secure"] = versions["mmpool"]
    progs = {}
    for exe, pkg in (("python3", "python3"), ("sqlite3", "sqlite3"),
                     ("redis-server", "redis-server")):
        progs[exe] = sh(["dpkg-query", "-W", "-f", "${Version}", pkg]) or "not installed"
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "kernel": platform.release(),
            "memory": mem, "os": sh(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
            "versions": versions, "programs": progs, "rust": rust_info(ctx)}


def rust_info(ctx):
    """rustc's version and the allocator crates the Rust workload's Cargo.lock pins."""
    crates = {}
    try:
        with open(os.path.join(ctx.src, "rust-workload", "Cargo.lock")) as f:
            lock = f.read()
        for name, version in re.findall(r'name = "([^"]+)"\nversion = "([^"]+)"', lock):
            if name in ("mimalloc", "libmimalloc-sys", "tikv-jemallocator", "tikv-jemalloc-sys"):
                crates[name] = version
    except OSError:
        pass
    return {"rustc": sh(["rustc", "--version"]), "crates": crates}


def security_info(args):
    """The heap-bug suite's results (scripts/security.sh's results.md): its
    summary line, allocator list and per-class table; None when not run."""
    if not args.security_md and not args.security_note:
        return None
    info = {"md": args.security_md, "note": args.security_note, "summary": "",
            "allocators": [], "table": []}
    if args.security_note:
        return info
    try:
        with open(args.security_md) as f:
            lines = f.read().splitlines()
    except OSError as e:
        info["note"] = "cannot read %s: %s" % (args.security_md, e)
        return info
    section = None
    for line in lines:
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if section is None:
            if line.startswith("`") and " cases, " in line:
                info["summary"] = line
            elif line.startswith("- "):
                info["allocators"].append(line[2:])
        elif section == "Stopped, per class" and line.startswith("|"):
            info["table"].append(line)
    if not info["table"]:
        info["note"] = "no \"Stopped, per class\" table in %s" % args.security_md
    return info


# --------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=".")
    ap.add_argument("--bin", required=True, help="compiled workload programs")
    ap.add_argument("--src", required=True, help="c-tests/bench (scripts and SQL)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--libdir", default="/usr/lib/x86_64-linux-gnu")
    ap.add_argument("--mmpool", default="target/release/libmmpool.so")
    ap.add_argument("--mmpool-note", default="", help="why mmpool is unavailable, if it is")
    ap.add_argument("--rust-bin", default="target/bench/rust/release",
                    help="the Rust workload's binaries (rust-workload-ALLOC)")
    ap.add_argument("--rust-note", default="", help="why the Rust workload is unavailable")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", action="store_true", help="add the thread-scaling runs")
    ap.add_argument("--threads-only", action="store_true")
    ap.add_argument("--workloads", default="", help="comma-separated subset")
    ap.add_argument("--allocators", default=",".join(ALLOCATORS))
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--callgrind-iters", type=int, default=1000000)
    ap.add_argument("--timeout", type=float, default=0.0, help="per run, seconds (0: adaptive)")
    ap.add_argument("--command", default="", help="command line to print in the report")
    ap.add_argument("--secure-lib", default="target/release/libmmpool-secure.so",
                    help="mmpool's secure build (make secure)")
    ap.add_argument("--secure-note", default="", help="why mmpool-secure is unavailable, if it is")
    ap.add_argument("--scudo", default="", help="scudo's library ('': not installed)")
    ap.add_argument("--no-secure", action="store_true", help="skip the secure-build phase")
    ap.add_argument("--secure-runs", type=int, default=0,
                    help="runs per cell of the secure phase (0: min(runs, %d))" % SECURE_MAX_RUNS)
    ap.add_argument("--secure-only", action="store_true",
                    help="only the secure-build phase (no main, callgrind, scaling)")
    ap.add_argument("--security-md", default="",
                    help="the heap-bug suite's results.md (scripts/security.sh) to report")
    ap.add_argument("--security-note", default="", help="why the heap-bug suite has no results")
    ap.add_argument("--security-seconds", type=float, default=0.0,
                    help="how long the heap-bug suite took")
    args = ap.parse_args()
    if args.secure_only and (args.no_secure or args.threads_only):
        sys.exit("bench-run: --secure-only goes with neither --no-secure nor --threads-only")

    allocators = [a for a in args.allocators.split(",") if a]
    bad = [a for a in allocators if a not in ALLOCATORS]
    if bad or "glibc" not in allocators:
        sys.exit("bench-run: allocators must be among %s and include glibc" % ALLOCATORS)
    allocators = [a for a in ALLOCATORS if a in allocators]
    workloads = all_workloads()
    if args.workloads:
        want = args.workloads.split(",")
        unknown = set(want) - {w.name for w in workloads}
        if unknown:
            sys.exit("bench-run: unknown workloads %s" % sorted(unknown))
        workloads = [w for w in workloads if w.name in want]
    # the secure phase: every workload but the Rust one (its binaries link
    # their allocator; there is no secure or scudo build of it)
    secure_wls = [] if args.no_secure or args.threads_only else \
        [w for w in workloads if w.kind != "rust"]
    if args.secure_only:
        workloads = secure_wls
    main_allocs = [] if args.secure_only else allocators
    secure_allocs = SECURE_ALLOCATORS if secure_wls else []
    probed = main_allocs + [a for a in secure_allocs if a not in main_allocs]

    ctx = Context(args)
    t_start = time.monotonic()
    meta = machine_info(ctx)
    meta.update(command=args.command, runs=args.runs, scale=args.scale, quick=args.quick,
                secure_only=args.secure_only,
                allocators=allocators, mmpool_lib=ctx.libs["mmpool"],
                libs={a: ctx.libs[a] for a in allocators},
                workloads=[{"name": w.name, "threads": w.threads, "desc": w.desc, "kind": w.kind}
                           for w in workloads])
    log("bench: %d CPUs (%s), kernel %s" % (meta["nproc"], meta["cpu"], meta["kernel"]))
    log("bench: probing allocators")
    ctx.probe(probed)
    meta["availability"] = {a: ctx.avail.get(a) for a in main_allocs}
    meta["redis_glibc_preload"] = ctx.libc_path
    meta["security"] = security_info(args)

    records, cg, scaling, secure = [], {}, [], []
    if not args.threads_only and not args.secure_only:
        log("bench: %d workloads x %d allocators x %d runs, scale %g"
            % (len(workloads), len(allocators), args.runs, args.scale))
        t0 = time.monotonic()
        records = run_matrix(ctx, workloads, allocators, args.runs, args.scale, "main")
        meta["main_s"] = round(time.monotonic() - t0, 1)
        log("bench: workloads took %.0f s" % meta["main_s"])
        if not args.no_callgrind:
            log("bench: callgrind fast path (%d and %d iterations)"
                % (args.callgrind_iters, 2 * args.callgrind_iters))
            t0 = time.monotonic()
            cg = callgrind(ctx, allocators, args.callgrind_iters)
            meta["callgrind_s"] = round(time.monotonic() - t0, 1)
            log("bench: callgrind took %.0f s" % meta["callgrind_s"])
    if args.threads or args.threads_only:
        sw = [w for w in workloads if w.name in SCALING_WORKLOADS]
        sruns = min(args.runs, 3)
        sscale = args.scale * 0.5
        log("bench: thread scaling %s threads, %d runs, scale %g"
            % (SCALING_THREADS, sruns, sscale))
        t0 = time.monotonic()
        scaling = run_matrix(ctx, sw, allocators, sruns, sscale, "scaling", SCALING_THREADS)
        meta["scaling_s"] = round(time.monotonic() - t0, 1)
        log("bench: thread scaling took %.0f s" % meta["scaling_s"])
        meta.update(scaling_runs=sruns, scaling_scale=sscale, scaling_threads=SCALING_THREADS)
    if secure_wls:
        sruns = args.secure_runs or min(args.runs, SECURE_MAX_RUNS)
        meta.update(secure_allocators=secure_allocs, secure_runs=sruns,
                    secure_scale=args.scale,
                    secure_libs={a: ctx.libs[a] for a in secure_allocs},
                    secure_availability={a: ctx.avail.get(a) for a in secure_allocs})
        log("bench: secure build: %d workloads x %s x %d runs, scale %g"
            % (len(secure_wls), "/".join(secure_allocs), sruns, args.scale))
        t0 = time.monotonic()
        secure = run_matrix(ctx, secure_wls, secure_allocs, sruns, args.scale, "secure")
        meta["secure_s"] = round(time.monotonic() - t0, 1)
        log("bench: secure build took %.0f s" % meta["secure_s"])
    if args.security_md or args.security_note:
        meta["security_s"] = args.security_seconds
    # the heap-bug suite ran before, in scripts/bench.sh: its time counts too
    meta["elapsed_s"] = round(time.monotonic() - t_start + args.security_seconds, 1)

    os.makedirs(ctx.out, exist_ok=True)
    with open(os.path.join(ctx.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": records + scaling + secure, "callgrind": cg}, f,
                  indent=1)
    fields = ["phase", "workload", "threads", "scale", "allocator", "run", "wall_s",
              "maxrss_kib", "status", "detail", "output", "extra"]
    with open(os.path.join(ctx.out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in records + scaling + secure:
            row = dict(r)
            row["wall_s"] = "" if r.get("wall_s") is None else "%.4f" % r["wall_s"]
            row["extra"] = json.dumps(r.get("extra", {}), sort_keys=True) if r.get("extra") else ""
            row["output"] = csv_output(r.get("output", ""))
            w.writerow([row.get(k, "") if row.get(k) is not None else "" for k in fields])
        for key, res in sorted(cg.items()):
            a, mode = key.split("/")
            w.writerow(["callgrind", "callloop-" + mode, 1, "", a, 1, "", "", res["status"],
                        res.get("detail", ""), "",
                        json.dumps({k: v for k, v in res.items()
                                    if k not in ("status", "detail")}, sort_keys=True)])
    log("bench: finished in %.0f s" % meta["elapsed_s"])
    report = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench-report.py")
    return subprocess.call([sys.executable, report, os.path.join(ctx.out, "results.json")])


if __name__ == "__main__":
    sys.exit(main())
