/* Prints the version three ways, for check_version.cmake: the library's
 * mp_version(), the header's MULTIPROC_VERSION string and its numbers. */
#include <multiproc.h>
#include <stdio.h>

int main(void)
{
    printf("mp_version=%s\n", mp_version());
    printf("MULTIPROC_VERSION=%s\n", MULTIPROC_VERSION);
    printf("MULTIPROC_VERSION_NUMBERS=%d.%d.%d\n", MULTIPROC_VERSION_MAJOR,
           MULTIPROC_VERSION_MINOR, MULTIPROC_VERSION_PATCH);
    return 0;
}
