/* driver_afl.c - AFL++ persistent-mode driver (afl-clang-fast / -lto);
 * the target is chosen at build time (NP_FUZZ_TARGET). Built with a plain
 * compiler it reads one input from stdin. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

#ifdef __AFL_FUZZ_TESTCASE_LEN
__AFL_FUZZ_INIT();
#endif

int main(void) {
#ifdef __AFL_FUZZ_TESTCASE_LEN
  __AFL_INIT();
  unsigned char *buf = __AFL_FUZZ_TESTCASE_BUF;
  while (__AFL_LOOP(10000)) {
    size_t len = (size_t)__AFL_FUZZ_TESTCASE_LEN;
    (void)NP_FUZZ_TARGET(buf, len, NULL);
  }
#else
  static unsigned char buf[1 << 20];
  size_t len = fread(buf, 1, sizeof(buf), stdin);
  (void)NP_FUZZ_TARGET(buf, len, NULL);
#endif
  return 0;
}
