//! The hashing kit: pinned content digests (`sha256:<hex>` / `sha512:<hex>`) and streaming
//! hashing. Every artifact imagegen touches is identified by one of these; the cache is keyed by
//! them and the first-boot installers verify them with `sha256sum -c` / `sha512sum -c`.
//!
//! Hashing while copying is always a [`HashingWriter`] inside an `io::copy` (or
//! [`hash_reader`] when only the digest is wanted), so no stage keeps a private copy loop.

use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    Sha256,
    Sha512,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex form.
    pub fn hex_len(self) -> usize {
        match self {
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }
}

/// A validated digest: known algorithm, lowercase hex of the right length.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algo: Algo,
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 hex>` or `sha512:<128 hex>`. Upper-case hex is accepted and normalised,
    /// because published checksum files use both.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| format!("expected `sha256:<hex>` or `sha512:<hex>`, got `{s}`"))?;
        let algo = match algo {
            "sha256" => Algo::Sha256,
            "sha512" => Algo::Sha512,
            other => {
                return Err(format!(
                    "unknown digest algorithm `{other}` (expected sha256 or sha512)"
                ))
            }
        };
        if hex.len() != algo.hex_len() {
            return Err(format!(
                "{} digest must have {} hex digits, got {}",
                algo.name(),
                algo.hex_len(),
                hex.len()
            ));
        }
        if let Some(bad) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(format!(
                "{} digest has a non-hex character `{bad}`",
                algo.name()
            ));
        }
        Ok(Digest {
            algo,
            hex: hex.to_ascii_lowercase(),
        })
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Hashes a reader with this digest's algorithm and compares.
    pub fn matches_reader(&self, r: impl Read) -> io::Result<bool> {
        Ok(hash_reader(self.algo, r)? == *self)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo.name(), self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$",
            "description": "A content digest: the algorithm, a colon and the lowercase hex (sha256:... or sha512:...)"
        })
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for either algorithm; also a `Write` so it can sit in an `io::copy`.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algo: Algo) -> Self {
        match algo {
            Algo::Sha256 => Hasher::Sha256(Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algo, hex) = match self {
            Hasher::Sha256(h) => (Algo::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algo::Sha512, hex::encode(h.finalize())),
        };
        Digest { algo, hex }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that hashes (with one or more algorithms) and counts exactly the bytes the inner
/// writer accepted.
pub struct HashingWriter<W> {
    inner: W,
    hashers: Vec<Hasher>,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W, algo: Algo) -> Self {
        Self::with_algos(inner, [algo])
    }

    /// One digest per algorithm, in the order given.
    pub fn with_algos(inner: W, algos: impl IntoIterator<Item = Algo>) -> Self {
        HashingWriter {
            inner,
            hashers: algos.into_iter().map(Hasher::new).collect(),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The inner writer, the digest of the first algorithm and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        let (w, mut digests, n) = self.finish_all();
        (w, digests.swap_remove(0), n)
    }

    /// The inner writer, one digest per algorithm and the byte count.
    pub fn finish_all(self) -> (W, Vec<Digest>, u64) {
        let digests = self.hashers.into_iter().map(Hasher::finish).collect();
        (self.inner, digests, self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        for h in &mut self.hashers {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streams a reader through the hasher (never buffers the whole input).
pub fn hash_reader(algo: Algo, mut r: impl Read) -> io::Result<Digest> {
    let mut h = Hasher::new(algo);
    io::copy(&mut r, &mut h)?;
    Ok(h.finish())
}

pub fn sha256_bytes(data: &[u8]) -> Digest {
    let mut h = Hasher::new(Algo::Sha256);
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let d = Digest::parse(&format!("sha256:{}", "AB".repeat(32))).unwrap();
        assert_eq!(d.hex(), "ab".repeat(32));
        assert_eq!(d.to_string(), format!("sha256:{}", "ab".repeat(32)));
    }

    #[test]
    fn rejects_bad_forms() {
        assert!(Digest::parse("abc").unwrap_err().contains("expected"));
        assert!(Digest::parse("md5:00").unwrap_err().contains("unknown"));
        assert!(Digest::parse("sha256:00")
            .unwrap_err()
            .contains("64 hex digits"));
        let bad = format!("sha512:{}z", "0".repeat(127));
        assert!(Digest::parse(&bad).unwrap_err().contains("non-hex"));
    }

    #[test]
    fn hashes_known_vectors() {
        // sha256("abc") and sha512("abc") from FIPS 180-2.
        assert_eq!(
            sha256_bytes(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = hash_reader(Algo::Sha512, &b"abc"[..]).unwrap();
        assert!(d.hex().starts_with("ddaf35a193617aba"));
        assert!(d.matches_reader(&b"abc"[..]).unwrap());
        assert!(!d.matches_reader(&b"abd"[..]).unwrap());
    }

    #[test]
    fn hashing_writer_hashes_and_counts_what_it_passes_on() {
        let data = vec![7u8; 300_000];
        let mut w = HashingWriter::with_algos(Vec::new(), [Algo::Sha256, Algo::Sha512]);
        io::copy(&mut &data[..], &mut w).unwrap();
        assert_eq!(w.count(), 300_000);
        let (out, ds, wn) = w.finish_all();
        assert_eq!(wn, 300_000);
        assert_eq!(out, data);
        assert_eq!(ds[0], sha256_bytes(&data));
        assert_eq!(ds[1], hash_reader(Algo::Sha512, &data[..]).unwrap());
    }
}
