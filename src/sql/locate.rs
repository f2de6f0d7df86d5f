//! Where in an analyst's SQL an error points: the parser says `Line: N`
//! itself; the planner only names what it could not find (a column, a
//! table, a function), so that name is looked up among the query's tokens
//! (comments and string literals skipped) and its line reported.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// The 1-based line of `sql` that `message` (an error planning it) is about,
/// if it can be told.
pub fn error_line(sql: &str, message: &str) -> Option<usize> {
    reported_line(message).or_else(|| {
        let name = missing_name(message)?;
        name_line(sql, &name)
    })
}

/// `Line: N` as the parser reports it.
fn reported_line(message: &str) -> Option<usize> {
    let rest = message.split("Line: ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A name the planner could not resolve: its qualifier (if any) and itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Missing {
    qualifier: Option<Ident>,
    name: Ident,
}

/// An identifier as written: quoted ones match exactly, plain ones in any case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ident {
    text: String,
    quoted: bool,
}

impl Ident {
    fn parse(part: &str) -> Ident {
        match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(inner) => Ident {
                text: inner.replace("\"\"", "\""),
                quoted: true,
            },
            None => Ident {
                text: part.to_string(),
                quoted: false,
            },
        }
    }

    fn matches(&self, token: &Token) -> bool {
        match token {
            Token::Word(word) if self.quoted => word.value == self.text,
            Token::Word(word) => word.value.eq_ignore_ascii_case(&self.text),
            _ => false,
        }
    }
}

/// The name in DataFusion's "not found" messages.
fn missing_name(message: &str) -> Option<Missing> {
    let field = |m: &str| {
        let rest = m.split("No field named ").nth(1)?;
        let end = rest
            .find(". ")
            .or_else(|| rest.find(".\n"))
            .unwrap_or_else(|| rest.trim_end_matches('.').len());
        Some(rest[..end].to_string())
    };
    let quoted = |m: &str, before: &str, after: &str| {
        let rest = m.split(before).nth(1)?;
        Some(rest.split(after).next()?.to_string())
    };
    let path = field(message)
        .or_else(|| quoted(message, "table '", "' not found"))
        .or_else(|| quoted(message, "Invalid function '", "'"))?;
    let mut parts: Vec<Ident> = split_path(&path).iter().map(|p| Ident::parse(p)).collect();
    let name = parts.pop()?;
    Some(Missing {
        qualifier: parts.pop(),
        name,
    })
}

/// `a."b.c".d` → [`a`, `"b.c"`, `d`].
fn split_path(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut in_quotes = false;
    for c in path.chars() {
        if c == '.' && !in_quotes {
            parts.push(std::mem::take(&mut part));
            continue;
        }
        in_quotes ^= c == '"';
        part.push(c);
    }
    parts.push(part);
    parts
}

/// The line of the first token naming `missing` (after its qualifier and a
/// dot, when it has one).
fn name_line(sql: &str, missing: &Missing) -> Option<usize> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let tokens: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let qualified = |i: usize| match &missing.qualifier {
        None => true,
        Some(qualifier) => {
            i >= 2
                && tokens[i - 1].token == Token::Period
                && qualifier.matches(&tokens[i - 2].token)
        }
    };
    let found = (0..tokens.len())
        .find(|&i| missing.name.matches(&tokens[i].token) && qualified(i))
        .or_else(|| (0..tokens.len()).find(|&i| missing.name.matches(&tokens[i].token)))?;
    usize::try_from(tokens[found].span.start.line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQL: &str = "SELECT client_id,\n  emial -- not \"Email\"\nFROM new_events e\n\
                       WHERE nosuchfn(x) = 'emial'\n  AND e.\"Email\" IS NULL\nJOIN\n nosuch ON true";

    #[test]
    fn the_parser_s_own_line_wins() {
        assert_eq!(
            error_line(SQL, "sql parser error: Expected: x at Line: 7, Column: 2"),
            Some(7)
        );
    }

    #[test]
    fn unknown_columns_tables_and_functions_are_found_in_the_query() {
        let cases = [
            (
                "Schema error: No field named emial. Valid fields are a, b.",
                2,
            ),
            ("Schema error: No field named emial", 2),
            (
                "Schema error: No field named e.\"Email\". Did you mean 'e.email'?",
                5,
            ),
            (
                "Error during planning: Invalid function 'nosuchfn'.\nDid you mean 'cosh'?",
                4,
            ),
            (
                "Error during planning: table 'datafusion.public.nosuch' not found",
                7,
            ),
        ];
        for (message, line) in cases {
            assert_eq!(error_line(SQL, message), Some(line), "{message}");
        }
    }

    #[test]
    fn comments_and_strings_are_not_names_and_unknown_messages_say_nothing() {
        let sql = "-- emial\nSELECT 'emial',\n emial FROM t";
        assert_eq!(error_line(sql, "No field named emial."), Some(3));
        assert_eq!(error_line(sql, "something else went wrong"), None);
        assert_eq!(error_line("SELECT", "No field named emial."), None);
    }
}
