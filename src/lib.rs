//! imagegen: a pinned cluster profile in, cloud-init seeds that boot configured Kubernetes
//! nodes out. Data flows one way through the stages below, in this order; a stage only uses
//! the ones above it. See ARCHITECTURE.md.

// Shared helpers.
pub mod digest;
pub mod fsutil;

// The stages, in pipeline order.
pub mod profile;
// (profile -> plan)
pub mod plan;
// (plan -> credentials)
pub mod pki;
// (plan -> verified artifacts)
pub mod resolve;
// (profile + published checksums -> the profile at another version)
pub mod pin;
// (artifacts -> per-role overlay)
pub mod stage;
// (overlay -> how the node installs it)
pub mod payload;
// (plan + pki + payload -> user-data, meta-data, network-config)
pub mod seed;
// (hand-written seed files -> checked, as cloud-init will read them)
pub mod nocloud;
// (seed files -> seed.iso)
pub mod iso;
// (seed files -> a FAT seed image)
pub mod vfat;
// (plan -> what the host needs: dnsmasq, /etc/hosts, bridge, NAT, routes)
pub mod host;
// (plan + host -> the VMs' launchers; runs them)
pub mod launch;
// (runs all of the above)
pub mod build;

// The command line.
pub mod cli;
