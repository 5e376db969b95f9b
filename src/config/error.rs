//! Configuration errors that point into the file: `PATH:LINE:COL: KEY: message`.
//!
//! Validation names a key by its path (`permission[2].group`); [`Locator`] turns that path into a
//! line and column by walking the spanned TOML document (`toml::de::DeTable`), and turns the byte
//! span of a serde error back into a key path. Positions point at the key that is wrong (or that
//! refers to something that does not exist); a missing key points at its table. Nothing here
//! panics on any input: offsets are clamped and counted over bytes.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One thing wrong with the configuration, with where it was written.
///
/// The caller prints it and exits 64 (`check-config`, and every command that loads the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line; 0 when the error concerns the whole file (it could not be read).
    pub line: usize,
    /// 1-based column in characters; 0 together with `line`.
    pub col: usize,
    /// Dotted key path with array indices, e.g. `permission[2].group`; empty for syntax errors.
    pub key: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.file.display())?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, " {}:", self.key)?;
        }
        write!(f, " {}", self.message)
    }
}

/// Every error found in one configuration file, in file order.
///
/// The caller prints them (one line each) and exits 64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A key's path in the document: `lock[0].topic` is `[Key(lock), Index(0), Key(topic)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The path of a top-level key.
    pub(crate) fn root(key: &str) -> Self {
        Self(vec![Segment::Key(key.to_owned())])
    }

    /// This path extended by a key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    /// This path extended by an array index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// Converts the path `serde_ignored` reports for an ignored key.
    pub(crate) fn from_ignored(path: &serde_ignored::Path<'_>) -> Self {
        let mut segments = Vec::new();
        let mut current = path;
        loop {
            match current {
                serde_ignored::Path::Root => break,
                serde_ignored::Path::Seq { parent, index } => {
                    segments.push(Segment::Index(*index));
                    current = parent;
                }
                serde_ignored::Path::Map { parent, key } => {
                    segments.push(Segment::Key(key.clone()));
                    current = parent;
                }
                serde_ignored::Path::Some { parent }
                | serde_ignored::Path::NewtypeStruct { parent }
                | serde_ignored::Path::NewtypeVariant { parent } => current = parent,
            }
        }
        segments.reverse();
        Self(segments)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Finds keys in the spanned document and turns byte offsets into line and column.
pub(crate) struct Locator<'i> {
    text: &'i str,
    root: DeValue<'i>,
}

impl<'i> Locator<'i> {
    /// Wraps a parsed document and the text it came from.
    pub(crate) fn new(text: &'i str, root: DeTable<'i>) -> Self {
        Self {
            text,
            root: DeValue::Table(root),
        }
    }

    /// Where `path` was written: its key, or (when missing) the nearest table that holds it.
    pub(crate) fn position(&self, path: &KeyPath) -> (usize, usize) {
        let mut offset = 0;
        let mut value = &self.root;
        for segment in &path.0 {
            let Some((start, child)) = child(value, segment) else {
                break;
            };
            offset = start;
            value = child;
        }
        self.line_col(offset)
    }

    /// The path of the deepest key or element whose value holds byte `offset` (for serde's
    /// type errors, which carry the offending value's span but not its key).
    pub(crate) fn key_at(&self, offset: usize) -> KeyPath {
        let mut path = KeyPath::default();
        let mut value = &self.root;
        while let Some((segment, child)) = children(value)
            .into_iter()
            .find(|(_, child)| covers(child, offset))
        {
            path.0.push(segment);
            value = child.get_ref();
        }
        path
    }

    /// 1-based line and column (in characters) of a byte offset, clamped to the text.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset)
    }
}

/// 1-based line and column (in characters) of a byte offset, clamped to the text.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    // Count characters, not bytes: skip UTF-8 continuation bytes.
    let col = before[line_start..]
        .iter()
        .filter(|b| (**b & 0xC0) != 0x80)
        .count()
        + 1;
    (line, col)
}

/// The child of a table (by key) or array (by index), with the offset of its key or element.
fn child<'v, 'i>(value: &'v DeValue<'i>, segment: &Segment) -> Option<(usize, &'v DeValue<'i>)> {
    match (value, segment) {
        (DeValue::Table(table), Segment::Key(name)) => table
            .iter()
            .find(|(key, _)| key.get_ref() == name)
            .map(|(key, child)| (key.span().start, child.get_ref())),
        (DeValue::Array(items), Segment::Index(i)) => items
            .get(*i)
            .map(|child| (child.span().start, child.get_ref())),
        _ => None,
    }
}

/// Every child of a table or array with its path segment; none for other values.
fn children<'v, 'i>(value: &'v DeValue<'i>) -> Vec<(Segment, &'v Spanned<DeValue<'i>>)> {
    match value {
        DeValue::Table(table) => table
            .iter()
            .map(|(key, child)| (Segment::Key(key.get_ref().to_string()), child))
            .collect(),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, child)| (Segment::Index(i), child))
            .collect(),
        _ => Vec::new(),
    }
}

/// True when a value's span, or any descendant's, holds `offset`. Descendants count because a
/// table's own span is only its header (`[[lock]]`), its keys come after it.
fn covers(value: &Spanned<DeValue<'_>>, offset: usize) -> bool {
    let span = value.span();
    (span.start <= offset && offset < span.end.max(span.start + 1))
        || children(value.get_ref())
            .iter()
            .any(|(_, child)| covers(child, offset))
}

/// Collects errors for one file, positioning each by its key path.
pub(crate) struct Report<'a, 'i> {
    file: &'a Path,
    locator: &'a Locator<'i>,
    errors: Vec<ConfigError>,
}

impl<'a, 'i> Report<'a, 'i> {
    /// An empty report for `file`.
    pub(crate) fn new(file: &'a Path, locator: &'a Locator<'i>) -> Self {
        Self {
            file,
            locator,
            errors: Vec::new(),
        }
    }

    /// Records an error at `key`.
    pub(crate) fn error(&mut self, key: &KeyPath, message: impl Into<String>) {
        let (line, col) = self.locator.position(key);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Records an error about `key` at the position of another key (the one that needs it).
    pub(crate) fn error_at(&mut self, key: &KeyPath, at: &KeyPath, message: impl Into<String>) {
        let (line, col) = self.locator.position(at);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Where `key` was written (line, column).
    pub(crate) fn position(&self, key: &KeyPath) -> (usize, usize) {
        self.locator.position(key)
    }

    /// True when no error was recorded.
    pub(crate) fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors, sorted by position so the output reads like the file.
    pub(crate) fn into_errors(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|e| (e.line, e.col));
        self.errors
    }
}

/// An error about the file as a whole (it could not be read).
pub(crate) fn file_error(file: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        line: 0,
        col: 0,
        key: String::new(),
        message: message.into(),
    }
}

/// An error at a byte span of the text (syntax and type errors from the toml crate).
pub(crate) fn span_error(
    file: &Path,
    text: &str,
    span: Option<Range<usize>>,
    key: String,
    message: &str,
) -> ConfigError {
    let (line, col) = line_col(text, span.map_or(0, |s| s.start));
    ConfigError {
        file: file.to_owned(),
        line,
        col,
        key,
        message: message.to_owned(),
    }
}
