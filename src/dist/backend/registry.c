/* The backends dtrain knows, by name, and the ops' names used in messages. */
#include "dist/backend/backend.h"

#include <string.h>

const dt__backend_ops *dt__backend_find(const char *name)
{
    static const dt__backend_ops *const all[] = {&dt__backend_shm, &dt__backend_tcp, &dt__backend_hier};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}

const char *dt__op_name(dt__op_kind k)
{
    static const char *names[DT__OP_COUNT] = {"all_reduce", "broadcast", "reduce", "all_gather", "gather",
                                              "scatter", "reduce_scatter", "all_to_all", "barrier", "send/recv"};
    return (unsigned)k < DT__OP_COUNT ? names[k] : "?";
}
