/* test_runq.c - the scheduler's local run queue (netpoll/src/runq.h), plain
 * code with no threads: FIFO order, Go's runnext slot (runs first; the task
 * it displaces goes to the tail), inbox chains appended in order, the
 * length, popping an empty queue, and the bound on runnext streaks that
 * keeps two tasks handing off to each other from starving the rest. */
#include "helpers.h"
#include "runq.h"

#define N 8

static np__runq_node nodes[N];

static int id(const np__runq_node *n) { return n == NULL ? -1 : (int)(n - nodes); }

static void test_fifo_order(void **state) {
  (void)state;
  np__runq q;
  np__runq_init(&q);
  assert_true(np__runq_empty(&q));
  assert_null(np__runq_pop(&q));
  for (int i = 0; i < N; i++) np__runq_push_tail(&q, &nodes[i]);
  assert_int_equal(q.len, N);
  for (int i = 0; i < N; i++) assert_int_equal(id(np__runq_pop(&q)), i);
  assert_true(np__runq_empty(&q));
  assert_int_equal(q.len, 0);
  assert_null(np__runq_pop(&q));
}

static void test_runnext_first_and_displaced_to_tail(void **state) {
  (void)state;
  np__runq q;
  np__runq_init(&q);
  np__runq_push_tail(&q, &nodes[0]);
  np__runq_push_tail(&q, &nodes[1]);
  np__runq_push_next(&q, &nodes[2]);
  np__runq_push_next(&q, &nodes[3]); /* 2 goes to the tail */
  assert_int_equal(q.len, 4);
  int want[] = {3, 0, 1, 2};
  for (int i = 0; i < 4; i++) assert_int_equal(id(np__runq_pop(&q)), want[i]);
  assert_true(np__runq_empty(&q));
  assert_int_equal(q.len, 0);
}

static void test_chain_appended_in_order(void **state) {
  (void)state;
  np__runq q;
  np__runq_init(&q);
  np__runq_push_chain(&q, NULL, NULL, 0); /* an empty inbox: nothing */
  assert_true(np__runq_empty(&q));
  np__runq_push_tail(&q, &nodes[0]);
  for (int i = 1; i < 4; i++) nodes[i].next = &nodes[i + 1];
  nodes[4].next = (np__runq_node *)&q; /* garbage past the last: must be cut */
  np__runq_push_chain(&q, &nodes[1], &nodes[4], 4);
  np__runq_push_tail(&q, &nodes[5]);
  assert_int_equal(q.len, 6);
  for (int i = 0; i < 6; i++) assert_int_equal(id(np__runq_pop(&q)), i);
  assert_null(np__runq_pop(&q));
  /* A chain into an empty queue. */
  nodes[6].next = &nodes[7];
  np__runq_push_chain(&q, &nodes[6], &nodes[7], 2);
  assert_int_equal(id(np__runq_pop(&q)), 6);
  assert_int_equal(id(np__runq_pop(&q)), 7);
  assert_true(np__runq_empty(&q));
}

/* Tasks 0 and 1 hand off through runnext for ever (each run makes the other
 * ready): task 2, waiting in the FIFO, still runs within a streak. */
static void test_runnext_streak_bounded(void **state) {
  (void)state;
  np__runq q;
  np__runq_init(&q);
  np__runq_push_tail(&q, &nodes[2]);
  np__runq_push_next(&q, &nodes[0]);
  int pops = 0, ran = -1;
  while (pops < 3 * NP__RUNNEXT_STREAK) {
    np__runq_node *n = np__runq_pop(&q);
    pops++;
    if (id(n) == 2) {
      ran = pops;
      break;
    }
    np__runq_push_next(&q, &nodes[id(n) ^ 1]); /* the partner is ready next */
  }
  assert_int_equal(ran, NP__RUNNEXT_STREAK + 1);
  /* The pair goes on at once: pop 61 was task 0, which readied 1. */
  assert_int_equal(id(np__runq_pop(&q)), 1);
  assert_true(np__runq_empty(&q));
  assert_int_equal(q.len, 0);
}

/* A turn of the FIFO's head ends the streak: the pair handing off through
 * runnext gets a whole streak again before the next FIFO task (pop 62 is
 * task 2, pop 124 task 3; a streak that kept counting gave task 3 pop 63). */
static void test_runnext_streak_restarts_after_fifo_turn(void **state) {
  (void)state;
  np__runq q;
  np__runq_init(&q);
  np__runq_push_tail(&q, &nodes[2]);
  np__runq_push_tail(&q, &nodes[3]);
  np__runq_push_next(&q, &nodes[0]);
  int pops = 0, ran2 = -1, ran3 = -1;
  while (pops < 4 * NP__RUNNEXT_STREAK && ran3 < 0) {
    np__runq_node *n = np__runq_pop(&q);
    pops++;
    if (id(n) == 2) ran2 = pops;
    if (id(n) == 3) ran3 = pops;
    if (id(n) < 2) np__runq_push_next(&q, &nodes[id(n) ^ 1]);
  }
  assert_int_equal(ran2, NP__RUNNEXT_STREAK + 1);
  assert_int_equal(ran3, 2 * (NP__RUNNEXT_STREAK + 1));
}

/* With nothing else queued, runnext is never held back, and that run does
 * not count against it once a task joins the FIFO. */
static void test_runnext_alone_unbounded(void **state) {
  (void)state;
  np__runq q;
  np__runq_init(&q);
  np__runq_push_next(&q, &nodes[0]);
  for (int i = 0; i < 4 * NP__RUNNEXT_STREAK; i++) {
    np__runq_node *n = np__runq_pop(&q);
    assert_int_equal(id(n), i % 2);
    np__runq_push_next(&q, &nodes[(i + 1) % 2]);
  }
  assert_int_equal(q.len, 1);
  np__runq_push_tail(&q, &nodes[2]);
  assert_int_equal(id(np__runq_pop(&q)), 0); /* runnext first, as always */
  assert_int_equal(id(np__runq_pop(&q)), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_order),
      cmocka_unit_test(test_runnext_first_and_displaced_to_tail),
      cmocka_unit_test(test_chain_appended_in_order),
      cmocka_unit_test(test_runnext_streak_bounded),
      cmocka_unit_test(test_runnext_streak_restarts_after_fifo_turn),
      cmocka_unit_test(test_runnext_alone_unbounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
