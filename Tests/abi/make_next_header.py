#!/usr/bin/env python3
"""Writes the header of a simulated later version of kplm.

Usage: make_next_header.py include/kplm.h OUT_DIR

OUT_DIR/kplm.h is include/kplm.h with one more field, `abi_next_field`, at
the end of every struct except kplm_dimension (which never grows): what a
1.x header that added a field to each struct would look like. A program
compiled against it stands for a newer caller (Tests/abi/test_abi.c), and
the library compiled against it for a newer library.
"""
import pathlib
import re
import sys


def next_header(text: str) -> str:
    def add_field(match: re.Match) -> str:
        body, name = match.group(1), match.group(2)
        if name == "kplm_dimension":
            return match.group(0)
        return (f"typedef struct {{{body}"
                f"    uint64_t abi_next_field; /* added by a later version (simulated) */\n"
                f"}} {name};")

    result, count = re.subn(r"typedef struct \{(.*?)\n\} (kplm_\w+);", add_field, text, flags=re.S)
    if count < 10:
        raise SystemExit(f"make_next_header: only {count} structs found in the header")
    return result


def main() -> None:
    source, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    text = next_header(source.read_text())
    target = out_dir / "kplm.h"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


if __name__ == "__main__":
    main()
