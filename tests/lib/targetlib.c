/* A shared library whose functions serve as process targets: function
 * references must work for code outside the executable too.  It calls no
 * multiproc function, so it needs no copy of the library. */
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
