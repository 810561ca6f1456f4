#!/bin/sh
# Runs a test program against the libkplm.so.1 in another folder (the
# simulated later library), after checking the loader really picks it.
# usage: run_on_library.sh lib-dir program
set -eu
dir=$(cd "$1" && pwd)
program=$2
LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
resolved=$(ldd "$program" | sed -n 's/^[[:space:]]*libkplm\.so\.1 => \([^ ]*\).*/\1/p')
if [ "$resolved" != "$dir/libkplm.so.1" ]; then
    echo "run_on_library.sh: $program loads '$resolved', not $dir/libkplm.so.1"
    exit 1
fi
exec "$program"
