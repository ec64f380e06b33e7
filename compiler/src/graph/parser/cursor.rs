//! The lexical layer of the parser: a cursor over one line with
//! positioned errors, whitespace, punctuation, keywords, names, quoted
//! strings and number tokens.

use super::super::{Graph, NodeId};
use super::{Cursor, ParseError};

impl Cursor {
    pub(super) fn new(text: &str, line: usize) -> Cursor {
        Cursor {
            chars: text.chars().collect(),
            pos: 0,
            line,
        }
    }

    pub(super) fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    pub(super) fn error_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            column: pos + 1,
            message: message.into(),
        }
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    pub(super) fn bump(&mut self) {
        self.pos += 1;
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    pub(super) fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    pub(super) fn end(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error("unexpected text at the end of the line"))
        }
    }

    pub(super) fn expect(&mut self, ch: char) -> Result<(), ParseError> {
        if self.peek() == Some(ch) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected `{ch}`")))
        }
    }

    pub(super) fn keyword(&mut self, word: &str) -> Result<(), ParseError> {
        let start = self.pos;
        if self.word() == word {
            Ok(())
        } else {
            self.pos = start;
            Err(self.error(format!("expected `{word}`")))
        }
    }

    /// `[A-Za-z0-9_]*`.
    pub(super) fn word(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// A bare or quoted name.
    pub(super) fn name(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a name"));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// `%name`, returning the name and where it starts.
    pub(super) fn value_name(&mut self) -> Result<(String, usize), ParseError> {
        let at = self.pos;
        self.expect('%')?;
        Ok((self.name()?, at))
    }

    pub(super) fn operand(&mut self, g: &Graph) -> Result<NodeId, ParseError> {
        let (name, at) = self.value_name()?;
        g.find(&name)
            .ok_or_else(|| self.error_at(at, format!("undefined value %{name}")))
    }

    /// A string in Rust's `{:?}` form.
    pub(super) fn quoted(&mut self) -> Result<String, ParseError> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated escape"));
                    };
                    self.pos += 1;
                    match e {
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        '0' => out.push('\0'),
                        '\\' | '"' | '\'' => out.push(e),
                        'u' => {
                            self.expect('{')?;
                            let start = self.pos;
                            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                self.pos += 1;
                            }
                            let hex: String = self.chars[start..self.pos].iter().collect();
                            self.expect('}')?;
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.error_at(start, "bad unicode escape"))?;
                            out.push(ch);
                        }
                        _ => {
                            return Err(
                                self.error_at(self.pos - 1, format!("unknown escape `\\{e}`"))
                            )
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// A token of number or word characters (`-1`, `1e-5`, `0x00ff`, `inf`,
    /// `NaN`, `gelu_tanh`).
    pub(super) fn number_token(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    pub(super) fn usize_list(&mut self) -> Result<Vec<usize>, ParseError> {
        self.number_list("a dimension")
    }

    /// `[a, b, ...]` of numbers of type `T`; `what` names one in errors.
    pub(super) fn number_list<T: std::str::FromStr>(
        &mut self,
        what: &str,
    ) -> Result<Vec<T>, ParseError> {
        self.expect('[')?;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                break;
            }
            let at = self.pos;
            let token = self.number_token();
            items.push(
                token
                    .parse::<T>()
                    .map_err(|_| self.error_at(at, format!("expected {what}, found `{token}`")))?,
            );
            self.skip_ws();
            if self.peek() == Some(',') {
                self.bump();
            } else {
                break;
            }
        }
        self.skip_ws();
        self.expect(']')?;
        Ok(items)
    }
}
