//! Random flat file sets round-trip through the writer and independent readers.

mod common;

use common::iso::*;
use imagegen::iso::{write_iso, IsoFile, IsoOptions};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    // Safe alphabet; a trailing '.' is rejected by design, so end on a non-dot. Up to Linux's
    // 255: past 64 the Joliet name is cut, past about 140 the Rock Ridge name moves to the
    // continuation area.
    prop_oneof![
        "[a-z0-9._-]{0,63}[a-z0-9_-]",
        "[a-z0-9._-]{64,254}[a-z0-9_-]",
    ]
}

fn file_set() -> impl Strategy<Value = Vec<(String, usize, u32)>> {
    proptest::collection::btree_map(
        name(),
        (
            0usize..=5000,
            prop_oneof![Just(0o644u32), Just(0o600), Just(0o755)],
        ),
        1..12,
    )
    .prop_map(|m| m.into_iter().map(|(n, (s, mode))| (n, s, mode)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_file_sets_round_trip(set in file_set(), ts in 0i64..4_000_000_000) {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<IsoFile> = set
            .iter()
            .enumerate()
            .map(|(i, (n, size, mode))| bytes(n, &pattern(*size, i as u64), *mode))
            .collect();
        let iso = dir.path().join("p.iso");
        write_iso(&iso, &IsoOptions { volume_id: "cidata".into(), timestamp: ts, mode: 0o644 }, &files).unwrap();
        check_isovfy(&iso);
        check_isoinfo_plain(&iso, &files);
        check_bsdtar_extract(&iso, &files);
        check_xorriso_extract(&iso, &files);
        check_isoinfo_rock(&iso, &files);
        check_joliet_names_fit(&iso, &files);
    }
}
