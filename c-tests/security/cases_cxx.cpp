// c-tests/security/cases_cxx.cpp -- heap-bug cases in C++, one per process.
//
//   target/security/cases_cxx <case>   run one case (see sec.h for the output)
//   target/security/cases_cxx --list   the case names, one a line
//
// new/delete mismatches on small (24 bytes), medium (3000) and large
// (200000) blocks.  Which operator new/delete runs: the preloaded
// allocator's when it exports them (jemalloc, mimalloc, tcmalloc, scudo),
// else libstdc++'s, which call malloc and free (glibc, mmpool today).
#include "sec.h"

#include <new>

typedef void (*case_fn)(size_t size);

// Opaque allocation steps: the compiler cannot pair a new with its delete,
// so it neither warns about the mismatch nor folds anything away.
static char *new_array(size_t n) { return new char[n]; }
static char *(*volatile xnew_array)(size_t) = new_array;

static void *(*volatile xop_new)(size_t) = static_cast<void *(*)(size_t)>(::operator new);

template <size_t N> struct Blob {
    char bytes[N];
};

template <size_t N> static Blob<N> *new_blob() { return new Blob<N>; }

// A class with a destructor: new D[n] puts the element count in front of
// the array, so `delete` of it frees a pointer 8 bytes into the block.
template <size_t N> struct D {
    char bytes[N];
    ~D() { bytes[0] = 0; }
};

template <size_t N> static D<N> *new_d_array(size_t n) { return new D<N>[n]; }

// new/delete of the size, a few times, then the C exercise.
static void exercise_cxx(size_t size)
{
    char *v[16];
    for (int i = 0; i < 16; i++) {
        v[i] = xnew_array(size);
        xmemset(v[i], 0x21, size);
    }
    for (int i = 0; i < 16; i++)
        delete[] v[i];
    for (int i = 0; i < 16; i++) {
        v[i] = static_cast<char *>(xop_new(size));
        xmemset(v[i], 0x22, size);
    }
    for (int i = 0; i < 16; i++)
        ::operator delete(v[i], size);
    exercise(size);
}

// delete of a new[] pointer.
static void delete_of_new_array(size_t size)
{
    char *hood[HOOD];
    for (int i = 0; i < HOOD; i++)
        hood[i] = xnew_array(size);
    char *p = hood[VICTIM];
    xmemset(p, 0x23, size);
    bug();
    delete p;
    for (int i = 0; i < HOOD; i++)
        if (i != VICTIM)
            delete[] hood[i];
    exercise_cxx(size);
    not_stopped(nullptr);
}

// delete[] of a new pointer.
template <size_t N> static void delete_array_of_new(size_t size)
{
    Blob<N> *(*volatile make)() = new_blob<N>;
    Blob<N> *hood[HOOD];
    for (int i = 0; i < HOOD; i++)
        hood[i] = make();
    Blob<N> *p = hood[VICTIM];
    xmemset(p, 0x24, N);
    bug();
    delete[] p;
    for (int i = 0; i < HOOD; i++)
        if (i != VICTIM)
            delete hood[i];
    exercise_cxx(size);
    not_stopped(nullptr);
}

// delete of a new[] array of a class with a destructor (the count cookie).
template <size_t N> static void delete_of_new_dtor_array(size_t size)
{
    D<N> *(*volatile make)(size_t) = new_d_array<N>;
    size_t n = size / N;
    D<N> *hood[HOOD];
    for (int i = 0; i < HOOD; i++)
        hood[i] = make(n);
    D<N> *p = hood[VICTIM];
    bug();
    delete p;
    for (int i = 0; i < HOOD; i++)
        if (i != VICTIM)
            delete[] hood[i];
    exercise_cxx(size);
    not_stopped(nullptr);
}

// Sized delete with a size of another class than the allocation's.
static void sized_delete_mismatch(size_t size)
{
    void *hood[HOOD];
    for (int i = 0; i < HOOD; i++) {
        hood[i] = xop_new(size);
        xmemset(hood[i], 0x25, size);
    }
    size_t wrong = size * 4;
    bug();
    ::operator delete(hood[VICTIM], wrong);
    for (int i = 0; i < HOOD; i++)
        if (i != VICTIM)
            ::operator delete(hood[i], size);
    exercise_cxx(size);
    not_stopped(nullptr);
}

struct case_entry {
    const char *name;
    case_fn fn;
    size_t size;
};

static const case_entry cases[] = {
    {"delete_of_new_array_small", delete_of_new_array, SEC_SMALL},
    {"delete_of_new_array_medium", delete_of_new_array, SEC_MEDIUM},
    {"delete_of_new_array_large", delete_of_new_array, SEC_LARGE},
    {"delete_array_of_new_small", delete_array_of_new<SEC_SMALL>, SEC_SMALL},
    {"delete_array_of_new_medium", delete_array_of_new<SEC_MEDIUM>, SEC_MEDIUM},
    {"delete_array_of_new_large", delete_array_of_new<SEC_LARGE>, SEC_LARGE},
    {"delete_of_new_array_dtor_small", delete_of_new_dtor_array<8>, SEC_SMALL},
    {"delete_of_new_array_dtor_medium", delete_of_new_dtor_array<8>, SEC_MEDIUM},
    {"delete_of_new_array_dtor_large", delete_of_new_dtor_array<8>, SEC_LARGE},
    {"sized_delete_mismatch_small", sized_delete_mismatch, SEC_SMALL},
    {"sized_delete_mismatch_medium", sized_delete_mismatch, SEC_MEDIUM},
    {"sized_delete_mismatch_large", sized_delete_mismatch, SEC_LARGE},
};

int main(int argc, char **argv)
{
    size_t n = sizeof cases / sizeof cases[0];
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++) {
            sec_write(cases[i].name);
            sec_write("\n");
        }
        return 0;
    }
    if (argc != 2) {
        sec_write("usage: cases_cxx <case> | --list\n");
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], cases[i].name) == 0) {
            sec_case = argv[1];
            cases[i].fn(cases[i].size);
            setup_failed("the case returned");
        }
    }
    sec_write("cases_cxx: no such case\n");
    return 2;
}
