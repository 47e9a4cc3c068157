//! The pinned Rust toolchain: reads `rust-toolchain.toml` and has rustup add its targets and components explicitly.
//!
//! rustup installs a toolchain file's targets and components only when it
//! installs the toolchain itself; an existing toolchain without them is used
//! as it is, and the bare-metal builds then fail. So the xtask (like the
//! `./x` launcher, which reads the same file) asks rustup for what is
//! missing and trusts only rustup's list of what is installed afterwards.

use crate::setup::workspace_root;
use std::{fs, path::PathBuf, process::Command};

/// What `rust-toolchain.toml` pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Release or channel, e.g. `1.95.0`.
    pub channel: String,
    /// Cross-compilation targets.
    pub targets: Vec<String>,
    /// Components such as `clippy` or `rust-src`.
    pub components: Vec<String>,
    /// rustup profile, if named.
    pub profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
    Comma,
    Equals,
    Newline,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                // A comment runs to the end of the line; the line end stays.
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '\n' => tokens.push(Token::Newline),
            c if c.is_whitespace() => {}
            '[' => tokens.push(Token::Open),
            ']' => tokens.push(Token::Close),
            ',' => tokens.push(Token::Comma),
            '=' => tokens.push(Token::Equals),
            '"' | '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        // Escapes never occur in toolchain names; refusing
                        // them keeps this reader and `./x`'s in agreement.
                        Some('\\') => return Err("escapes in strings are not supported".into()),
                        Some('\n') | None => return Err("unterminated string".into()),
                        Some(ch) => s.push(ch),
                    }
                }
                tokens.push(Token::Str(s));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' || n == '-' || n == '.' {
                        w.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(w));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(tokens)
}

/// A value in the file: a string or an array of strings.
#[derive(Debug)]
enum Value {
    Str(String),
    List(Vec<String>),
}

/// Parses the subset of TOML a toolchain file uses: `[table]` headers and
/// `key = "string"` or `key = ["a", "b"]` (arrays may span lines).
pub fn parse_pin(text: &str) -> Result<Pin, String> {
    let tokens = tokenize(text).map_err(|e| format!("rust-toolchain.toml: {e}"))?;
    let mut it = tokens.into_iter().peekable();
    let mut table = String::new();
    let mut entries: Vec<(String, String, Value)> = Vec::new();
    let bad = |what: &str| format!("rust-toolchain.toml: expected {what}");
    while let Some(token) = it.next() {
        match token {
            Token::Newline => {}
            Token::Open => match (it.next(), it.next()) {
                (Some(Token::Word(name)), Some(Token::Close)) => table = name,
                _ => return Err(bad("a table name after '['")),
            },
            Token::Word(key) => {
                if it.next() != Some(Token::Equals) {
                    return Err(bad(&format!("'=' after {key}")));
                }
                let value = match it.next() {
                    Some(Token::Str(s)) => Value::Str(s),
                    Some(Token::Open) => {
                        let mut list = Vec::new();
                        loop {
                            match it.next() {
                                Some(Token::Str(s)) => list.push(s),
                                Some(Token::Comma | Token::Newline) => {}
                                Some(Token::Close) => break,
                                _ => return Err(bad(&format!("strings in the array {key}"))),
                            }
                        }
                        Value::List(list)
                    }
                    _ => return Err(bad(&format!("a string or an array for {key}"))),
                };
                if !matches!(it.next(), None | Some(Token::Newline)) {
                    return Err(bad(&format!("a line end after {key}")));
                }
                entries.push((table.clone(), key, value));
            }
            _ => return Err(bad("a key or a [table]")),
        }
    }
    let get = |key: &str| {
        entries
            .iter()
            .find(|(t, k, _)| t == "toolchain" && k == key)
            .map(|(_, _, v)| v)
    };
    let list = |key: &str| match get(key) {
        None => Ok(Vec::new()),
        Some(Value::List(l)) => Ok(l.clone()),
        Some(Value::Str(_)) => Err(bad(&format!("an array for toolchain.{key}"))),
    };
    let string = |key: &str| match get(key) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s.clone())),
        Some(Value::List(_)) => Err(bad(&format!("a string for toolchain.{key}"))),
    };
    Ok(Pin {
        channel: string("channel")?.ok_or_else(|| bad("toolchain.channel"))?,
        targets: list("targets")?,
        components: list("components")?,
        profile: string("profile")?,
    })
}

/// Reads the workspace's `rust-toolchain.toml`.
pub fn read_pin() -> Result<Pin, String> {
    let path = workspace_root().join("rust-toolchain.toml");
    let text =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_pin(&text)
}

/// The entries of `want` that `installed` (rustup's `target list
/// --installed` or `component list --installed` output) does not show.
/// rustup lists most components with the host triple appended
/// (`clippy-x86_64-unknown-linux-gnu`) but host-independent ones bare
/// (`rust-src`); the host is what follows `rustc-` in the same list.
pub fn missing(want: &[String], installed: &str) -> Vec<String> {
    let lines: Vec<&str> = installed.lines().map(str::trim).collect();
    let host = lines.iter().find_map(|l| l.strip_prefix("rustc-"));
    want.iter()
        .filter(|w| {
            !lines.iter().any(|l| {
                *l == w.as_str()
                    || host.is_some_and(|h| l.strip_prefix(w.as_str()) == Some(&format!("-{h}")))
            })
        })
        .cloned()
        .collect()
}

/// Whether the toolchain `name` (rustup's full name, e.g.
/// `1.95.0-x86_64-unknown-linux-gnu`, or as pinned) is the pinned channel.
pub fn is_pinned(name: &str, pin: &Pin) -> bool {
    name == pin.channel
        || name
            .strip_prefix(pin.channel.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
}

fn rustup_list(toolchain: &str, what: &str) -> Result<String, String> {
    let out = Command::new("rustup")
        .args([what, "list", "--installed", "--toolchain", toolchain])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustup {what} list --toolchain {toolchain} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes sure the toolchain this xtask runs under has the pinned targets
/// and components, adding missing ones with `rustup target add` /
/// `rustup component add` and then checking rustup's lists again.
pub fn ensure() -> Result<(), String> {
    let pin = read_pin()?;
    // The rustup proxy that started cargo names the toolchain here, and the
    // cargo and rustc processes this xtask starts inherit it: that is the
    // toolchain that must have the targets.
    let Some(toolchain) = std::env::var("RUSTUP_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
    else {
        return check_sysroot(&pin);
    };
    if !is_pinned(&toolchain, &pin) {
        println!(
            "note: running under Rust toolchain {toolchain}, not {} from rust-toolchain.toml (RUSTUP_TOOLCHAIN or a rustup override?)",
            pin.channel
        );
    }
    let targets = missing(&pin.targets, &rustup_list(&toolchain, "target")?);
    let components = missing(&pin.components, &rustup_list(&toolchain, "component")?);
    if targets.is_empty() && components.is_empty() {
        return Ok(());
    }
    for (kind, names) in [("target", &targets), ("component", &components)] {
        if names.is_empty() {
            continue;
        }
        println!("==> adding Rust {kind}s {names:?} to {toolchain} (rust-toolchain.toml)");
        let status = Command::new("rustup")
            .args([kind, "add", "--toolchain", &toolchain])
            .args(names)
            .current_dir(workspace_root())
            .status()
            .map_err(|e| format!("cannot run rustup: {e}"))?;
        if !status.success() {
            println!("    rustup {kind} add failed ({status})");
        }
    }
    let targets = missing(&pin.targets, &rustup_list(&toolchain, "target")?);
    let components = missing(&pin.components, &rustup_list(&toolchain, "component")?);
    if targets.is_empty() && components.is_empty() {
        return Ok(());
    }
    Err(format!(
        "Rust toolchain {toolchain} still lacks targets {targets:?} and components {components:?}; \
         install them with: rustup target add --toolchain {toolchain} {} && rustup component add --toolchain {toolchain} {}",
        pin.targets.join(" "),
        pin.components.join(" ")
    ))
}

/// Without rustup (a toolchain from a distribution or Nix) nothing can be
/// installed; the targets are checked in the compiler's sysroot.
fn check_sysroot(pin: &Pin) -> Result<(), String> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| {
            format!(
                "cannot run rustc ({e}); install Rust with rustup (https://rustup.rs) and run ./x"
            )
        })?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let absent: Vec<_> = pin
        .targets
        .iter()
        .filter(|t| !sysroot.join("lib/rustlib").join(t).exists())
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the Rust toolchain at {} is not managed by rustup and lacks the targets {absent:?}; \
             use rustup (https://rustup.rs) and ./x, which install Rust {} with them",
            sysroot.display(),
            pin.channel
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_workspace_file() {
        let pin = read_pin().unwrap();
        assert!(pin.channel.starts_with("1."), "{pin:?}");
        assert!(
            pin.targets
                .contains(&"aarch64-unknown-none-softfloat".into())
        );
        assert!(pin.components.contains(&"rust-src".into()));
        assert_eq!(pin.profile.as_deref(), Some("minimal"));
    }

    #[test]
    fn parses_comments_multiline_arrays_and_quotes() {
        let text = "# top\n[other]\nchannel = \"nightly\"\n[toolchain] # here\nchannel = '1.2.3'\n\
                    targets = [\n  \"a-b\", # first\n  \"c\",\n]\ncomponents=[]\n";
        let pin = parse_pin(text).unwrap();
        assert_eq!(pin.channel, "1.2.3");
        assert_eq!(pin.targets, strings(&["a-b", "c"]));
        assert!(pin.components.is_empty());
        assert_eq!(pin.profile, None);
    }

    #[test]
    fn refuses_malformed_files() {
        for text in [
            "[toolchain]\ntargets = [\"a\"]\n",          // no channel
            "[toolchain]\nchannel = \"1\n",              // unterminated
            "[toolchain]\nchannel = [\"1\"]\n",          // wrong type
            "[toolchain]\nchannel \"1\"\n",              // no '='
            "[toolchain]\nchannel = \"1\" targets = []", // two on a line
            "[toolchain]\nchannel = \"a\\\"b\"\n",       // escape
        ] {
            assert!(parse_pin(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn launcher_reads_the_same_pin() {
        // `./x --print-pin` is the shell reading of the file; both must agree
        // or the launcher would install something other than what xtask checks.
        let out = Command::new("bash")
            .arg(workspace_root().join("x"))
            .arg("--print-pin")
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("no {k} in {text}"))
                .to_string()
        };
        let pin = read_pin().unwrap();
        assert_eq!(field("channel"), pin.channel);
        assert_eq!(field("targets"), pin.targets.join(" "));
        assert_eq!(field("components"), pin.components.join(" "));
        assert_eq!(field("profile"), pin.profile.unwrap_or("default".into()));
    }

    #[test]
    fn missing_matches_rustup_lists() {
        let components = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\n\
                          rust-src\nrust-std-x86_64-unknown-linux-gnu\nrustc-x86_64-unknown-linux-gnu\n";
        let want = strings(&["clippy", "rust-src", "rustfmt", "llvm-tools", "rust"]);
        // `rust` must not match `rust-src` or `rust-std-...`.
        assert_eq!(
            missing(&want, components),
            strings(&["rustfmt", "llvm-tools", "rust"])
        );
        let targets = "aarch64-unknown-none\nx86_64-unknown-linux-gnu\n";
        let want = strings(&["aarch64-unknown-none", "aarch64-unknown-none-softfloat"]);
        assert_eq!(
            missing(&want, targets),
            strings(&["aarch64-unknown-none-softfloat"])
        );
        assert_eq!(missing(&want, ""), want);
        assert!(missing(&[], "").is_empty());
    }

    #[test]
    fn pinned_toolchain_names() {
        let pin = parse_pin("[toolchain]\nchannel = \"1.95.0\"\n").unwrap();
        assert!(is_pinned("1.95.0", &pin));
        assert!(is_pinned("1.95.0-x86_64-unknown-linux-gnu", &pin));
        assert!(!is_pinned("1.95.01-x86_64-unknown-linux-gnu", &pin));
        assert!(!is_pinned("stable-x86_64-unknown-linux-gnu", &pin));
    }

    /// A stand-in for rustup that keeps its installed toolchain, targets and
    /// components in files and logs every call, so the launcher's
    /// decisions are checked without a network or a real installation.
    const FAKE_RUSTUP: &str = r#"#!/bin/bash
s=$FAKE_STATE
echo "rustup $*" >> "$s/log"
host=x86_64-unknown-linux-gnu
add() { # FILE WORDS...: records them unless told to refuse
    local f=$1; shift
    [ -n "${FAKE_REFUSE:-}" ] && return 0
    for w in "$@"; do echo "$w" >> "$s/$f"; done
}
case "$1 $2" in
"toolchain list")
    if [ -f "$s/installed" ]; then echo "1.95.0-$host (active)"; else echo "no installed toolchains"; fi ;;
"toolchain install")
    touch "$s/installed"; shift 3
    while [ $# -gt 0 ]; do
        case $1 in
        --component) add components ${2//,/ }; shift ;;
        --target) add targets ${2//,/ }; shift ;;
        esac
        shift
    done ;;
"target list")
    [ -f "$s/installed" ] || exit 1
    echo "$host"; cat "$s/targets" 2>/dev/null ;;
"component list")
    [ -f "$s/installed" ] || exit 1
    echo "rustc-$host"; echo "cargo-$host"
    while read -r c; do
        if [ "$c" = rust-src ]; then echo "$c"; else echo "$c-$host"; fi
    done < <(cat "$s/components" 2>/dev/null) ;;
"target add") shift 4; add targets "$@" ;;
"component add") shift 4; add components "$@" ;;
*) echo "fake rustup: unexpected $*" >&2; exit 2 ;;
esac
"#;

    struct Sandbox {
        dir: PathBuf,
    }

    impl Sandbox {
        fn new(name: &str) -> Sandbox {
            let dir =
                std::env::temp_dir().join(format!("skyscope-x-test-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("bin")).unwrap();
            fs::create_dir_all(dir.join("state")).unwrap();
            fs::create_dir_all(dir.join("home")).unwrap();
            // Only the basic tools the scripts use are on PATH, so a real
            // rustup or cargo installed system-wide cannot interfere.
            fs::create_dir_all(dir.join("tools")).unwrap();
            for tool in [
                "awk", "cat", "dirname", "echo", "grep", "head", "sed", "touch", "tr", "xargs",
            ] {
                let found = ["/usr/bin", "/bin"]
                    .iter()
                    .map(|d| Path::new(d).join(tool))
                    .find(|p| p.exists())
                    .unwrap_or_else(|| panic!("{tool} is not in /usr/bin or /bin"));
                std::os::unix::fs::symlink(found, dir.join("tools").join(tool)).unwrap();
            }
            Sandbox { dir }
        }

        fn with_rustup(self) -> Sandbox {
            let write_exec = |name: &str, text: &str| {
                use std::os::unix::fs::PermissionsExt;
                let path = self.dir.join("bin").join(name);
                fs::write(&path, text).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            };
            write_exec("rustup", FAKE_RUSTUP);
            write_exec(
                "cargo",
                "#!/bin/bash\necho \"cargo $*\" >> \"$FAKE_STATE/log\"\n",
            );
            self
        }

        fn seed(&self, file: &str, lines: &[&str]) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            fs::write(self.dir.join("state").join(file), text).unwrap();
        }

        /// Runs `./x setup` with only the sandbox's programs on PATH.
        fn run(&self, refuse: bool) -> (bool, String, Vec<String>) {
            let mut command = Command::new("/bin/bash");
            command
                .arg(workspace_root().join("x"))
                .arg("setup")
                .env_clear()
                .env(
                    "PATH",
                    format!(
                        "{}:{}",
                        self.dir.join("bin").display(),
                        self.dir.join("tools").display()
                    ),
                )
                .env("HOME", self.dir.join("home"))
                .env("FAKE_STATE", self.dir.join("state"));
            if refuse {
                command.env("FAKE_REFUSE", "1");
            }
            let out = command.output().unwrap();
            let log = fs::read_to_string(self.dir.join("state/log")).unwrap_or_default();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
                log.lines().map(str::to_string).collect(),
            )
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn launcher_installs_an_absent_toolchain_with_the_pinned_parts() {
        let pin = read_pin().unwrap();
        let sandbox = Sandbox::new("absent").with_rustup();
        let (ok, stderr, log) = sandbox.run(false);
        assert!(ok, "{stderr}");
        let install = format!(
            "rustup toolchain install {} --no-self-update --profile minimal --component {} --target {}",
            pin.channel,
            pin.components.join(","),
            pin.targets.join(",")
        );
        assert!(log.contains(&install), "{log:#?}");
        assert!(!log.iter().any(|l| l.contains(" add ")), "{log:#?}");
        assert_eq!(log.last().map(String::as_str), Some("cargo xtask setup"));
    }

    #[test]
    fn launcher_adds_missing_targets_and_components_to_an_existing_toolchain() {
        let pin = read_pin().unwrap();
        let sandbox = Sandbox::new("partial").with_rustup();
        sandbox.seed("installed", &[]);
        sandbox.seed("targets", &[pin.targets[0].as_str()]);
        sandbox.seed("components", &["clippy"]);
        let (ok, stderr, log) = sandbox.run(false);
        assert!(ok, "{stderr}");
        assert!(
            !log.iter().any(|l| l.contains("toolchain install")),
            "{log:#?}"
        );
        let targets = format!(
            "rustup target add --toolchain {} {}",
            pin.channel,
            pin.targets[1..].join(" ")
        );
        assert!(log.contains(&targets), "{log:#?}");
        let components: Vec<_> = pin
            .components
            .iter()
            .filter(|c| *c != "clippy")
            .cloned()
            .collect();
        let add = format!(
            "rustup component add --toolchain {} {}",
            pin.channel,
            components.join(" ")
        );
        assert!(log.contains(&add), "{log:#?}");
        assert_eq!(log.last().map(String::as_str), Some("cargo xtask setup"));
    }

    #[test]
    fn launcher_does_nothing_when_complete_and_stops_when_rustup_fails_silently() {
        let pin = read_pin().unwrap();
        let sandbox = Sandbox::new("complete").with_rustup();
        sandbox.seed("installed", &[]);
        let targets: Vec<&str> = pin.targets.iter().map(String::as_str).collect();
        sandbox.seed("targets", &targets);
        let (ok, stderr, log) = sandbox.run(false);
        assert!(ok, "{stderr}");
        // Components are missing: added. Then, complete: only list calls.
        let components: Vec<&str> = pin.components.iter().map(String::as_str).collect();
        sandbox.seed("components", &components);
        let _ = fs::remove_file(sandbox.dir.join("state/log"));
        let (ok, stderr, log2) = sandbox.run(false);
        assert!(ok, "{stderr}");
        assert!(
            log2.iter()
                .all(|l| l.contains(" list") || l.starts_with("cargo")),
            "{log2:#?}"
        );
        assert!(log.len() > log2.len());

        // rustup "succeeds" but installs nothing: the launcher must notice.
        let broken = Sandbox::new("refuse").with_rustup();
        broken.seed("installed", &[]);
        let (ok, stderr, log) = broken.run(true);
        assert!(!ok);
        assert!(stderr.contains("still lacks"), "{stderr}");
        assert!(!log.iter().any(|l| l.starts_with("cargo")), "{log:#?}");
    }

    #[test]
    fn launcher_without_rustup_says_how_to_get_it() {
        let sandbox = Sandbox::new("norustup");
        let (ok, stderr, _) = sandbox.run(false);
        assert!(!ok);
        assert!(stderr.contains("rustup was not found"), "{stderr}");
        assert!(stderr.contains("https://sh.rustup.rs"), "{stderr}");
    }
}
