//! The `resolve` stage through its public API, against real HTTP servers on loopback
//! (`common::http::TestServer`) and `file://` mirrors. The tests that need the stage's internals
//! live beside them in `src/resolve/`.

#[path = "../common/mod.rs"]
mod common;

mod fixtures;

mod cache;
mod large;
mod retries;
mod sources;
