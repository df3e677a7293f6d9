//! What the installable packages are made of, checked in milliseconds without building
//! anything: the app's bundle section of `tauri.conf.json` (deb and rpm, metadata, icons
//! of the sizes their names say), the server's `[package.metadata.deb]` (cargo-deb) with
//! the files it names, and the server's systemd unit.
//!
//! `cargo xtask bundle` runs [`check`] before its long build; the unit tests below run it
//! on the repository (so `cargo xtask test` fails on a broken packaging) and on broken
//! copies (so the checks can fail).
//!
//! std only, like the rest of xtask: a small JSON reader for `tauri.conf.json`, the one
//! TOML table read line by line (its arrays are JSON once comments and trailing commas
//! are gone), a PNG's size from its header.

use std::fs;
use std::path::Path;

/// The server's crate, whose manifest carries the cargo-deb metadata.
const SERVER_CRATE: &str = "crates/clinic-server";
/// Where the server's binary is installed (cargo-deb asset `usr/bin/`).
const SERVER_BINARY: &str = "/usr/bin/clinic-server";

/// Categories `tauri.conf.json`'s `bundle.category` accepts (tauri-utils 2's list, its
/// games left out); the bundler turns one into the desktop entry's `Categories=`.
const TAURI_CATEGORIES: &[&str] = &[
    "Business",
    "DeveloperTool",
    "Education",
    "Entertainment",
    "Finance",
    "Game",
    "GraphicsAndDesign",
    "HealthcareAndFitness",
    "Lifestyle",
    "Medical",
    "Music",
    "News",
    "Photography",
    "Productivity",
    "Reference",
    "SocialNetworking",
    "Sports",
    "Travel",
    "Utility",
    "Video",
    "Weather",
];

/// Every problem found in the repository's packaging; empty when it is sound.
pub(crate) fn check(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    match fs::read_to_string(root.join("tauri.conf.json")) {
        Ok(text) => problems.extend(check_tauri_conf(root, &text)),
        Err(e) => problems.push(format!("tauri.conf.json: {e}")),
    }
    let server = root.join(SERVER_CRATE);
    match fs::read_to_string(server.join("Cargo.toml")) {
        Ok(text) => problems.extend(check_server_deb(&server, &text)),
        Err(e) => problems.push(format!("{SERVER_CRATE}/Cargo.toml: {e}")),
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The app: tauri.conf.json's bundle section.

fn check_tauri_conf(root: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(format!("tauri.conf.json: {p}"));
    let conf = match Json::parse(text) {
        Ok(conf) => conf,
        Err(e) => {
            problem(format!("not JSON: {e}"));
            return problems;
        }
    };
    for key in ["productName", "version", "identifier"] {
        if conf
            .get(key)
            .and_then(Json::as_str)
            .is_none_or(str::is_empty)
        {
            problem(format!("`{key}` is missing"));
        }
    }
    let Some(bundle) = conf.get("bundle") else {
        problem("no `bundle` section".into());
        return problems;
    };
    if bundle.get("active") != Some(&Json::Bool(true)) {
        problem("`bundle.active` must be true (the deb and rpm packages)".into());
    }
    match bundle.get("targets") {
        Some(Json::Arr(targets)) => {
            let names: Vec<&str> = targets.iter().filter_map(Json::as_str).collect();
            for wanted in ["deb", "rpm"] {
                if !names.contains(&wanted) {
                    problem(format!("`bundle.targets` lacks \"{wanted}\""));
                }
            }
            for name in names {
                if name != "deb" && name != "rpm" {
                    problem(format!(
                        "`bundle.targets` names \"{name}\": only deb and rpm are built here \
                         (the AppImage bundler downloads its tools at build time)"
                    ));
                }
            }
        }
        Some(other) => problem(format!(
            "`bundle.targets` must list deb and rpm, not {other:?} (\"all\" includes AppImage)"
        )),
        None => problem("`bundle.targets` is missing: the default is every format".into()),
    }
    for key in [
        "publisher",
        "copyright",
        "license",
        "shortDescription",
        "longDescription",
    ] {
        if bundle
            .get(key)
            .and_then(Json::as_str)
            .is_none_or(str::is_empty)
        {
            problem(format!("`bundle.{key}` is missing"));
        }
    }
    match bundle.get("category").and_then(Json::as_str) {
        Some(c) if TAURI_CATEGORIES.contains(&c) => {}
        Some(c) => problem(format!(
            "`bundle.category` \"{c}\" is not one of Tauri's: {TAURI_CATEGORIES:?}"
        )),
        None => problem("`bundle.category` is missing (the desktop entry's Categories=)".into()),
    }
    for format in ["deb", "rpm"] {
        let depends = bundle
            .get("linux")
            .and_then(|l| l.get(format))
            .and_then(|f| f.get("depends"));
        match depends {
            Some(Json::Arr(list)) if list.iter().all(|d| d.as_str().is_some()) => {}
            _ => problem(format!(
                "`bundle.linux.{format}.depends` must be a list of packages"
            )),
        }
    }
    match bundle.get("icon") {
        Some(Json::Arr(icons)) if !icons.is_empty() => {
            let mut sizes = Vec::new();
            for icon in icons {
                let Some(path) = icon.as_str() else {
                    problem(format!("`bundle.icon` holds {icon:?}, not a path"));
                    continue;
                };
                match check_icon(root, path) {
                    Ok(size) => sizes.push(size),
                    Err(e) => problem(e),
                }
            }
            for wanted in [32, 128, 256] {
                if !sizes.contains(&wanted) {
                    problem(format!(
                        "`bundle.icon` has no {wanted}x{wanted} PNG (a hicolor size menus use)"
                    ));
                }
            }
        }
        _ => problem("`bundle.icon` must list the app's PNG icons".into()),
    }
    // Tauri embeds this one as the windows' icon when the list has no PNG; it must be
    // there and RGBA even with the bundle off.
    if let Err(e) = check_icon(root, "icons/icon.png") {
        problem(e);
    }
    problems
}

/// An icon named `WxH.png` must be W by H pixels (`WxH@2x.png`: twice that, `icon.png`:
/// square, at least 256), 8-bit RGBA. Returns its width.
fn check_icon(root: &Path, path: &str) -> Result<u32, String> {
    let bytes = fs::read(root.join(path)).map_err(|e| format!("icon {path}: {e}"))?;
    let (width, height, depth, colour) =
        png_header(&bytes).ok_or_else(|| format!("icon {path}: not a PNG"))?;
    if (depth, colour) != (8, 6) {
        return Err(format!(
            "icon {path}: not 8-bit RGBA (bit depth {depth}, colour type {colour})"
        ));
    }
    let name = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stated = name.strip_suffix(".png").and_then(|stem| {
        let (stem, scale) = match stem.strip_suffix("@2x") {
            Some(stem) => (stem, 2),
            None => (stem, 1),
        };
        let (w, h) = stem.split_once('x')?;
        Some((
            w.parse::<u32>().ok()? * scale,
            h.parse::<u32>().ok()? * scale,
        ))
    });
    match stated {
        Some(size) if size != (width, height) => Err(format!(
            "icon {path}: {width}x{height} pixels, its name says {}x{}",
            size.0, size.1
        )),
        Some(_) => Ok(width),
        None if name == "icon.png" && width == height && width >= 256 => Ok(width),
        None => Err(format!(
            "icon {path}: name it WxH.png (or icon.png, square, 256 or more); it is \
             {width}x{height}"
        )),
    }
}

/// Width, height, bit depth and colour type from a PNG's IHDR chunk.
fn png_header(bytes: &[u8]) -> Option<(u32, u32, u8, u8)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.len() < 26 || !bytes.starts_with(SIGNATURE) || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Some((word(16), word(20), bytes[24], bytes[25]))
}

// ---------------------------------------------------------------------------------------
// The server: cargo-deb's [package.metadata.deb] and the systemd unit.

fn check_server_deb(krate: &Path, manifest: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |p: String| problems.push(format!("{SERVER_CRATE}/Cargo.toml: {p}"));
    let Some(deb) = toml_table(manifest, "package.metadata.deb") else {
        problem("no [package.metadata.deb] (cargo-deb's metadata)".into());
        return problems;
    };
    for key in ["maintainer", "copyright", "extended-description", "section"] {
        if deb
            .get(key)
            .and_then(Json::as_str)
            .is_none_or(str::is_empty)
        {
            problem(format!("[package.metadata.deb] `{key}` is missing"));
        }
    }
    // Assets: [source, destination, mode]; sources are files of the crate, except the
    // binary cargo builds (cargo-deb reads `target/release/` as "the build's output").
    let mut destinations = Vec::new();
    match deb.get("assets") {
        Some(Json::Arr(assets)) => {
            for asset in assets {
                let fields: Vec<&str> = match asset {
                    Json::Arr(fields) => fields.iter().filter_map(Json::as_str).collect(),
                    _ => Vec::new(),
                };
                let [source, dest, mode] = fields[..] else {
                    problem(format!(
                        "asset {asset:?} is not [source, destination, mode]"
                    ));
                    continue;
                };
                if u32::from_str_radix(mode, 8).is_err() {
                    problem(format!("asset {source}: mode {mode:?} is not octal"));
                }
                if let Some(binary) = source.strip_prefix("target/release/") {
                    if binary != "clinic-server" {
                        problem(format!("asset {source}: the crate builds clinic-server"));
                    }
                } else if !krate.join(source).is_file() {
                    problem(format!("asset {source} does not exist"));
                }
                let file = Path::new(source).file_name().and_then(|n| n.to_str());
                let installed = match (dest.strip_suffix('/'), file) {
                    (Some(dir), Some(file)) => format!("/{dir}/{file}"),
                    _ => format!("/{dest}"),
                };
                destinations.push(installed);
            }
        }
        _ => problem("[package.metadata.deb] `assets` is missing".into()),
    }
    if !destinations.iter().any(|d| d == SERVER_BINARY) {
        problem(format!("no asset installs {SERVER_BINARY}"));
    }
    let conf_files: Vec<&str> = match deb.get("conf-files") {
        Some(Json::Arr(files)) => files.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    for conf in &conf_files {
        if !destinations.iter().any(|d| d == conf) {
            problem(format!("conf-file {conf} is not installed by any asset"));
        }
    }
    // Maintainer scripts: cargo-deb puts its systemd snippets where #DEBHELPER# is.
    let scripts = deb.get("maintainer-scripts").and_then(Json::as_str);
    let Some(scripts) = scripts.map(|s| krate.join(s)) else {
        problem("[package.metadata.deb] `maintainer-scripts` is missing".into());
        return problems;
    };
    let postinst = fs::read_to_string(scripts.join("postinst")).unwrap_or_default();
    for script in ["postinst", "postrm"] {
        match fs::read_to_string(scripts.join(script)) {
            Ok(text) if text.contains("#DEBHELPER#") => {}
            Ok(_) => problem(format!(
                "{script} lacks the #DEBHELPER# line cargo-deb fills"
            )),
            Err(e) => problem(format!("maintainer script {script}: {e}")),
        }
        if !is_executable(&scripts.join(script)) {
            problem(format!("maintainer script {script} is not executable"));
        }
    }
    // The unit: what systemd-units installs (unit-scripts, default the scripts' folder).
    let Some(units) = toml_table(manifest, "package.metadata.deb.systemd-units") else {
        problem("no [package.metadata.deb.systemd-units]".into());
        return problems;
    };
    let unit_dir = units
        .get("unit-scripts")
        .and_then(Json::as_str)
        .map_or_else(|| scripts.clone(), |d| krate.join(d));
    let unit_path = unit_dir.join("clinic-server.service");
    match fs::read_to_string(&unit_path) {
        Ok(unit) => {
            for p in check_unit(&unit, &destinations, &conf_files, &postinst) {
                problem(format!("clinic-server.service: {p}"));
            }
        }
        Err(e) => problem(format!("{}: {e}", unit_path.display())),
    }
    problems
}

fn check_unit(
    unit: &str,
    installed: &[String],
    conf_files: &[&str],
    postinst: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let sections = match parse_unit(unit) {
        Ok(sections) => sections,
        Err(e) => return vec![e],
    };
    let get = |section: &str, key: &str| -> Option<&str> {
        sections
            .iter()
            .filter(|(s, _, _)| s == section)
            .rev()
            .find(|(_, k, _)| k == key)
            .map(|(_, _, v)| v.as_str())
    };
    for section in ["Unit", "Service", "Install"] {
        if !sections.iter().any(|(s, _, _)| s == section) {
            problems.push(format!("no [{section}] section"));
        }
    }
    match get("Service", "User") {
        Some(user) if !user.is_empty() && user != "root" => {
            let creates = postinst.contains(&format!("getent passwd {user}"))
                && (postinst.contains("adduser") || postinst.contains("useradd"));
            if !creates {
                problems.push(format!("User={user}, which postinst does not create"));
            }
        }
        _ => problems.push("User= must name the service's own user".into()),
    }
    let exec = get("Service", "ExecStart").unwrap_or_default();
    let mut words = exec.split_whitespace();
    if words.next() != Some(SERVER_BINARY) {
        problems.push(format!(
            "ExecStart= must run {SERVER_BINARY}, it runs {exec:?}"
        ));
    }
    if !installed.iter().any(|d| d == SERVER_BINARY) {
        problems.push(format!(
            "ExecStart= runs {SERVER_BINARY}, which no asset installs"
        ));
    }
    let db = words.skip_while(|w| *w != "--db").nth(1);
    let state = get("Service", "StateDirectory").unwrap_or_default();
    match db {
        Some(db) if !state.is_empty() && db.starts_with(&format!("/var/lib/{state}/")) => {}
        _ => problems.push(format!(
            "ExecStart= must give --db inside StateDirectory= (/var/lib/{state}/)"
        )),
    }
    if !get("Service", "ReadWritePaths").is_some_and(|p| {
        p.split_whitespace()
            .any(|p| p == format!("/var/lib/{state}"))
    }) {
        problems.push(format!("ReadWritePaths= must include /var/lib/{state}"));
    }
    match get("Service", "EnvironmentFile").map(|f| f.trim_start_matches('-')) {
        Some(file) if conf_files.contains(&file) => {}
        Some(file) => problems.push(format!(
            "EnvironmentFile={file} is not a conf-file the package installs"
        )),
        None => problems.push("EnvironmentFile= is missing (the settings)".into()),
    }
    for (key, wanted) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
    ] {
        if get("Service", key) != Some(wanted) {
            problems.push(format!("{key}={wanted} is missing"));
        }
    }
    if get("Install", "WantedBy").is_none() {
        problems.push("[Install] needs WantedBy= (for systemctl enable)".into());
    }
    problems
}

/// A systemd unit as (section, key, value) triples, in order.
fn parse_unit(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut section: Option<String> = None;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: neither [Section] nor Key=value: {line:?}",
                number + 1
            ));
        };
        let Some(section) = &section else {
            return Err(format!("line {}: {key}= before any [Section]", number + 1));
        };
        entries.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    Ok(entries)
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// One TOML table, `[name]`, as a JSON object: `key = value` lines, values being strings,
/// booleans, numbers or arrays of those (over several lines, with comments and trailing
/// commas). Enough for cargo-deb's metadata; not a TOML parser.
fn toml_table(manifest: &str, name: &str) -> Option<Json> {
    let header = format!("[{name}]");
    let mut lines = manifest.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    // The table ends at the next header (a `[` in the first column; array items are indented).
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with('[')).collect();
    let mut entries = Vec::new();
    let mut pending: Option<(String, String)> = None;
    for line in body {
        let line = strip_toml_comment(line);
        if let Some((key, mut value)) = pending.take() {
            value.push('\n');
            value.push_str(&line);
            pending = Some((key, value));
        } else if let Some((key, value)) = line.split_once('=') {
            pending = Some((key.trim().to_owned(), value.trim().to_owned()));
        } else {
            continue;
        }
        if let Some((key, value)) = &pending {
            if brackets_balanced(value) {
                let json = toml_value_to_json(value);
                entries.push((key.clone(), Json::parse(&json).unwrap_or(Json::Null)));
                pending = None;
            }
        }
    }
    Some(Json::Obj(entries))
}

fn strip_toml_comment(line: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in line.chars() {
        if !in_string && c == '#' {
            break;
        }
        if c == '"' && !(in_string && escaped) {
            in_string = !in_string;
        }
        escaped = in_string && !escaped && c == '\\';
        out.push(c);
    }
    out
}

fn brackets_balanced(value: &str) -> bool {
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            '"' if !escaped => in_string = !in_string,
            '[' if !in_string => depth += 1,
            ']' if !in_string => depth -= 1,
            _ => {}
        }
        escaped = in_string && !escaped && c == '\\';
    }
    depth <= 0
}

/// A TOML value in the subset above as JSON: drops trailing commas before `]`; TOML's
/// `"""` strings are not supported (write the description on one line).
fn toml_value_to_json(value: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in value.chars() {
        if !in_string && c == ']' {
            let trimmed = out.trim_end().len();
            if out[..trimmed].ends_with(',') {
                out.truncate(trimmed - 1);
            }
        }
        if c == '"' && !escaped {
            in_string = !in_string;
        }
        escaped = in_string && !escaped && c == '\\';
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// JSON, just enough to read tauri.conf.json.

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            chars: text.chars().collect(),
            at: 0,
        };
        let value = p.value()?;
        p.space();
        if p.at < p.chars.len() {
            return Err(format!("trailing characters at {}", p.at));
        }
        Ok(value)
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> Result<(), String> {
        self.space();
        if self.chars.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {c:?} at {}", self.at))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        let end = self.at + word.chars().count();
        if self
            .chars
            .get(self.at..end)
            .is_some_and(|s| s.iter().copied().eq(word.chars()))
        {
            self.at = end;
            Ok(value)
        } else {
            Err(format!("unexpected word at {}", self.at))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.space();
        match self.chars.get(self.at) {
            Some('{') => {
                self.at += 1;
                let mut entries = Vec::new();
                self.space();
                if self.chars.get(self.at) == Some(&'}') {
                    self.at += 1;
                    return Ok(Json::Obj(entries));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.eat(':')?;
                    entries.push((key, self.value()?));
                    self.space();
                    match self.chars.get(self.at) {
                        Some(',') => self.at += 1,
                        Some('}') => {
                            self.at += 1;
                            return Ok(Json::Obj(entries));
                        }
                        _ => return Err(format!("expected ',' or '}}' at {}", self.at)),
                    }
                }
            }
            Some('[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.chars.get(self.at) == Some(&']') {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.space();
                    match self.chars.get(self.at) {
                        Some(',') => self.at += 1,
                        Some(']') => {
                            self.at += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected ',' or ']' at {}", self.at)),
                    }
                }
            }
            Some('"') => self.string().map(Json::Str),
            Some('t') => self.literal("true", Json::Bool(true)),
            Some('f') => self.literal("false", Json::Bool(false)),
            Some('n') => self.literal("null", Json::Null),
            Some(c) if *c == '-' || c.is_ascii_digit() => {
                let start = self.at;
                while self
                    .chars
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(*c))
                {
                    self.at += 1;
                }
                let number: String = self.chars[start..self.at].iter().collect();
                number
                    .parse()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {number:?} at {start}"))
            }
            _ => Err(format!("expected a value at {}", self.at)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat('"')?;
        let mut out = String::new();
        loop {
            let c = *self.chars.get(self.at).ok_or("unterminated string")?;
            self.at += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = *self.chars.get(self.at).ok_or("unterminated escape")?;
                    self.at += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => {
                            let hex: String = self
                                .chars
                                .get(self.at..self.at + 4)
                                .ok_or("short \\u")?
                                .iter()
                                .collect();
                            self.at += 4;
                            let code = u32::from_str_radix(&hex, 16).map_err(|_| "bad \\u")?;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        crate::root()
    }

    fn read(path: &str) -> String {
        fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A scratch folder, removed when dropped.
    #[derive(Debug)]
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("xtask-packaging-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn png(width: u32, height: u32, colour: u8) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, colour, 0, 0, 0]);
        bytes
    }

    fn assert_problem(problems: &[String], needle: &str) {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "expected a problem mentioning {needle:?}, got {problems:#?}"
        );
    }

    #[test]
    fn the_repository_packaging_is_sound() {
        let problems = check(&root());
        assert!(
            problems.is_empty(),
            "packaging problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_bundle_builds_deb_and_rpm_only_and_is_active() {
        let conf = read("tauri.conf.json");
        assert!(check_tauri_conf(&root(), &conf).is_empty());
        let bundle_targets = "\"targets\": [\"deb\", \"rpm\"]";
        assert!(
            conf.contains(bundle_targets),
            "the tests below edit this line"
        );

        let appimage = conf.replace(
            bundle_targets,
            "\"targets\": [\"deb\", \"rpm\", \"appimage\"]",
        );
        assert_problem(&check_tauri_conf(&root(), &appimage), "\"appimage\"");
        let all = conf.replace(bundle_targets, "\"targets\": \"all\"");
        assert_problem(
            &check_tauri_conf(&root(), &all),
            "\"all\" includes AppImage",
        );
        let no_rpm = conf.replace(bundle_targets, "\"targets\": [\"deb\"]");
        assert_problem(&check_tauri_conf(&root(), &no_rpm), "lacks \"rpm\"");
        let inactive = conf.replace("\"active\": true", "\"active\": false");
        assert_problem(&check_tauri_conf(&root(), &inactive), "bundle.active");
        let category = conf.replace("\"category\": \"Business\"", "\"category\": \"Office\"");
        assert_problem(&check_tauri_conf(&root(), &category), "not one of Tauri's");
        let described = conf.replace("\"shortDescription\"", "\"shortDescriptionX\"");
        assert_problem(
            &check_tauri_conf(&root(), &described),
            "bundle.shortDescription",
        );
        assert_problem(&check_tauri_conf(&root(), "{\"bundle\": "), "not JSON");
    }

    #[test]
    fn every_icon_must_exist_and_be_the_size_its_name_says() {
        let dir = Scratch::new("icons");
        fs::create_dir_all(dir.0.join("icons")).unwrap();
        let write =
            |name: &str, bytes: Vec<u8>| fs::write(dir.0.join("icons").join(name), bytes).unwrap();
        write("icon.png", png(512, 512, 6));
        write("32x32.png", png(32, 32, 6));
        write("64x64.png", png(32, 32, 6)); // wrong size
        write("128x128@2x.png", png(256, 256, 6));
        write("128x128.png", png(128, 128, 2)); // RGB, no alpha
        let check = |icon: &str| check_icon(&dir.0, icon);
        assert_eq!(check("icons/32x32.png"), Ok(32));
        assert_eq!(check("icons/128x128@2x.png"), Ok(256));
        assert_eq!(check("icons/icon.png"), Ok(512));
        assert!(check("icons/64x64.png")
            .unwrap_err()
            .contains("its name says 64x64"));
        assert!(check("icons/128x128.png").unwrap_err().contains("RGBA"));
        assert!(check("icons/48x48.png").is_err(), "a missing icon");

        let conf = read("tauri.conf.json").replace("icons/48x48.png", "icons/missing-48x48.png");
        assert_problem(&check_tauri_conf(&root(), &conf), "icons/missing-48x48.png");
    }

    #[test]
    fn the_server_package_names_files_that_exist() {
        let krate = root().join(SERVER_CRATE);
        let manifest = read(&format!("{SERVER_CRATE}/Cargo.toml"));
        assert!(check_server_deb(&krate, &manifest).is_empty());

        let missing = manifest.replace("\"debian/clinic-server.env\"", "\"debian/nowhere.env\"");
        assert_ne!(missing, manifest, "the test edits the env file's asset");
        assert_problem(
            &check_server_deb(&krate, &missing),
            "debian/nowhere.env does not exist",
        );
        let other_binary = manifest.replace(
            "\"target/release/clinic-server\"",
            "\"target/release/clinic-desk\"",
        );
        assert_problem(
            &check_server_deb(&krate, &other_binary),
            "builds clinic-server",
        );
        assert_problem(
            &check_server_deb(&krate, &other_binary),
            "no asset installs /usr/bin/clinic-server",
        );
        let no_deb = manifest.replace("[package.metadata.deb]", "[package.metadata.nodeb]");
        assert_problem(
            &check_server_deb(&krate, &no_deb),
            "no [package.metadata.deb]",
        );
    }

    #[test]
    fn the_unit_runs_the_packaged_binary_as_its_own_user_with_its_settings() {
        let unit = read(&format!("{SERVER_CRATE}/debian/clinic-server.service"));
        let postinst = read(&format!("{SERVER_CRATE}/debian/postinst"));
        let installed = [
            SERVER_BINARY.to_owned(),
            "/etc/clinic-server/clinic-server.env".to_owned(),
        ];
        let conf = ["/etc/clinic-server/clinic-server.env"];
        let check = |unit: &str| check_unit(unit, &installed, &conf, &postinst);
        assert_eq!(check(&unit), Vec::<String>::new());

        let edit = |from: &str, to: &str| {
            assert!(unit.contains(from), "the unit has no {from:?}");
            check(&unit.replace(from, to))
        };
        assert_problem(&edit("User=clinic", "User=root"), "User=");
        assert_problem(
            &edit("User=clinic", "User=someone"),
            "which postinst does not create",
        );
        assert_problem(
            &edit(
                "ExecStart=/usr/bin/clinic-server",
                "ExecStart=/usr/local/bin/clinic-server",
            ),
            "ExecStart=",
        );
        assert_problem(
            &edit("--db /var/lib/clinic-server/", "--db /srv/"),
            "--db inside StateDirectory=",
        );
        assert_problem(
            &edit("EnvironmentFile=", "#EnvironmentFile="),
            "EnvironmentFile= is missing",
        );
        assert_problem(
            &edit("EnvironmentFile=/etc/", "EnvironmentFile=/opt/"),
            "not a conf-file",
        );
        assert_problem(
            &edit("ProtectSystem=strict", "ProtectSystem=full"),
            "ProtectSystem=strict",
        );
        assert_problem(&edit("[Install]", ""), "no [Install] section");
        assert_problem(
            &edit("[Service]", "[Service]\nnot a key value line"),
            "neither [Section] nor Key=value",
        );
        assert_problem(
            &check_unit(&unit, &installed[1..], &conf, &postinst),
            "which no asset installs",
        );
    }

    #[test]
    fn json_and_toml_subsets_read_what_the_checks_need() {
        let json =
            Json::parse(r#"{"a": [1, -2.5e1, true, null], "b": {"c": "d\"\u00e9\n"}}"#).unwrap();
        assert_eq!(
            json.get("a"),
            Some(&Json::Arr(vec![
                Json::Num(1.0),
                Json::Num(-25.0),
                Json::Bool(true),
                Json::Null
            ]))
        );
        assert_eq!(
            json.get("b")
                .and_then(|b| b.get("c"))
                .and_then(Json::as_str),
            Some("d\"é\n")
        );
        assert!(Json::parse("[1, 2").is_err());
        assert!(Json::parse("{} x").is_err());

        let manifest = "[package]\nname = \"x\"\n\n[package.metadata.deb]\n\
            section = \"net\" # comment\n\
            assets = [\n  [\"a#b\", \"usr/bin/\", \"755\"], # the binary\n  [\"c\", \"etc/c\", \"644\"],\n]\n\
            flag = true\n\n[package.metadata.deb.systemd-units]\nenable = false\n";
        let deb = toml_table(manifest, "package.metadata.deb").unwrap();
        assert_eq!(deb.get("section").and_then(Json::as_str), Some("net"));
        assert_eq!(deb.get("flag"), Some(&Json::Bool(true)));
        let Some(Json::Arr(assets)) = deb.get("assets") else {
            panic!("assets: {deb:?}")
        };
        assert_eq!(assets.len(), 2);
        assert_eq!(
            assets[0],
            Json::Arr(vec![
                Json::Str("a#b".into()),
                Json::Str("usr/bin/".into()),
                Json::Str("755".into())
            ])
        );
        assert!(
            deb.get("enable").is_none(),
            "the next table is not this one"
        );
        let units = toml_table(manifest, "package.metadata.deb.systemd-units").unwrap();
        assert_eq!(units.get("enable"), Some(&Json::Bool(false)));
    }
}
