/* A program built against an installed dtrain (tests/install/test_install.sh). */
#include <dtrain/dtrain.h>
#include <stdio.h>

int main(void)
{
    void *p = dt_alloc(100, DT_MEM_OTHER);
    if (!p) return 1;
    dt_free(p);
    if (dt_set_error(DT_EINVAL, "x") != DT_EINVAL) return 1;
    printf("consumer ok: dtrain %s, %s\n", dt_version(), dt_strerror(DT_EINVAL));
    return 0;
}
