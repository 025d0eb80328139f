//! A model's `config.pbtxt` (Triton's model configuration, protobuf text format): the subset
//! millrace uses, its parser, and how it combines with the server-wide [`ServeOptions`].
//!
//! # Model repository
//!
//! `millrace serve --model-repository DIR` serves every directory `DIR/<model>/` that holds
//! numbered version directories `DIR/<model>/<version>/model.onnx` (version names are decimal
//! numbers; other entries are ignored with a warning), with an optional
//! `DIR/<model>/config.pbtxt`.
//!
//! # The `config.pbtxt` subset
//!
//! Protobuf text format: `field: value`, `field { ... }` or `field: { ... }` messages,
//! `field: [a, b]` and `field [ {...}, {...} ]` lists, repeated fields written several times,
//! quoted strings (`"..."` or `'...'`, C escapes, adjacent strings concatenated), numbers,
//! enum identifiers, `true` / `false`, `#` comments, optional `,` / `;` between fields.
//!
//! | field | meaning in millrace |
//! |---|---|
//! | `name` | must equal the directory's name when given |
//! | `platform` / `backend` | `onnxruntime_onnx`, `onnxruntime`, `onnx` or `millrace`; anything else is an error |
//! | `max_batch_size` | largest batch (rows along the first dimension); `0`: the model is not batched, requests are passed as they are. When `> 0` every input and output must have a symbolic first dimension, and a request with more rows is refused (400) |
//! | `dynamic_batching { }` | combine requests into batches (as in Triton, a `config.pbtxt` without this block runs each request alone) |
//! | `dynamic_batching.max_queue_delay_microseconds` | how long the oldest request waits for others to join |
//! | `dynamic_batching.preferred_batch_size: [ ... ]` | a batch that reaches one of these sizes runs at once if nothing else can join now |
//! | `dynamic_batching.default_queue_policy.max_queue_size` | requests waiting per model version before new ones are refused (503); `0`: no limit |
//! | `dynamic_batching.default_queue_policy.default_timeout_microseconds` | timeout of requests that set none (504 when exceeded); `0`: none |
//! | `instance_group [ { count: N kind: KIND_CPU } ]` | `N` workers (summed over groups) run batches at once; `KIND_GPU` is accepted with a warning and runs on the CPU |
//! | `parameters { key: "threads" value: { string_value: "2" } }` | intra-op threads per instance |
//! | `version_policy: { latest: { num_versions: N } }` / `{ all: {} }` / `{ specific: { versions: [1, 3] } }` | which versions are served (default: the latest one, as in Triton) |
//! | `input`, `output` | optional; millrace takes the tensors from the model file and warns when a name given here is not one of the model's |
//!
//! Any other field is ignored and reported as a warning ([`crate::ServerState::warnings`]).
//! A malformed file is an error naming the file, line and column.
//!
//! # Precedence
//!
//! A value set in `config.pbtxt` wins over the [`ServeOptions`] default (the `millrace serve`
//! flags), which wins over the built-in default:
//!
//! | setting | [`ServeOptions`] field | built-in default |
//! |---|---|---|
//! | max batch size | `max_batch_size` (`Some(0)`: no batching) | 8 when every input and output has a symbolic first dimension, else 0 |
//! | batch delay | `batch_delay` | none: batch only what is already queued |
//! | instances | `instances` | 1 |
//! | threads per instance | `threads` | available cores / instances, at least 1 |
//! | queue size | `max_queue_size` (`Some(0)`: no limit) | 1024 |
//! | request timeout | `default_timeout` | none |
//!
//! Threads: all instances of a model version share one compiled model (weights held once) per
//! batch shape, whose thread pool has `threads per instance x instances` threads.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::state::ServeOptions;

/// The built-in largest batch when nothing sets one.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 8;
/// The built-in queue bound when nothing sets one.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 1024;

/// A malformed or unusable `config.pbtxt`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file (as given).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A scalar or nested value of the text format.
#[derive(Clone, Debug, PartialEq)]
pub enum TextValue {
    /// A quoted string.
    Str(String),
    /// A number, as written.
    Number(String),
    /// An identifier: an enum value, `true`, `false`.
    Ident(String),
    /// A nested message.
    Message(TextMessage),
}

/// One `name: value` of a message, with where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct TextField {
    pub name: String,
    pub value: TextValue,
    pub line: usize,
    pub column: usize,
}

/// A parsed text-format message: its fields in file order (a list contributes one field per
/// element, as protobuf's repeated fields do).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextMessage {
    pub fields: Vec<TextField>,
}

/// Parses protobuf text format (`file` is for messages).
pub fn parse_text(file: &str, text: &str) -> Result<TextMessage, ConfigError> {
    let mut p = Parser {
        file,
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        column: 1,
    };
    let msg = p.message(None)?;
    Ok(msg)
}

struct Parser<'a> {
    file: &'a str,
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
}

impl Parser<'_> {
    fn err_at(&self, line: usize, column: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    fn err(&self, message: impl Into<String>) -> ConfigError {
        self.err_at(self.line, self.column, message)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// Skips whitespace and `#` comments.
    fn skip(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.bump();
            } else if c == '#' {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    fn describe(c: Option<char>) -> String {
        match c {
            None => "the end of the file".to_string(),
            Some(c) => format!("`{c}`"),
        }
    }

    /// Fields until `close` (or the end of the file at the top level).
    fn message(&mut self, close: Option<(char, usize, usize)>) -> Result<TextMessage, ConfigError> {
        let mut msg = TextMessage::default();
        loop {
            self.skip();
            match (self.peek(), close) {
                (None, None) => return Ok(msg),
                (None, Some((c, line, col))) => {
                    return Err(self.err(format!(
                        "the message opened at line {line}, column {col} is not closed (expected `{c}`)"
                    )))
                }
                (Some(c), Some((want, _, _))) if c == want => {
                    self.bump();
                    return Ok(msg);
                }
                (Some(c), _) if c == '}' || c == '>' || c == ']' => {
                    return Err(self.err(format!("unexpected `{c}`")));
                }
                _ => {}
            }
            let (line, column) = (self.line, self.column);
            let name = self.ident().ok_or_else(|| {
                self.err(format!(
                    "expected a field name, found {}",
                    Self::describe(self.peek())
                ))
            })?;
            self.skip();
            let colon = self.peek() == Some(':');
            if colon {
                self.bump();
                self.skip();
            }
            let mut push = |value| {
                msg.fields.push(TextField {
                    name: name.clone(),
                    value,
                    line,
                    column,
                })
            };
            match self.peek() {
                Some('[') => {
                    self.bump();
                    for v in self.list()? {
                        push(v);
                    }
                }
                Some('{') | Some('<') => push(self.value()?),
                _ if !colon => {
                    return Err(self.err(format!(
                        "expected `:` or `{{` after field `{name}`, found {}",
                        Self::describe(self.peek())
                    )))
                }
                _ => push(self.value()?),
            }
            self.skip();
            if matches!(self.peek(), Some(',') | Some(';')) {
                self.bump();
            }
        }
    }

    /// The elements of a list after its `[`.
    fn list(&mut self) -> Result<Vec<TextValue>, ConfigError> {
        let (line, column) = (self.line, self.column - 1);
        let mut out = Vec::new();
        loop {
            self.skip();
            match self.peek() {
                Some(']') => {
                    self.bump();
                    return Ok(out);
                }
                None => {
                    return Err(self.err(format!(
                    "the list opened at line {line}, column {column} is not closed (expected `]`)"
                )))
                }
                _ => {}
            }
            out.push(self.value()?);
            self.skip();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {}
                c => {
                    return Err(self.err(format!(
                        "expected `,` or `]` in a list, found {}",
                        Self::describe(c)
                    )))
                }
            }
        }
    }

    fn value(&mut self) -> Result<TextValue, ConfigError> {
        let (line, column) = (self.line, self.column);
        match self.peek() {
            Some('{') => {
                self.bump();
                Ok(TextValue::Message(self.message(Some(('}', line, column)))?))
            }
            Some('<') => {
                self.bump();
                Ok(TextValue::Message(self.message(Some(('>', line, column)))?))
            }
            Some('"') | Some('\'') => {
                let mut s = self.string()?;
                loop {
                    self.skip();
                    if matches!(self.peek(), Some('"') | Some('\'')) {
                        s.push_str(&self.string()?);
                    } else {
                        return Ok(TextValue::Str(s));
                    }
                }
            }
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let mut s = String::new();
                while let Some(c) = self.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.' | '_') {
                        s.push(c);
                        self.bump();
                    } else {
                        break;
                    }
                }
                if number_ok(&s) {
                    Ok(TextValue::Number(s))
                } else {
                    Err(self.err_at(line, column, format!("`{s}` is not a number")))
                }
            }
            _ => match self.ident() {
                Some(id) => Ok(TextValue::Ident(id)),
                None => Err(self.err(format!(
                    "expected a value, found {}",
                    Self::describe(self.peek())
                ))),
            },
        }
    }

    fn ident(&mut self) -> Option<String> {
        let c = self.peek()?;
        if !(c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        Some(s)
    }

    fn string(&mut self) -> Result<String, ConfigError> {
        let (line, column) = (self.line, self.column);
        let Some(quote) = self.bump() else {
            return Err(self.err("expected a string"));
        };
        let mut s = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => {
                    return Err(self.err_at(line, column, "the string is not closed on its line"))
                }
                Some(c) if c == quote => return Ok(s),
                Some('\\') => {
                    let (el, ec) = (self.line, self.column - 1);
                    match self.bump() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some('r') => s.push('\r'),
                        Some('0') => s.push('\0'),
                        Some(c @ ('\\' | '"' | '\'' | '?')) => s.push(c),
                        c => {
                            return Err(self.err_at(
                                el,
                                ec,
                                format!(
                                    "unknown escape `\\{}`",
                                    c.map(String::from).unwrap_or_default()
                                ),
                            ))
                        }
                    }
                }
                Some(c) => s.push(c),
            }
        }
    }
}

fn number_ok(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    let t = t.strip_suffix(['f', 'F']).unwrap_or(t);
    t.parse::<f64>().is_ok()
        && !t.is_empty()
        && !t.eq_ignore_ascii_case("inf")
        && !t.eq_ignore_ascii_case("nan")
}

/// Which versions of a model are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The `n` highest numbered versions.
    Latest(usize),
    /// Every version.
    All,
    /// These versions.
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> VersionPolicy {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// Picks the versions to serve among those present.
    pub fn select(&self, present: &[u64]) -> Vec<u64> {
        let mut v = present.to_vec();
        v.sort_unstable();
        v.dedup();
        match self {
            VersionPolicy::All => v,
            VersionPolicy::Latest(n) => {
                let skip = v.len().saturating_sub(*n);
                v.split_off(skip)
            }
            VersionPolicy::Specific(want) => v.into_iter().filter(|x| want.contains(x)).collect(),
        }
    }
}

/// `dynamic_batching { ... }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynamicBatching {
    pub max_queue_delay: Option<Duration>,
    pub preferred_batch_size: Vec<usize>,
    /// `Some(0)`: no limit.
    pub max_queue_size: Option<usize>,
    /// `Some(ZERO)`: no timeout.
    pub default_timeout: Option<Duration>,
}

/// The part of a `config.pbtxt` millrace uses (each field `None` when the file does not set it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelConfig {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub max_batch_size: Option<usize>,
    pub dynamic_batching: Option<DynamicBatching>,
    /// Sum of the `instance_group` counts.
    pub instances: Option<usize>,
    pub threads: Option<usize>,
    pub version_policy: Option<VersionPolicy>,
    /// Names from the `input` and `output` sections (checked against the model).
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
    /// Fields ignored, and other remarks, each with file and line.
    pub warnings: Vec<String>,
}

/// Platforms and backends served (ONNX, run by millrace).
pub const ACCEPTED_PLATFORMS: [&str; 4] = ["onnxruntime_onnx", "onnxruntime", "onnx", "millrace"];

impl ModelConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ModelConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        ModelConfig::parse(&file, &text)
    }

    /// Parses the text of a `config.pbtxt` (`file` is for messages).
    pub fn parse(file: &str, text: &str) -> Result<ModelConfig, ConfigError> {
        let msg = parse_text(file, text)?;
        let mut cfg = ModelConfig::default();
        let mut cx = Cx {
            file,
            warnings: Vec::new(),
        };
        let mut instances: Option<usize> = None;
        for f in &msg.fields {
            match f.name.as_str() {
                "name" => cfg.name = Some(cx.string(f)?),
                "platform" | "backend" => {
                    let p = cx.string(f)?;
                    if !ACCEPTED_PLATFORMS.contains(&p.as_str()) {
                        return Err(cx.err(
                            f,
                            format!(
                                "{} `{p}` is not served by millrace; use one of: {}",
                                f.name,
                                ACCEPTED_PLATFORMS.join(", ")
                            ),
                        ));
                    }
                    cfg.platform = Some(p);
                }
                "max_batch_size" => cfg.max_batch_size = Some(cx.usize(f)?),
                "dynamic_batching" => {
                    let m = cx.message(f)?;
                    let mut db = DynamicBatching::default();
                    for g in &m.fields {
                        match g.name.as_str() {
                            "max_queue_delay_microseconds" => {
                                db.max_queue_delay = Some(Duration::from_micros(cx.u64(g)?))
                            }
                            "preferred_batch_size" => {
                                let n = cx.usize(g)?;
                                if n == 0 {
                                    return Err(
                                        cx.err(g, "preferred_batch_size must be at least 1")
                                    );
                                }
                                db.preferred_batch_size.push(n)
                            }
                            "default_queue_policy" => {
                                for h in &cx.message(g)?.fields {
                                    match h.name.as_str() {
                                        "max_queue_size" => db.max_queue_size = Some(cx.usize(h)?),
                                        "default_timeout_microseconds" => {
                                            db.default_timeout =
                                                Some(Duration::from_micros(cx.u64(h)?))
                                        }
                                        _ => {
                                            cx.ignored(h, "dynamic_batching.default_queue_policy.")
                                        }
                                    }
                                }
                            }
                            _ => cx.ignored(g, "dynamic_batching."),
                        }
                    }
                    cfg.dynamic_batching = Some(db);
                }
                "instance_group" => {
                    let m = cx.message(f)?;
                    let mut count = 1;
                    for g in &m.fields {
                        match g.name.as_str() {
                            "count" => {
                                count = cx.usize(g)?;
                                if count == 0 {
                                    return Err(cx.err(g, "instance_group count must be at least 1"));
                                }
                            }
                            "kind" => match cx.ident(g)?.as_str() {
                                "KIND_CPU" | "KIND_AUTO" => {}
                                "KIND_GPU" | "KIND_MODEL" => cx.warn(
                                    g,
                                    "instance_group kind is not KIND_CPU; millrace runs the instances on the CPU",
                                ),
                                k => {
                                    return Err(cx.err(
                                        g,
                                        format!("unknown instance_group kind `{k}`; expected KIND_CPU, KIND_GPU, KIND_AUTO or KIND_MODEL"),
                                    ))
                                }
                            },
                            "name" => {}
                            _ => cx.ignored(g, "instance_group."),
                        }
                    }
                    instances = Some(instances.unwrap_or(0).saturating_add(count));
                }
                "parameters" => {
                    let m = cx.message(f)?;
                    let mut key = None;
                    let mut value = None;
                    for g in &m.fields {
                        match g.name.as_str() {
                            "key" => key = Some(cx.string(g)?),
                            "value" => {
                                for h in &cx.message(g)?.fields {
                                    if h.name == "string_value" {
                                        value = Some((cx.string(h)?, h));
                                    } else {
                                        cx.ignored(h, "parameters.value.");
                                    }
                                }
                            }
                            _ => cx.ignored(g, "parameters."),
                        }
                    }
                    match (key.as_deref(), value) {
                        (Some("threads"), Some((v, at))) => {
                            let n = v.trim().parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(
                                || cx.err(at, format!("parameter `threads` must be a positive integer, got `{v}`")),
                            )?;
                            cfg.threads = Some(n);
                        }
                        (Some("threads"), None) => {
                            return Err(cx.err(f, "parameter `threads` has no string_value"))
                        }
                        (Some(k), _) => {
                            cx.warn(f, &format!("parameter `{k}` is not used by millrace"))
                        }
                        (None, _) => return Err(cx.err(f, "a parameters entry has no key")),
                    }
                }
                "version_policy" => {
                    let m = cx.message(f)?;
                    for g in &m.fields {
                        let policy = match g.name.as_str() {
                            "latest" => {
                                let mut n = 1;
                                for h in &cx.message(g)?.fields {
                                    if h.name == "num_versions" {
                                        n = cx.usize(h)?;
                                        if n == 0 {
                                            return Err(
                                                cx.err(h, "num_versions must be at least 1")
                                            );
                                        }
                                    } else {
                                        cx.ignored(h, "version_policy.latest.");
                                    }
                                }
                                VersionPolicy::Latest(n)
                            }
                            "all" => {
                                cx.message(g)?;
                                VersionPolicy::All
                            }
                            "specific" => {
                                let mut vs = Vec::new();
                                for h in &cx.message(g)?.fields {
                                    if h.name == "versions" {
                                        vs.push(cx.u64(h)?);
                                    } else {
                                        cx.ignored(h, "version_policy.specific.");
                                    }
                                }
                                VersionPolicy::Specific(vs)
                            }
                            _ => {
                                return Err(cx.err(
                                    g,
                                    format!(
                                    "unknown version_policy `{}`; expected latest, all or specific",
                                    g.name
                                ),
                                ))
                            }
                        };
                        if cfg.version_policy.is_some() {
                            return Err(cx.err(g, "version_policy sets more than one policy"));
                        }
                        cfg.version_policy = Some(policy);
                    }
                }
                "input" | "output" => {
                    let m = cx.message(f)?;
                    for g in &m.fields {
                        if g.name == "name" {
                            let n = cx.string(g)?;
                            if f.name == "input" {
                                cfg.input_names.push(n);
                            } else {
                                cfg.output_names.push(n);
                            }
                        }
                    }
                }
                _ => cx.ignored(f, ""),
            }
        }
        cfg.instances = instances;
        cfg.warnings = cx.warnings;
        Ok(cfg)
    }
}

struct Cx<'a> {
    file: &'a str,
    warnings: Vec<String>,
}

impl Cx<'_> {
    fn err(&self, f: &TextField, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: f.line,
            column: f.column,
            message: message.into(),
        }
    }

    fn warn(&mut self, f: &TextField, message: &str) {
        self.warnings
            .push(format!("{}:{}: {message}", self.file, f.line));
    }

    fn ignored(&mut self, f: &TextField, prefix: &str) {
        self.warn(
            f,
            &format!(
                "field `{prefix}{}` is not used by millrace; ignored",
                f.name
            ),
        );
    }

    fn kind(v: &TextValue) -> &'static str {
        match v {
            TextValue::Str(_) => "a string",
            TextValue::Number(_) => "a number",
            TextValue::Ident(_) => "an identifier",
            TextValue::Message(_) => "a message",
        }
    }

    fn string(&self, f: &TextField) -> Result<String, ConfigError> {
        match &f.value {
            TextValue::Str(s) => Ok(s.clone()),
            v => Err(self.err(
                f,
                format!(
                    "`{}` must be a quoted string, found {}",
                    f.name,
                    Self::kind(v)
                ),
            )),
        }
    }

    fn ident(&self, f: &TextField) -> Result<String, ConfigError> {
        match &f.value {
            TextValue::Ident(s) => Ok(s.clone()),
            v => Err(self.err(
                f,
                format!("`{}` must be an enum name, found {}", f.name, Self::kind(v)),
            )),
        }
    }

    fn message<'m>(&self, f: &'m TextField) -> Result<&'m TextMessage, ConfigError> {
        match &f.value {
            TextValue::Message(m) => Ok(m),
            v => Err(self.err(
                f,
                format!(
                    "`{}` must be a message `{{ ... }}`, found {}",
                    f.name,
                    Self::kind(v)
                ),
            )),
        }
    }

    fn u64(&self, f: &TextField) -> Result<u64, ConfigError> {
        let bad = |what: &str| {
            self.err(
                f,
                format!("`{}` must be a non-negative integer, found {what}", f.name),
            )
        };
        match &f.value {
            TextValue::Number(s) => {
                let t = s.strip_prefix('+').unwrap_or(s);
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => t.parse::<u64>().ok(),
                };
                parsed.ok_or_else(|| bad(&format!("`{s}`")))
            }
            v => Err(bad(Self::kind(v))),
        }
    }

    fn usize(&self, f: &TextField) -> Result<usize, ConfigError> {
        let v = self.u64(f)?;
        usize::try_from(v).map_err(|_| self.err(f, format!("`{}` is too large: {v}", f.name)))
    }
}

/// The settings one model version runs with: [`ModelConfig`] over [`ServeOptions`] over the
/// built-in defaults (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSettings {
    /// `None`: decided from the model (built-in default when batchable, else 0).
    pub max_batch_size: Option<usize>,
    /// Whether requests are combined (false when a `config.pbtxt` has no `dynamic_batching`).
    pub dynamic_batching: bool,
    /// Whether `max_batch_size` came from `config.pbtxt` (then a model that cannot batch is an
    /// error rather than a warning).
    pub max_batch_from_config: bool,
    pub batch_delay: Duration,
    pub preferred_batch_sizes: BTreeSet<usize>,
    pub instances: usize,
    pub threads_per_instance: usize,
    /// `None`: no limit.
    pub max_queue_size: Option<usize>,
    pub default_timeout: Option<Duration>,
}

impl ModelSettings {
    /// Combines a model's config (if any) with the server-wide options.
    pub fn resolve(cfg: Option<&ModelConfig>, opts: &ServeOptions) -> ModelSettings {
        let db = cfg.and_then(|c| c.dynamic_batching.as_ref());
        let instances = cfg
            .and_then(|c| c.instances)
            .or(opts.instances)
            .unwrap_or(1)
            .max(1);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let threads_per_instance = cfg
            .and_then(|c| c.threads)
            .or(opts.threads)
            .unwrap_or(cores / instances)
            .max(1);
        let cfg_batch = cfg.and_then(|c| c.max_batch_size);
        let queue = db
            .and_then(|d| d.max_queue_size)
            .or(opts.max_queue_size)
            .unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
        let timeout = db
            .and_then(|d| d.default_timeout)
            .or(opts.default_timeout)
            .filter(|t| !t.is_zero());
        ModelSettings {
            max_batch_size: cfg_batch.or(opts.max_batch_size),
            dynamic_batching: cfg.is_none() || db.is_some(),
            max_batch_from_config: cfg_batch.is_some(),
            batch_delay: db
                .and_then(|d| d.max_queue_delay)
                .or(opts.batch_delay)
                .unwrap_or(Duration::ZERO),
            preferred_batch_sizes: db
                .map(|d| d.preferred_batch_size.iter().copied().collect())
                .unwrap_or_default(),
            instances,
            threads_per_instance,
            max_queue_size: (queue > 0).then_some(queue),
            default_timeout: timeout,
        }
    }
}

impl fmt::Display for ModelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max batch {}, dynamic batching {}, delay {} us, {} instance(s) x {} thread(s), queue {}",
            self.max_batch_size
                .map_or_else(|| "auto".to_string(), |n| n.to_string()),
            if self.dynamic_batching { "on" } else { "off" },
            self.batch_delay.as_micros(),
            self.instances,
            self.threads_per_instance,
            self.max_queue_size
                .map_or_else(|| "unlimited".to_string(), |n| n.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
# A Triton config.
name: "resnet"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  { name: "x", data_type: TYPE_FP32, dims: [ 3, 224, 224 ] }
]
output [ { name: "y" data_type: TYPE_FP32 dims: [1000] } ]
dynamic_batching {
  max_queue_delay_microseconds: 500
  preferred_batch_size: [ 4, 8 ]
  default_queue_policy { max_queue_size: 32, default_timeout_microseconds: 2000000 }
}
instance_group [ { count: 2 kind: KIND_CPU }, { count: 1, kind: KIND_GPU } ]
parameters { key: "threads" value: { string_value: "3" } }
parameters: { key: "other" value { string_value: 'x' "y" } }
version_policy: { latest: { num_versions: 2 } }
optimization { cuda { graphs: true } }
"#;

    #[test]
    fn parses_the_supported_subset() {
        let c = ModelConfig::parse("config.pbtxt", GOOD).unwrap();
        assert_eq!(c.name.as_deref(), Some("resnet"));
        assert_eq!(c.platform.as_deref(), Some("onnxruntime_onnx"));
        assert_eq!(c.max_batch_size, Some(16));
        let db = c.dynamic_batching.clone().unwrap();
        assert_eq!(db.max_queue_delay, Some(Duration::from_micros(500)));
        assert_eq!(db.preferred_batch_size, vec![4, 8]);
        assert_eq!(db.max_queue_size, Some(32));
        assert_eq!(db.default_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.instances, Some(3));
        assert_eq!(c.threads, Some(3));
        assert_eq!(c.version_policy, Some(VersionPolicy::Latest(2)));
        assert_eq!(c.input_names, vec!["x"]);
        assert_eq!(c.output_names, vec!["y"]);
        let w = c.warnings.join("\n");
        assert!(w.contains("config.pbtxt:15: instance_group kind"), "{w}");
        assert!(w.contains("config.pbtxt:17: parameter `other`"), "{w}");
        assert!(w.contains("config.pbtxt:19: field `optimization`"), "{w}");
        assert_eq!(c.warnings.len(), 3, "{w}");

        let s = ModelSettings::resolve(Some(&c), &ServeOptions::default());
        assert_eq!(s.max_batch_size, Some(16));
        assert!(s.dynamic_batching && s.max_batch_from_config);
        assert_eq!(s.batch_delay, Duration::from_micros(500));
        assert_eq!(s.preferred_batch_sizes, [4, 8].into_iter().collect());
        assert_eq!((s.instances, s.threads_per_instance), (3, 3));
        assert_eq!(s.max_queue_size, Some(32));
        assert_eq!(s.default_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn config_overrides_options_and_options_override_defaults() {
        let opts = ServeOptions {
            threads: Some(5),
            max_batch_size: Some(4),
            batch_delay: Some(Duration::from_millis(3)),
            instances: Some(2),
            max_queue_size: Some(0),
            default_timeout: Some(Duration::from_secs(1)),
        };
        let s = ModelSettings::resolve(None, &opts);
        assert_eq!(s.max_batch_size, Some(4));
        assert!(s.dynamic_batching && !s.max_batch_from_config);
        assert_eq!(s.batch_delay, Duration::from_millis(3));
        assert_eq!((s.instances, s.threads_per_instance), (2, 5));
        assert_eq!(s.max_queue_size, None);
        assert_eq!(s.default_timeout, Some(Duration::from_secs(1)));

        let c = ModelConfig::parse("c", "max_batch_size: 0\ninstance_group [{count: 3}]").unwrap();
        let s = ModelSettings::resolve(Some(&c), &opts);
        assert_eq!(s.max_batch_size, Some(0));
        assert!(
            !s.dynamic_batching,
            "no dynamic_batching block: Triton runs requests alone"
        );
        assert_eq!((s.instances, s.threads_per_instance), (3, 5));

        let d = ModelSettings::resolve(None, &ServeOptions::default());
        assert_eq!(d.max_batch_size, None);
        assert_eq!(d.max_queue_size, Some(DEFAULT_MAX_QUEUE_SIZE));
        assert_eq!(d.batch_delay, Duration::ZERO);
        assert!(d.threads_per_instance >= 1);
    }

    #[test]
    fn version_policies() {
        let p = |t: &str| ModelConfig::parse("c", t).unwrap().version_policy.unwrap();
        assert_eq!(p("version_policy { all {} }"), VersionPolicy::All);
        assert_eq!(
            p("version_policy: { specific: { versions: [1, 3] } }"),
            VersionPolicy::Specific(vec![1, 3])
        );
        assert_eq!(
            p("version_policy { latest { } }").select(&[3, 1, 2]),
            vec![3]
        );
        assert_eq!(VersionPolicy::Latest(2).select(&[3, 1, 2]), vec![2, 3]);
        assert_eq!(VersionPolicy::Specific(vec![1, 9]).select(&[1, 2]), vec![1]);
        assert_eq!(VersionPolicy::All.select(&[2, 1]), vec![1, 2]);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "name: \"a\"\nmax_batch_size: -1\n",
                2,
                "non-negative integer",
            ),
            (
                "name: \"a\"\n\nmax_batch_size: \"8\"",
                3,
                "non-negative integer",
            ),
            (
                "dynamic_batching {\n  max_queue_delay_microseconds: 10\n",
                3,
                "line 1, column 18 is not closed",
            ),
            ("name: \"abc\n", 1, "string is not closed"),
            ("x: [1, 2\ny: 3", 2, "expected `,` or `]`"),
            ("\n\n}", 3, "unexpected `}`"),
            ("name \"a\"", 1, "expected `:` or `{`"),
            ("a: 1\n: 2", 2, "expected a field name"),
            (
                "platform: \"tensorflow_savedmodel\"",
                1,
                "not served by millrace",
            ),
            ("max_batch_size: 1x2", 1, "not a number"),
            ("dynamic_batching: 5", 1, "must be a message"),
            ("instance_group [ { count: 0 } ]", 1, "at least 1"),
            (
                "instance_group { kind: KIND_TPU }",
                1,
                "unknown instance_group kind",
            ),
            (
                "parameters {\n key: \"threads\"\n value { string_value: \"many\" } }",
                3,
                "positive integer",
            ),
            ("version_policy { newest { } }", 1, "unknown version_policy"),
            ("name: \"a\\q\"", 1, "unknown escape"),
            ("a: ]", 1, "expected a value"),
        ];
        for (text, line, msg) in cases {
            let e = ModelConfig::parse("m/config.pbtxt", text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("m/config.pbtxt:{line}:")),
                "{e}"
            );
        }
    }

    #[test]
    fn text_format_details() {
        let m = parse_text(
            "c",
            "a: 1; b: -2.5e3, c: 0x1F d <e: 'q'> f: [] g: true # end",
        )
        .unwrap();
        let names: Vec<&str> = m.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "g"]);
        assert_eq!(m.fields[4].value, TextValue::Ident("true".into()));
        assert_eq!(m.fields[1].value, TextValue::Number("-2.5e3".into()));
    }
}
