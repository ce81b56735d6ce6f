#!/usr/bin/python3
"""Test-only collector baked into the imagegen VM test guest.

Runs once per boot after cloud-final.service, waits until cloud-init and the
boot are done, prints one JSON report between marker lines on the second
virtio serial port igvm.report (so kernel and systemd chatter on the console
cannot interleave with it; the console is the fallback) and powers the machine off, which makes QEMU exit on its own.

Every probe is wrapped so that one failing command is recorded in the report
instead of losing the whole report: the harness decides what is an error.
"""

import glob
import grp
import hashlib
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
import termios
import time
import tty

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
    "/var/lib/kubelet",
    "/var/lib/kubernetes",
    "/var/lib/kube-proxy",
]
SINGLE_PATHS = ["/etc/crictl.yaml", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
GLOBS = ["/bin/containerd*", "/bin/ctr", "/usr/bin/containerd*", "/usr/bin/ctr"]
# The harness may attach a small raw disk (the last virtio drive, so the others
# keep the names a user's VM gives them) starting with this line and then
# newline-separated extra paths, e.g. every path of imagegen's manifest.json.
EXTRA_PATHS_MAGIC = b"IMAGEGEN-VM-PATHS\n"
CONTENT_LIMIT = 64 * 1024
LOG_LIMIT = 4 * 1024 * 1024
UNITS = ["containerd", "kubelet", "kube-proxy", "cloud-init-local", "cloud-init",
         "cloud-config", "cloud-final", "systemd-networkd", "systemd-resolved"]


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


def extra_paths():
    for dev in sorted(glob.glob("/sys/block/vd*")):
        try:
            with open("/dev/" + os.path.basename(dev), "rb") as f:
                raw = f.read(1 << 20)
        except OSError:
            continue
        if raw.startswith(EXTRA_PATHS_MAGIC):
            text = raw[len(EXTRA_PATHS_MAGIC):].split(b"\0", 1)[0].decode("utf-8", "replace")
            return [line.strip() for line in text.splitlines() if line.strip().startswith("/")]
    return []


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
                "net.ipv4.ip_forward"]:
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


def report(waits):
    cmdline = open("/proc/cmdline").read().strip()
    extra = extra_paths()
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
        "files": collect_files(extra),
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


def emit(text):
    for dev in ("/dev/virtio-ports/igvm.report", "/dev/console"):
        try:
            fd = os.open(dev, os.O_WRONLY | os.O_NOCTTY)
        except OSError:
            continue
        try:
            if os.isatty(fd):
                tty.setraw(fd)
            data = ("\n%s\n%s\n%s\n" % (BEGIN, text, END)).encode("utf-8")
            while data:
                n = os.write(fd, data)
                data = data[n:]
            if os.isatty(fd):
                termios.tcdrain(fd)
        finally:
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
    try:
        text = json.dumps(report(waits), sort_keys=True)
    except Exception as e:  # noqa: BLE001 - still tell the harness something
        text = json.dumps({"format": 1, "collector_error": "%s: %s" % (type(e).__name__, e)})
    dev = emit(text)
    print("imagegen-vm-report: %d bytes written to %s" % (len(text), dev), flush=True)
    if "igvm.keep-running" not in open("/proc/cmdline").read().split():
        subprocess.run(["systemctl", "poweroff", "--no-block"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
