#!/usr/bin/env python3
"""Waits for the collector's report in a serial console log written by a VM that has no
igvm.report port (a user's launcher, the UEFI guest), then optionally stops the VM.

    await-report.py LOG OUT.json --pid PID [--timeout SECONDS] [--stop]

Polls LOG until parse-report.py decodes a complete report from it (written to OUT.json), the
process PID has exited, or the timeout has passed. With --stop, PID is sent TERM (then KILL
after 20 s) once the wait is over, whatever its outcome: the UEFI guest keeps running after its
report (igvm.keep-running), as a user's VM does.
Exit: 0 report written, 2 timed out, 3 PID exited without a report (or the report does not
decode).
"""

import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
END = b"=====IMAGEGEN-VM-REPORT-END====="


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + 20
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.5)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--stop", action="store_true")
    a = ap.parse_args()
    t0 = time.monotonic()
    seen_ends, rc, last_error = 0, 2, ""
    while time.monotonic() - t0 < a.timeout:
        running = alive(a.pid)
        try:
            with open(a.log, "rb") as f:
                ends = f.read().count(END)
        except OSError:
            ends = 0
        if ends > seen_ends or (not running and ends):
            seen_ends = ends
            p = subprocess.run([sys.executable, os.path.join(HERE, "parse-report.py"), a.log, a.out],
                               capture_output=True, text=True)
            if p.returncode == 0:
                rc = 0
                break
            last_error = p.stderr.strip()
        if not running:
            rc = 3
            break
        time.sleep(1)
    elapsed = time.monotonic() - t0
    if a.stop:
        stop(a.pid)
    msg = {0: "report after %.0fs" % elapsed, 2: "timed out after %.0fs" % elapsed,
           3: "VM exited after %.0fs without a decodable report" % elapsed}[rc]
    print("await-report: %s (%s)%s" % (msg, a.log, ": " + last_error if rc and last_error else ""),
          file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
