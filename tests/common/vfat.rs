//! Independent readers of FAT seed images: mtools (what `cloud-localds -f vfat` writes with),
//! dosfstools' checker and blkid (how cloud-init finds the seed). A missing tool is a failure
//! naming the apt package, never a skip.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use super::iso::run;

/// The long names in the root directory, as `mdir -b` lists them.
pub fn mdir_names(img: &Path) -> Vec<String> {
    let text = run("mdir", "mtools", &["-b", "-i", img.to_str().unwrap(), "::"]);
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("::/"))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Every file of the image with its bytes, copied out by mcopy.
pub fn mcopy_all(img: &Path) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = BTreeMap::new();
    for name in mdir_names(img) {
        let to = dir.path().join(&name);
        run(
            "mcopy",
            "mtools",
            &[
                "-n",
                "-i",
                img.to_str().unwrap(),
                &format!("::{name}"),
                to.to_str().unwrap(),
            ],
        );
        out.insert(name, fs_err::read(&to).unwrap());
    }
    out
}

/// `fsck.fat -n` (read-only) finds nothing to fix.
pub fn check_fsck(img: &Path) {
    let text = run(
        "fsck.fat",
        "dosfstools",
        &["-n", "-v", img.to_str().unwrap()],
    );
    for bad in [
        "differ",
        "Dirty",
        "Free cluster summary wrong",
        "Fix",
        "Remove",
        "Reclaim",
    ] {
        assert!(!text.contains(bad), "fsck.fat -n says {bad:?}:\n{text}");
    }
}

/// blkid sees a vfat file system labelled `label`, in both places a FAT label lives.
pub fn check_blkid(img: &Path, label: &str) {
    let text = run(
        "blkid",
        "util-linux",
        &["-p", "-o", "export", img.to_str().unwrap()],
    );
    for want in [
        format!("LABEL={label}"),
        format!("LABEL_FATBOOT={label}"),
        "TYPE=vfat".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "blkid lacks {want}:\n{text}"
        );
    }
}

/// The files of the image in a directory, for tools that read seed directories.
pub fn extract_to(img: &Path, dir: &Path) {
    for (name, data) in mcopy_all(img) {
        fs_err::write(dir.join(name), data).unwrap();
    }
}
