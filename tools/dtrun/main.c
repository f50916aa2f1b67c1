/* dtrun: torchrun for dtrain. Parses the options and runs the agent; see
 * docs/launcher.md and `dtrun --help`. */
#include "agent.h"
#include "options.h"

#include <stdlib.h>

static dtrun_opts g_opts;   /* large (per-local-rank tables): not on the stack */

int main(int argc, char **argv)
{
    int rc = dtrun_parse(argc - 1, argv + 1, &g_opts);
    if (rc == 1) return 0;
    if (rc < 0) return 2;
    return dtrun_agent_run(&g_opts);
}
