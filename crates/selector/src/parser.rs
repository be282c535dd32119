//! A recursive-descent parser over the selector's bytes.
//!
//! Calico tokenizes first and then parses; its tokenizer is context-sensitive
//! (operator words are only recognised right after a label). Parsing directly
//! from the bytes gives that context for free and lets every error name the
//! exact byte where the input went wrong. The accepted language is Calico's:
//!
//! ```text
//! selector  = ws* | ws* or ws*
//! or        = and ( "||" and )*
//! and       = operation ( "&&" operation )*
//! operation = "!"* ( "(" or ")" | "has(" key ")" | "all(" ")" | "global(" ")"
//!                  | key op literal | key ("in" | "not in") set )
//! op        = "==" | "!=" | "contains" | "starts with" | "ends with"
//! set       = "{" ( literal ( "," literal )* ","? )? "}"
//! literal   = '"' [^"]* '"' | "'" [^']* "'"
//! key       = [A-Za-z0-9_./-]{1,512}
//! ws        = " " | "\t"
//! ```
//!
//! Whitespace is allowed between any two tokens and inside `has( k )`,
//! `all( )` and `global( )` (but not between `has` and `(`). Operator words
//! must end at a word boundary; `starts with`, `ends with` and `not in` may be
//! written without the inner space, as Calico allows.

use std::collections::BTreeSet;

use crate::ParseError;
use crate::ast::{Expr, MAX_KEY_LEN, is_key_byte};

const OPERAND: &str = "a label key, '!', '(', has(), all() or global()";
const OPERATOR: &str = "an operator (==, !=, in, not in, contains, starts with, ends with)";
const LITERAL: &str = "'\"' or '\\''";

/// Parses `text` into a tree in normal form.
pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    if p.at_end() {
        return Ok(Expr::All);
    }
    let expr = p.parse_or()?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error_after_operation("'&&', '||' or the end of the selector"));
    }
    Ok(expr)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn error(&self, offset: usize, expected: impl Into<String>) -> ParseError {
        ParseError {
            offset,
            expected: expected.into(),
        }
    }

    /// An error where `&&`, `||` or a closing token should have been; a lone
    /// `&` or `|` gets the more helpful "expected '&&'".
    fn error_after_operation(&self, expected: &str) -> ParseError {
        match self.rest() {
            [b'&', ..] => self.error(self.pos, "'&&'"),
            [b'|', ..] => self.error(self.pos, "'||'"),
            _ => self.error(self.pos, expected),
        }
    }

    /// Consumes `token` if the input continues with it.
    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn at_word_boundary(&self) -> bool {
        self.peek().is_none_or(|b| !is_key_byte(b))
    }

    /// Consumes a keyword of one or more words (whitespace optional between
    /// them) that ends at a word boundary; consumes nothing otherwise.
    fn eat_words(&mut self, words: &[&str]) -> bool {
        let start = self.pos;
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                self.skip_ws();
            }
            if !self.eat(word) {
                self.pos = start;
                return false;
            }
        }
        if self.at_word_boundary() {
            true
        } else {
            self.pos = start;
            false
        }
    }

    fn parse_or(&mut self) -> Result<Expr, ParseError> {
        let mut operands = vec![self.parse_and()?];
        loop {
            self.skip_ws();
            if self.eat("||") {
                operands.push(self.parse_and()?);
            } else {
                return Ok(Expr::or(operands));
            }
        }
    }

    fn parse_and(&mut self) -> Result<Expr, ParseError> {
        let mut operands = vec![self.parse_operation()?];
        loop {
            self.skip_ws();
            if self.eat("&&") {
                operands.push(self.parse_operation()?);
            } else {
                return Ok(Expr::and(operands));
            }
        }
    }

    fn parse_operation(&mut self) -> Result<Expr, ParseError> {
        let mut negated = false;
        loop {
            self.skip_ws();
            if self.rest().starts_with(b"!=") {
                return Err(self.error(self.pos, OPERAND));
            }
            if self.eat("!") {
                negated = !negated;
            } else {
                break;
            }
        }
        let expr = self.parse_positive_operation()?;
        Ok(if negated { Expr::negate(expr) } else { expr })
    }

    fn parse_positive_operation(&mut self) -> Result<Expr, ParseError> {
        if self.eat("(") {
            let inner = self.parse_or()?;
            self.skip_ws();
            if !self.eat(")") {
                return Err(self.error_after_operation("'&&', '||' or ')'"));
            }
            return Ok(inner);
        }
        if self.eat("has(") {
            self.skip_ws();
            let key = self.parse_key()?;
            self.close_call()?;
            return Ok(Expr::Has(key));
        }
        if self.eat("all(") {
            self.close_call()?;
            return Ok(Expr::All);
        }
        if self.eat("global(") {
            self.close_call()?;
            return Ok(Expr::Global);
        }
        if self.peek().is_some_and(is_key_byte) {
            return self.parse_comparison();
        }
        Err(self.error(self.pos, OPERAND))
    }

    fn close_call(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.eat(")") {
            Ok(())
        } else {
            Err(self.error(self.pos, "')'"))
        }
    }

    fn parse_key(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(is_key_byte) {
            self.pos += 1;
        }
        match self.pos - start {
            0 => Err(self.error(start, "a label key")),
            n if n > MAX_KEY_LEN => {
                Err(self.error(start, format!("a label key of at most {MAX_KEY_LEN} bytes")))
            }
            _ => Ok(self.text[start..self.pos].to_string()),
        }
    }

    fn parse_comparison(&mut self) -> Result<Expr, ParseError> {
        let key = self.parse_key()?;
        self.skip_ws();
        // Order matters only for error-free prefixes: "not in" before "in".
        if self.eat("==") {
            return Ok(Expr::Eq(key, self.parse_literal()?));
        }
        if self.eat("!=") {
            return Ok(Expr::Ne(key, self.parse_literal()?));
        }
        if self.eat_words(&["contains"]) {
            return Ok(Expr::Contains(key, self.parse_literal()?));
        }
        if self.eat_words(&["starts", "with"]) {
            return Ok(Expr::StartsWith(key, self.parse_literal()?));
        }
        if self.eat_words(&["ends", "with"]) {
            return Ok(Expr::EndsWith(key, self.parse_literal()?));
        }
        if self.eat_words(&["not", "in"]) {
            return Ok(Expr::NotIn(key, self.parse_set()?));
        }
        if self.eat_words(&["in"]) {
            return Ok(Expr::In(key, self.parse_set()?));
        }
        Err(self.error(self.pos, OPERATOR))
    }

    fn parse_literal(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let open = self.pos;
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'')) => q,
            _ => return Err(self.error(open, LITERAL)),
        };
        self.pos += 1;
        match self.rest().iter().position(|&b| b == quote) {
            Some(len) => {
                let value = self.text[self.pos..self.pos + len].to_string();
                self.pos += len + 1;
                Ok(value)
            }
            None => Err(self.error(
                self.bytes.len(),
                format!(
                    "{} to close the string opened at byte {open}",
                    quote_name(quote)
                ),
            )),
        }
    }

    fn parse_set(&mut self) -> Result<BTreeSet<String>, ParseError> {
        self.skip_ws();
        if !self.eat("{") {
            return Err(self.error(self.pos, "'{'"));
        }
        let mut values = BTreeSet::new();
        loop {
            self.skip_ws();
            if self.eat("}") {
                return Ok(values);
            }
            if !matches!(self.peek(), Some(b'"' | b'\'')) {
                return Err(self.error(self.pos, "a string literal or '}'"));
            }
            values.insert(self.parse_literal()?);
            self.skip_ws();
            if self.eat("}") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error(self.pos, "',' or '}'"));
            }
        }
    }
}

fn quote_name(quote: u8) -> &'static str {
    if quote == b'"' { "'\"'" } else { "'\\''" }
}
