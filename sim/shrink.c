/*
 * shrink.c - greedy delta reduction of scenarios: delete tasks, actions,
 * faults and unused streams, halve byte counts and durations, as long as
 * the run still fails with the same invariant class. Candidates get a few
 * neighbouring seeds, since removing an action shifts every later choice.
 */
#include "shrink.h"

#include <string.h>

#include "run.h"

static void signature(const char *failure, char *out, size_t len) {
  size_t n = strcspn(failure, ":");
  if (n >= len) n = len - 1;
  memcpy(out, failure, n);
  out[n] = 0;
}

typedef struct shrinker {
  const world_options *base;
  int seeds;
  char want[128];
  uint64_t seed;
  shrink_stats *stats;
  FILE *log;
} shrinker;

/* Does candidate fail like the original? Updates the seed it fails with. */
static bool still_fails(shrinker *s, const scenario *candidate) {
  char err[256];
  if (sc_validate(candidate, err, sizeof(err)) != 0 || candidate->task_count == 0) return false;
  s->stats->candidates++;
  for (int i = 0; i < s->seeds; i++) {
    uint64_t seed = s->seed + (uint64_t)i;
    world_options o = *s->base;
    o.sc = candidate;
    o.seed = seed;
    o.report = NULL;
    o.trace_out = NULL;
    world_result r;
    if (sim_world_run(&o, &r) == 0) continue;
    char got[128];
    signature(r.failure, got, sizeof(got));
    if (strcmp(got, s->want) != 0) continue;
    s->seed = seed;
    snprintf(s->stats->failure, sizeof(s->stats->failure), "%s", r.failure);
    return true;
  }
  return false;
}

static void delete_action(scenario *sc, int index) {
  for (int t = 0; t < sc->task_count; t++) {
    sc_task *task = &sc->tasks[t];
    if (index >= task->first && index < task->first + task->count)
      task->count--;
    else if (task->first > index)
      task->first--;
  }
  memmove(&sc->actions[index], &sc->actions[index + 1],
          (size_t)(sc->action_count - index - 1) * sizeof(sc_action));
  sc->action_count--;
}

static void delete_task(scenario *sc, int t) {
  while (sc->tasks[t].count > 0) delete_action(sc, sc->tasks[t].first);
  for (int i = sc->action_count - 1; i >= 0; i--)
    if (sc->actions[i].op == SC_JOIN && sc->actions[i].task == t) delete_action(sc, i);
  for (int i = 0; i < sc->action_count; i++)
    if (sc->actions[i].op == SC_JOIN && sc->actions[i].task > t) sc->actions[i].task--;
  memmove(&sc->tasks[t], &sc->tasks[t + 1], (size_t)(sc->task_count - t - 1) * sizeof(sc_task));
  sc->task_count--;
}

static bool stream_used(const scenario *sc, int s) {
  for (int i = 0; i < sc->action_count; i++)
    if (sc->actions[i].stream == s) return true;
  return false;
}

static void delete_stream(scenario *sc, int s) {
  for (int i = 0; i < sc->action_count; i++)
    if (sc->actions[i].stream > s) sc->actions[i].stream--;
  memmove(&sc->streams[s], &sc->streams[s + 1], (size_t)(sc->stream_count - s - 1) * sizeof(sc_stream));
  sc->stream_count--;
}

static bool try_candidate(shrinker *s, scenario *cur, scenario *cand, const char *what) {
  if (!still_fails(s, cand)) return false;
  *cur = *cand;
  s->stats->accepted++;
  if (s->log != NULL)
    fprintf(s->log, "shrink: %s -> %d tasks, %d actions (seed %llu)\n", what, cur->task_count,
            cur->action_count, (unsigned long long)s->seed);
  return true;
}

/* The passes: each tries every candidate of its kind once; true if any was
 * accepted. cur and cand are the shrinker's two (large, static) scenarios. */
static scenario cur, cand;

static bool pass_tasks(shrinker *s) { /* whole tasks, last first (later tasks depend on earlier ones less) */
  bool progress = false;
  for (int t = cur.task_count - 1; t >= 0 && cur.task_count > 1; t--) {
    cand = cur;
    delete_task(&cand, t);
    if (try_candidate(s, &cur, &cand, "task removed")) progress = true;
  }
  return progress;
}

static bool pass_actions(shrinker *s) {
  bool progress = false;
  for (int i = cur.action_count - 1; i >= 0; i--) {
    cand = cur;
    delete_action(&cand, i);
    if (try_candidate(s, &cur, &cand, "action removed")) progress = true;
  }
  return progress;
}

static bool pass_faults(shrinker *s) { /* all at once, then one kind at a time */
  if (!cur.faults.active) return false;
  bool progress = false;
  cand = cur;
  memset(&cand.faults, 0, sizeof(cand.faults));
  if (try_candidate(s, &cur, &cand, "faults removed")) progress = true;
  uint32_t *rates[] = {&cand.faults.epoll_eintr,   &cand.faults.rw_eintr,       &cand.faults.spurious_eagain,
                       &cand.faults.short_io,      &cand.faults.spurious_ready, &cand.faults.err_only,
                       &cand.faults.maxevents_cut, &cand.faults.accept_abort,   &cand.faults.accept_emfile,
                       &cand.faults.urgent};
  for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]) && cur.faults.active; k++) {
    cand = cur;
    if (*rates[k] == 0) continue;
    *rates[k] = 0;
    if (try_candidate(s, &cur, &cand, "fault kind removed")) progress = true;
  }
  return progress;
}

static bool pass_numbers(shrinker *s) { /* bytes and durations halved */
  bool progress = false;
  for (int i = 0; i < cur.action_count; i++) {
    sc_action *a = &cur.actions[i];
    bool numeric = a->op == SC_SLEEP || a->op == SC_WRITE || a->op == SC_WRITE_ALL || a->op == SC_PRODUCE ||
                   a->op == SC_PEER_WRITE || a->op == SC_READ;
    if (!numeric || a->n <= 1) continue;
    cand = cur;
    cand.actions[i].n = a->n / 2;
    if (try_candidate(s, &cur, &cand, "number halved")) progress = true;
  }
  return progress;
}

static bool pass_streams(shrinker *s) { /* unused streams */
  bool progress = false;
  for (int st = cur.stream_count - 1; st >= 0; st--) {
    if (stream_used(&cur, st)) continue;
    cand = cur;
    delete_stream(&cand, st);
    if (try_candidate(s, &cur, &cand, "stream removed")) progress = true;
  }
  return progress;
}

int sc_shrink(const scenario *in, uint64_t seed, const world_options *base, int seeds_per_candidate,
              scenario *out, shrink_stats *stats, FILE *log) {
  memset(stats, 0, sizeof(*stats));
  shrinker s = {.base = base, .seeds = 1, .seed = seed, .stats = stats, .log = log};
  world_options o = *base;
  o.sc = in;
  o.seed = seed;
  o.report = NULL;
  o.trace_out = NULL;
  world_result r;
  if (sim_world_run(&o, &r) == 0) return -1;
  snprintf(stats->failure, sizeof(stats->failure), "%s", r.failure);
  if (sim_failure_is_input_error(r.failure)) return -2; /* not a library failure: nothing to reduce */
  signature(r.failure, s.want, sizeof(s.want));
  s.seeds = seeds_per_candidate < 1 ? 1 : seeds_per_candidate;
  cur = *in;
  for (bool progress = true; progress && stats->candidates <= 20000;) { /* bounded */
    progress = pass_tasks(&s);
    progress |= pass_actions(&s);
    progress |= pass_faults(&s);
    progress |= pass_numbers(&s);
    progress |= pass_streams(&s);
  }
  *out = cur;
  out->has_seed = true;
  out->seed = s.seed;
  out->seed_first = out->seed_last = s.seed;
  stats->seed = s.seed;
  return 0;
}
