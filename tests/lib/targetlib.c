/* A shared library whose functions serve as process targets and pool map
 * functions: function references must work for code outside the executable
 * too.  It calls no multiproc function, so it needs no copy of the library. */
#include <multiproc.h>

int mp_testlib_target(const mp_args *args);
void *mp_testlib_static_target(void);

int mp_testlib_target(const mp_args *args)
{
    (void)args;
    return 42;
}

static int hidden_target(const mp_args *args)
{
    (void)args;
    return 43;
}

/* The address of a static function. */
void *mp_testlib_static_target(void)
{
    return (void *)hidden_target;
}

/* Pool map functions: int64 items, int64 results. */
int mp_testlib_map_cube(const void *item, void *result);
void *mp_testlib_static_map(void);

int mp_testlib_map_cube(const void *item, void *result)
{
    long long x = *(const long long *)item;
    *(long long *)result = x * x * x;
    return 0;
}

static int hidden_map(const void *item, void *result)
{
    long long x = *(const long long *)item;
    *(long long *)result = x * x + 1;
    return 0;
}

/* The address of a static map function. */
void *mp_testlib_static_map(void)
{
    return (void *)hidden_map;
}
