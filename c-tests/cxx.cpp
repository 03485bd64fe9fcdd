// c-tests/cxx.cpp -- C++ on the pool: new/delete (plain, array, sized,
// aligned, nothrow; the pool's own operators), the new-handler loop,
// std::bad_alloc, sized delete checks, containers churning across threads,
// exceptions, iostreams, thread_local destructors.
//
// Built with g++ -O2 -g -Wall -Wextra -Werror -pthread -Iinclude and run
// under LD_PRELOAD like the C tests.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

extern "C" {
#include "mmpool.h"
}
#include "testutil.h"

static bool pool;   // malloc is libmmpool's

static void expect_owned(const void *p, const char *what)
{
    if (pool && !mmpool_owns(p))
        FAILF("%s = %p is not mmpool_owns(): operator new bypassed the pool", what, p);
}

static void test_new_delete()
{
    for (int i = 0; i < 10000; i++) {
        int *p = new int(i);
        expect_owned(p, "new int");
        CHECK(*p == i, "new int");
        delete p;
        size_t n = static_cast<size_t>(i % 3000) + 1;
        char *a = new char[n];
        expect_owned(a, "new char[]");
        std::fill(a, a + n, static_cast<char>(i));
        delete[] a;
        std::string *s = new std::string(static_cast<size_t>(i % 100) + 20, 'x');
        delete s;
        if (tu_case_failed)
            return;
    }
}

struct alignas(64) Line {
    char b[64];
};
struct alignas(4096) Page {
    char b[100];
};

static void test_aligned_new()
{
    std::vector<Line *> lines;
    std::vector<Page *> pages;
    for (int i = 0; i < 1000; i++) {
        lines.push_back(new Line());
        pages.push_back(new Page());
        CHECK(tu_aligned(lines.back(), 64), "new Line (alignas 64) misaligned");
        CHECK(tu_aligned(pages.back(), 4096), "new Page (alignas 4096) misaligned");
    }
    expect_owned(lines[0], "aligned new");
    for (auto *l : lines)
        delete l;
    for (auto *p : pages)
        delete p;
    Page *arr = new Page[7];
    CHECK(tu_aligned(arr, 4096), "new Page[7] misaligned");
    delete[] arr;
    for (size_t al = 8; al <= (size_t(1) << 20); al *= 2) {
        void *p = ::operator new(100, std::align_val_t(al));
        CHECK(tu_aligned(p, al), "operator new(100, align %zu) misaligned", al);
        ::operator delete(p, 100, std::align_val_t(al));
    }
}

static void test_sized_delete()
{
    for (size_t n = 1; n < 100000; n = n * 2 + 1) {
        void *p = ::operator new(n);
        std::fill(static_cast<char *>(p), static_cast<char *>(p) + n, 1);
        ::operator delete(p, n);
    }
}

static void test_bad_alloc()
{
    volatile size_t huge = SIZE_MAX / 2;
    bool thrown = false;
    try {
        void *p = ::operator new(huge);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown, "operator new(SIZE_MAX/2) did not throw std::bad_alloc");
    void *p = ::operator new(huge, std::nothrow);
    CHECK(p == nullptr, "nothrow new(SIZE_MAX/2) returned non-null");
    thrown = false;
    try {
        std::vector<char> v;
        v.reserve(huge / 2);
    } catch (const std::bad_alloc &) {
        thrown = true;
    } catch (const std::length_error &) {
        thrown = true;
    }
    CHECK(thrown, "vector::reserve(huge) did not throw");
    // and the heap still works
    std::vector<int> v(1000, 7);
    CHECK(v[999] == 7, "vector after bad_alloc");
}

// Every form of operator new and delete is the pool's own (not
// libstdc++'s wrappers around malloc).
static void test_operators_are_the_pools()
{
    if (!pool)
        SKIP("malloc is not libmmpool's");
    static const char *const forms[] = {
        "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
        "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
        "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
        "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvRKSt9nothrow_t",
        "_ZdaPvRKSt9nothrow_t", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
        "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
        "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
    };
    for (const char *f : forms)
        CHECK(strstr(tu_symbol_owner(f), "libmmpool") != nullptr, "%s is served by '%s'", f,
              tu_symbol_owner(f));
    void *p = ::operator new(100, std::nothrow);
    expect_owned(p, "nothrow new");
    ::operator delete(p, std::nothrow);
    p = ::operator new[](5000, std::align_val_t(256), std::nothrow);
    expect_owned(p, "aligned nothrow new[]");
    CHECK(tu_aligned(p, 256), "aligned nothrow new[] misaligned");
    ::operator delete[](p, std::align_val_t(256), std::nothrow);
}

// Out of memory: operator new calls the new-handler and tries again until
// it succeeds or there is no handler (then std::bad_alloc).
static int handler_calls;
static void *handler_reserve;
static void *volatile sink;   // keeps new-expressions from being folded away

static void counting_handler()
{
    if (++handler_calls == 3)
        std::set_new_handler(nullptr);
}

struct HandlerGaveUp {
    int calls;
};

static void throwing_handler()
{
    throw HandlerGaveUp{++handler_calls};
}

static void releasing_handler()
{
    handler_calls++;
    free(handler_reserve);
    handler_reserve = nullptr;
    std::set_new_handler(nullptr);
}

static void test_new_handler()
{
    volatile size_t huge = SIZE_MAX / 4;
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    bool thrown = false;
    try {
        void *p = ::operator new(huge);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown && handler_calls == 3, "bad_alloc thrown: %d, after %d handler calls (want 3)",
          thrown, handler_calls);

    // nothrow new runs the handler too, then returns NULL.
    handler_calls = 0;
    std::set_new_handler(counting_handler);
    void *p = ::operator new[](huge, std::align_val_t(64), std::nothrow);
    CHECK(p == nullptr && handler_calls == 3, "nothrow new: %p after %d handler calls", p,
          handler_calls);

    // Any exception the handler throws reaches the caller through new.
    handler_calls = 0;
    std::set_new_handler(throwing_handler);
    int caught = 0;
    try {
        char *a = new char[huge];   // a new-expression: the handler's throw passes it
        sink = a;
        delete[] a;
    } catch (const HandlerGaveUp &e) {
        caught = e.calls;
    }
    std::set_new_handler(nullptr);
    CHECK(caught == 1, "the handler's exception: caught after %d calls", caught);

    // Memory that comes back in time: RLIMIT_AS in a child, the handler
    // frees a reserve, the retry succeeds.
    tu_case_in_child([] {
        handler_reserve = malloc(64 << 20);
        memset(handler_reserve, 1, 64 << 20);
        struct rlimit rl;
        getrlimit(RLIMIT_AS, &rl);
        rlim_t now = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        if (f && fscanf(f, "%lu", &pages) == 1)
            now = static_cast<rlim_t>(pages) * 4096;
        if (f)
            fclose(f);
        rl.rlim_cur = now + (16 << 20);
        REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit");
        handler_calls = 0;
        std::set_new_handler(releasing_handler);
        // More than the limit leaves, less than the reserve frees.
        char *big = new char[40 << 20];
        big[0] = 1;
        sink = big;
        CHECK(handler_calls == 1 && handler_reserve == nullptr,
              "the retry after the handler freed memory: %d calls", handler_calls);
        delete[] big;
    }, 20);
}

// A sized delete with a size the block was not allocated for stops the
// program with a message naming the size and the block.
static void sized_mismatch_child(void *)
{
    void *p = ::operator new(24);
    fprintf(stderr, "block %p\n", p);
    fflush(stderr);
    ::operator delete(p, 96);
    _exit(0);
}

static void test_sized_delete_mismatch()
{
    if (!pool)
        SKIP("malloc is not libmmpool's");
    tu_child_result r;
    REQUIRE(tu_run_child(sized_mismatch_child, nullptr, 20, &r), "fork");
    char addr[64] = "", want[160];
    sscanf(r.err, "block %63s", addr);
    snprintf(want, sizeof want, "mmpool: operator delete: size 96 does not match the block at %s",
             addr);
    CHECK(r.signaled && r.sig == SIGABRT && addr[0] && strstr(r.err, want),
          "operator delete(new(24), 96): status %d, want \"%s\" in \"%.300s\"",
          r.signaled ? r.sig : r.exit_code, want, r.err);
}

static void test_exceptions()
{
    int caught = 0;
    for (int i = 0; i < 20000; i++) {
        try {
            throw std::runtime_error("error number " + std::to_string(i) +
                                     std::string(static_cast<size_t>(i % 200), '!'));
        } catch (const std::runtime_error &e) {
            if (std::string(e.what()).rfind("error number ", 0) == 0)
                caught++;
        }
    }
    CHECK(caught == 20000, "caught %d exceptions", caught);
}

static void test_iostreams()
{
    std::ostringstream os;
    for (int i = 0; i < 100000; i++)
        os << i << ' ';
    std::string s = os.str();
    std::istringstream is(s);
    long sum = 0, x;
    while (is >> x)
        sum += x;
    CHECK(sum == 4999950000L, "stream round trip sum %ld", sum);
}

// Containers built in one thread, handed over and destroyed in another.
struct Box {
    std::map<int, std::string> m;
    std::unordered_map<std::string, std::vector<int>> u;
    std::vector<std::string> v;
};

static std::mutex qlock;
static std::deque<std::unique_ptr<Box>> queue;
static std::atomic<int> produced{0}, consumed{0};

static void churn(int id, int boxes)
{
    tu_rng r;
    tu_rng_seed(&r, static_cast<uint64_t>(id) + 17);
    for (int b = 0; b < boxes; b++) {
        auto box = std::make_unique<Box>();
        int n = static_cast<int>(tu_below(&r, 200)) + 1;
        for (int i = 0; i < n; i++) {
            std::string key = "k" + std::to_string(id) + "-" + std::to_string(i);
            box->m[i] = key + std::string(tu_below(&r, 100), 'v');
            box->u[key].assign(tu_below(&r, 50), i);
            box->v.push_back(key);
        }
        if (tu_below(&r, 4) == 0) {
            box->v.shrink_to_fit();
            box->m.erase(box->m.begin(), box->m.find(n / 2));
        }
        {
            std::lock_guard<std::mutex> g(qlock);
            queue.push_back(std::move(box));
        }
        produced++;
        std::unique_ptr<Box> other;
        {
            std::lock_guard<std::mutex> g(qlock);
            if (!queue.empty()) {
                other = std::move(queue.front());
                queue.pop_front();
            }
        }
        if (other) {
            for (auto &kv : other->m)
                if (kv.second.compare(0, 1, "k") != 0) {
                    FAILF("map value corrupted");
                    break;
                }
            other.reset();      // freed by a thread that did not allocate it
            consumed++;
        }
    }
}

static void test_containers_across_threads()
{
    int nthreads = 4, boxes = tu_full ? 20000 : 1500;
    std::vector<std::thread> th;
    for (int i = 0; i < nthreads; i++)
        th.emplace_back(churn, i, boxes);
    for (auto &t : th)
        t.join();
    {
        std::lock_guard<std::mutex> g(qlock);
        consumed += static_cast<int>(queue.size());
        queue.clear();
    }
    CHECK(produced == nthreads * boxes && consumed == produced, "produced %d consumed %d",
          produced.load(), consumed.load());
}

// thread_local objects with destructors that free (and allocate).
struct TlsThing {
    std::vector<std::string> v;
    TlsThing()
    {
        for (int i = 0; i < 50; i++)
            v.push_back(std::string(static_cast<size_t>(i) * 10 + 1, 't'));
    }
    ~TlsThing()
    {
        std::string last = v.back() + "-bye";   // allocates in the destructor
        v.clear();
        v.shrink_to_fit();
        if (last.size() != 491 + 4)
            dtor_bad++;
        dtor_ran++;
    }
    static std::atomic<int> dtor_ran, dtor_bad;
};
std::atomic<int> TlsThing::dtor_ran{0};
std::atomic<int> TlsThing::dtor_bad{0};

static thread_local TlsThing tls_thing;

static void test_thread_local_destructors()
{
    int n = tu_full ? 2000 : 300;
    for (int i = 0; i < n; i++) {
        std::thread t([] {
            tls_thing.v.push_back("touch");
            tls_thing.v.pop_back();
        });
        t.join();
    }
    CHECK(TlsThing::dtor_ran == n && TlsThing::dtor_bad == 0,
          "thread_local destructors: %d ran (want %d), %d bad", TlsThing::dtor_ran.load(), n,
          TlsThing::dtor_bad.load());
}

static void test_shared_ptr_across_threads()
{
    std::vector<std::shared_ptr<std::vector<int>>> v;
    for (int i = 0; i < 2000; i++)
        v.push_back(std::make_shared<std::vector<int>>(static_cast<size_t>(i % 100) + 1, i));
    std::vector<std::thread> th;
    for (int t = 0; t < 4; t++)
        th.emplace_back([&v, t] {
            long s = 0;
            for (size_t i = static_cast<size_t>(t); i < v.size(); i += 4)
                s += v[i]->at(0);
            (void)s;
        });
    for (auto &t : th)
        t.join();
    std::thread killer([&v] { v.clear(); });   // last references die elsewhere
    killer.join();
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    pool = tu_malloc_is_mmpool();
    if (!pool)
        printf("note: malloc is served by '%s', not libmmpool\n", tu_symbol_owner("malloc"));
    RUN(new_delete);
    RUN(aligned_new);
    RUN(sized_delete);
    RUN(bad_alloc);
    RUN(operators_are_the_pools);
    RUN(new_handler);
    RUN(sized_delete_mismatch);
    RUN(exceptions);
    RUN(iostreams);
    RUN(containers_across_threads);
    RUN(thread_local_destructors);
    RUN(shared_ptr_across_threads);
    return tu_finish();
}
