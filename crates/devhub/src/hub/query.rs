//! IoT Hub's query language for twins (`POST /devices/query`), the part people use:
//! `SELECT * | COUNT() [AS name] | path [AS name], ... FROM devices | devices.modules
//! [WHERE condition]`, where a condition compares a twin path (`tags.site`,
//! `properties.reported.fw`, `deviceId`, `status`, ...) with a string, number, boolean
//! or null (`=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`), `IS_DEFINED(path)`, and `AND`, `OR`,
//! `NOT` and parentheses. Anything else (GROUP BY, other functions, jobs) is refused with
//! a message that names it.

use serde_json::{Map, Value};

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// What each result is.
    pub select: Select,
    /// Module twins (`devices.modules`) rather than device twins.
    pub modules: bool,
    /// The WHERE condition.
    pub filter: Option<Expr>,
}

/// The SELECT clause.
#[derive(Clone, Debug, PartialEq)]
pub enum Select {
    /// `*`: whole twins.
    All,
    /// `COUNT()`, named.
    Count(String),
    /// Paths, each named (by `AS`, else its last part).
    Fields(Vec<(Vec<String>, String)>),
}

/// A WHERE condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
    /// A path compared with a constant.
    Cmp(Vec<String>, Op, Value),
    /// `IS_DEFINED(path)`.
    Defined(Vec<String>),
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
}

fn tokens(q: &str) -> Result<Vec<Tok>, String> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' {
            // A string; the quote doubled inside it is one quote.
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                let Some(&d) = b.get(j) else {
                    return Err(format!(
                        "a string starting at character {} is not closed",
                        i + 1
                    ));
                };
                if d == c {
                    if b.get(j + 1) == Some(&c) {
                        s.push(c as char);
                        j += 2;
                        continue;
                    }
                    break;
                }
                let ch = q[j..].chars().next().unwrap_or('\u{fffd}');
                s.push(ch);
                j += ch.len_utf8();
            }
            out.push(Tok::Str(s));
            i = j + 1;
        } else if c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let mut j = i + 1;
            while let Some(&d) = b.get(j) {
                let exponent_sign = matches!(d, b'+' | b'-') && matches!(b[j - 1], b'e' | b'E');
                if d.is_ascii_digit() || matches!(d, b'.' | b'e' | b'E') || exponent_sign {
                    j += 1;
                } else {
                    break;
                }
            }
            let n: f64 = q[i..j]
                .parse()
                .map_err(|_| format!("{} is not a number", &q[i..j]))?;
            out.push(Tok::Num(n));
            i = j;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$') {
                j += 1;
            }
            out.push(Tok::Word(q[i..j].to_string()));
            i = j;
        } else {
            let two = q.get(i..i + 2).unwrap_or("");
            let sym = match two {
                "!=" => "!=",
                "<>" => "<>",
                "<=" => "<=",
                ">=" => ">=",
                _ => match c {
                    b'=' => "=",
                    b'<' => "<",
                    b'>' => ">",
                    b'(' => "(",
                    b')' => ")",
                    b',' => ",",
                    b'.' => ".",
                    b'*' => "*",
                    _ => {
                        let ch = q[i..].chars().next().unwrap_or('?');
                        return Err(format!("unexpected {ch:?} at character {}", i + 1));
                    }
                },
            };
            i += sym.len();
            out.push(Tok::Sym(sym));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, k: &str) -> Result<(), String> {
        if self.keyword(k) {
            Ok(())
        } else {
            Err(format!("expected {k} {}", self.here()))
        }
    }

    fn here(&self) -> String {
        match self.peek() {
            None => "at the end of the query".into(),
            Some(Tok::Word(w)) | Some(Tok::Str(w)) => format!("before {w:?}"),
            Some(Tok::Num(n)) => format!("before {n}"),
            Some(Tok::Sym(s)) => format!("before {s:?}"),
        }
    }

    fn word(&mut self) -> Option<String> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.at += 1;
                Some(w)
            }
            _ => None,
        }
    }

    fn path(&mut self) -> Result<Vec<String>, String> {
        let mut p = vec![self
            .word()
            .ok_or_else(|| format!("expected a property path {}", self.here()))?];
        while self.sym(".") {
            p.push(
                self.word()
                    .ok_or_else(|| format!("expected a name after '.' {}", self.here()))?,
            );
        }
        Ok(p)
    }

    fn alias(&mut self) -> Result<Option<String>, String> {
        if self.keyword("AS") {
            return self
                .word()
                .map(Some)
                .ok_or_else(|| format!("expected a name after AS {}", self.here()));
        }
        Ok(None)
    }

    fn select(&mut self) -> Result<Select, String> {
        if self.sym("*") {
            return Ok(Select::All);
        }
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("COUNT"))
            && self.toks.get(self.at + 1) == Some(&Tok::Sym("("))
        {
            self.at += 2;
            if !self.sym(")") {
                return Err(format!(
                    "COUNT takes no argument: expected ) {}",
                    self.here()
                ));
            }
            let name = self.alias()?.unwrap_or_else(|| "$1".into());
            return Ok(Select::Count(name));
        }
        let mut fields = Vec::new();
        loop {
            let p = self.path()?;
            let name = match self.alias()? {
                Some(a) => a,
                None => p.last().cloned().unwrap_or_default(),
            };
            fields.push((p, name));
            if !self.sym(",") {
                break;
            }
        }
        Ok(Select::Fields(fields))
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.keyword("OR") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.not()?;
        while self.keyword("AND") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        if self.sym("(") {
            let e = self.or()?;
            if !self.sym(")") {
                return Err(format!("expected ) {}", self.here()));
            }
            return Ok(e);
        }
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case("IS_DEFINED"))
            && self.toks.get(self.at + 1) == Some(&Tok::Sym("("))
        {
            self.at += 2;
            let p = self.path()?;
            if !self.sym(")") {
                return Err(format!("expected ) {}", self.here()));
            }
            return Ok(Expr::Defined(p));
        }
        if let (Some(Tok::Word(w)), Some(Tok::Sym("("))) = (self.peek(), self.toks.get(self.at + 1))
        {
            return Err(format!(
                "the function {w} is not supported by devhub (IS_DEFINED is)"
            ));
        }
        let p = self.path()?;
        let op = match self.peek() {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("!=")) | Some(Tok::Sym("<>")) => Op::Ne,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            _ => {
                return Err(format!(
                    "expected a comparison (=, !=, <>, <, <=, >, >=) after {} {}",
                    p.join("."),
                    self.here()
                ))
            }
        };
        self.at += 1;
        let v = match self.peek() {
            Some(Tok::Str(s)) => Value::String(s.clone()),
            Some(Tok::Num(n)) => serde_json::Number::from_f64(*n)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            _ => {
                return Err(format!(
                    "expected a string, number, true, false or null to compare {} with {}",
                    p.join("."),
                    self.here()
                ))
            }
        };
        self.at += 1;
        Ok(Expr::Cmp(p, op, v))
    }
}

/// Parses a query, or says what is wrong with it.
pub fn parse(q: &str) -> Result<Query, String> {
    let mut p = Parser {
        toks: tokens(q)?,
        at: 0,
    };
    p.expect_keyword("SELECT")?;
    if p.keyword("TOP") {
        return Err("TOP is not supported by devhub: page with x-ms-max-item-count".into());
    }
    let select = p.select()?;
    p.expect_keyword("FROM")?;
    let from = p.path()?;
    let modules = match from
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".")
        .as_str()
    {
        "devices" => false,
        "devices.modules" => true,
        other => {
            return Err(format!(
                "FROM {other}: devhub queries devices and devices.modules only"
            ))
        }
    };
    let filter = if p.keyword("WHERE") {
        Some(p.or()?)
    } else {
        None
    };
    if p.keyword("GROUP") {
        return Err("GROUP BY is not supported by devhub".into());
    }
    if p.at < p.toks.len() {
        return Err(format!("unexpected text {}", p.here()));
    }
    Ok(Query {
        select,
        modules,
        filter,
    })
}

/// The value at `path` in a twin document (`devices.` and `devices.modules.` in front
/// of a path name the twin itself).
fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut path = path;
    if path
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("devices"))
    {
        path = &path[1..];
        if path
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("modules"))
        {
            path = &path[1..];
        }
    }
    path.iter().try_fold(doc, |v, k| v.get(k.as_str()))
}

fn compare(a: &Value, op: Op, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        // Values of different types are never equal nor ordered.
        _ => None,
    };
    match (op, ord) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Ne, None) => true,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

/// Whether a twin document satisfies the condition. A comparison with a path the twin
/// does not have is false, whatever the operator.
pub fn matches(e: &Expr, doc: &Value) -> bool {
    match e {
        Expr::And(a, b) => matches(a, doc) && matches(b, doc),
        Expr::Or(a, b) => matches(a, doc) || matches(b, doc),
        Expr::Not(a) => !matches(a, doc),
        Expr::Defined(p) => lookup(doc, p).is_some(),
        Expr::Cmp(p, op, v) => lookup(doc, p).is_some_and(|x| compare(x, *op, v)),
    }
}

/// The results of `q` over `docs` (twin documents, in the order they are to be paged).
pub fn run(q: &Query, docs: Vec<Value>) -> Vec<Value> {
    let kept = docs
        .into_iter()
        .filter(|d| q.filter.as_ref().is_none_or(|f| matches(f, d)));
    match &q.select {
        Select::All => kept.collect(),
        Select::Count(name) => {
            let mut m = Map::new();
            m.insert(name.clone(), Value::from(kept.count()));
            vec![Value::Object(m)]
        }
        Select::Fields(fields) => kept
            .map(|d| {
                let mut m = Map::new();
                for (p, name) in fields {
                    if let Some(v) = lookup(&d, p) {
                        m.insert(name.clone(), v.clone());
                    }
                }
                Value::Object(m)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs() -> Vec<Value> {
        vec![
            json!({"deviceId": "a", "status": "enabled", "tags": {"site": "b43", "floor": 2},
                   "properties": {"reported": {"fw": "1.2"}, "desired": {}}}),
            json!({"deviceId": "b", "status": "disabled", "tags": {"site": "b44", "floor": 5},
                   "properties": {"reported": {}, "desired": {"fan": true}}}),
            json!({"deviceId": "c", "status": "enabled", "tags": {},
                   "properties": {"reported": {"fw": "2.0"}, "desired": {}}}),
        ]
    }

    fn ids(q: &str) -> Vec<String> {
        let q = parse(q).unwrap();
        run(&q, docs())
            .iter()
            .map(|d| d["deviceId"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn filters_by_tags_properties_and_identity_fields() {
        assert_eq!(ids("SELECT * FROM devices"), ["a", "b", "c"]);
        assert_eq!(ids("select * from devices where tags.site = 'b43'"), ["a"]);
        assert_eq!(
            ids("SELECT * FROM devices WHERE tags.floor >= 2 AND tags.floor < 5"),
            ["a"]
        );
        assert_eq!(
            ids("SELECT * FROM devices WHERE tags.floor > 2 OR status = 'enabled'"),
            ["a", "b", "c"]
        );
        assert_eq!(
            ids("SELECT * FROM devices WHERE NOT (status = 'enabled')"),
            ["b"]
        );
        assert_eq!(
            ids("SELECT * FROM devices WHERE properties.reported.fw <> '1.2'"),
            ["c"]
        );
        assert_eq!(
            ids("SELECT * FROM devices WHERE properties.desired.fan = true"),
            ["b"]
        );
        assert_eq!(
            ids("SELECT * FROM devices WHERE IS_DEFINED(tags.site)"),
            ["a", "b"]
        );
        assert_eq!(
            ids("SELECT * FROM devices WHERE devices.deviceId = \"c\""),
            ["c"]
        );
        // A missing path compares false, and a string never equals a number.
        assert!(ids("SELECT * FROM devices WHERE tags.nothing != 'x'").is_empty());
        assert!(ids("SELECT * FROM devices WHERE tags.floor = '2'").is_empty());
        assert_eq!(
            ids("SELECT * FROM devices WHERE tags.site = 'it''s'").len(),
            0
        );
    }

    #[test]
    fn counts_and_projects() {
        let q = parse("SELECT COUNT() AS n FROM devices WHERE status = 'enabled'").unwrap();
        assert_eq!(run(&q, docs()), [json!({"n": 2})]);
        let q = parse("SELECT COUNT() FROM devices").unwrap();
        assert_eq!(run(&q, docs()), [json!({"$1": 3})]);
        let q = parse(
            "SELECT deviceId, tags.site AS where_, tags.floor FROM devices WHERE tags.floor = 5",
        )
        .unwrap();
        assert_eq!(
            run(&q, docs()),
            [json!({"deviceId": "b", "where_": "b44", "floor": 5})]
        );
        assert!(
            parse("SELECT * FROM devices.modules WHERE moduleId = 'm'")
                .unwrap()
                .modules
        );
    }

    #[test]
    fn says_what_is_wrong() {
        for (q, says) in [
            ("", "expected SELECT"),
            ("SELECT * FROM jobs", "FROM jobs"),
            ("SELECT * FROM devices WHERE tags.x = 'open", "not closed"),
            (
                "SELECT * FROM devices WHERE tags.x",
                "expected a comparison",
            ),
            ("SELECT * FROM devices WHERE tags.x = ", "expected a string"),
            ("SELECT * FROM devices GROUP BY tags.x", "GROUP BY"),
            (
                "SELECT * FROM devices WHERE STARTSWITH(deviceId, 'a')",
                "STARTSWITH",
            ),
            ("SELECT TOP 2 * FROM devices", "TOP"),
            (
                "SELECT * FROM devices WHERE (status = 'enabled'",
                "expected )",
            ),
            ("SELECT * FROM devices WHERE status = 'x' ;", "unexpected"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.contains(says), "{q:?}: {e}");
        }
    }
}
