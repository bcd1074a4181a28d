//! One grammar for every suite's `--case`: `key=value` pairs separated by commas, read through
//! the suite's key table ([`Grammar`]). The table is both what the parser accepts (an unknown or
//! repeated key is an error that lists the valid keys) and what `roofbench suites` prints, so the
//! syntax line cannot drift from the parser.
//!
//! Parsing never panics: every getter returns an error for a value it cannot read.

use anyhow::{anyhow, bail, Result};

use super::size::parse_bytes;

/// What a key's value is: its placeholder in the syntax, and which getter reads it.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// A whole number ([`Spec::int`]).
    Int,
    /// Bytes with an optional unit: `4096`, `64MiB`, `1.5GB` ([`Spec::size`]).
    Size,
    /// A real number ([`Spec::real`]).
    Real,
    /// `1|0` (also true/false, yes/no, on/off) ([`Spec::flag`]).
    Flag,
    /// One of these names, any case ([`Spec::one_of`]).
    OneOf(&'static [&'static str]),
    /// One of the names a type lists ([`Spec::one_of`]): taken from the type, so a new variant
    /// shows in the syntax without an edit here.
    Names(fn() -> Vec<&'static str>),
    /// A value the suite reads itself ([`Spec::parse`], [`Spec::list`]); the placeholder shown.
    Text(&'static str),
}

impl Value {
    fn placeholder(self) -> String {
        match self {
            Value::Int => "N".into(),
            Value::Size => "SIZE".into(),
            Value::Real => "X".into(),
            Value::Flag => "0|1".into(),
            Value::OneOf(names) => names.join("|"),
            Value::Names(names) => names().join("|"),
            Value::Text(placeholder) => placeholder.into(),
        }
    }
}

/// What a case uses when a key is not given.
#[derive(Debug, Clone, Copy)]
pub enum Absent {
    /// This value, as it would be written (a test checks that writing it changes nothing).
    Value(&'static str),
    /// Something that depends on other keys, described.
    Note(&'static str),
    Required,
}

#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    /// Other spellings of the same key (`batch` for `b`).
    pub aliases: &'static [&'static str],
    pub value: Value,
    pub absent: Absent,
    /// One line: what the key sets.
    pub help: &'static str,
}

impl Key {
    pub const fn new(name: &'static str, value: Value, absent: Absent, help: &'static str) -> Key {
        Key {
            name,
            aliases: &[],
            value,
            absent,
            help,
        }
    }

    pub const fn aliases(self, aliases: &'static [&'static str]) -> Key {
        Key { aliases, ..self }
    }

    /// The same key with another default (a suite that reuses another's keys).
    pub const fn absent(self, absent: Absent) -> Key {
        Key { absent, ..self }
    }

    fn is(&self, written: &str) -> bool {
        self.name == written || self.aliases.contains(&written)
    }
}

/// A suite's case syntax: its keys, an example, and the short form it also accepts, if any.
#[derive(Debug, Clone)]
pub struct Grammar {
    pub keys: Vec<Key>,
    /// A complete case in `key=value` form (the tests parse it).
    pub example: &'static str,
    /// A short form beside `key=value` (stream's `OP:SIZE`), parsed by the suite.
    pub shorthand: Option<&'static str>,
}

/// Continuation lines of the syntax start under `--case` in `roofbench suites`.
const INDENT: &str = "             ";
/// The longest `key=VALUE` form the helps line up after.
const ALIGN_MAX: usize = 32;

impl Grammar {
    fn key_names(&self) -> String {
        let names: Vec<&str> = self.keys.iter().map(|k| k.name).collect();
        names.join(", ")
    }

    /// Splits `text` into pairs of known keys, each given at most once.
    pub fn parse<'a>(&'a self, text: &'a str) -> Result<Spec<'a>> {
        let mut pairs: Vec<Pair<'a>> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((written, value)) = item.split_once('=') else {
                bail!("`{item}` is not key=value (keys: {})", self.key_names());
            };
            let (written, value) = (written.trim(), value.trim());
            let Some(key) = self.keys.iter().find(|k| k.is(written)) else {
                bail!("unknown key `{written}` (keys: {})", self.key_names());
            };
            if let Some(first) = pairs.iter().find(|p| p.key.name == key.name) {
                bail!(
                    "`{}` is given twice (`{}={}` and `{item}`)",
                    key.name,
                    first.written,
                    first.value
                );
            }
            pairs.push(Pair {
                key,
                written,
                value,
            });
        }
        Ok(Spec {
            grammar: self,
            pairs,
        })
    }

    /// The syntax `roofbench suites` prints: the form, an example, then one line per key with its
    /// value, default and meaning.
    pub fn syntax(&self) -> String {
        let mut out = String::from("key=value,...");
        if let Some(short) = self.shorthand {
            out += &format!(" or {short}");
        }
        out += &format!(", e.g. {}", self.example);
        let forms: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{}={}", k.name, k.value.placeholder()))
            .collect();
        // Helps line up after the forms, except after a form too long to pad the rest to.
        let width = forms
            .iter()
            .map(|f| f.chars().count())
            .filter(|&w| w <= ALIGN_MAX)
            .max()
            .unwrap_or(0);
        for (key, form) in self.keys.iter().zip(forms) {
            let absent = match key.absent {
                Absent::Value(v) => format!("default {v}"),
                Absent::Note(n) => format!("default: {n}"),
                Absent::Required => "required".into(),
            };
            let aliases = if key.aliases.is_empty() {
                String::new()
            } else {
                format!("; also {}=", key.aliases.join("=, "))
            };
            out += &format!("\n{INDENT}{form:<width$}  {} ({absent}{aliases})", key.help);
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
struct Pair<'a> {
    key: &'a Key,
    /// The key as written (the name or an alias), for messages.
    written: &'a str,
    value: &'a str,
}

/// A parsed case spec: the keys given, read by typed getters. Each getter returns `None` for an
/// absent key (the suite applies its default) and an error naming `key=value` for a bad value.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    grammar: &'a Grammar,
    pairs: Vec<Pair<'a>>,
}

impl<'a> Spec<'a> {
    fn pair(&self, key: &str) -> Option<&Pair<'a>> {
        debug_assert!(
            self.grammar.keys.iter().any(|k| k.name == key),
            "`{key}` is not in the key table"
        );
        self.pairs.iter().find(|p| p.key.name == key)
    }

    /// The raw value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.pair(key).map(|p| p.value)
    }

    /// `key`'s value read by `read`; its error is prefixed with `key=value`.
    pub fn parse<T>(&self, key: &str, read: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
        let Some(p) = self.pair(key) else {
            return Ok(None);
        };
        read(p.value)
            .map(Some)
            .map_err(|e| anyhow!("{}={}: {e:#}", p.written, p.value))
    }

    /// A whole number.
    pub fn int(&self, key: &str) -> Result<Option<usize>> {
        self.parse(key, |v| {
            v.parse::<usize>()
                .map_err(|_| anyhow!("not a whole number"))
        })
    }

    /// Bytes, with an optional unit (see [`parse_bytes`]).
    pub fn size(&self, key: &str) -> Result<Option<u64>> {
        self.parse(key, parse_bytes)
    }

    pub fn real(&self, key: &str) -> Result<Option<f64>> {
        self.parse(key, |v| {
            v.parse::<f64>().map_err(|_| anyhow!("not a number"))
        })
    }

    /// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
    pub fn flag(&self, key: &str) -> Result<Option<bool>> {
        self.parse(key, |v| match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => bail!("expected 1 or 0"),
        })
    }

    /// Whole numbers separated by colons: `L1:L2:...`.
    pub fn list(&self, key: &str) -> Result<Option<Vec<usize>>> {
        self.parse(key, |v| {
            v.split(':')
                .map(|n| n.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| anyhow!("expected whole numbers separated by colons (L1:L2:...)"))
        })
    }

    /// One of the names of the key's [`Value::OneOf`] or [`Value::Names`], matched in any case;
    /// returns the name as the table spells it.
    pub fn one_of(&self, key: &str) -> Result<Option<&'static str>> {
        let Some(p) = self.pair(key) else {
            return Ok(None);
        };
        let names = match p.key.value {
            Value::OneOf(names) => names.to_vec(),
            Value::Names(names) => names(),
            other => {
                debug_assert!(false, "`{key}` is {other:?}, not a list of names");
                Vec::new()
            }
        };
        match names.iter().find(|n| n.eq_ignore_ascii_case(p.value)) {
            Some(name) => Ok(Some(name)),
            None => bail!("{}={}: one of {}", p.written, p.value, names.join(", ")),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! What every suite's tests check of its grammar: its example parses, its documented
    //! defaults are its defaults, unknown and repeated keys are errors, no input makes parsing
    //! panic, and specs make the cases they made before.

    use proptest::prelude::*;

    use super::{Absent, Grammar};
    use crate::suite::Suite;

    /// `name` and `params` of a parsed case: what a result row shows of it.
    fn row_of(suite: &dyn Suite, spec: &str) -> Result<(String, String), String> {
        suite
            .parse_case(spec)
            .map(|c| (c.name(), c.params()))
            .map_err(|e| format!("{e:#}"))
    }

    /// Each `(spec, name, params)` was read so by the suite's parser before this grammar (the
    /// strings come from that parser): the same specs must still make the same cases.
    pub fn assert_same_cases(suite: &dyn Suite, cases: &[(&str, &str, &str)]) {
        for &(spec, name, params) in cases {
            assert_eq!(
                row_of(suite, spec),
                Ok((name.to_string(), params.to_string())),
                "{}: `{spec}`",
                suite.name()
            );
        }
    }

    /// The grammar's promises for `suite`, and [`parsing_never_panics`].
    pub fn check_grammar(suite: &dyn Suite) {
        let grammar: Grammar = suite.grammar();
        let example = row_of(suite, grammar.example).expect("the example parses");
        for key in &grammar.keys {
            let given = grammar
                .example
                .split(',')
                .any(|p| p.split_once('=').is_some_and(|(k, _)| key.is(k.trim())));
            if let (Absent::Value(v), false) = (key.absent, given) {
                let spec = format!("{},{}={v}", grammar.example, key.name);
                assert_eq!(
                    row_of(suite, &spec),
                    Ok(example.clone()),
                    "{}: `{spec}` should be the example's case",
                    suite.name()
                );
            }
        }
        let unknown = row_of(suite, &format!("{},colour=blue", grammar.example)).unwrap_err();
        assert!(unknown.contains("unknown key `colour`"), "{unknown}");
        assert!(
            unknown.contains(grammar.keys[0].name),
            "lists the keys: {unknown}"
        );
        let first = grammar.example.split(',').next().unwrap();
        let twice = row_of(suite, &format!("{},{first}", grammar.example)).unwrap_err();
        assert!(twice.contains("given twice"), "{twice}");
        let syntax = suite.case_syntax();
        for key in &grammar.keys {
            assert!(syntax.contains(&format!("{}=", key.name)), "{syntax}");
        }
        parsing_never_panics(suite);
    }

    /// Pieces of specs that reach past the key check: each key with a plausible, an extreme or
    /// an odd value.
    fn fragments(grammar: &Grammar) -> Vec<String> {
        let values = [
            "0",
            "1",
            "3",
            "7",
            "16",
            "64",
            "4096",
            "131072",
            "18446744073709551615",
            "-1",
            "1.5",
            "nan",
            "inf",
            "25%",
            "150%",
            "1:2:3",
            "0:0",
            "zipf",
            "uniform",
            "32/8",
            "8/0",
            "0/0",
            "auto",
            "all",
            "e4m3",
            "bf16",
            "int8",
            "fp16",
            "f32",
            "head",
            "contiguous",
            "index",
            "block128",
            "token",
            "1GiB",
            "3B",
            "8x8x8",
            "1x1x1",
            "0x1x1",
            "llama3-8b-qkv",
            "quantize-x",
            "quantize-w",
            "swap-out",
            "decode",
            "decode-compacted",
            "cow",
            "snapkv",
            "streaming-llm",
            "ties",
            "copy",
            "triad",
            "",
        ];
        let mut out = Vec::new();
        for key in &grammar.keys {
            for v in values {
                out.push(format!("{}={v}", key.name));
            }
        }
        out
    }

    /// Feeds `parse_case` arbitrary strings and random combinations of plausible pairs; each must
    /// be a case or an error, never a panic.
    fn parsing_never_panics(suite: &dyn Suite) {
        let fragments = fragments(&suite.grammar());
        let config = ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let arbitrary = any::<String>();
        runner
            .run(&arbitrary, |s| {
                let _ = row_of(suite, &s);
                Ok(())
            })
            .unwrap();
        let pairs = proptest::collection::vec(proptest::sample::select(fragments), 0..6);
        runner
            .run(&pairs, |p| {
                let _ = row_of(suite, &p.join(","));
                Ok(())
            })
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grammar() -> Grammar {
        Grammar {
            keys: vec![
                Key::new("b", Value::Int, Absent::Value("1"), "batch").aliases(&["batch"]),
                Key::new("size", Value::Size, Absent::Required, "bytes"),
                Key::new("x", Value::Real, Absent::Value("0"), "a real"),
                Key::new("on", Value::Flag, Absent::Value("0"), "a flag"),
                Key::new(
                    "lens",
                    Value::Text("L1:L2:.."),
                    Absent::Note("b x ctx"),
                    "lengths",
                ),
                Key::new(
                    "kind",
                    Value::OneOf(&["paged", "contiguous"]),
                    Absent::Value("paged"),
                    "layout",
                ),
                Key::new(
                    "op",
                    Value::Names(|| vec!["read", "write"]),
                    Absent::Required,
                    "op",
                ),
            ],
            example: "size=1GiB,op=read",
            shorthand: Some("OP:SIZE"),
        }
    }

    #[test]
    fn getters_read_typed_values() {
        let g = grammar();
        let s = g
            .parse(" batch = 8 ,size=64MiB,,x=1.5,on=yes,lens=1:2:3,kind=CONTIGUOUS,op=write")
            .unwrap();
        assert_eq!(s.int("b").unwrap(), Some(8));
        assert_eq!(s.size("size").unwrap(), Some(64 << 20));
        assert_eq!(s.real("x").unwrap(), Some(1.5));
        assert_eq!(s.flag("on").unwrap(), Some(true));
        assert_eq!(s.list("lens").unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(s.one_of("kind").unwrap(), Some("contiguous"));
        assert_eq!(s.one_of("op").unwrap(), Some("write"));
        let empty = g.parse("").unwrap();
        assert_eq!(empty.int("b").unwrap(), None);
        assert_eq!(empty.get("op"), None);
    }

    #[test]
    fn bad_values_name_the_pair() {
        let g = grammar();
        let err = |spec: &str, read: fn(&Spec) -> Result<()>| {
            format!("{:#}", read(&g.parse(spec).unwrap()).unwrap_err())
        };
        assert_eq!(
            err("batch=x", |s| s.int("b").map(drop)),
            "batch=x: not a whole number"
        );
        assert!(err("size=3 parsecs", |s| s.size("size").map(drop)).starts_with("size=3 parsecs:"));
        assert!(err("on=maybe", |s| s.flag("on").map(drop)).contains("expected 1 or 0"));
        assert!(err("lens=1:x", |s| s.list("lens").map(drop)).contains("L1:L2"));
        assert_eq!(
            err("kind=ring", |s| s.one_of("kind").map(drop)),
            "kind=ring: one of paged, contiguous"
        );
    }

    #[test]
    fn unknown_and_repeated_keys_are_errors() {
        let g = grammar();
        let err = |spec: &str| format!("{:#}", g.parse(spec).unwrap_err());
        assert_eq!(
            err("colour=blue"),
            "unknown key `colour` (keys: b, size, x, on, lens, kind, op)"
        );
        assert!(err("b=1,batch=2").contains("`b` is given twice (`b=1` and `batch=2`)"));
        assert!(err("b=1,b=1").contains("given twice"));
        assert!(err("copy").contains("is not key=value"));
    }

    #[test]
    fn the_syntax_comes_from_the_table() {
        let syntax = grammar().syntax();
        let lines: Vec<&str> = syntax.lines().collect();
        assert_eq!(lines[0], "key=value,... or OP:SIZE, e.g. size=1GiB,op=read");
        assert_eq!(lines.len(), 1 + 7);
        assert!(
            lines[1].starts_with(INDENT) && lines[1].ends_with("  batch (default 1; also batch=)"),
            "{syntax}"
        );
        assert!(lines[2].contains("size=SIZE") && lines[2].ends_with("(required)"));
        assert!(lines[5].contains("lens=L1:L2:..") && lines[5].ends_with("(default: b x ctx)"));
        assert!(lines[6].contains("kind=paged|contiguous"));
        assert!(lines[7].contains("op=read|write"));
    }
}
