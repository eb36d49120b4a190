/* driver_libfuzzer.c - libFuzzer entry point; the target is chosen at build
 * time (NP_FUZZ_TARGET). Always returns 0. */
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)NP_FUZZ_TARGET(data, size, NULL);
  return 0;
}
