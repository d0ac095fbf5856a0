
/*
 * nginx-webhook-sse: the allocator of the out-of-memory tests and of the
 * fuzzer (yajl_alloc_funcs, ctx an oom_alloc_t): it counts the calls that
 * can fail (malloc and realloc), makes the fail_at-th one fail (with
 * persist, every one after it too) and counts the blocks it holds.
 */


#ifndef _OOM_ALLOC_H_INCLUDED_
#define _OOM_ALLOC_H_INCLUDED_


#include <stdlib.h>


typedef struct {
    unsigned long  calls;
    unsigned long  fail_at;
    int            persist;
    unsigned long  failed;
    long           live;
} oom_alloc_t;


static int
oom_fails(oom_alloc_t *a)
{
    a->calls++;

    if (a->fail_at != 0
        && (a->calls == a->fail_at || (a->persist && a->calls > a->fail_at)))
    {
        a->failed++;
        return 1;
    }

    return 0;
}


static void *
oom_malloc(void *ctx, size_t size)
{
    void         *p;
    oom_alloc_t  *a;

    a = ctx;

    if (oom_fails(a)) {
        return NULL;
    }

    p = malloc(size);

    if (p != NULL) {
        a->live++;
    }

    return p;
}


static void *
oom_realloc(void *ctx, void *p, size_t size)
{
    void         *n;
    oom_alloc_t  *a;

    a = ctx;

    if (oom_fails(a)) {
        return NULL;
    }

    n = realloc(p, size);

    if (n != NULL && p == NULL) {
        a->live++;
    }

    return n;
}


static void
oom_free(void *ctx, void *p)
{
    oom_alloc_t  *a;

    a = ctx;

    if (p != NULL) {
        a->live--;
        free(p);
    }
}


#endif /* _OOM_ALLOC_H_INCLUDED_ */
