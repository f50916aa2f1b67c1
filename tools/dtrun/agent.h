/* The agent: runs one node's worker group through rounds of the rendezvous,
 * watches the workers, stops and restarts them, forwards signals, and decides
 * the exit code. One thread; one poll() loop over the workers' output pipes
 * and a self-pipe the signal handlers write to. */
#ifndef DTRUN_AGENT_H
#define DTRUN_AGENT_H

#include "options.h"

/* Runs the job; returns dtrun's exit code (0 success, 1 failure, 128+N when
 * stopped by signal N). */
int dtrun_agent_run(const dtrun_opts *o);

#endif
