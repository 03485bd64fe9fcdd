#!/usr/bin/python3
"""Turns target/bench/results.json into results.md and results.svg.

usage: bench-report.py RESULTS.json

Called by bench-run.py at the end of a run; can be re-run on its own.
A cell is FAIL when any of its runs failed (crash, non-zero exit, timeout,
output different from glibc's, allocator unavailable); FAIL cells stay in
the tables and are left out of the geometric means, with a note.
The "Secure build" section compares mmpool-secure with mmpool and scudo
(phase "secure" of the runs); the "Heap-bug suite" section is the per-class
table of scripts/security.sh that bench-run.py kept in the JSON's meta.
Standard library only.
"""

import json
import math
import os
import statistics
import sys
from xml.sax.saxutils import escape

PEER_ORDER = ["glibc", "jemalloc", "mimalloc", "tcmalloc"]
# The bars for the secure build against the default one: geometric
# means of the per-workload ratios.
SECURE_TIME_BAR = 1.3
SECURE_RSS_BAR = 1.5
COLORS = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "mimalloc": "#2ca02c",
          "tcmalloc": "#ff7f0e", "mmpool": "#d62728"}


class Cell:
    """The runs of one workload x allocator (x thread count)."""

    def __init__(self, runs):
        self.runs = runs
        bad = [r for r in runs if r["status"] != "ok"]
        self.ok = bool(runs) and not bad
        self.fail = bad[0] if bad else None
        if not runs:
            self.reason = "not run"
        elif bad:
            b = bad[0]
            where = "" if b["status"] == "unavailable" else " (run %s)" % b["run"]
            self.reason = "%s%s: %s" % (b["status"], where, b["detail"])
        else:
            self.reason = ""
        oks = [r for r in runs if r["status"] == "ok"]
        self.times = [r["wall_s"] for r in oks]
        self.rss = [r["maxrss_kib"] for r in oks]
        self.extras = [r.get("extra") or {} for r in oks]

    @property
    def time(self):
        return statistics.median(self.times) if self.ok else None

    @property
    def rss_mib(self):
        return statistics.median(self.rss) / 1024.0 if self.ok else None

    def spread(self, values):
        """Half the min-max range relative to the median, in percent."""
        m = statistics.median(values)
        return 50.0 * (max(values) - min(values)) / m if m else 0.0

    def extra_median(self, key):
        vals = [e.get(key) for e in self.extras if e.get(key) is not None]
        return statistics.median(vals) if vals and self.ok else None


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def short_status(cell):
    if cell.fail is not None and "CORRUPTION" in cell.fail.get("detail", ""):
        return "FAIL (corrupt)"
    return "FAIL" if cell.fail is None else {
        "unavailable": "FAIL (n/a)", "wrong-output": "FAIL (output)", "crash": "FAIL (crash)",
        "timeout": "FAIL (timeout)", "exit": "FAIL (exit)"}.get(cell.fail["status"], "FAIL")


class Report:
    def __init__(self, data):
        self.meta = data["meta"]
        self.runs = data["runs"]
        self.cg = data.get("callgrind", {})
        self.allocs = self.meta["allocators"]
        self.peers = [a for a in self.allocs if a != "mmpool"]
        self.notes = []  # footnotes: (key, text)

    def cells(self, phase, threads=None, allocs=None):
        out = {}
        for r in self.runs:
            if r["phase"] != phase or (threads is not None and r["threads"] != threads):
                continue
            out.setdefault(r["workload"], {}).setdefault(r["allocator"], []).append(r)
        allocs = self.allocs if allocs is None else allocs
        return {w: {a: Cell(by.get(a, [])) for a in allocs} for w, by in out.items()}

    def footnote(self, text):
        for i, (_, t) in enumerate(self.notes):
            if t == text:
                return i + 1
        self.notes.append((len(self.notes) + 1, text))
        return len(self.notes)

    def fail_text(self, wl, alloc, cell):
        n = self.footnote("%s under %s: %s" % (wl, alloc, cell.reason))
        return "%s [%d]" % (short_status(cell), n)

    # ------------------------------------------------------------ main table
    def metric_table(self, cells, order, metric, unit, fmt):
        """metric: 'time' or 'rss'."""
        value = (lambda c: c.time) if metric == "time" else (lambda c: c.rss_mib)
        samples = (lambda c: c.times) if metric == "time" else (lambda c: c.rss)
        head = ["workload", "threads"] + ["%s (%s)" % (a, unit) for a in self.allocs]
        has_mm = "mmpool" in self.allocs
        if has_mm:
            head += ["mmpool/%s" % p for p in self.peers]
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|"]
        vs_glibc = {a: [] for a in self.allocs}
        mm_vs = {p: [] for p in self.peers}
        excluded = set()
        for wl in order:
            if wl not in cells:
                continue
            row = cells[wl]
            thr = next((r["threads"] for c in row.values() for r in c.runs), "")
            cols = [wl, str(thr)]
            for a in self.allocs:
                c = row[a]
                if c.ok:
                    cols.append(fmt(value(c)) + " ±%.0f%%" % c.spread(samples(c)))
                else:
                    cols.append(self.fail_text(wl, a, c))
            if any(not c.ok for c in row.values()):
                excluded.add(wl)
            g = row.get("glibc")
            for a in self.allocs:
                if row[a].ok and g is not None and g.ok and value(g) > 0:
                    vs_glibc[a].append(value(row[a]) / value(g))
            if has_mm:
                mm = row["mmpool"]
                for p in self.peers:
                    c = row[p]
                    if mm.ok and c.ok and value(c) > 0:
                        r = value(mm) / value(c)
                        mm_vs[p].append(r)
                        cols.append("**%.2f**" % r if r < 1 else "%.2f" % r)
                    else:
                        cols.append("—")
            lines.append("| " + " | ".join(cols) + " |")
        n = len([w for w in order if w in cells])
        cols = ["**geomean**", ""]
        for a in self.allocs:
            g = geomean(vs_glibc[a])
            cols.append("—" if g is None else "×%.2f vs glibc (%d/%d)" % (g, len(vs_glibc[a]), n))
        if has_mm:
            for p in self.peers:
                g = geomean(mm_vs[p])
                cols.append("—" if g is None else "**%.2f** (%d/%d)" % (g, len(mm_vs[p]), n))
        lines.append("| " + " | ".join(cols) + " |")
        return lines, excluded

    # ------------------------------------------------------------- sections
    def render(self):
        m = self.meta
        cells = self.cells("main")
        order = [w["name"] for w in m["workloads"] if w["name"] in cells]
        out = ["# mmpool benchmark results", ""]
        took = ", ".join("%s %.0f s" % (k, m[key]) for k, key in
                         (("workloads", "main_s"), ("callgrind", "callgrind_s"),
                          ("thread scaling", "scaling_s"), ("secure build", "secure_s"),
                          ("heap-bug suite", "security_s")) if m.get(key))
        out += ["- **Date:** %s (run took %.0f s%s)" % (m["date"], m.get("elapsed_s", 0),
                                                        ": " + took if took else ""),
                "- **Machine:** %d CPUs (`nproc`), %s, %s RAM, kernel %s, %s"
                % (m["nproc"], m["cpu"], m["memory"], m["kernel"], m.get("os", "")),
                "- **Command:** `%s`" % (m.get("command") or "scripts/bench.sh")]
        if m.get("secure_only"):
            out.append("- **Runs:** the secure-build phase only (`--secure-only`): see "
                       "*Secure build*")
        else:
            out += ["- **Runs:** %d per cell, interleaved across allocators (rotated each round); "
                    "medians; `±` is half the min–max spread; scale %g"
                    % (m["runs"], m["scale"]),
                    "- **Allocators:** " + ", ".join(
                        "%s %s (%s)" % (a, m["versions"].get(a, "?"),
                                        "no preload" if a == "glibc" else
                                        "`LD_PRELOAD=%s`" % m["libs"].get(a))
                        for a in self.allocs)]
        out += ["- **Programs:** " + ", ".join("%s %s" % kv for kv in m["programs"].items()),
                ""]
        unavail = {a: r for a, r in m.get("availability", {}).items() if r}
        for a, r in unavail.items():
            out.append("> **%s unavailable:** %s — its cells are FAIL." % (a, r))
        if unavail:
            out.append("")

        if cells:
            out += ["## Wall time (median seconds; ratios < 1: mmpool faster, in bold)", ""]
            t_lines, t_ex = self.metric_table(cells, order, "time", "s", lambda v: "%.3f" % v)
            out += t_lines + [""]
            out += ["## Peak RSS (median MiB, whole process; redis: the server)", ""]
            r_lines, r_ex = self.metric_table(cells, order, "rss", "MiB", lambda v: "%.1f" % v)
            out += r_lines + [""]
            ex = sorted(t_ex | r_ex, key=order.index)
            if ex:
                out.append("Geomeans leave out, per column, the workloads where that column or "
                           "its reference is FAIL (counts in parentheses): %s." % ", ".join(ex))
                out.append("")
            out += self.redis_section(cells) + self.frag_section(cells)
        out += self.callgrind_section()
        out += self.scaling_section()
        out += self.secure_section()
        out += self.security_section()
        out += ["## Workloads", ""]
        for w in m["workloads"]:
            out.append("- **%s** (threads %s): %s" % (w["name"], w["threads"], w["desc"]))
        out += ["",
                "Every C workload checks its data (patterns per block, verified before free; "
                "checksums) and exits non-zero on corruption; the output line must equal "
                "glibc's (`rss*=` tokens excepted).", ""]
        out += ["## Notes", ""]
        if m["nproc"] <= 2:
            out.append("- This machine has %d CPU(s): runs with more threads than that measure "
                       "oversubscription, not parallel speed-up." % m["nproc"])
        out.append("- Times and RSS are of the whole process (spawn to exit, `ru_maxrss` from "
                   "wait4), so they include start-up: program loading, the allocator's "
                   "initialisation, Python's interpreter start.")
        if m.get("redis_glibc_preload"):
            out.append("- Debian's `redis-server` links libjemalloc; its glibc column preloads "
                       "`%s` so glibc's malloc is found first. The time is redis-benchmark's "
                       "wall time; the RSS is the server's peak." % m["redis_glibc_preload"])
        if "rust" in order:
            r = m.get("rust") or {}
            crates = ", ".join("%s %s" % kv for kv in sorted((r.get("crates") or {}).items()))
            out.append("- rust: one program built per allocator (%s; %s), no `LD_PRELOAD`: "
                       "glibc is `std::alloc::System`, jemalloc and mimalloc the crates (they "
                       "build their own copies, not the Debian libraries above), mmpool "
                       "`mmpool::MmPool` (the crate as a dependency); tcmalloc, which has no "
                       "crate, is the System build with libtcmalloc preloaded."
                       % (r.get("rustc") or "rustc", crates or "crate versions unknown"))
        out.append("- Environment variables that tune allocators (`MALLOC_*`, `MIMALLOC_*`, "
                   "`TCMALLOC_*`, `MMPOOL_*`, `GLIBC_TUNABLES`, ...) are removed for every run.")
        if self.notes:
            out += ["", "### Failures", ""]
            for k, t in self.notes:
                out.append("%d. %s" % (k, t.replace("\n", " ")))
        out += ["", "Raw runs: `results.csv`; all data: `results.json`; chart: `results.svg`.",
                "", "![time relative to glibc](results.svg)", ""]
        return "\n".join(out)

    def redis_section(self, cells):
        row = cells.get("redis")
        if not row:
            return []
        head = "| | " + " | ".join(self.allocs) + " |"
        vals = []
        for a in self.allocs:
            c = row[a]
            v = c.extra_median("rps")
            vals.append("%.0f" % v if v is not None else short_status(c))
        return ["## redis throughput (requests/s over all tests, median)", "", head,
                "|---|" + "--:|" * len(self.allocs), "| requests/s | " + " | ".join(vals) + " |",
                ""]

    def frag_section(self, cells):
        row = cells.get("frag")
        if not row:
            return []
        live = next((e.get("live_kib") for c in row.values() for e in c.extras
                     if e.get("live_kib")), None)
        out = ["## frag: resident set while holding %s MiB of live data (VmRSS, median MiB)"
               % ("%.1f" % (live / 1024.0) if live else "?"), "",
               "| | " + " | ".join(self.allocs) + " |", "|---|" + "--:|" * len(self.allocs)]
        for key, label in (("vmrss_end_kib", "VmRSS, data live"),
                           ("vmrss_after_free_kib", "VmRSS after freeing all")):
            vals = []
            for a in self.allocs:
                v = row[a].extra_median(key)
                vals.append("%.1f" % (v / 1024.0) if v is not None else short_status(row[a]))
            out.append("| %s | %s |" % (label, " | ".join(vals)))
        return out + [""]

    def callgrind_section(self):
        if not self.cg:
            return []
        iters = next((r["iters"] for r in self.cg.values() if r.get("iters")), None)
        out = ["## Fast path: instructions per malloc/free pair (callgrind)", "",
               "`valgrind --tool=callgrind` on `callloop MODE N` and `MODE 2N` (N = %s); "
               "per pair = (Ir(2N) − Ir(N)) / N, so start-up cancels. *lifo32*: `malloc(32)` "
               "then `free`, 16 other 32-byte blocks live; *mix*: 16 B–1 KiB (75%% ≤ 128 B), "
               "each iteration frees the block allocated 64 iterations earlier."
               % ("{:,}".format(iters) if iters else "?"), "",
               "| allocator | lifo32 | mix |", "|---|--:|--:|"]
        for a in self.allocs:
            cols = []
            for mode in ("lifo32", "mix"):
                r = self.cg.get("%s/%s" % (a, mode))
                if r is None:
                    cols.append("—")
                elif r["status"] == "ok":
                    cols.append("%.1f" % r["per_pair"])
                else:
                    n = self.footnote("callgrind %s under %s: %s %s"
                                      % (mode, a, r["status"], r.get("detail", "")))
                    cols.append("FAIL [%d]" % n)
            out.append("| %s | %s |" % (a, " | ".join(cols)))
        e = self.cg.get("glibc/empty")
        if e and e.get("status") == "ok":
            out += ["", "The loop itself (calls to two no-op functions) costs %.1f instructions "
                    "per iteration; it is included above." % e["per_pair"]]
        return out + [""]

    def scaling_section(self):
        if not any(r["phase"] == "scaling" for r in self.runs):
            return []
        m = self.meta
        out = ["## Thread scaling (median seconds; fixed total work split over the threads)", "",
               "%d runs per cell, scale %g. This machine has **%d CPU(s)**%s. prodcons and "
               "prodcons-pairs run THREADS/2 pairs (1 pair at 1 thread); churn keeps THREADS "
               "threads alive; xserver runs THREADS chains of short-lived threads."
               % (m.get("scaling_runs", 0), m.get("scaling_scale", 0), m["nproc"],
                  ": beyond %d threads the runs are oversubscribed" % m["nproc"]
                  if m["nproc"] < max(m.get("scaling_threads", [1])) else ""), ""]
        for wl in [w["name"] for w in m["workloads"]]:
            rows = []
            for t in m.get("scaling_threads", []):
                cells = self.cells("scaling", t).get(wl)
                if not cells:
                    continue
                cols = []
                for a in self.allocs:
                    c = cells[a]
                    cols.append("%.3f" % c.time if c.ok else
                                self.fail_text("%s (%d threads)" % (wl, t), a, c))
                rows.append("| %d | %s |" % (t, " | ".join(cols)))
            if rows:
                out += ["**%s**" % wl, "", "| threads | " + " | ".join(self.allocs) + " |",
                        "|--:|" + "--:|" * len(self.allocs)] + rows + [""]
        return out

    def secure_section(self):
        """mmpool-secure against mmpool and scudo: times, peak RSS, ratios, bars."""
        m = self.meta
        allocs = m.get("secure_allocators") or []
        if not allocs or not any(r["phase"] == "secure" for r in self.runs):
            return []
        cells = self.cells("secure", allocs=allocs)
        order = [w["name"] for w in m["workloads"] if w["name"] in cells]
        shown = ["mmpool", "mmpool-secure", "scudo"]
        libs = m.get("secure_libs") or {}
        vers = m.get("versions") or {}
        desc = ", ".join("%s %s (%s)" % (a, vers.get(a, "?"),
                                         "`LD_PRELOAD=%s`" % libs.get(a) if libs.get(a)
                                         else "not installed" if a == "scudo" else "no preload")
                         for a in allocs)
        out = ["## Secure build", "",
               "mmpool's secure build (`make secure`: a record and canaries on every block, "
               "zero on free, quarantine, guard pages) against the default build and scudo "
               "(LLVM's hardened allocator). %d runs per cell, interleaved across %s "
               "(glibc ran as the reference for the outputs), medians, scale %g; `±` is half "
               "the min–max spread of the times. Allocators: %s."
               % (m.get("secure_runs", 0), ", ".join(allocs), m.get("secure_scale", 0), desc),
               ""]
        for a, why in (m.get("secure_availability") or {}).items():
            if why:
                out.append("> **%s unavailable:** %s — its cells are FAIL." % (a, why))
        if any((m.get("secure_availability") or {}).values()):
            out.append("")

        def ratio(row, num, den, value):
            a, b = row[num], row[den]
            if a.ok and b.ok and value(b) > 0:
                return value(a) / value(b)
            return None

        metrics = (("time", lambda c: c.time), ("rss", lambda c: c.rss_mib))
        pairs = [("mmpool-secure", "mmpool"), ("mmpool-secure", "scudo")]
        head = (["workload", "threads"] + ["%s (s)" % a for a in shown] +
                ["time secure/%s" % y for _, y in pairs] +
                ["%s (MiB)" % a for a in shown] +
                ["RSS secure/%s" % y for _, y in pairs])
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|"]
        vs_glibc = {(a, k): [] for a in shown for k in ("time", "rss")}
        ratios = {(p, k): [] for p in pairs for k in ("time", "rss")}
        excluded = []
        for wl in order:
            row = cells[wl]
            thr = next((x["threads"] for c in row.values() for x in c.runs), "")
            cols = [wl, str(thr)]
            for k, value in metrics:
                for a in shown:
                    c = row[a]
                    if not c.ok:
                        # "unavailable" reads the same as in the main tables (one footnote)
                        where = wl if c.fail and c.fail["status"] == "unavailable" else \
                            wl + " (secure-build phase)"
                        cols.append(self.fail_text(where, a, c))
                    elif k == "time":
                        cols.append("%.3f ±%.0f%%" % (c.time, c.spread(c.times)))
                    else:
                        cols.append("%.1f" % c.rss_mib)
                    g = row.get("glibc")
                    if c.ok and g is not None and g.ok and value(g) > 0:
                        vs_glibc[(a, k)].append(value(c) / value(g))
                for p in pairs:
                    x = ratio(row, p[0], p[1], value)
                    if x is None:
                        cols.append("—")
                    else:
                        ratios[(p, k)].append(x)
                        cols.append("%.2f" % x)
            if any(not c.ok for c in row.values()):
                excluded.append(wl)
            lines.append("| " + " | ".join(cols) + " |")
        n = len(order)
        cols = ["**geomean**", ""]
        for k in ("time", "rss"):
            for a in shown:
                g = geomean(vs_glibc[(a, k)])
                cols.append("—" if g is None else
                            "×%.2f vs glibc (%d/%d)" % (g, len(vs_glibc[(a, k)]), n))
            for p in pairs:
                g = geomean(ratios[(p, k)])
                cols.append("—" if g is None else
                            "**%.2f** (%d/%d)" % (g, len(ratios[(p, k)]), n))
        lines.append("| " + " | ".join(cols) + " |")
        out += lines + [""]

        def verdict(k, bar):
            vals = ratios[(("mmpool-secure", "mmpool"), k)]
            g = geomean(vals)
            if g is None:
                return "at most %.1f×: **not measured** (no workload ran under both)" % bar
            return "at most %.1f×: **%s** (×%.2f over %d of %d workloads)" % (
                bar, "holds" if g <= bar else "does not hold", g, len(vals), n)

        out += ["**Bars** (geometric means of mmpool-secure/mmpool over the workloads): "
                "time %s; peak RSS %s." % (verdict("time", SECURE_TIME_BAR),
                                           verdict("rss", SECURE_RSS_BAR)), ""]
        if excluded:
            out.append("Geomeans leave out, per column, the workloads where that column or its "
                       "reference is FAIL (counts in parentheses): %s." % ", ".join(excluded))
            out.append("")
        return out

    def security_section(self):
        """The heap-bug suite's per-class table (scripts/security.sh)."""
        sec = self.meta.get("security")
        if not sec:
            return []
        out = ["## Heap-bug suite", ""]
        if sec.get("note"):
            return out + ["Not available: %s." % sec["note"], ""]
        out += ["%s Each case is its own process doing one heap bug (`c-tests/security/`); "
                "every allocator runs with its defaults. The table counts, per class of bug, "
                "the cases each allocator stopped (it killed the program with a signal or an "
                "exit status, or a property case found it safe: address not reused, memory "
                "cleared, ...); every case's outcome is in `%s`."
                % (sec.get("summary") or "`scripts/security.sh`.", sec.get("md")), ""]
        out += ["- " + a for a in sec.get("allocators", [])]
        if sec.get("allocators"):
            out.append("")
        return out + sec["table"] + [""]

    # ------------------------------------------------------------------ svg
    def svg(self):
        cells = self.cells("main")
        order = [w["name"] for w in self.meta["workloads"] if w["name"] in cells]
        bars = [a for a in self.allocs if a != "glibc"]
        groups = []
        per_alloc = {a: [] for a in bars}
        for wl in order:
            g = cells[wl]["glibc"]
            vals = {}
            for a in bars:
                c = cells[wl][a]
                if not c.ok:
                    vals[a] = "FAIL"
                elif not g.ok:
                    vals[a] = "NOREF"
                else:
                    vals[a] = c.time / g.time
                    per_alloc[a].append(vals[a])
            groups.append((wl, vals, g.ok))
        groups.append(("geomean", {a: geomean(per_alloc[a]) or "NOREF" for a in bars}, True))

        lo, hi = -3.0, 3.0  # log2 range: 1/8 .. 8
        bw, gap, left, top, ph = 13, 22, 70, 76, 300
        gw = bw * len(bars) + gap
        width = max(780, left + gw * len(groups) + 30)
        height = top + ph + 110

        def y(ratio):
            v = min(hi, max(lo, math.log2(ratio)))
            return top + (hi - v) / (hi - lo) * ph

        s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
             'viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">'
             % (width, height, width, height),
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="%d" y="20" font-size="14" font-weight="bold">Wall time relative to glibc '
             '(median of %d runs; below 1 = faster than glibc; log scale)</text>'
             % (left, self.meta["runs"])]
        lx = left
        for a in bars:
            s.append('<rect x="%d" y="32" width="12" height="12" fill="%s"/>' % (lx, COLORS[a]))
            s.append('<text x="%d" y="42">%s</text>' % (lx + 16, escape(a)))
            lx += 16 + 8 * len(a) + 20
        s.append('<text x="%d" y="42" fill="#555">%s</text>'
                 % (lx, escape("%d CPUs, %s, %s" % (self.meta["nproc"], self.meta["cpu"],
                                                    self.meta["date"]))))
        for e in range(int(lo), int(hi) + 1):
            yy = y(2.0 ** e)
            label = ("%g" % 2.0 ** e) if e >= 0 else "1/%d" % 2 ** -e
            s.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="%s"/>'
                     % (left, width - 30, yy, yy, "#333" if e == 0 else "#ddd",
                        "1.5" if e == 0 else "1"))
            s.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (left - 6, yy + 4, label))
        s.append('<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">'
                 'time / glibc time</text>' % (top + ph // 2, top + ph // 2))
        base = y(1.0)
        for gi, (wl, vals, ref_ok) in enumerate(groups):
            gx = left + gi * gw + gap // 2
            if wl == "geomean":
                s.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#999" '
                         'stroke-dasharray="3,3"/>' % (gx - gap // 2, gx - gap // 2, top,
                                                       top + ph))
            for bi, a in enumerate(bars):
                v = vals[a]
                x = gx + bi * bw
                if isinstance(v, float):
                    yv = y(v)
                    y0, h = (yv, base - yv) if yv < base else (base, yv - base)
                    s.append('<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s">'
                             '<title>%s %s: %.2f× glibc</title></rect>'
                             % (x, y0, bw - 2, max(h, 1.0), COLORS[a], escape(wl), a, v))
                    if v > 2.0 ** hi or v < 2.0 ** lo:  # clipped: print the value
                        stagger = 10 * (bi % 2)
                        s.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">'
                                 '%s×</text>' % (x + bw / 2 - 1,
                                                 (top - 4 - stagger) if v > 1 else
                                                 (top + ph + 10 + stagger),
                                                 "%.0f" % v if v > 1 else "%.2f" % v))
                else:
                    word = "FAIL" if v == "FAIL" else "n/a"
                    s.append('<text x="%.1f" y="%.1f" transform="rotate(-90 %.1f %.1f)" '
                             'fill="%s" font-size="9" font-weight="bold">%s<title>%s %s: %s'
                             '</title></text>' % (x + bw / 2 + 2, base - 4, x + bw / 2 + 2,
                                                  base - 4, "#c00" if word == "FAIL" else "#888",
                                                  word, escape(wl), a, word))
            cx = gx + bw * len(bars) / 2
            s.append('<text x="%.1f" y="%d" text-anchor="end" transform="rotate(-35 %.1f %d)"'
                     '%s>%s%s</text>' % (cx, top + ph + 22, cx, top + ph + 22,
                                          ' font-weight="bold"' if wl == "geomean" else "",
                                          escape(wl), "" if ref_ok else " (glibc FAIL)"))
        s.append("</svg>")
        return "\n".join(s) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench-report.py RESULTS.json")
    path = sys.argv[1]
    with open(path) as f:
        data = json.load(f)
    rep = Report(data)
    outdir = os.path.dirname(os.path.abspath(path))
    md = rep.render()
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(outdir, "results.svg"), "w") as f:
        f.write(rep.svg())
    print("bench: wrote %s, results.csv, results.svg" % os.path.join(outdir, "results.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
