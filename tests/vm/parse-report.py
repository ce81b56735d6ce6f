#!/usr/bin/env python3
"""Extracts the collector's report (tests/vm/guest/report.py) from what a VM wrote.

    parse-report.py INPUT OUT.json

INPUT is either the virtio-serial channel (report.raw: plain JSON between the marker lines) or
a serial console log (the collector's fallback when the VM has no igvm.report port, as under a
user's launcher: numbered `IGVM i/n crc32 base64` lines of the gzipped JSON, written twice,
mixed with whatever else the console printed). Writes OUT.json on success.
Exit: 0 report written, 1 no (complete) report in INPUT, 2 a report that does not decode.
"""

import base64
import gzip
import hashlib
import json
import re
import sys
import zlib

BEGIN = "=====IMAGEGEN-VM-REPORT-BEGIN====="
END = "=====IMAGEGEN-VM-REPORT-END====="
LINE = re.compile(r"IGVM (\d+)/(\d+) ([0-9a-f]{8}) ([A-Za-z0-9+/=]+)\r?$")
SHA = re.compile(r"IGVM-SHA256 ([0-9a-f]{64})")


def framed(text):
    """The JSON of a framed report, None if there is none; raises ValueError if it is broken."""
    chunks, total, sums = {}, None, []
    bad = 0
    for line in text.splitlines():
        m = LINE.search(line)
        if m:
            i, n, crc, data = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            if zlib.crc32(data.encode("ascii")) != int(crc, 16):
                bad += 1
                continue
            total = n if total is None else total
            chunks.setdefault(i, data)
            continue
        m = SHA.search(line)
        if m:
            sums.append(m.group(1))
    if total is None:
        return None
    missing = [i for i in range(total) if i not in chunks]
    if missing:
        raise ValueError("framed report incomplete: %d of %d lines missing (first %s), %d garbled"
                         % (len(missing), total, missing[:5], bad))
    body = gzip.decompress(base64.b64decode("".join(chunks[i] for i in range(total)))).decode("utf-8")
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    if sums and digest not in sums:
        raise ValueError("framed report decodes but its sha256 %s is not the announced %s"
                         % (digest, sums[0]))
    return body


def plain(raw):
    """The JSON between the last BEGIN line and the END line after it. Markers count only as
    whole lines: the JSON is one line, and may well contain the marker strings (the report
    describes files, the collector among them)."""
    lines = [line.rstrip("\r") for line in raw.splitlines()]
    starts = [i for i, line in enumerate(lines) if line == BEGIN]
    for s in reversed(starts):
        ends = [j for j in range(s + 1, len(lines)) if lines[j] == END]
        if ends:
            return "\n".join(lines[s + 1:ends[0]]).strip()
    return None


def extract(raw):
    if END not in raw:
        return None
    body = framed(raw)
    if body is None:
        body = plain(raw)
        if body is None:
            return None
    json.loads(body)
    return body


def main():
    src, out = sys.argv[1], sys.argv[2]
    try:
        with open(src, "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return 1
    try:
        body = extract(raw)
    except (ValueError, OSError, EOFError, zlib.error) as e:
        print("parse-report: %s: %s" % (src, e), file=sys.stderr)
        return 2
    if body is None:
        return 1
    with open(out, "w", encoding="utf-8") as f:
        f.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
