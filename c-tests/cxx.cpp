// c-tests/cxx.cpp -- C++ on the pool: new/delete (plain, array, sized,
// aligned, nothrow), std::bad_alloc, containers churning across threads,
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
    RUN(exceptions);
    RUN(iostreams);
    RUN(containers_across_threads);
    RUN(thread_local_destructors);
    RUN(shared_ptr_across_threads);
    return tu_finish();
}
