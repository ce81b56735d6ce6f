//! Names a node cannot take, because something else of the cluster already has them: on the
//! host network, in the PKI, or as a file or directory beside the nodes' own.
//!
//! They live here, at the profile, so validation can refuse them; the stages that give them
//! their meaning (`host`, `pki`, `build`, `launch`) use the constants below or name the same
//! files.

/// The name the API's virtual IP has on the host and in the host network's DNS.
pub const API_NAME: &str = "kubernetes";

/// The name of the host itself on the host network (the guide's).
pub const HOST_NAME: &str = "vmhost";

/// Each reserved node name and why. A node's name becomes its host name, its DNS name on the
/// host network, its PKI files (`<name>.pem`, `<name>-key.pem`, `<name>.kubeconfig`), its seed
/// directory `out/<arch>/<name>/` and its launcher `out/<arch>/launch/<name>.sh`.
pub const RESERVED_NODE_NAMES: &[(&str, &str)] = &[
    (
        API_NAME,
        "it names the API's virtual IP on the host network",
    ),
    (HOST_NAME, "it names the host on the host network"),
    ("localhost", "it names the loopback address"),
    // The PKI's identities other than the nodes (`pki::identities`).
    (
        "ca",
        "the node's PKI files would be the cluster CA's (ca.pem, ca-key.pem)",
    ),
    (
        "admin",
        "the node's PKI files would be the admin credentials (admin.pem, admin.kubeconfig)",
    ),
    ("kube-proxy", "the node's PKI files would be kube-proxy's"),
    (
        "kube-scheduler",
        "the node's PKI files would be kube-scheduler's",
    ),
    (
        "kube-controller-manager",
        "the node's PKI files would be kube-controller-manager's",
    ),
    (
        "service-account",
        "the node's PKI files would be the service-account signing key's",
    ),
    // Directories of `out/<arch>/` beside the seed directories (`build`).
    (
        "host",
        "the node's seed directory would be out/<arch>/host, the host files'",
    ),
    (
        "cluster",
        "the node's seed directory would be out/<arch>/cluster, the cluster files'",
    ),
    (
        "overlay",
        "the node's seed directory would be out/<arch>/overlay, the overlays'",
    ),
    (
        "launch",
        "the node's seed directory would be out/<arch>/launch, the launchers'",
    ),
    // Launchers beside `<vm>.sh` (`launch`).
    (
        "common",
        "the node's launcher would be common.sh, which every launcher sources",
    ),
    (
        "all",
        "the node's launcher would be all.sh, which starts every VM",
    ),
    (
        "tap-up",
        "the node's launcher would be tap-up.sh, which QEMU runs for each tap device",
    ),
];

/// Why `name` (compared without case) is reserved, when it is.
pub(crate) fn reserved(name: &str) -> Option<&'static str> {
    RESERVED_NODE_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, what)| *what)
}
