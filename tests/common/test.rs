//! One way to run the real `imagegen` binary from a test, so every run is sealed off from the
//! tester's machine the same way and every failure shows what the binary printed.
//!
//! A [`Test`] owns a temp dir: it is the run's working directory, holds the `HOME` the binary
//! sees (so the tester's `~/.ssh` keys never end up in a seed) and the download cache
//! (`IMAGEGEN_CACHE`, unless the test sets it). `SOURCE_DATE_EPOCH`, `XDG_CACHE_HOME`, the
//! variables that stand for flags (`IMAGEGEN_ARCH`, ...) and those that turn colour on or off
//! are removed so the tester's shell cannot change timestamps, the cache, the arguments or the
//! output. Clones share the temp dir, so one test can run several commands against the same
//! output.
//!
//! The [`Output`] of a run asserts the exit status (printing stdout and stderr when it is not
//! the expected one) and normalizes text for snapshots: the temp dir becomes `[TEMP]`, the
//! cache `[CACHE]`, the repository root `[ROOT]`.
//!
//! Every run has a timeout (300 s unless [`Test::timeout`] says otherwise): a binary that hangs
//! is killed and the test fails saying so. [`Test::spawn`] starts a run without waiting (to
//! signal it, or to run two at once), and [`Test::wrap`] runs the binary under another command
//! (`strace`, `prlimit`).
//!
//! ```ignore
//! let t = Test::new();
//! let out = t.clone().args(["profile", "check", "nope.yaml"]).run().code(1);
//! insta::assert_snapshot!("missing-profile", out.snapshot());
//! ```
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::root;

/// Variables of the tester's shell that would change a run: flags' stand-ins and colour.
pub const TESTER_ENV: &[&str] = &[
    "IMAGEGEN_ARCH",
    "IMAGEGEN_PROFILE",
    "IMAGEGEN_OUT",
    "IMAGEGEN_MIRROR",
    "IMAGEGEN_JOBS",
    "IMAGEGEN_OFFLINE",
    "NO_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
];

/// A run of `imagegen` being put together; see the module docs.
#[derive(Clone)]
pub struct Test {
    temp: Rc<tempfile::TempDir>,
    cwd: PathBuf,
    args: Vec<OsString>,
    /// In order; `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    /// A command the binary runs under (`strace -f ...`, `prlimit ...`), with its arguments.
    wrapper: Vec<OsString>,
    /// Longest the run may take before it is killed and the test fails as hung.
    timeout: Duration,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    /// A fresh temp dir (with an empty `home/`) as the working directory, no arguments.
    pub fn new() -> Self {
        let temp = tempfile::tempdir().expect("creating a temp dir");
        fs_err::create_dir(temp.path().join("home")).unwrap();
        Test {
            cwd: temp.path().to_path_buf(),
            temp: Rc::new(temp),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            wrapper: Vec::new(),
            timeout: Duration::from_secs(300),
        }
    }

    /// The temp dir this test owns (and its clones share).
    pub fn temp(&self) -> &Path {
        self.temp.path()
    }

    /// The `HOME` the binary sees: an empty directory inside the temp dir.
    pub fn home(&self) -> PathBuf {
        self.temp().join("home")
    }

    /// The default download cache: `IMAGEGEN_CACHE` points here unless the test sets it.
    pub fn cache(&self) -> PathBuf {
        self.temp().join("cache")
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `imagegen build --arch amd64 --payload fetch`: every seed file, and no download (the
    /// nodes would fetch their binaries), so a build needs no mirror.
    pub fn fetch_build(self) -> Self {
        self.args(["build", "--arch", "amd64", "--payload", "fetch"])
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_os_string(), None));
        self
    }

    /// Bytes fed to the binary's stdin (otherwise stdin is empty).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Runs the binary under `command` (e.g. `["strace", "-f", "-o", "/dev/null"]`), which gets
    /// the binary's path and arguments after its own.
    pub fn wrap<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapper = command
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        self
    }

    /// Fails the test as hung (after killing the binary) when a run takes longer than `limit`
    /// (default 300 s).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The working directory; a relative path is taken inside the temp dir. Tests that pass
    /// repository files by relative path (`tests/profiles/...`) run in [`root()`].
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = self.temp().join(dir);
        self
    }

    /// The value `key` will have in the binary's environment, as far as this test set it.
    fn env_set(&self, key: &str) -> Option<Option<&OsStr>> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// Runs the binary and waits for it.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }

    /// Starts the binary; [`Running::wait`] waits for it.
    pub fn spawn(self) -> Running {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_imagegen"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_imagegen")),
        };
        cmd.current_dir(&self.cwd)
            .args(&self.args)
            .env("HOME", self.home())
            .env("IMAGEGEN_CACHE", self.cache())
            .env_remove("XDG_CACHE_HOME")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in TESTER_ENV {
            cmd.env_remove(var);
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let data = self.stdin.clone().unwrap_or_default();
        // Fed from a thread so a binary that prints before reading cannot deadlock the pipes.
        let feeder = std::thread::spawn(move || {
            // A binary that never reads stdin closes it early; that is not the test's concern.
            let _ = stdin.write_all(&data);
        });
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        Running {
            child,
            started: Instant::now(),
            pipes: Some((feeder, stdout, stderr)),
            test: self,
        }
    }
}

/// The threads that feed stdin and collect stdout and stderr of a run.
type Pipes = (JoinHandle<()>, JoinHandle<Vec<u8>>, JoinHandle<Vec<u8>>);

/// A run of the binary that has started; see [`Test::spawn`].
pub struct Running {
    child: Child,
    started: Instant,
    pipes: Option<Pipes>,
    test: Test,
}

impl Running {
    /// The process id of the binary (of the wrapper, when there is one).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the binary has not ended yet.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the binary (killing it and failing the test when it runs past its timeout).
    pub fn wait(mut self) -> Output {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if self.started.elapsed() > self.test.timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (_, out, err) = self.pipes.take().unwrap();
                panic!(
                    "`imagegen {}` hung: killed after {:?}\n----- stdout -----\n{}\n----- stderr -----\n{}",
                    self.test.args_text(),
                    self.test.timeout,
                    String::from_utf8_lossy(&out.join().unwrap()),
                    String::from_utf8_lossy(&err.join().unwrap())
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let (feeder, out, err) = self.pipes.take().unwrap();
        feeder.join().unwrap();
        self.test
            .output(status, out.join().unwrap(), err.join().unwrap())
    }
}

impl Test {
    fn args_text(&self) -> String {
        self.args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn output(self, status: ExitStatus, stdout: Vec<u8>, stderr: Vec<u8>) -> Output {
        let filters = self.filters();
        Output {
            command: format!("imagegen {}", self.args_text()),
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            filters,
            temp: self.temp,
        }
    }

    /// Path filters: this test's cache, temp dir and the repository root become `[CACHE]`,
    /// `[TEMP]` and `[ROOT]`.
    fn filters(&self) -> Vec<(String, &'static str)> {
        let cache = match self.env_set("IMAGEGEN_CACHE") {
            Some(Some(dir)) => Some(self.cwd.join(dir)),
            Some(None) => None,
            None => Some(self.cache()),
        };
        let mut filters = Vec::new();
        if let Some(cache) = cache {
            add_filter(&mut filters, &cache, "[CACHE]");
        }
        add_filter(&mut filters, self.temp(), "[TEMP]");
        add_filter(&mut filters, root(), "[ROOT]");
        // The most specific path first: the cache may sit inside the temp dir, which may sit
        // inside the repository.
        filters.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        filters
    }

    /// `text` (a file the binary wrote, say) normalized as this test's runs are.
    pub fn normalize(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (from, to) in &self.filters() {
            text = text.replace(from.as_str(), to);
        }
        text
    }
}

/// Maps `path` (and its canonical form, when a symlink such as macOS' `/tmp` differs) to `to`.
fn add_filter(filters: &mut Vec<(String, &'static str)>, path: &Path, to: &'static str) {
    let mut forms = vec![path.to_path_buf()];
    if let Ok(real) = fs_err::canonicalize(path) {
        forms.push(real);
    }
    for form in forms {
        let form = form.to_string_lossy().trim_end_matches('/').to_string();
        if !form.is_empty() && !filters.iter().any(|(f, _)| *f == form) {
            filters.push((form, to));
        }
    }
}

/// What a run printed and how it ended. Keeps the temp dir alive.
pub struct Output {
    command: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    filters: Vec<(String, &'static str)>,
    temp: Rc<tempfile::TempDir>,
}

impl Output {
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    pub fn status(&self) -> ExitStatus {
        self.status
    }

    /// The temp dir of the test that ran.
    pub fn temp(&self) -> &Path {
        self.temp.path()
    }

    /// Asserts exit status 0.
    #[track_caller]
    pub fn success(self) -> Self {
        if !self.status.success() {
            self.fail("to succeed");
        }
        self
    }

    /// Asserts a non-zero exit status (a crash by signal is not a failure the binary reported).
    #[track_caller]
    pub fn failure(self) -> Self {
        if self.status.success() || self.status.code().is_none() {
            self.fail("to fail with a non-zero exit status");
        }
        self
    }

    /// Asserts exit status `code`.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        if self.status.code() != Some(code) {
            self.fail(&format!("to exit with {code}"));
        }
        self
    }

    #[track_caller]
    fn fail(&self, expected: &str) -> ! {
        panic!(
            "expected `{}` {expected}, but it ended with {}\n----- stdout -----\n{}\n----- stderr -----\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// `text` with the temp dir, cache and repository root replaced by `[TEMP]`, `[CACHE]`
    /// and `[ROOT]`.
    pub fn normalize(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (from, to) in &self.filters {
            text = text.replace(from.as_str(), to);
        }
        text
    }

    /// Exit status, stdout and stderr, normalized: the value to snapshot.
    pub fn snapshot(&self) -> String {
        let code = match self.status.code() {
            Some(c) => c.to_string(),
            None => self.status.to_string(),
        };
        self.normalize(&format!(
            "exit: {code}\n----- stdout -----\n{}\n----- stderr -----\n{}",
            self.stdout, self.stderr
        ))
    }
}
