/*
 * whichmalloc - prints the shared object that provides malloc and free in
 * this process, so the harness can prove an LD_PRELOAD took effect (a
 * library that exports nothing would silently measure glibc).
 */
#include "common.h"

#include <dlfcn.h>

static const char *
owner(const char *sym)
{
    void *f = dlsym(RTLD_DEFAULT, sym);
    Dl_info info;
    if (!f || !dladdr(f, &info) || !info.dli_fname)
        return "?";
    return info.dli_fname;
}

int
main(void)
{
    void *p = xmalloc("whichmalloc", 100);
    free(p);
    printf("malloc=%s free=%s\n", owner("malloc"), owner("free"));
    return 0;
}
