//! A large member goes through in constant memory.

use super::*;

fn vm_hwm_kib() -> u64 {
    let status = fs_err::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Yields `len` bytes of a repeated 16 KiB pseudo-random block (compressible like a binary).
struct Pattern {
    block: Vec<u8>,
    at: usize,
    left: u64,
}

impl Pattern {
    fn new(len: u64) -> Self {
        let mut x = 0x9e37_79b9_u32;
        let block = (0..16 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        Pattern {
            block,
            at: 0,
            left: len,
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(self.block.len() - self.at)
            .min(self.left as usize);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at = (self.at + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn large_member_is_streamed() {
    const SIZE: u64 = 300 << 20;
    let mut inp = Inputs::new();
    let path = inp.cache("kubernetes-node-linux-arm64.tar.gz");
    {
        TarGz::create(&path)
            .file_from("kubernetes/node/bin/kubelet", SIZE, Pattern::new(SIZE))
            .finish();
    }
    inp.add("kubernetes-node", path);
    let expected = hash_reader(Algo::Sha256, Pattern::new(SIZE)).unwrap();

    let before = vm_hwm_kib();
    let rules = [rule(
        "kubernetes-node",
        member("kubernetes/node/bin/kubelet"),
        "/usr/local/bin/kubelet",
    )];
    let overlay = inp.stage("worker", &rules, MTIME).unwrap();
    let grown = vm_hwm_kib().saturating_sub(before);
    eprintln!("VmHWM before {before} KiB, grew by {grown} KiB staging a {SIZE}-byte member");
    assert_eq!(overlay.entries[0].size, SIZE);
    assert_eq!(overlay.entries[0].sha256, expected);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
    let listed = run(
        "gzip -dc \"$1\" | cpio -itv --numeric-uid-gid --quiet",
        &overlay.archive,
        Path::new("/"),
    );
    assert_eq!(parse_ls(&listed)[0].3, SIZE);
}
