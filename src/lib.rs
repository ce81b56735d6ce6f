//! imagegen: a pinned cluster profile in, cloud-init seeds that boot configured Kubernetes
//! nodes out. Data flows one way through the stages below; a stage only uses the ones above it.
//! See ARCHITECTURE.md.

pub mod digest;
pub mod fsutil;

pub mod build;
pub mod payload;
pub mod pki;
pub mod plan;
pub mod profile;
pub mod seed;
pub mod stage;

pub mod cli;
