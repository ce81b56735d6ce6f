"""Dispatches on the name the stand-in is installed under."""

import sys

from .apiserver import kube_apiserver
from .base import PROG, Fatal, die, log
from .daemons import kube_controller_manager, kube_proxy, kube_scheduler, kubelet
from .kubectl import kubectl

PROGRAMS = {
    "kube-apiserver": kube_apiserver,
    "kube-controller-manager": kube_controller_manager,
    "kube-scheduler": kube_scheduler,
    "kubelet": kubelet,
    "kube-proxy": kube_proxy,
    "kubectl": kubectl,
}


def main():
    prog = PROGRAMS.get(PROG)
    if prog is None:
        print("kube-standin: installed as %r; expected one of %s" % (PROG, ", ".join(PROGRAMS)),
              file=sys.stderr)
        return 2
    if PROG != "kubectl" and not ({"--version", "--help", "-h"} & set(sys.argv[1:])):
        log("started with: %s" % " ".join(sys.argv[1:]))
    try:
        prog(sys.argv[1:])
    except Fatal as e:
        die(str(e))
    except KeyboardInterrupt:
        return 130
    return 0

