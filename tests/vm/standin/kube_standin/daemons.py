"""kube-controller-manager, kube-scheduler, kubelet and kube-proxy: their flags and config files
checked, then the API server polled over verified TLS with their kubeconfig's identity."""

import json
import socket

from .base import Fatal, log, read_bytes
from .client import load_kubeconfig, poll_forever
from .flags import (CERT, CONTROLLER_MANAGER, FILE, KEY, KUBELET, PROXY, SCHEDULER, check_cidr,
                    check_files, check_ip, check_pair, check_pem, load_yaml_config, start)


def kube_controller_manager(argv):
    v, _ = start(CONTROLLER_MANAGER, argv)
    if not v.get("kubeconfig") and not v.get("master"):
        raise Fatal("invalid configuration: no configuration has been provided (--kubeconfig)")
    files = check_files(v, CONTROLLER_MANAGER)
    if v.get("cluster-signing-cert-file") or v.get("cluster-signing-key-file"):
        check_pair(v.get("cluster-signing-cert-file", ""), v.get("cluster-signing-key-file", ""),
                   "--cluster-signing-cert-file/--cluster-signing-key-file")
    for name in ("cluster-cidr", "service-cluster-ip-range"):
        if v.get(name):
            check_cidr(v[name], "--" + name)
    if v.get("bind-address"):
        check_ip(v["bind-address"], "--bind-address")
    log("flags ok; %d files checked (%s)" % (len(files), " ".join(files)))
    poll_forever(load_kubeconfig(v["kubeconfig"]), "kube-controller-manager")


SCHEDULER_FIELDS = ["clientConnection", "leaderElection", "parallelism", "percentageOfNodesToScore",
                    "podInitialBackoffSeconds", "podMaxBackoffSeconds", "profiles", "extenders",
                    "enableProfiling", "enableContentionProfiling", "delayCacheUntilActive"]


def kube_scheduler(argv):
    v, _ = start(SCHEDULER, argv)
    files = check_files(v, SCHEDULER)
    kubeconfig = v.get("kubeconfig")
    if v.get("config"):
        cfg = load_yaml_config(v["config"], "kubescheduler.config.k8s.io/v1",
                               "KubeSchedulerConfiguration", SCHEDULER_FIELDS, "--config")
        kubeconfig = (cfg.get("clientConnection") or {}).get("kubeconfig") or kubeconfig
        if kubeconfig:
            load_kubeconfig(kubeconfig)
            files.append(kubeconfig)
    if not kubeconfig:
        raise Fatal("invalid configuration: no configuration has been provided "
                    "(clientConnection.kubeconfig in --config, or --kubeconfig)")
    log("flags and --config ok; %d files checked (%s)" % (len(files), " ".join(files)))
    poll_forever(load_kubeconfig(kubeconfig), "kube-scheduler")


KUBELET_FIELDS = """enableServer staticPodPath podLogsDir syncFrequency fileCheckFrequency
httpCheckFrequency staticPodURL staticPodURLHeader address port readOnlyPort tlsCertFile
tlsPrivateKeyFile tlsCipherSuites tlsMinVersion rotateCertificates serverTLSBootstrap
authentication authorization registryPullQPS registryBurst eventRecordQPS eventBurst
enableDebuggingHandlers enableContentionProfiling healthzPort healthzBindAddress oomScoreAdj
clusterDomain clusterDNS streamingConnectionIdleTimeout nodeStatusUpdateFrequency
nodeStatusReportFrequency nodeLeaseDurationSeconds imageMinimumGCAge imageMaximumGCAge
imageGCHighThresholdPercent imageGCLowThresholdPercent volumeStatsAggPeriod kubeletCgroups
systemCgroups cgroupRoot cgroupsPerQOS cgroupDriver cpuManagerPolicy cpuManagerPolicyOptions
cpuManagerReconcilePeriod memoryManagerPolicy topologyManagerPolicy topologyManagerScope
topologyManagerPolicyOptions qosReserved runtimeRequestTimeout hairpinMode maxPods podCIDR
podPidsLimit resolvConf runOnce cpuCFSQuota cpuCFSQuotaPeriod nodeStatusMaxImages maxOpenFiles
contentType kubeAPIQPS kubeAPIBurst serializeImagePulls maxParallelImagePulls evictionHard
evictionSoft evictionSoftGracePeriod evictionPressureTransitionPeriod evictionMaxPodGracePeriod
evictionMinimumReclaim podsPerCore enableControllerAttachDetach protectKernelDefaults
makeIPTablesUtilChains iptablesMasqueradeBit iptablesDropBit featureGates failSwapOn memorySwap
containerLogMaxSize containerLogMaxFiles containerLogMaxWorkers containerLogMonitorInterval
configMapAndSecretChangeDetectionStrategy systemReserved kubeReserved reservedSystemCPUs
showHiddenMetricsForVersion systemReservedCgroup kubeReservedCgroup enforceNodeAllocatable
allowedUnsafeSysctls volumePluginDir providerID kernelMemcgNotification logging
enableSystemLogHandler enableSystemLogQuery shutdownGracePeriod shutdownGracePeriodCriticalPods
shutdownGracePeriodByPodPriority reservedMemory enableProfilingHandler enableDebugFlagsHandler
seccompDefault memoryThrottlingFactor registerWithTaints registerNode tracing
localStorageCapacityIsolation containerRuntimeEndpoint imageServiceEndpoint
failCgroupV1""".split()


def kubelet(argv):
    v, _ = start(KUBELET, argv)
    files = check_files(v, KUBELET)
    if v.get("config"):
        cfg = load_yaml_config(v["config"], "kubelet.config.k8s.io/v1beta1", "KubeletConfiguration",
                               KUBELET_FIELDS, "--config")
        x509 = ((cfg.get("authentication") or {}).get("x509") or {})
        named = [("authentication.x509.clientCAFile", x509.get("clientCAFile"), CERT),
                 ("tlsCertFile", cfg.get("tlsCertFile"), CERT),
                 ("tlsPrivateKeyFile", cfg.get("tlsPrivateKeyFile"), KEY),
                 ("resolvConf", cfg.get("resolvConf"), FILE)]
        for field, path, kind in named:
            if not path:
                continue
            what = "--config %s: %s" % (v["config"], field)
            if kind == FILE:
                read_bytes(path, what)
            else:
                check_pem(path, kind, what)
            files.append(path)
        if cfg.get("tlsCertFile") or cfg.get("tlsPrivateKeyFile"):
            check_pair(cfg.get("tlsCertFile", ""), cfg.get("tlsPrivateKeyFile", ""),
                       "--config %s: tlsCertFile/tlsPrivateKeyFile" % v["config"])
        endpoint = cfg.get("containerRuntimeEndpoint") or v.get("container-runtime-endpoint")
        if endpoint:
            log("container runtime endpoint %s: %s" % (endpoint, cri_state(endpoint)))
        if cfg.get("registerWithTaints"):
            log("registerWithTaints: %s" % json.dumps(cfg["registerWithTaints"]))
    if not v.get("kubeconfig"):
        raise Fatal("this stand-in needs --kubeconfig (standalone mode is not simulated)")
    log("flags and --config ok; %d files checked (%s)" % (len(files), " ".join(files)))
    poll_forever(load_kubeconfig(v["kubeconfig"]), "kubelet")


def cri_state(endpoint):
    path = endpoint[len("unix://"):] if endpoint.startswith("unix://") else endpoint
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(path)
        return "accepting connections"
    except OSError as e:
        return "not reachable (%s); a real kubelet would keep retrying" % e
    finally:
        s.close()


PROXY_FIELDS = """bindAddress healthzBindAddress metricsBindAddress bindAddressHardFail
enableProfiling showHiddenMetricsForVersion mode clientConnection hostnameOverride iptables ipvs
nftables winkernel detectLocalMode detectLocal clusterCIDR nodePortAddresses oomScoreAdj
conntrack configSyncPeriod portRange featureGates logging windowsRunAsService""".split()


def kube_proxy(argv):
    v, _ = start(PROXY, argv)
    files = check_files(v, PROXY)
    kubeconfig = v.get("kubeconfig")
    if v.get("config"):
        cfg = load_yaml_config(v["config"], "kubeproxy.config.k8s.io/v1alpha1",
                               "KubeProxyConfiguration", PROXY_FIELDS, "--config")
        if cfg.get("mode", "") not in ("", "iptables", "ipvs", "nftables", "kernelspace"):
            raise Fatal("--config %s: invalid mode %r" % (v["config"], cfg["mode"]))
        if cfg.get("clusterCIDR"):
            check_cidr(cfg["clusterCIDR"], "clusterCIDR in " + v["config"])
        kubeconfig = (cfg.get("clientConnection") or {}).get("kubeconfig") or kubeconfig
        if kubeconfig:
            files.append(kubeconfig)
    if not kubeconfig:
        raise Fatal("invalid configuration: no configuration has been provided")
    kc = load_kubeconfig(kubeconfig)
    log("flags and --config ok; %d files checked (%s)" % (len(files), " ".join(files)))
    poll_forever(kc, "kube-proxy")
