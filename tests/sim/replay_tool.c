/*
 * replay_tool.c - test helper: writes the scenario FILE as a replay file
 * recorded by build BUILD (sc_write_replay: build line and checksum), so
 * tests/sim/tools.sh can make a valid replay file of "another build".
 *
 *   np_replay_tool FILE BUILD > OUT
 */
#include <stdio.h>

#include "scenario.h"

int main(int argc, char **argv) {
  static scenario sc;
  char err[512];
  if (argc != 3) {
    fprintf(stderr, "usage: np_replay_tool FILE BUILD > OUT\n");
    return 2;
  }
  if (sc_parse_file(argv[1], &sc, err, sizeof(err)) != 0) {
    fprintf(stderr, "np_replay_tool: %s\n", err);
    return 2;
  }
  return sc_write_replay(&sc, "written by np_replay_tool", argv[2], stdout) == 0 ? 0 : 1;
}
