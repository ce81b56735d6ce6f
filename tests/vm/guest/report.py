#!/usr/bin/python3
"""Test-only collector baked into the imagegen VM test guest.

Runs once per boot after cloud-final.service, waits until cloud-init and the
boot are done, runs the harness's probes (if any), prints one JSON report
between marker lines on the virtio serial port igvm.report (so kernel and
systemd chatter on the console cannot interleave with it) and powers the
machine off, which makes QEMU exit on its own (unless the kernel command line
has igvm.keep-running).

Without that port (a VM started by a user's launcher has none) the report goes
to the console (ttyS0) instead, framed so that it survives the console's other
traffic: gzip + base64 in numbered lines that each carry a CRC-32, written twice.
tests/vm/parse-report.py reads both forms.

Every probe is wrapped so that one failing command is recorded in the report
instead of losing the whole report: the harness decides what is an error.
"""

import base64
import glob
import grp
import gzip
import hashlib
import json
import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import termios
import threading
import time
import tty
import zlib

BEGIN = "=====IMAGEGEN-VM-REPORT-BEGIN====="
END = "=====IMAGEGEN-VM-REPORT-END====="
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Roots whose whole subtree is listed. Besides the node contract's paths this
# covers the whole of /usr/local and /opt so that a file installed somewhere
# unexpected still shows up in the report.
WALK_ROOTS = [
    "/usr/local",
    "/opt",
    "/etc/containerd",
    "/etc/cni",
    "/etc/systemd/system",
    "/etc/modules-load.d",
    "/etc/sysctl.d",
    "/etc/netplan",
    "/etc/etcd",
    "/etc/kubernetes",
    "/etc/ha.d",
    "/usr/local/sbin",
    "/var/lib/kubelet",
    "/var/lib/kubernetes",
    "/var/lib/kube-proxy",
]
# /var/lib/etcd is described itself (its mode is part of the contract), not walked: its
# content is etcd's database.
SINGLE_PATHS = ["/etc/crictl.yaml", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf",
                "/var/lib/etcd", "/var/log/kube-apiserver-standin.log", "/etc/apt/sources.list"]
GLOBS = ["/bin/containerd*", "/bin/ctr", "/usr/bin/containerd*", "/usr/bin/ctr"]
# The harness may attach a small raw disk (the last virtio drive, so the others
# keep the names a user's VM gives them) starting with this line and then
# newline-separated extra paths, e.g. every path of imagegen's manifest.json,
# optionally followed by a line IMAGEGEN-VM-PROBES and a JSON list of probes:
#   {"name": "etcd-health", "sh": "etcdctl ... endpoint health",
#    "timeout_s": 300, "interval_s": 5, "until": "success" | "once"}
# Each probe runs with /bin/sh -c after the boot is done (all probes at once, so
# one that waits for another VM does not hold up the rest); with "until":
# "success" it is retried until it exits 0 or its timeout has passed. rc,
# stdout, stderr, attempts and elapsed seconds land in the report's "probes".
EXTRA_PATHS_MAGIC = b"IMAGEGEN-VM-PATHS\n"
PROBES_MAGIC = "IMAGEGEN-VM-PROBES\n"
CONTENT_LIMIT = 64 * 1024
LOG_LIMIT = 4 * 1024 * 1024
UNITS = ["containerd", "kubelet", "kube-proxy", "cloud-init-local", "cloud-init",
         "cloud-config", "cloud-final", "systemd-networkd", "systemd-resolved",
         "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "ldirectord",
         "imagegen-bootstrap-cluster"]
UNIT_DIR = "/etc/systemd/system"


def run(cmd, timeout=60):
    env = dict(os.environ, PATH=PATH, LC_ALL="C.UTF-8", SYSTEMD_PAGER="", SYSTEMD_COLORS="0")
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
        return {"cmd": cmd, "rc": p.returncode,
                "out": p.stdout.decode("utf-8", "replace"),
                "err": p.stderr.decode("utf-8", "replace")}
    except Exception as e:  # noqa: BLE001 - a probe must never kill the report
        return {"cmd": cmd, "rc": None, "out": "", "err": "%s: %s" % (type(e).__name__, e)}


def read_text(path, limit=LOG_LIMIT):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
        return {"size": size, "truncated": size > limit, "text": data.decode("utf-8", "replace")}
    except OSError as e:
        return {"error": str(e)}


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"__error__": str(e)}


def name_of(getter, ident):
    try:
        return getter(ident)[0]
    except KeyError:
        return str(ident)


def describe(path):
    try:
        st = os.lstat(path)
    except OSError as e:
        return {"error": str(e)}
    d = {
        "mode": "%04o" % stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "owner": name_of(pwd.getpwuid, st.st_uid),
        "group": name_of(grp.getgrgid, st.st_gid),
        "mtime_ns": st.st_mtime_ns,
    }
    if stat.S_ISLNK(st.st_mode):
        d["type"] = "symlink"
        d["target"] = os.readlink(path)
    elif stat.S_ISDIR(st.st_mode):
        d["type"] = "dir"
    elif stat.S_ISREG(st.st_mode):
        d["type"] = "file"
        d["size"] = st.st_size
        h = hashlib.sha256()
        head = b""
        try:
            with open(path, "rb") as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    if len(head) <= CONTENT_LIMIT:
                        head += chunk[: CONTENT_LIMIT + 1 - len(head)]
                    h.update(chunk)
            d["sha256"] = h.hexdigest()
            if st.st_size <= CONTENT_LIMIT and b"\0" not in head:
                try:
                    d["content"] = head.decode("utf-8")
                except UnicodeDecodeError:
                    pass
        except OSError as e:
            d["error"] = str(e)
    else:
        d["type"] = "other"
    return d


def harness_disk():
    """(extra paths, probes) from the harness's disk, or ([], []) without one."""
    for dev in sorted(glob.glob("/sys/block/vd*")):
        try:
            with open("/dev/" + os.path.basename(dev), "rb") as f:
                raw = f.read(4 << 20)
        except OSError:
            continue
        if raw.startswith(EXTRA_PATHS_MAGIC):
            text = raw[len(EXTRA_PATHS_MAGIC):].split(b"\0", 1)[0].decode("utf-8", "replace")
            probes = []
            if PROBES_MAGIC in text:
                text, probe_text = text.split(PROBES_MAGIC, 1)
                try:
                    probes = json.loads(probe_text)
                except ValueError as e:
                    probes = [{"name": "__harness_disk__", "error": "probes are not JSON: %s" % e}]
            paths = [line.strip() for line in text.splitlines() if line.strip().startswith("/")]
            return paths, probes
    return [], []


def run_probe(p):
    """One probe: /bin/sh -c, retried until success when asked, bounded by its timeout."""
    if "error" in p:
        return {"ok": False, "rc": None, "stdout": "", "stderr": p["error"], "attempts": 0,
                "elapsed_s": 0}
    timeout = float(p.get("timeout_s", 60))
    interval = float(p.get("interval_s", 5))
    retry = p.get("until", "once") == "success"
    t0 = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        left = max(1.0, timeout - (time.monotonic() - t0))
        r = run(["/bin/sh", "-c", p["sh"]], timeout=left)
        done = r["rc"] == 0 or not retry or time.monotonic() - t0 + interval > timeout
        if done:
            return {"ok": r["rc"] == 0, "rc": r["rc"], "stdout": r["out"], "stderr": r["err"],
                    "attempts": attempts, "elapsed_s": round(time.monotonic() - t0, 1),
                    "sh": p["sh"]}
        time.sleep(interval)


def run_probes(probes):
    results = {}

    def one(p):
        results[p.get("name", "?")] = run_probe(p)

    threads = [threading.Thread(target=one, args=(p,)) for p in probes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def exec_starts():
    """Every unit file directly under /etc/systemd/system: its Exec* command lines as systemd
    parsed them (argv after unquoting and line continuations), and the absolute paths its
    arguments name (whole arguments or the value after `=`), so that the harness can check that
    every file a flag names exists on the node with the right mode."""
    out = {}
    try:
        names = sorted(os.listdir(UNIT_DIR))
    except OSError:
        return out
    for name in names:
        path = os.path.join(UNIT_DIR, name)
        if not name.endswith(".service") or os.path.islink(path) or not os.path.isfile(path) \
                or name == "imagegen-vm-report.service":
            continue
        props = ["ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop"]
        r = run(["systemctl", "show", name, "--no-pager", "-p", ",".join(props)])
        unit = {}
        for line in r["out"].splitlines():
            key, _, value = line.partition("=")
            if key not in props or not value:
                continue
            cmds = []
            for m in re.finditer(r"argv\[\]=(.*?) ; ignore_errors=", value):
                cmds.append(m.group(1).split())
            unit[key] = cmds
        paths = set()
        for cmds in unit.values():
            for argv in cmds:
                for arg in argv:
                    for candidate in (arg, arg.split("=", 1)[-1]):
                        for part in candidate.split(","):
                            if part.startswith("/"):
                                paths.add(part)
        unit["paths"] = sorted(paths)
        out[name] = unit
    return out


def collect_files(extra):
    paths = set()
    for root in WALK_ROOTS:
        if os.path.lexists(root):
            paths.add(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                paths.add(os.path.join(dirpath, n))
    for pattern in GLOBS:
        paths.update(glob.glob(pattern))
    paths.update(p for p in SINGLE_PATHS + extra if os.path.lexists(p))
    files = {p: describe(p) for p in sorted(paths)}
    for p in extra:
        files.setdefault(p, {"error": "missing"})
    return files


def containerd_config():
    out = {}
    try:
        import tomllib
        with open("/etc/containerd/config.toml", "rb") as f:
            cfg = tomllib.load(f)
    except Exception as e:  # noqa: BLE001
        return {"error": "%s: %s" % (type(e).__name__, e)}
    out["version"] = cfg.get("version")
    try:
        runtimes = cfg["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
        runc = runtimes.get("runc", {})
        out["runtime_type"] = runc.get("runtime_type")
        opts = runc.get("options", {})
        out["binary_name"] = opts.get("BinaryName")
        out["systemd_cgroup"] = opts.get("SystemdCgroup")
        out["default_runtime_name"] = cfg["plugins"]["io.containerd.grpc.v1.cri"]["containerd"].get(
            "default_runtime_name")
    except (KeyError, TypeError, AttributeError) as e:
        out["error"] = "no cri runc runtime: %s" % e
    return out


def unit_state(name):
    show = run(["systemctl", "show", name + ".service", "--no-pager",
                "-p", "LoadState,ActiveState,SubState,Result,NRestarts,UnitFileState,"
                      "FragmentPath,ExecMainPID,ExecMainStatus,InvocationID"])
    props = dict(line.split("=", 1) for line in show["out"].splitlines() if "=" in line)
    return {
        "is_enabled": run(["systemctl", "is-enabled", name])["out"].strip(),
        "is_active": run(["systemctl", "is-active", name])["out"].strip(),
        "show": props,
    }


def cloud_init():
    log = read_text("/var/log/cloud-init.log")
    lines = log.get("text", "").splitlines()
    warnings = [l for l in lines if " WARNING" in l or "[WARNING]" in l]
    schema = [l for l in warnings if "schema" in l.lower() or "invalid cloud-config" in l.lower()
              or "deprecat" in l.lower()]
    return {
        "status_long": run(["cloud-init", "status", "--long"]),
        "result": read_json("/var/lib/cloud/data/result.json"),
        "status": read_json("/var/lib/cloud/data/status.json"),
        "warnings": warnings,
        "schema_warnings": schema,
        "log": log,
        "output_log": read_text("/var/log/cloud-init-output.log"),
        "instance_id": read_text("/var/lib/cloud/data/instance-id", 4096).get("text", "").strip(),
        "sem": sorted(os.listdir("/var/lib/cloud/instance/sem")) if os.path.isdir(
            "/var/lib/cloud/instance/sem") else [],
    }


def sysctls():
    out = {}
    for key in ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
                "net.ipv4.ip_forward", "net.ipv4.conf.all.arp_ignore",
                "net.ipv4.conf.all.arp_announce"]:
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as f:
                out[key] = f.read().strip()
        except OSError as e:
            out[key] = None
            out[key + ".error"] = str(e)
    return out


def modules():
    try:
        with open("/proc/modules") as f:
            return sorted(line.split()[0] for line in f)
    except OSError:
        return []


def ip_json(args):
    r = run(["ip", "-j"] + args)
    try:
        return json.loads(r["out"])
    except ValueError:
        return {"error": r}


def failed_units():
    r = run(["systemctl", "list-units", "--failed", "--all", "--plain", "--no-legend", "--no-pager"])
    return [line.split()[0] for line in r["out"].splitlines() if line.strip()]


def ctr_version():
    r = run(["ctr", "--address", "/var/run/containerd/containerd.sock", "version"], timeout=30)
    return r


def report(waits, extra, probes):
    cmdline = open("/proc/cmdline").read().strip()
    units_exec = exec_starts()
    described = extra + sorted({p for u in units_exec.values() for p in u["paths"]})
    cc = containerd_config()
    runc = cc.get("binary_name") or "runc"
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return {
        "format": 1,
        "boot_id": boot_id,
        "uptime_s": uptime,
        "kernel": os.uname().release,
        "cmdline": cmdline,
        "waits": waits,
        "boots": run(["journalctl", "--list-boots", "--no-pager"])["out"],
        "hostname": socket.gethostname(),
        "fqdn": run(["hostname", "-f"])["out"].strip(),
        "cloud_init": cloud_init(),
        "ip_addr": ip_json(["addr"]),
        "ip_route": ip_json(["route"]),
        "networkctl": run(["networkctl", "status", "--no-pager", "-a"])["out"],
        "extra_paths": extra,
        "files": collect_files(described),
        "exec_start": units_exec,
        "probes": probes,
        "modules": modules(),
        "sysctl": sysctls(),
        "swap": {"swapon_show": run(["swapon", "--show", "--noheadings"]),
                 "proc_swaps": read_text("/proc/swaps", 65536).get("text", "")},
        "units": {u: unit_state(u) for u in UNITS},
        "ctr_version": ctr_version(),
        "containerd_config": cc,
        "runc_version": run([runc, "--version"]),
        "failed_units": failed_units(),
        "system_state": run(["systemctl", "is-system-running"])["out"].strip(),
        "symlinks": {p: (os.readlink(p) if os.path.islink(p) else None)
                     for p in ["/bin", "/sbin", "/lib", "/lib64"]},
        "sh_works": run(["/bin/sh", "-c", "echo ok"])["out"].strip(),
        "block": run(["lsblk", "-J", "-o", "NAME,LABEL,FSTYPE,RO,SERIAL,MOUNTPOINTS"])["out"],
        "by_label": {n: os.path.realpath(os.path.join("/dev/disk/by-label", n))
                     for n in sorted(os.listdir("/dev/disk/by-label"))}
        if os.path.isdir("/dev/disk/by-label") else {},
        "mounts": read_text("/proc/self/mounts", 65536).get("text", ""),
        "journal_errors": run(["journalctl", "-b", "-p", "err", "--no-pager", "-o", "short-monotonic"])["out"],
        "analyze": run(["systemd-analyze"])["out"],
    }


FRAME_CHUNK = 96  # base64 characters per console line


def framed(text):
    """The report for a console shared with other writers: gzip + base64 in numbered lines,
    each with the CRC-32 of its chunk, then the sha256 of the whole JSON."""
    data = base64.b64encode(gzip.compress(text.encode("utf-8"), mtime=0)).decode("ascii")
    chunks = [data[i:i + FRAME_CHUNK] for i in range(0, len(data), FRAME_CHUNK)]
    lines = ["IGVM %d/%d %08x %s" % (i, len(chunks), zlib.crc32(c.encode("ascii")), c)
             for i, c in enumerate(chunks)]
    lines.append("IGVM-SHA256 %s" % hashlib.sha256(text.encode("utf-8")).hexdigest())
    return "\n".join(lines)


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def emit(text):
    for dev in ("/dev/virtio-ports/igvm.report", "/dev/console"):
        try:
            fd = os.open(dev, os.O_WRONLY | os.O_NOCTTY)
        except OSError:
            continue
        saved_tty = saved_printk = None
        try:
            if os.isatty(fd):
                # The console: raw output (no \r inserted), kernel messages held back while the
                # report is written, and the framed form, twice, so that a line garbled by
                # another writer (systemd, getty) can be taken from the other copy.
                saved_tty = termios.tcgetattr(fd)
                tty.setraw(fd)
                try:
                    with open("/proc/sys/kernel/printk") as f:
                        saved_printk = f.read().split()[0]
                    with open("/proc/sys/kernel/printk", "w") as f:
                        f.write("1")
                except OSError:
                    saved_printk = None
                body = framed(text)
                for _ in range(2):
                    write_all(fd, ("\n%s\n%s\n%s\n" % (BEGIN, body, END)).encode("ascii"))
                termios.tcdrain(fd)
            else:
                write_all(fd, ("\n%s\n%s\n%s\n" % (BEGIN, text, END)).encode("utf-8"))
        finally:
            if saved_tty is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved_tty)
            if saved_printk is not None:
                try:
                    with open("/proc/sys/kernel/printk", "w") as f:
                        f.write(saved_printk)
                except OSError:
                    pass
            os.close(fd)
        return dev
    return None


def main():
    t0 = time.monotonic()
    waits = {}
    # cloud-init first: its final stage is what enables the node's services.
    r = run(["cloud-init", "status", "--wait"], timeout=1800)
    waits["cloud_init_status_wait"] = {"rc": r["rc"], "seconds": round(time.monotonic() - t0, 1)}
    t1 = time.monotonic()
    # Then let the remaining start jobs (containerd, kubelet, ...) settle; this
    # unit is Type=simple so it does not hold up the boot it waits for.
    r = run(["systemctl", "is-system-running", "--wait"], timeout=600)
    waits["is_system_running"] = {"out": r["out"].strip(), "seconds": round(time.monotonic() - t1, 1)}
    t2 = time.monotonic()
    try:
        extra, probes = harness_disk()
    except Exception as e:  # noqa: BLE001
        extra, probes = [], [{"name": "__harness_disk__", "error": "%s: %s" % (type(e).__name__, e)}]
    probe_results = run_probes(probes)
    waits["probes"] = {"seconds": round(time.monotonic() - t2, 1)}
    try:
        text = json.dumps(report(waits, extra, probe_results), sort_keys=True)
    except Exception as e:  # noqa: BLE001 - still tell the harness something
        text = json.dumps({"format": 1, "collector_error": "%s: %s" % (type(e).__name__, e)})
    dev = emit(text)
    print("imagegen-vm-report: %d bytes written to %s" % (len(text), dev), flush=True)
    if "igvm.keep-running" not in open("/proc/cmdline").read().split():
        subprocess.run(["systemctl", "poweroff", "--no-block"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
