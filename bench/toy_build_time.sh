#!/usr/bin/env bash
# Wall-clock time of the toy world's builds on this machine (docs/toy_world.md, "Build time"):
# each preset into an empty folder, with an empty cache, 2 threads, under /usr/bin/time -v.
#
#     bash bench/toy_build_time.sh OUT_DIR [quick] [full]
#
# Writes OUT_DIR/<preset>.log (the build's output), OUT_DIR/<preset>.time (time -v), OUT_DIR/cpu (the processor's
# model: the same build's stages run at different speeds on different machines) and the load average at the
# start and the end of each build; per-stage seconds are in OUT_DIR/<preset>/manifest.json (stage_seconds), or
# in OUT_DIR/<preset>/.build/state.json for a build that was stopped. Run it on an otherwise idle machine.
set -euo pipefail
out=${1:?usage: bash bench/toy_build_time.sh OUT_DIR [quick] [full]}
shift
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(quick full)
mkdir -p "$out/cache"
lscpu | grep -E "^(Model name|CPU\(s\)):" > "$out/cpu" || true
export OMP_NUM_THREADS=2 T2I_UNLEARN_CACHE="$out/cache"
for preset in "${presets[@]}"; do
  rm -rf "${out:?}/$preset"
  uptime > "$out/$preset.load_start"
  /usr/bin/time -v t2i-unlearn toy build --preset "$preset" --out "$out/$preset" > "$out/$preset.log" 2> "$out/$preset.time"
  uptime > "$out/$preset.load_end"
  grep -E "Elapsed|Maximum resident|Percent of CPU" "$out/$preset.time"
done
