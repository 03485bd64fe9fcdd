// Allocator workload for scripts/test-programs.sh (g++ family): compiled
// with g++ -O2 (cc1plus runs under the preload) and then run (operator new
// and delete go to malloc/free, so the program exercises the pool too).
// Deterministic: fixed-seed std::mt19937_64, ordered output only.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <numeric>
#include <queue>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
}

std::uint64_t hash_str(const std::string &s) {
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    return h;
}

std::string word(std::mt19937_64 &rng, int lo, int hi) {
    std::uniform_int_distribution<int> len(lo, hi), ch('a', 'z');
    std::string s(static_cast<std::size_t>(len(rng)), 'a');
    for (auto &c : s) c = static_cast<char>(ch(rng));
    return s;
}

struct Shape {
    virtual ~Shape() = default;
    virtual std::uint64_t area() const = 0;
    virtual std::string name() const = 0;
};
struct Rect : Shape {
    std::uint64_t w, h;
    Rect(std::uint64_t a, std::uint64_t b) : w(a), h(b) {}
    std::uint64_t area() const override { return w * h; }
    std::string name() const override { return "rect" + std::to_string(w) + "x" + std::to_string(h); }
};
struct Tri : Shape {
    std::uint64_t b, h;
    Tri(std::uint64_t x, std::uint64_t y) : b(x), h(y) {}
    std::uint64_t area() const override { return b * h / 2; }
    std::string name() const override { return "tri" + std::to_string(b) + "/" + std::to_string(h); }
};

// Over-aligned types: operator new(size, align_val_t) -> aligned_alloc.
struct alignas(64) Line64 { std::uint64_t v[8]; };
struct alignas(256) Block256 { unsigned char b[300]; };

std::uint64_t aligned_churn(std::mt19937_64 &rng) {
    std::uint64_t h = 0, misaligned = 0;
    std::vector<std::unique_ptr<Line64>> lines;
    std::vector<std::unique_ptr<Block256[]>> blocks;
    for (int i = 0; i < 100000; i++) {
        auto l = std::make_unique<Line64>();
        l->v[i % 8] = rng();
        misaligned += reinterpret_cast<std::uintptr_t>(l.get()) % 64 != 0;
        h = mix(h, l->v[i % 8] % 1000);
        lines.push_back(std::move(l));
        if (lines.size() > 2000) lines.erase(lines.begin(), lines.begin() + 1000);
        if (i % 50 == 0) {
            std::size_t n = 1 + rng() % 40;
            blocks.emplace_back(new Block256[n]);
            misaligned += reinterpret_cast<std::uintptr_t>(blocks.back().get()) % 256 != 0;
            blocks.back()[n - 1].b[299] = static_cast<unsigned char>(n);
            h = mix(h, blocks.back()[n - 1].b[299]);
            if (blocks.size() > 100) blocks.erase(blocks.begin());
        }
    }
    std::vector<Line64> vec(5000);  // std::allocator<Line64> uses aligned new too
    misaligned += reinterpret_cast<std::uintptr_t>(vec.data()) % 64 != 0;
    return misaligned ? 0 : h;
}

template <typename Map>
std::uint64_t map_churn(std::mt19937_64 &rng, int rounds) {
    Map m;
    std::uint64_t h = 0;
    for (int i = 0; i < rounds; i++) {
        std::string k = word(rng, 1, 4);
        switch (rng() % 4) {
        case 0:
        case 1: m[k].push_back(static_cast<int>(rng() % 1000)); break;
        case 2: m.erase(k); break;
        default: {
            auto it = m.find(k);
            if (it != m.end()) h = mix(h, it->second.size());
        }
        }
    }
    std::vector<std::pair<std::string, std::size_t>> items;
    for (auto &kv : m) items.emplace_back(kv.first, kv.second.size());
    std::sort(items.begin(), items.end());
    for (auto &kv : items) h = mix(h, hash_str(kv.first) ^ kv.second);
    return mix(h, m.size());
}

std::uint64_t worker(unsigned seed) {
    std::mt19937_64 rng(seed);
    std::deque<std::string> dq;
    std::list<std::vector<int>> lst;
    std::uint64_t h = seed;
    for (int i = 0; i < 60000; i++) {
        dq.push_back(word(rng, 0, 40));
        if (dq.size() > 500) { h = mix(h, hash_str(dq.front())); dq.pop_front(); }
        lst.emplace_back(static_cast<std::size_t>(rng() % 64), i);
        if (lst.size() > 300) { h = mix(h, lst.front().size()); lst.pop_front(); }
    }
    return h;
}

}  // namespace

int main() {
    std::mt19937_64 rng(42);

    // ordered and unordered maps of vectors
    std::printf("map %016llx\n", (unsigned long long)map_churn<std::map<std::string, std::vector<int>>>(rng, 300000));
    std::printf("umap %016llx\n",
                (unsigned long long)map_churn<std::unordered_map<std::string, std::vector<int>>>(rng, 300000));

    std::printf("aligned %016llx\n", (unsigned long long)aligned_churn(rng));

    // vector sort / unique / set algebra
    std::vector<std::uint64_t> v(1000000);
    for (auto &x : v) x = rng() % 5000000;
    std::vector<std::uint64_t> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    std::set<std::uint64_t> s1(v.begin(), v.begin() + 200000), s2(v.begin() + 100000, v.begin() + 300000);
    std::vector<std::uint64_t> inter;
    std::set_intersection(s1.begin(), s1.end(), s2.begin(), s2.end(), std::back_inserter(inter));
    std::unordered_set<std::uint64_t> us(v.begin(), v.end());
    std::printf("vec unique=%zu inter=%zu us=%zu sum=%llu\n", sorted.size(), inter.size(), us.size(),
                (unsigned long long)std::accumulate(inter.begin(), inter.end(), 0ULL));

    // polymorphic objects through shared_ptr / unique_ptr, priority queue
    std::vector<std::shared_ptr<Shape>> shapes;
    for (int i = 0; i < 200000; i++) {
        if (rng() % 2) shapes.push_back(std::make_shared<Rect>(rng() % 100, rng() % 100));
        else shapes.push_back(std::make_shared<Tri>(rng() % 100, rng() % 100));
        if (shapes.size() > 5000) shapes.erase(shapes.begin() + static_cast<long>(rng() % shapes.size()));
    }
    auto cmp = [](const std::shared_ptr<Shape> &a, const std::shared_ptr<Shape> &b) {
        return a->area() != b->area() ? a->area() < b->area() : a->name() < b->name();
    };
    std::priority_queue<std::shared_ptr<Shape>, std::vector<std::shared_ptr<Shape>>, decltype(cmp)> pq(cmp);
    for (auto &p : shapes) pq.push(p);
    std::uint64_t h = 0;
    std::string top;
    for (int i = 0; !pq.empty(); i++) {
        if (i < 3) top += pq.top()->name() + " ";
        h = mix(h, pq.top()->area());
        pq.pop();
    }
    std::printf("shapes %zu %016llx top=%s\n", shapes.size(), (unsigned long long)h, top.c_str());

    // strings, streams, std::function, regex
    std::ostringstream os;
    std::vector<std::function<std::string(int)>> fns = {
        [](int i) { return std::to_string(i * 7); },
        [](int i) { return std::string(static_cast<std::size_t>(i % 13), 'z'); },
        [&rng](int i) { return word(rng, 1, 8) + ":" + std::to_string(i); },
    };
    for (int i = 0; i < 200000; i++) os << fns[static_cast<std::size_t>(i) % fns.size()](i) << (i % 10 ? ' ' : '\n');
    std::string text = os.str();
    std::regex re(R"(([a-z]+):(\d+))");
    std::size_t matches = 0;
    std::uint64_t rh = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.begin() + 400000, re); it != std::sregex_iterator(); ++it) {
        matches++;
        rh = mix(rh, hash_str((*it)[1].str()) ^ std::stoull((*it)[2].str()));
    }
    std::printf("text len=%zu hash=%016llx regex=%zu %016llx\n", text.size(), (unsigned long long)hash_str(text),
                matches, (unsigned long long)rh);

    // threads: each worker allocates and frees on its own
    std::vector<std::uint64_t> results(4);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < 4; t++) ts.emplace_back([t, &results] { results[t] = worker(100 + t); });
    for (auto &t : ts) t.join();
    for (unsigned t = 0; t < 4; t++) std::printf("thread%u %016llx\n", t, (unsigned long long)results[t]);
    return 0;
}
