/* c-tests/tu/glibc.h -- which allocator serves the program, and glibc's
 * own functions behind the preloaded one (see testutil.h, which includes
 * it): tu_symbol_owner, tu_malloc_is_mmpool, tu_glibc (glibc's malloc
 * family), tu_glibc_sym (any glibc function by name). */
#ifndef MMPOOL_TU_GLIBC_H
#define MMPOOL_TU_GLIBC_H

#ifndef MMPOOL_TESTUTIL_H
#error "include testutil.h, not tu/glibc.h: it includes the tu/ headers in order"
#endif

/* ------------------------------------------------------------------ */
/* Which allocator serves `malloc`?  (file name of the object that      */
/* defines the symbol as the program sees it)                           */

static const char TU_UNUSED *tu_symbol_owner(const char *sym)
{
    void *f = dlsym(RTLD_DEFAULT, sym);
    Dl_info info;
    if (!f || !dladdr(f, &info) || !info.dli_fname)
        return "";
    return info.dli_fname;
}

static bool TU_UNUSED tu_malloc_is_mmpool(void)
{
    return strstr(tu_symbol_owner("malloc"), "libmmpool") != NULL;
}

/* glibc's own malloc family, found through libc's handle (RTLD_NEXT
 * from the executable would find libmmpool: the preloaded/linked
 * library comes after the executable in the lookup order). */
typedef struct {
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
    void *(*memalign)(size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    size_t (*usable_size)(void *);
} tu_glibc_api;

static bool TU_UNUSED tu_glibc(tu_glibc_api *g)
{
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        return false;
    *(void **)&g->malloc = dlsym(h, "malloc");
    *(void **)&g->calloc = dlsym(h, "calloc");
    *(void **)&g->realloc = dlsym(h, "realloc");
    *(void **)&g->free = dlsym(h, "free");
    *(void **)&g->memalign = dlsym(h, "memalign");
    *(void **)&g->posix_memalign = dlsym(h, "posix_memalign");
    *(void **)&g->usable_size = dlsym(h, "malloc_usable_size");
    dlclose(h);
    return g->malloc && g->calloc && g->realloc && g->free && g->memalign &&
           g->posix_memalign && g->usable_size;
}

/* A function of glibc itself (not the preloaded allocator's), by name:
 * dlsym on libc's own handle.  NULL when libc does not define it. */
static void TU_UNUSED *tu_glibc_sym(const char *name)
{
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        return NULL;
    void *f = dlsym(h, name);
    dlclose(h);
    return f;
}

#endif /* MMPOOL_TU_GLIBC_H */
