//! `cargo xtask loc`: lines of code per crate, the trusted kernel apart from user space and tools, test code excluded.
//!
//! A line counts when it holds anything but whitespace and comments (doc
//! comments are comments; string contents, such as `global_asm!` text,
//! are code). What the kernel build does not compile is not counted: each
//! crate's module tree is walked from its roots as rustc would, and items
//! and `mod` declarations whose `#[cfg(...)]` is false for that build are
//! left out — `#[cfg(test)]` modules and files (`kernel/core/src/tests/`),
//! the `host-model` test machine (`testing.rs`), the `rt` user runtime of
//! the ABI crate. Those lines are reported as test or excluded code.
//! Files outside the module tree (build scripts) are reported apart.
//! Third-party crates the kernel links are not counted.

use crate::setup::workspace_root;
use serde::Serialize;
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

/// Who a crate's code is trusted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Role {
    /// Linked into the kernel image: runs at EL2 with full privilege.
    Trusted,
    /// Runs at EL0/EL1 under the kernel's control.
    Untrusted,
    /// Runs on the development host only.
    Tool,
}

/// The configuration a crate is counted for.
struct Build {
    /// Enabled cargo features; `None` when unknown (all `feature = ...`
    /// predicates are then taken as possibly true).
    features: Option<&'static [&'static str]>,
    /// `target_arch`/`target_os` of the build, if it has one fixed target.
    target: Option<(&'static str, &'static str)>,
}

struct CrateSpec {
    path: &'static str,
    role: Role,
    what: &'static str,
    build: Build,
}

const KERNEL_TARGET: Option<(&str, &str)> = Some(("aarch64", "none"));

/// Every crate of the repository, with the features the kernel build
/// gives the trusted ones (skyscope-kernel's default `standard`; the ABI
/// without `rt`, the core without `host-model`).
const CRATES: &[CrateSpec] = &[
    CrateSpec {
        path: "kernel",
        role: Role::Trusted,
        what: "kernel binary: boot, traps, MMU, GIC, timer, PL011, loader",
        build: Build {
            features: Some(&["standard"]),
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "kernel/core",
        role: Role::Trusted,
        what: "kernel core: capabilities, objects, IPC, scheduling",
        build: Build {
            features: Some(&[]),
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "kernel/abi",
        role: Role::Trusted,
        what: "ABI shared with user space (without the rt runtime)",
        build: Build {
            features: Some(&[]),
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "el2",
        role: Role::Trusted,
        what: "arm64 virtualization backend (pure half)",
        build: Build {
            features: Some(&[]),
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "vmm",
        role: Role::Untrusted,
        what: "user-space VMM library",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "client",
        role: Role::Untrusted,
        what: "user-space kernel client: builders' invocations and mapping",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "process",
        role: Role::Untrusted,
        what: "user-space process builder (ELF to a running process)",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "launcher",
        role: Role::Untrusted,
        what: "starting a VMM process for a guest (root task and scenarios)",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "images/vmm",
        role: Role::Untrusted,
        what: "the VMM program (one process per guest)",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "images/roottask",
        role: Role::Untrusted,
        what: "root task (production image)",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "images/testroot",
        role: Role::Untrusted,
        what: "root task of the test image",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "tests",
        role: Role::Untrusted,
        what: "in-QEMU test scenarios (run by the root task)",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "guests/minimal",
        role: Role::Untrusted,
        what: "bare-metal EL1 test guests",
        build: Build {
            features: None,
            target: KERNEL_TARGET,
        },
    },
    CrateSpec {
        path: "vmx",
        role: Role::Untrusted,
        what: "placeholder (VT-x backend), not linked",
        build: Build {
            features: None,
            target: None,
        },
    },
    CrateSpec {
        path: "iommu",
        role: Role::Untrusted,
        what: "placeholder (IOMMU drivers), not linked",
        build: Build {
            features: None,
            target: None,
        },
    },
    CrateSpec {
        path: "xtask",
        role: Role::Tool,
        what: "cargo xtask (host)",
        build: Build {
            features: None,
            target: None,
        },
    },
    CrateSpec {
        path: "kernel/core/fuzz",
        role: Role::Tool,
        what: "libFuzzer targets (host)",
        build: Build {
            features: None,
            target: None,
        },
    },
];

// ---------------------------------------------------------------------------
// Lexing: tokens with byte spans, comments dropped.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Ident,
    Literal,
    Lifetime,
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    start: usize,
    end: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits Rust source into tokens (identifiers, literals, lifetimes,
/// single punctuation characters), skipping whitespace and comments
/// (nested block comments included). Enough of Rust's lexical grammar to
/// find comments, strings and brackets reliably; not a full lexer.
fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(src.len(), |&(o, _)| o);
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        let start = i;
        let kind;
        if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '/' && at(i + 1) == Some('/') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
            continue;
        } else if c == '/' && at(i + 1) == Some('*') {
            let mut depth = 0;
            while let Some(c) = at(i) {
                if c == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    i += 2;
                } else if c == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        } else if let Some(len) = raw_string_prefix(&chars[i..]) {
            // r"...", r#"..."#, br#"..."#: ends at a quote and as many #s.
            let hashes = chars[i..i + len].iter().filter(|&&(_, c)| c == '#').count();
            i += len;
            while let Some(c) = at(i) {
                i += 1;
                if c == '"' && (0..hashes).all(|h| at(i + h) == Some('#')) {
                    i += hashes;
                    break;
                }
            }
            kind = Kind::Literal;
        } else if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == Some('"')) {
            i += if c == '"' { 1 } else { 2 };
            while let Some(c) = at(i) {
                i += 1;
                match c {
                    '\\' => i += 1,
                    '"' => break,
                    _ => {}
                }
            }
            kind = Kind::Literal;
        } else if c == '\'' || (c == 'b' && at(i + 1) == Some('\'')) {
            let q = if c == 'b' { i + 1 } else { i };
            if at(q + 1) == Some('\\') {
                i = q + 2;
                while at(i).is_some_and(|c| c != '\'') {
                    i += 1;
                }
                i += 1;
                kind = Kind::Literal;
            } else if at(q + 2) == Some('\'') {
                i = q + 3;
                kind = Kind::Literal;
            } else {
                // A lifetime or label: 'a, 'static, 'outer.
                i = q + 1;
                while at(i).is_some_and(is_ident_char) {
                    i += 1;
                }
                kind = Kind::Lifetime;
            }
        } else if is_ident_start(c) {
            if c == 'r' && at(i + 1) == Some('#') && at(i + 2).is_some_and(is_ident_start) {
                i += 2;
            }
            while at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            kind = Kind::Ident;
        } else if c.is_ascii_digit() {
            while at(i).is_some_and(|c| is_ident_char(c) || c == '.') {
                // `1..2` is a range, not one number.
                if at(i) == Some('.') && at(i + 1) == Some('.') {
                    break;
                }
                i += 1;
            }
            kind = Kind::Literal;
        } else {
            i += 1;
            kind = Kind::Punct(c);
        }
        let (s, e) = (offset(start), offset(i));
        tokens.push(Token {
            kind,
            text: src[s..e].to_string(),
            start: s,
            end: e,
        });
    }
    tokens
}

/// Length of a raw-string opener (`r"`, `r#"`, `br##"`, ...) at the start
/// of `chars`, if there is one.
fn raw_string_prefix(chars: &[(usize, char)]) -> Option<usize> {
    let c = |i: usize| chars.get(i).map(|&(_, c)| c);
    let mut i = match (c(0), c(1)) {
        (Some('b' | 'c'), Some('r')) => 2,
        (Some('r'), _) => 1,
        _ => return None,
    };
    while c(i) == Some('#') {
        i += 1;
    }
    (c(i) == Some('"')).then_some(i + 1)
}

// ---------------------------------------------------------------------------
// cfg predicates.

/// Evaluates a cfg predicate (the tokens inside `cfg(...)`): `Some(false)`
/// when the build surely does not compile it, `None` when unknown.
fn eval_cfg(tokens: &[Token], build: &Build) -> Option<bool> {
    let (value, rest) = eval_predicate(tokens, build);
    if rest.is_empty() { value } else { None }
}

fn eval_predicate<'a>(tokens: &'a [Token], build: &Build) -> (Option<bool>, &'a [Token]) {
    let Some((first, rest)) = tokens.split_first() else {
        return (None, tokens);
    };
    let name = first.text.as_str();
    // key = "value"
    if let [eq, value, rest @ ..] = rest
        && eq.kind == Kind::Punct('=')
        && value.kind == Kind::Literal
    {
        let value = value.text.trim_matches('"');
        let result = match (name, build.target) {
            ("feature", _) => build.features.map(|f| f.contains(&value)),
            ("target_arch", Some((arch, _))) => Some(arch == value),
            ("target_os", Some((_, os))) => Some(os == value),
            _ => None,
        };
        return (result, rest);
    }
    // any(...), all(...), not(...)
    if let [open, ..] = rest
        && open.kind == Kind::Punct('(')
        && matches!(name, "any" | "all" | "not")
    {
        let mut args = Vec::new();
        let mut inner = &rest[1..];
        loop {
            match inner.first() {
                Some(t) if t.kind == Kind::Punct(')') => {
                    inner = &inner[1..];
                    break;
                }
                Some(t) if t.kind == Kind::Punct(',') => inner = &inner[1..],
                Some(_) => {
                    let (v, r) = eval_predicate(inner, build);
                    if r.len() == inner.len() {
                        return (None, &[]);
                    }
                    args.push(v);
                    inner = r;
                }
                None => return (None, &[]),
            }
        }
        let result = match name {
            "not" => args.first().copied().flatten().map(|v| !v),
            "any" if args.contains(&Some(true)) => Some(true),
            "any" if args.iter().all(|a| *a == Some(false)) => Some(false),
            "all" if args.contains(&Some(false)) => Some(false),
            "all" if args.iter().all(|a| *a == Some(true)) => Some(true),
            _ => None,
        };
        return (result, inner);
    }
    // Plain options: `test` and `doc` are never part of the counted build.
    let result = match name {
        "test" | "doc" => Some(false),
        _ => None,
    };
    (result, rest)
}

// ---------------------------------------------------------------------------
// Items: attributes, disabled items, module declarations.

/// A `mod name;` declaration.
#[derive(Debug, PartialEq, Eq)]
struct ModDecl {
    /// Path of enclosing inline modules, then the name.
    path: Vec<String>,
    /// `#[path = "..."]`, if given.
    path_attr: Option<String>,
    /// Whether the build compiles it.
    enabled: bool,
}

/// What one file contributes.
#[derive(Debug, Default)]
struct FileScan {
    /// Byte ranges the build leaves out (cfg-false items).
    disabled: Vec<(usize, usize)>,
    /// The whole file is left out (`#![cfg(...)]` false).
    file_disabled: bool,
    mods: Vec<ModDecl>,
}

fn matching_close(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

/// Index of the last token of the item that starts at `start`: a
/// `;` at its own nesting level, or the `}` closing its body (except for
/// `use`/`const`/`static`/`type`/`let`, which end at `;`), or just before
/// a bracket that closes an enclosing one.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let keyword = tokens[start..].iter().map(|t| t.text.as_str()).find(|w| {
        !matches!(
            *w,
            "pub" | "(" | ")" | "crate" | "super" | "in" | "self" | "unsafe"
        )
    });
    let const_fn = keyword == Some("const")
        && tokens[start..]
            .iter()
            .skip_while(|t| t.text != "const")
            .nth(1)
            .is_some_and(|t| t.text == "fn");
    let ends_at_semicolon = matches!(keyword, Some("use" | "static" | "type" | "let"))
        || (keyword == Some("const") && !const_fn);
    let mut depth = 0i32;
    for (k, t) in tokens.iter().enumerate().skip(start) {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(c @ (')' | ']' | '}')) => {
                if depth == 0 {
                    return k.saturating_sub(1).max(start);
                }
                depth -= 1;
                if c == '}' && depth == 0 && !ends_at_semicolon {
                    return k;
                }
            }
            Kind::Punct(';') if depth == 0 => return k,
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

/// Finds the items a build leaves out and the module declarations.
fn scan_file(tokens: &[Token], build: &Build) -> FileScan {
    let mut scan = FileScan::default();
    // Inline modules we are inside: (name, index of their closing brace).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut seen_item = false;
    // `#[path = "..."]` of the item that starts at `i`.
    let mut path_attr: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        while inline.last().is_some_and(|&(_, close)| close < i) {
            inline.pop();
        }
        let punct = |k: usize, c: char| tokens.get(k).is_some_and(|t| t.kind == Kind::Punct(c));
        if punct(i, '#') && punct(i + 1, '!') && punct(i + 2, '[') {
            // An inner attribute; #![cfg(...)] before any item covers the file.
            let close = matching_close(tokens, i + 2);
            if !seen_item && attr_cfg(&tokens[i + 3..close], build) == Some(false) {
                scan.file_disabled = true;
            }
            i = close + 1;
            continue;
        }
        if punct(i, '#') && punct(i + 1, '[') {
            // A run of outer attributes, then the item they apply to.
            let mut enabled = true;
            let mut j = i;
            while punct(j, '#') && punct(j + 1, '[') {
                let close = matching_close(tokens, j + 1);
                let body = &tokens[j + 2..close];
                if attr_cfg(body, build) == Some(false) {
                    enabled = false;
                }
                if let [name, eq, value] = body
                    && name.text == "path"
                    && eq.kind == Kind::Punct('=')
                {
                    path_attr = Some(value.text.trim_matches('"').to_string());
                }
                j = close + 1;
            }
            seen_item = true;
            if j >= tokens.len() {
                break;
            }
            if enabled {
                i = j;
                continue;
            }
            let end = item_end(tokens, j);
            if let Some((name, _, None)) = module_item(tokens, j) {
                let mut path: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                path.push(name);
                scan.mods.push(ModDecl {
                    path,
                    path_attr: path_attr.take(),
                    enabled: false,
                });
            }
            scan.disabled.push((tokens[i].start, tokens[end].end));
            path_attr = None;
            i = end + 1;
            continue;
        }
        if let Some((name, next, body)) = module_item(tokens, i) {
            match body {
                None => {
                    let mut path: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                    path.push(name);
                    scan.mods.push(ModDecl {
                        path,
                        path_attr: path_attr.take(),
                        enabled: true,
                    });
                }
                Some(open) => inline.push((name, matching_close(tokens, open))),
            }
            seen_item = true;
            i = next;
            continue;
        }
        if tokens[i].kind == Kind::Ident {
            seen_item = true;
            path_attr = None;
        }
        i += 1;
    }
    scan
}

/// `cfg(...)` inside an attribute's brackets, evaluated; `None` if it is
/// another attribute or unknown.
fn attr_cfg(body: &[Token], build: &Build) -> Option<bool> {
    match body {
        [name, open, inner @ .., close]
            if name.text == "cfg"
                && open.kind == Kind::Punct('(')
                && close.kind == Kind::Punct(')') =>
        {
            eval_cfg(inner, build)
        }
        _ => None,
    }
}

/// If the item at `start` is `[pub(...)] mod name` followed by `;` or
/// `{`: its name, the index after that `;` or `{`, and the brace's index
/// for an inline module.
fn module_item(tokens: &[Token], start: usize) -> Option<(String, usize, Option<usize>)> {
    let mut k = start;
    if tokens.get(k)?.text == "pub" {
        k += 1;
        if tokens.get(k)?.kind == Kind::Punct('(') {
            k = matching_close(tokens, k) + 1;
        }
    }
    if tokens.get(k)?.text != "mod" {
        return None;
    }
    let name = tokens.get(k + 1)?;
    match tokens.get(k + 2)?.kind {
        Kind::Punct(';') => Some((name.text.clone(), k + 3, None)),
        Kind::Punct('{') => Some((name.text.clone(), k + 3, Some(k + 2))),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Counting.

/// The (first, last) 0-based line of each token (a multi-line string
/// spans several).
fn token_lines(src: &str, tokens: &[Token]) -> Vec<(usize, usize)> {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(src.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |offset: usize| starts.partition_point(|&s| s <= offset) - 1;
    tokens
        .iter()
        .map(|t| (line_of(t.start), line_of(t.end.max(t.start + 1) - 1)))
        .collect()
}

/// Lines that hold code: any token touches them.
fn code_lines(src: &str, tokens: &[Token]) -> BTreeSet<usize> {
    token_lines(src, tokens)
        .into_iter()
        .flat_map(|(a, b)| a..=b)
        .collect()
}

/// Code lines of one file: (counted, left out by cfg). A line holding
/// both kept and left-out code (rare) counts as kept.
fn count_file(src: &str, scan: &FileScan, tokens: &[Token]) -> (usize, usize) {
    let mut kept = BTreeSet::new();
    let mut dropped = BTreeSet::new();
    for (t, (a, b)) in tokens.iter().zip(token_lines(src, tokens)) {
        let disabled = scan.file_disabled
            || scan
                .disabled
                .iter()
                .any(|&(s, e)| s <= t.start && t.end <= e);
        if disabled {
            dropped.extend(a..=b);
        } else {
            kept.extend(a..=b);
        }
    }
    (kept.len(), dropped.difference(&kept).count())
}

/// The count of one crate.
#[derive(Debug, Default, Serialize)]
struct CrateCount {
    path: String,
    role: Option<Role>,
    what: String,
    /// Files compiled (at least partly) into the counted build.
    files: usize,
    /// Code lines compiled.
    code: usize,
    /// Code lines the build leaves out: test-only items and files, and
    /// code behind features or targets the build does not have.
    excluded: usize,
    /// Code lines of .rs files outside the module tree (build scripts).
    other: usize,
    /// Files left out entirely, relative to the crate.
    left_out_files: Vec<String>,
}

fn rel(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The crate's root files: src/lib.rs, src/main.rs and `path = "...rs"`
/// of its [[bin]]/[lib] sections.
fn roots(dir: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|r| dir.join(r))
        .filter(|p| p.exists())
        .collect();
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    let mut section = String::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
        } else if (section == "[[bin]]" || section == "[lib]")
            && let Some(value) = line.strip_prefix("path")
            && let Some(value) = value.trim().strip_prefix('=')
        {
            let p = dir.join(value.trim().trim_matches('"'));
            if !roots.contains(&p) {
                roots.push(p);
            }
        }
    }
    roots
}

/// Where `mod` declaration `decl` in `file` lives (Rust 2018 rules: next
/// to a `mod.rs`/`lib.rs`/`main.rs`, else in a directory named after the
/// file).
fn module_file(file: &Path, decl: &ModDecl, is_root: bool) -> Option<PathBuf> {
    let dir = file.parent()?;
    let owns_dir = is_root || file.file_name().is_some_and(|n| n == "mod.rs");
    let mut base = if owns_dir {
        dir.to_path_buf()
    } else {
        dir.join(file.file_stem()?)
    };
    if let Some(p) = &decl.path_attr {
        return Some(if decl.path.len() == 1 {
            dir.join(p)
        } else {
            base.join(p)
        });
    }
    let (name, parents) = decl.path.split_last()?;
    for p in parents {
        base.push(p);
    }
    [
        base.join(format!("{name}.rs")),
        base.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

fn count_crate(spec: &CrateSpec) -> Result<CrateCount, String> {
    let root = workspace_root();
    let dir = root.join(spec.path);
    let mut count = CrateCount {
        path: spec.path.to_string(),
        role: Some(spec.role),
        what: spec.what.to_string(),
        ..CrateCount::default()
    };
    let mut visited = BTreeSet::new();
    // (file, is crate root, compiled)
    let mut queue: Vec<(PathBuf, bool, bool)> =
        roots(&dir).into_iter().map(|r| (r, true, true)).collect();
    if queue.is_empty() {
        return Err(format!("{} has no src/lib.rs or src/main.rs", spec.path));
    }
    while let Some((file, is_root, compiled)) = queue.pop() {
        if !visited.insert(file.clone()) {
            continue;
        }
        let src = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let tokens = tokenize(&src);
        let scan = scan_file(&tokens, &spec.build);
        let (code, left_out) = count_file(&src, &scan, &tokens);
        let compiled_here = compiled && !scan.file_disabled;
        if compiled_here {
            count.files += 1;
            count.code += code;
            count.excluded += left_out;
        } else {
            count.excluded += code + left_out;
            count.left_out_files.push(rel(&file, &dir));
        }
        for decl in &scan.mods {
            if let Some(sub) = module_file(&file, decl, is_root) {
                queue.push((sub, false, compiled_here && decl.enabled));
            } else if compiled_here && decl.enabled {
                return Err(format!(
                    "{}: cannot find the file of `mod {}`",
                    file.display(),
                    decl.path.join("::")
                ));
            }
        }
    }
    // .rs files of the crate that no module tree reaches (build scripts),
    // not descending into nested crates or build output.
    let mut others = Vec::new();
    collect_rs(&dir, &dir, &mut others);
    for file in others.into_iter().filter(|f| !visited.contains(f)) {
        let src = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let tokens = tokenize(&src);
        count.other += code_lines(&src, &tokens).len();
        count.left_out_files.push(rel(&file, &dir));
    }
    count.left_out_files.sort();
    Ok(count)
}

fn collect_rs(dir: &Path, crate_dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let name = entry.file_name();
            if name == "target" || name == "corpus" || name == "artifacts" {
                continue;
            }
            if path != crate_dir && path.join("Cargo.toml").exists() {
                continue;
            }
            collect_rs(&path, crate_dir, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Options of `cargo xtask loc`.
#[derive(clap::Args)]
pub struct LocArgs {
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// `cargo xtask loc`.
pub fn run(args: &LocArgs) -> Result<ExitCode, String> {
    let counts = CRATES
        .iter()
        .map(count_crate)
        .collect::<Result<Vec<_>, _>>()?;
    let trusted: usize = counts
        .iter()
        .filter(|c| c.role == Some(Role::Trusted))
        .map(|c| c.code)
        .sum();
    if args.json {
        let json = serde_json::json!({
            "counted": "non-blank, non-comment lines of Rust compiled into each crate's build; \
                        code the build leaves out (cfg(test) items and files, features it does not enable) under `excluded`, files outside the module tree (build scripts) under `other`",
            "trusted_kernel_lines": trusted,
            "crates": counts,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<18} {:<9} {:>5} {:>7} {:>7} {:>6}  what",
        "crate", "role", "files", "code", "excl", "other"
    );
    for (role, label) in [
        (Role::Trusted, "trusted"),
        (Role::Untrusted, "untrusted"),
        (Role::Tool, "tool"),
    ] {
        let group: Vec<_> = counts.iter().filter(|c| c.role == Some(role)).collect();
        for c in &group {
            println!(
                "{:<18} {:<9} {:>5} {:>7} {:>7} {:>6}  {}",
                c.path, label, c.files, c.code, c.excluded, c.other, c.what
            );
        }
        let sum = |f: fn(&CrateCount) -> usize| group.iter().map(|c| f(c)).sum::<usize>();
        println!(
            "{:<18} {:<9} {:>5} {:>7} {:>7} {:>6}",
            format!("= {label}"),
            "",
            sum(|c| c.files),
            sum(|c| c.code),
            sum(|c| c.excluded),
            sum(|c| c.other)
        );
    }
    println!("\ntrusted kernel (runs at EL2): {trusted} lines of Rust");
    println!(
        "code:  non-blank, non-comment lines the build compiles (third-party crates not counted)"
    );
    println!(
        "excl:  code the build leaves out: cfg(test) modules, test-only files (core's testing.rs"
    );
    println!("       and tests/), features it does not enable (the ABI's rt runtime)");
    println!("other: .rs files outside the module tree (build scripts)");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: Build = Build {
        features: Some(&["standard"]),
        target: KERNEL_TARGET,
    };

    fn counts(src: &str) -> (usize, usize) {
        let tokens = tokenize(src);
        let scan = scan_file(&tokens, &KERNEL);
        count_file(src, &scan, &tokens)
    }

    #[test]
    fn comments_and_blank_lines_do_not_count() {
        let src = "//! doc\n\n/// item doc\nfn a() {\n    // note\n    let x = 1; // trailing\n\
                   /* block\n   still comment */\n    /* a */ x;\n}\n/* nested /* inner */ still */\n";
        assert_eq!(counts(src), (4, 0));
    }

    #[test]
    fn strings_are_code_and_may_hide_comment_markers() {
        let src = "const A: &str = \"// not a comment\n/* nor this\";\n\
                   const B: &str = r#\"}\"#;\nconst C: char = '\"';\nconst D: char = '}';\n\
                   fn f<'a>(x: &'a str) -> &'a str { x }\n";
        // Line 2 is inside the first string; the braces in B and D must
        // not unbalance anything.
        assert_eq!(counts(src), (6, 0));
        let tokens = tokenize(src);
        assert_eq!(
            tokens.iter().filter(|t| t.kind == Kind::Lifetime).count(),
            3
        );
    }

    #[test]
    fn test_modules_are_left_out() {
        let src = "pub fn f() -> u32 {\n    1\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n\
                   #[test]\n    fn t() {\n        assert_eq!(f(), 1);\n    }\n}\n";
        assert_eq!(counts(src), (3, 8));
    }

    #[test]
    fn cfg_predicates() {
        let eval = |s: &str| eval_cfg(&tokenize(s), &KERNEL);
        assert_eq!(eval("test"), Some(false));
        assert_eq!(eval("feature = \"standard\""), Some(true));
        assert_eq!(eval("feature = \"rt\""), Some(false));
        assert_eq!(eval("any(test, feature = \"host-model\")"), Some(false));
        assert_eq!(
            eval("all(feature = \"rt\", target_os = \"none\")"),
            Some(false)
        );
        assert_eq!(eval("any(target_arch = \"aarch64\", doc)"), Some(true));
        assert_eq!(eval("not(target_arch = \"x86_64\")"), Some(true));
        assert_eq!(eval("debug_assertions"), None);
        assert_eq!(eval("not(debug_assertions)"), None);
        let host = Build {
            features: None,
            target: None,
        };
        assert_eq!(eval_cfg(&tokenize("feature = \"rt\""), &host), None);
        assert_eq!(
            eval_cfg(&tokenize("target_arch = \"aarch64\""), &host),
            None
        );
    }

    #[test]
    fn disabled_items_of_every_shape() {
        let src = "#[cfg(feature = \"rt\")]\npub mod rt;\n\
                   #[cfg(test)]\nuse std::{\n    vec::Vec,\n};\n\
                   #[cfg(test)]\nconst T: [u8; 2] = [1, 2];\n\
                   #[cfg(target_arch = \"aarch64\")]\npub fn on_arm() {}\n\
                   impl X {\n    #[cfg(test)]\n    fn helper() {}\n    fn kept() {}\n}\n\
                   #[cfg(test)]\n#[derive(Debug)]\nstruct S {\n    a: u8,\n}\n";
        let tokens = tokenize(src);
        let scan = scan_file(&tokens, &KERNEL);
        assert_eq!(
            scan.mods,
            vec![ModDecl {
                path: vec!["rt".into()],
                path_attr: None,
                enabled: false
            }]
        );
        // Kept: the aarch64 fn (2 lines) and impl X with kept() (3 lines).
        assert_eq!(count_file(src, &scan, &tokens), (5, 15));
    }

    #[test]
    fn inner_cfg_disables_a_file_and_inline_modules_nest_paths() {
        let src = "//! host only\n#![cfg(test)]\nfn a() {}\n";
        let tokens = tokenize(src);
        let scan = scan_file(&tokens, &KERNEL);
        assert!(scan.file_disabled);
        assert_eq!(count_file(src, &scan, &tokens), (0, 2));

        let src = "pub mod outer {\n    #[path = \"x.rs\"]\n    mod inner;\n    mod other;\n}\nmod top;\n";
        let scan = scan_file(&tokenize(src), &KERNEL);
        let paths: Vec<_> = scan.mods.iter().map(|m| m.path.join("::")).collect();
        assert_eq!(paths, ["outer::inner", "outer::other", "top"]);
        assert_eq!(scan.mods[0].path_attr.as_deref(), Some("x.rs"));
    }

    #[test]
    fn every_workspace_crate_is_listed() {
        let manifest = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        let members = manifest
            .split("members = [")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .unwrap();
        for member in members.split(',').map(|m| m.trim().trim_matches('"')) {
            if !member.is_empty() {
                assert!(
                    CRATES.iter().any(|c| c.path == member),
                    "{member} is not in loc::CRATES"
                );
            }
        }
    }

    #[test]
    fn core_crate_excludes_its_test_files() {
        let core = CRATES.iter().find(|c| c.path == "kernel/core").unwrap();
        let count = count_crate(core).unwrap();
        for f in ["src/testing.rs", "src/tests/mod.rs", "src/tests/model.rs"] {
            assert!(count.left_out_files.contains(&f.to_string()), "{f}");
        }
        assert!(count.code > 1000 && count.excluded > 1000, "{count:?}");
        let abi = CRATES.iter().find(|c| c.path == "kernel/abi").unwrap();
        assert!(
            count_crate(abi)
                .unwrap()
                .left_out_files
                .contains(&"src/rt.rs".to_string())
        );
    }
}
