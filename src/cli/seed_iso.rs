//! `imagegen seed-iso`: a NoCloud seed image from given files, a drop-in for `cloud-localds`
//! (cloud-image-utils): its positional form and flags, plus what it lacks (files stored under
//! the names cloud-init looks for, checked as cloud-init will read them, a meta-data written
//! when none is given, reproducible output).
//!
//! This file turns the arguments into a list of files for the image (`inputs`), refuses what
//! cannot work (an output that is also an input, an earlier seed image among the inputs, a
//! label cloud-init ignores), checks the NoCloud files (`crate::nocloud`) and writes the image
//! (`crate::iso` or `crate::vfat`, converted by qemu-img for `-d qcow2`).

use std::collections::HashMap;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};
use clap::error::ErrorKind;
use clap::{Args, ValueEnum};

use super::inputs::epoch_from_env;
use super::output::{self, StdoutClosed};
use crate::digest::{self, Algo};
use crate::fsutil;
use crate::iso::{self, IsoData, IsoFile, IsoOptions};
use crate::nocloud::{self, Kind, MetaDataFields, Severity};
use crate::vfat::{self, VfatOptions};

#[derive(Args)]
#[command(
    about = "Write a NoCloud seed image from given files (like cloud-localds)",
    override_usage = "imagegen seed-iso [OPTIONS] OUTPUT USER-DATA [META-DATA]\n       imagegen seed-iso [OPTIONS] -o OUTPUT [FILE]...",
    long_about = "Write a NoCloud seed image from given files, like cloud-localds (cloud-image-utils).

Two forms:
  OUTPUT USER-DATA [META-DATA]   cloud-localds' own: the files are stored as user-data and
                                 meta-data whatever their names
  -o OUTPUT [FILE]...            any files; one named user-data, meta-data, network-config or
                                 vendor-data, or ending in -user-data, .meta-data, ... (with an
                                 optional .yaml/.yml/.json/.txt/.cfg/.sh), is stored under that
                                 name (my-user-data -> user-data); others keep their own names

Before writing, user-data and vendor-data must be in a format cloud-init knows (#cloud-config
YAML that cloud-init's schema accepts, #! scripts, #include, #cloud-boothook, MIME multipart,
gzip of these), meta-data must be a YAML mapping and network-config YAML of version 1 or 2;
problems are reported as FILE:LINE:COLUMN (--no-validate writes the files as they are). Without
meta-data, one is written with an instance-id taken from the content (the same files give the
same id) and --hostname/--dsmode/--interfaces. The image is 0600 when any input is readable by
its owner only, else 0644. SOURCE_DATE_EPOCH sets every timestamp (default 2024-01-01).",
    after_help = "Examples:
  imagegen seed-iso seed.iso user-data                  # meta-data written for you
  imagegen seed-iso -H node1 -N net.yaml seed.img my-user-data my-meta-data
  imagegen seed-iso -f vfat -d qcow2 seed.qcow2 user-data meta-data
  imagegen seed-iso -o seed.iso out/arm64/worker0/*"
)]
pub(super) struct SeedIsoArgs {
    /// The image to write (`-` for stdout); with it, every FILE goes into the image
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    output: Option<Utf8PathBuf>,
    /// Without -o: OUTPUT USER-DATA [META-DATA]; with -o: files to store (`-` reads stdin)
    #[arg(value_name = "FILE")]
    files: Vec<Utf8PathBuf>,
    /// File stored as user-data
    #[arg(long, value_name = "FILE")]
    user_data: Option<Utf8PathBuf>,
    /// File stored as meta-data
    #[arg(long, value_name = "FILE")]
    meta_data: Option<Utf8PathBuf>,
    /// File stored as network-config
    #[arg(short = 'N', long, value_name = "FILE")]
    network_config: Option<Utf8PathBuf>,
    /// File stored as vendor-data
    #[arg(short = 'V', long, value_name = "FILE")]
    vendor_data: Option<Utf8PathBuf>,
    /// local-hostname of the meta-data written when none is given
    #[arg(short = 'H', long, value_name = "NAME", value_parser = hostname)]
    hostname: Option<String>,
    /// An ifupdown interfaces file, put into the written meta-data as network-interfaces
    #[arg(short = 'i', long, value_name = "FILE")]
    interfaces: Option<Utf8PathBuf>,
    /// dsmode of the written meta-data (net: cloud-init waits for the network)
    #[arg(short = 'm', long, value_enum, value_name = "MODE")]
    dsmode: Option<DsMode>,
    /// File system of the image
    #[arg(
        short = 'f',
        long,
        value_enum,
        default_value = "iso9660",
        value_name = "FS"
    )]
    filesystem: Filesystem,
    /// Disk image format (qcow2 needs qemu-img)
    #[arg(
        short = 'd',
        long,
        value_enum,
        default_value = "raw",
        value_name = "FORMAT"
    )]
    disk_format: DiskFormat,
    /// Volume label (cloud-init looks for cidata or CIDATA)
    #[arg(long, default_value = "cidata", value_name = "LABEL")]
    volid: String,
    /// Write the files without checking them
    #[arg(long)]
    no_validate: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum DsMode {
    Local,
    Net,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Filesystem {
    /// ISO 9660 with Joliet and Rock Ridge
    #[value(alias = "iso")]
    Iso9660,
    /// FAT (some platforms take no ISO)
    Vfat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiskFormat {
    Raw,
    /// Converted by qemu-img (other formats of qemu-img hold random ids, so they would not be
    /// reproducible)
    Qcow2,
}

fn hostname(s: &str) -> Result<String, String> {
    if nocloud::valid_hostname(s) {
        Ok(s.to_string())
    } else {
        Err("expected a host name: letters, digits and inner '-', dot-separated labels of at most 63".into())
    }
}

/// One file for the image.
struct Input {
    /// The name it is stored under.
    name: String,
    /// As the user gave it, for messages (`-` for stdin).
    shown: String,
    data: IsoData,
    /// 0o600 for a file others cannot read (and for stdin, which may hold anything), else
    /// 0o644: two modes only, so the image depends on names and contents, not on the umask
    /// that made the inputs.
    mode: u32,
}

impl Input {
    fn into_file(self) -> IsoFile {
        IsoFile {
            name: self.name,
            data: self.data,
            mode: self.mode,
        }
    }

    fn kind(&self) -> Option<Kind> {
        Kind::from_file_name(&self.name)
    }

    fn path(&self) -> Option<&Path> {
        match &self.data {
            IsoData::Path(p) => Some(p),
            IsoData::Bytes(_) => None,
        }
    }

    fn bytes(&self) -> anyhow::Result<std::borrow::Cow<'_, [u8]>> {
        Ok(match &self.data {
            IsoData::Path(p) => fsutil::read(p)?.into(),
            IsoData::Bytes(b) => b.as_slice().into(),
        })
    }
}

pub(super) fn run(a: SeedIsoArgs) -> anyhow::Result<ExitCode> {
    if a.disk_format == DiskFormat::Qcow2 {
        qemu_img_present()?;
    }
    let (output, mut inputs) = inputs(&a)?;
    if let Some(out) = &output {
        refuse_output_among_inputs(out, &inputs)?;
    }
    refuse_images_among_inputs(&inputs)?;
    let seed = a.volid.eq_ignore_ascii_case("cidata");
    if seed && a.volid != "cidata" && a.volid != "CIDATA" {
        bail!(
            "volume label `{}`: cloud-init looks for exactly `cidata` or `CIDATA` and would ignore this seed",
            a.volid
        );
    }
    let fields = meta_data_fields(&a)?;
    let has = |kind: Kind| inputs.iter().any(|i| i.kind() == Some(kind));
    if has(Kind::MetaData) && fields.is_some() {
        bail!("--hostname, --interfaces and --dsmode go into the meta-data written when none is given; with a meta-data file, put local-hostname, network-interfaces or dsmode into it");
    }
    if seed && !has(Kind::UserData) {
        bail!("no user-data: cloud-init reads a seed only when it has user-data and meta-data; give one (an empty file will do) as USER-DATA or --user-data FILE");
    }
    if !a.no_validate {
        validate(&inputs)?;
    }
    if seed && !has(Kind::MetaData) {
        inputs.push(generated_meta_data(&inputs, &fields.unwrap_or_default())?);
    }
    let files: Vec<IsoFile> = inputs.into_iter().map(Input::into_file).collect();
    // An image holding a private input (user-data with keys) is as private as that input.
    let private = files.iter().any(|f| f.mode == 0o600);
    let image = Image {
        filesystem: a.filesystem,
        format: a.disk_format,
        label: a.volid.clone(),
        timestamp: i64::try_from(epoch_from_env()?).context("SOURCE_DATE_EPOCH is too large")?,
        mode: if private { 0o600 } else { 0o644 },
    };
    match &output {
        Some(out) => image.write(out.as_std_path(), &files)?,
        None => image.to_stdout(&files)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The output (`None` for stdout) and the files to store, read from either form of the
/// arguments.
fn inputs(a: &SeedIsoArgs) -> anyhow::Result<(Option<Utf8PathBuf>, Vec<Input>)> {
    let (output, files) = arrange(a)?;
    if files.iter().filter(|(f, _)| *f == "-").count() > 1 {
        return Err(usage(
            ErrorKind::ArgumentConflict,
            "stdin (`-`) can be read only once",
        )
        .into());
    }
    let mut by_name: HashMap<String, &Utf8Path> = HashMap::new();
    for (file, name) in &files {
        if let Some(other) = by_name.insert(name.to_ascii_lowercase(), file) {
            bail!(
                "{other} and {file} would both be stored as {name} (names in a seed image differ by more than case)"
            );
        }
    }
    let inputs = files
        .into_iter()
        .map(|(file, name)| input(file, name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let output = (output != "-").then(|| output.to_path_buf());
    Ok((output, inputs))
}

/// The output and each file with the name it is stored under, from either form of the
/// arguments; nothing is read yet.
fn arrange(a: &SeedIsoArgs) -> anyhow::Result<(&Utf8Path, Vec<(&Utf8Path, String)>)> {
    let mut files = Vec::new();
    let mut named = [
        (Kind::UserData, a.user_data.as_deref()),
        (Kind::MetaData, a.meta_data.as_deref()),
        (Kind::NetworkConfig, a.network_config.as_deref()),
        (Kind::VendorData, a.vendor_data.as_deref()),
    ];
    let output = match &a.output {
        Some(out) => {
            for f in &a.files {
                let name = stored_name(f)?;
                if Kind::from_file_name(&name).is_some() && f.file_name() != Some(name.as_str()) {
                    output::note(&format!("{f} is stored as {name}"));
                }
                files.push((f.as_path(), name));
            }
            out.as_path()
        }
        None => {
            let mut positional = a.files.iter();
            let Some(out) = positional.next() else {
                return Err(usage(
                    ErrorKind::MissingRequiredArgument,
                    "no OUTPUT: give `OUTPUT USER-DATA [META-DATA]` or `-o OUTPUT FILE...`",
                )
                .into());
            };
            // cloud-localds' form: the files after OUTPUT are user-data and meta-data.
            for ((kind, slot), file) in named.iter_mut().zip(positional.by_ref()) {
                if slot.is_some() {
                    let n = kind.file_name();
                    let message = format!("{file} and --{n} both give the {n}");
                    return Err(usage(ErrorKind::ArgumentConflict, &message).into());
                }
                *slot = Some(file.as_path());
                if *kind == Kind::MetaData {
                    break;
                }
            }
            if let Some(extra) = positional.next() {
                let message = format!("unexpected {extra}: the form without -o takes OUTPUT USER-DATA [META-DATA]; to store more files use `-o OUTPUT FILE...`");
                return Err(usage(ErrorKind::TooManyValues, &message).into());
            }
            out.as_path()
        }
    };
    for (kind, file) in named {
        if let Some(f) = file {
            files.push((f, kind.file_name().to_string()));
        }
    }
    Ok((output, files))
}

/// A usage error in clap's own form (exit status 2, usage line), for what clap cannot check.
fn usage(kind: ErrorKind, message: &str) -> clap::Error {
    use clap::CommandFactory as _;
    let mut cmd = super::Cli::command();
    cmd.build();
    match cmd.find_subcommand_mut("seed-iso") {
        Some(sub) => sub.error(kind, message),
        None => cmd.error(kind, message),
    }
}

/// The name a FILE of the `-o` form is stored under: the NoCloud name it stands for, else its
/// own file name.
fn stored_name(file: &Utf8Path) -> anyhow::Result<String> {
    if file == "-" {
        return Err(usage(
            ErrorKind::ValueValidation,
            "`-` (stdin) needs a name: give it as --user-data - or in the form OUTPUT - [META-DATA]",
        )
        .into());
    }
    let own = file
        .file_name()
        .with_context(|| format!("{file}: no file name"))?;
    Ok(nocloud_name(own).map_or(own.to_string(), |k| k.file_name().to_string()))
}

/// The NoCloud file `name` stands for: `user-data`, `my-user-data`, `node1.user-data`,
/// `user_data.yaml`, `worker0-meta-data.yml`...
fn nocloud_name(name: &str) -> Option<Kind> {
    const EXTENSIONS: &[&str] = &[".yaml", ".yml", ".json", ".txt", ".cfg", ".sh"];
    let lower = name.to_ascii_lowercase().replace('_', "-");
    let stem = EXTENSIONS
        .iter()
        .find_map(|e| lower.strip_suffix(e))
        .unwrap_or(&lower);
    Kind::ALL.into_iter().find(|k| {
        let n = k.file_name();
        stem == n
            || [b'-', b'.'].iter().any(|sep| {
                stem.len() > n.len() + 1
                    && stem.ends_with(n)
                    && stem.as_bytes()[stem.len() - n.len() - 1] == *sep
            })
    })
}

fn input(file: &Utf8Path, name: String) -> anyhow::Result<Input> {
    if file == "-" {
        let mut data = Vec::new();
        io::stdin()
            .read_to_end(&mut data)
            .context("reading stdin")?;
        return Ok(Input {
            name,
            shown: "-".into(),
            data: IsoData::Bytes(data),
            mode: 0o600,
        });
    }
    let meta = fs_err::metadata(file.as_std_path()).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {file}: {}",
            fsutil::os_reason(&e, file.as_std_path())
        )
    })?;
    if !meta.is_file() {
        bail!("{file}: expected a regular file");
    }
    Ok(Input {
        name,
        shown: file.to_string(),
        data: IsoData::Path(file.as_std_path().to_path_buf()),
        mode: if meta.permissions().mode() & 0o044 == 0 {
            0o600
        } else {
            0o644
        },
    })
}

/// An output that is one of the inputs would be replaced while it is read.
fn refuse_output_among_inputs(out: &Utf8Path, inputs: &[Input]) -> anyhow::Result<()> {
    let Ok(target) = fs_err::metadata(out.as_std_path()) else {
        return Ok(());
    };
    for i in inputs {
        if let Some(p) = i.path() {
            let m = fs_err::metadata(p)?;
            if (m.dev(), m.ino()) == (target.dev(), target.ino()) {
                if i.shown == out.as_str() {
                    bail!(
                        "the output {out} is also one of the files to store (as {}/* would pick it up): leave it out, or write the image elsewhere",
                        parent_dir(out.as_str())
                    );
                }
                bail!(
                    "the output {out} is the same file as the input {}: leave that out, or write the image elsewhere",
                    i.shown
                );
            }
        }
    }
    Ok(())
}

/// The directory of `path` as given (`.` for a bare name), for "dir/* would pick it up".
fn parent_dir(path: &str) -> String {
    Utf8Path::new(path)
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .map_or(".".to_string(), |d| d.to_string())
}

/// An earlier seed image among the inputs (`-o new.iso out/arm64/worker0/*` picks up
/// `seed.iso`) would be packed inside the new one, where cloud-init never looks.
fn refuse_images_among_inputs(inputs: &[Input]) -> anyhow::Result<()> {
    for i in inputs {
        let Some(p) = i.path() else { continue };
        let mut head = Vec::new();
        fsutil::open_regular(p)?
            .take(32 * 1024 + 2048)
            .read_to_end(&mut head)?;
        if let Some(what) = seed_image_kind(&head) {
            bail!(
                "{} is {what}, not a file for a seed: leave it out (as {}/* would pick it up)",
                i.shown,
                parent_dir(&i.shown)
            );
        }
    }
    Ok(())
}

/// What seed image `head` (the first 34 KiB of a file) starts, if any: an ISO 9660 or FAT file
/// system labelled cidata, or any qcow2 disk.
fn seed_image_kind(head: &[u8]) -> Option<&'static str> {
    let label_is_cidata = |l: &[u8]| {
        std::str::from_utf8(l).is_ok_and(|s| s.trim_end().eq_ignore_ascii_case("cidata"))
    };
    if head.starts_with(b"QFI\xfb") {
        return Some("a qcow2 disk image");
    }
    // ISO 9660: the primary volume descriptor in sector 16, its volume id at byte 40.
    let pvd = 16 * 2048;
    if head.len() >= pvd + 72
        && &head[pvd..pvd + 6] == b"\x01CD001"
        && label_is_cidata(&head[pvd + 40..pvd + 72])
    {
        return Some("a seed image (ISO 9660, label cidata)");
    }
    // FAT: boot signature, and the label in the FAT12/16 or the FAT32 extended boot record.
    if head.len() >= 512 && head[510..512] == [0x55, 0xaa] {
        for (label, fs_type) in [(43..54, 54..62), (71..82, 82..90)] {
            if head[fs_type].starts_with(b"FAT") && label_is_cidata(&head[label]) {
                return Some("a seed image (FAT, label cidata)");
            }
        }
    }
    None
}

fn meta_data_fields(a: &SeedIsoArgs) -> anyhow::Result<Option<MetaDataFields>> {
    if a.hostname.is_none() && a.dsmode.is_none() && a.interfaces.is_none() {
        return Ok(None);
    }
    let interfaces = match &a.interfaces {
        Some(f) => Some(
            String::from_utf8(fsutil::read(f.as_std_path())?)
                .map_err(|_| anyhow::anyhow!("{f}: an interfaces file must be UTF-8 text"))?,
        ),
        None => None,
    };
    Ok(Some(MetaDataFields {
        hostname: a.hostname.clone(),
        dsmode: a.dsmode.map(|m| {
            match m {
                DsMode::Local => "local",
                DsMode::Net => "net",
            }
            .to_string()
        }),
        interfaces,
    }))
}

/// Checks every NoCloud file; prints warnings, and fails listing every error.
fn validate(inputs: &[Input]) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for i in inputs {
        let Some(kind) = i.kind() else { continue };
        let shown = if i.shown == "-" { "<stdin>" } else { &i.shown };
        for p in nocloud::check(kind, &i.bytes()?) {
            match p.severity {
                Severity::Warning => output::warn(&p.display(shown).to_string()),
                Severity::Error => errors.push(p.display(shown).to_string()),
            }
        }
    }
    if !errors.is_empty() {
        bail!(
            "{} problem{} in the seed's files (cloud-init would ignore or misread them; --no-validate writes them as they are):\n  {}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("\n  ")
        );
    }
    Ok(())
}

/// The meta-data written when none is given, said on stderr.
fn generated_meta_data(inputs: &[Input], fields: &MetaDataFields) -> anyhow::Result<Input> {
    let mut content = Vec::new();
    for i in inputs {
        let digest = match &i.data {
            IsoData::Path(p) => digest::hash_reader(Algo::Sha256, fsutil::open_regular(p)?)
                .with_context(|| format!("reading {}", p.display()))?,
            IsoData::Bytes(b) => digest::sha256_bytes(b),
        };
        content.push((i.name.clone(), digest.to_string()));
    }
    let (text, id) = nocloud::generate_meta_data(fields, &content)?;
    let mut said = format!("instance-id {id}");
    if let Some(h) = &fields.hostname {
        said.push_str(&format!(", local-hostname {h}"));
    }
    output::note(&format!(
        "no meta-data given: writing one with {said} (the same files give the same id)"
    ));
    Ok(Input {
        name: Kind::MetaData.file_name().into(),
        shown: "(written meta-data)".into(),
        data: IsoData::Bytes(text.into_bytes()),
        mode: 0o644,
    })
}

/// How the image is written.
struct Image {
    filesystem: Filesystem,
    format: DiskFormat,
    label: String,
    timestamp: i64,
    mode: u32,
}

impl Image {
    fn write(&self, dest: &Path, files: &[IsoFile]) -> anyhow::Result<()> {
        match self.format {
            DiskFormat::Raw => self
                .write_raw(dest, files)
                .with_context(|| format!("writing {}", dest.display())),
            DiskFormat::Qcow2 => {
                let dir = fsutil::temp_dir_beside(dest)?;
                let raw = dir.path().join("seed.raw");
                self.write_raw(&raw, files)
                    .with_context(|| format!("writing {}", dest.display()))?;
                let tmp = fsutil::temp_file_beside(dest, self.mode)?;
                let out = Command::new("qemu-img")
                    .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
                    .arg(&raw)
                    .arg(tmp.path())
                    .stdin(Stdio::null())
                    .output()
                    .context("running qemu-img")?;
                if !out.status.success() {
                    bail!(
                        "qemu-img convert to qcow2 failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                fsutil::persist(tmp, dest)
            }
        }
    }

    fn write_raw(&self, dest: &Path, files: &[IsoFile]) -> anyhow::Result<()> {
        match self.filesystem {
            Filesystem::Iso9660 => iso::write_iso(
                dest,
                &IsoOptions {
                    volume_id: self.label.clone(),
                    timestamp: self.timestamp,
                    mode: self.mode,
                },
                files,
            ),
            Filesystem::Vfat => vfat::write_vfat(
                dest,
                &VfatOptions {
                    label: self.label.clone(),
                    timestamp: self.timestamp,
                    mode: self.mode,
                },
                files,
            ),
        }
    }

    /// Writes the image into a private temp directory, then copies it to stdout.
    fn to_stdout(&self, files: &[IsoFile]) -> anyhow::Result<()> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let path = dir.path().join("seed.img");
        self.write(&path, files)?;
        let mut out = io::stdout().lock();
        match io::copy(&mut fsutil::open_regular(&path)?, &mut out).and_then(|_| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
            r => r.map(|_| ()).context("writing the image to stdout"),
        }
    }
}

/// qcow2 comes from qemu-img; without it, say so before anything is written.
fn qemu_img_present() -> anyhow::Result<()> {
    match Command::new("qemu-img")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "--disk-format qcow2 needs qemu-img, which is not installed (Debian/Ubuntu: apt-get install qemu-utils; macOS: brew install qemu); or leave out -d for a raw image"
        ),
        Err(e) => Err(e).context("running qemu-img"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nocloud_names_from_file_names() {
        let n = |s: &str| nocloud_name(s).map(Kind::file_name);
        for (file, want) in [
            ("user-data", Some("user-data")),
            ("my-user-data", Some("user-data")),
            ("node1.meta-data", Some("meta-data")),
            ("user_data.yaml", Some("user-data")),
            ("worker0-meta-data.yml", Some("meta-data")),
            ("Network-Config.json", Some("network-config")),
            ("vendor-data.txt", Some("vendor-data")),
            ("user-data.bak", None),
            ("user-data-old", None),
            ("superuser-data", None),
            ("-user-data", None),
            ("overlay-worker.cpio.gz", None),
            ("seed.iso", None),
        ] {
            assert_eq!(n(file), want, "{file}");
        }
    }

    #[test]
    fn seed_images_are_recognised() {
        let mut iso = vec![0u8; 34 * 1024];
        iso[32768..32774].copy_from_slice(b"\x01CD001");
        iso[32808..32840].copy_from_slice(format!("{:<32}", "cidata").as_bytes());
        assert!(seed_image_kind(&iso).unwrap().contains("ISO 9660"));
        iso[32808..32840].copy_from_slice(format!("{:<32}", "payload-worker").as_bytes());
        assert_eq!(seed_image_kind(&iso), None);
        let mut fat = vec![0u8; 512];
        fat[510..512].copy_from_slice(&[0x55, 0xaa]);
        fat[43..54].copy_from_slice(b"CIDATA     ");
        fat[54..62].copy_from_slice(b"FAT12   ");
        assert!(seed_image_kind(&fat).unwrap().contains("FAT"));
        assert!(seed_image_kind(b"QFI\xfb\0\0\0\x03")
            .unwrap()
            .contains("qcow2"));
        assert_eq!(seed_image_kind(b"#cloud-config\n"), None);
    }
}
