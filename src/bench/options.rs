//! Multiple-choice options as the benchmarks store them: lists, ';'-joined strings with
//! letters (We-Math), and Python list literals (MMMU-Pro's `options` column).

/// The letter of option `index` (A, B, ...; MMMU-Pro goes up to J).
pub fn option_letter(index: usize) -> char {
    char::from(b'A' + (index % 26) as u8)
}

/// "A. 300, 400;B. 400, 300; E. No correct answer" -> ["300, 400", "400, 300", "No correct answer"].
///
/// Splits on ';' only where the next part starts with a letter label, so a ';' inside an
/// option's text survives.
pub fn parse_semicolon_options(s: &str) -> Vec<String> {
    let mut options: Vec<String> = Vec::new();
    for part in s.split(';') {
        let trimmed = part.trim();
        match strip_letter_label(trimmed) {
            Some(text) => options.push(text.to_string()),
            None => match options.last_mut() {
                Some(last) => {
                    last.push(';');
                    last.push_str(part);
                }
                None if !trimmed.is_empty() => options.push(trimmed.to_string()),
                None => {}
            },
        }
    }
    options
}

/// "A. text", "A: text", "(A) text", "A) text" -> "text".
pub fn strip_letter_label(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let (rest, paren) = match s.strip_prefix('(') {
        Some(r) => (r, true),
        None => (s, false),
    };
    let mut chars = rest.chars();
    let letter = chars.next()?;
    if !letter.is_ascii_uppercase() {
        return None;
    }
    let after = chars.as_str();
    let after = if paren {
        after.strip_prefix(')')?
    } else {
        after
            .strip_prefix('.')
            .or_else(|| after.strip_prefix(':'))
            .or_else(|| after.strip_prefix(')'))?
    };
    Some(after.trim())
}

/// Parses a Python list literal of strings (`['a', "b's", 'c\\n']`), the `repr()` of a
/// list as MMMU-Pro stores its options. Only string elements are accepted.
pub fn parse_python_list(s: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.trim().chars().collect();
    let mut pos = 0;
    let expect = |pos: usize, c: char| -> Result<(), String> {
        match chars.get(pos) {
            Some(&found) if found == c => Ok(()),
            Some(&found) => Err(format!(
                "expected {c:?} at character {pos}, found {found:?}"
            )),
            None => Err(format!("expected {c:?} at character {pos}, found the end")),
        }
    };
    let skip_ws = |pos: &mut usize| {
        while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
            *pos += 1;
        }
    };
    expect(pos, '[')?;
    pos += 1;
    let mut out = Vec::new();
    loop {
        skip_ws(&mut pos);
        match chars.get(pos) {
            Some(']') => {
                pos += 1;
                break;
            }
            Some(&q @ ('\'' | '"')) => {
                pos += 1;
                let mut value = String::new();
                loop {
                    match chars.get(pos) {
                        None => return Err("unterminated string".into()),
                        Some(&c) if c == q => {
                            pos += 1;
                            break;
                        }
                        Some('\\') => {
                            let escaped = chars.get(pos + 1).ok_or("dangling backslash")?;
                            match escaped {
                                'n' => value.push('\n'),
                                't' => value.push('\t'),
                                'r' => value.push('\r'),
                                '\\' | '\'' | '"' => value.push(*escaped),
                                other => {
                                    value.push('\\');
                                    value.push(*other);
                                }
                            }
                            pos += 2;
                        }
                        Some(&c) => {
                            value.push(c);
                            pos += 1;
                        }
                    }
                }
                out.push(value);
                skip_ws(&mut pos);
                match chars.get(pos) {
                    Some(',') => pos += 1,
                    Some(']') => {}
                    Some(&c) => {
                        return Err(format!(
                            "expected ',' or ']' at character {pos}, found {c:?}"
                        ))
                    }
                    None => return Err("unterminated list".into()),
                }
            }
            Some(&c) => return Err(format!("expected a string at character {pos}, found {c:?}")),
            None => return Err("unterminated list".into()),
        }
    }
    skip_ws(&mut pos);
    if pos != chars.len() {
        return Err(format!("unexpected text after the list at character {pos}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolon_options_lose_their_letters() {
        assert_eq!(
            parse_semicolon_options("A. 300, 400;B. 400, 300;C. 1;D. 2; E. No correct answer"),
            vec!["300, 400", "400, 300", "1", "2", "No correct answer"]
        );
    }

    #[test]
    fn semicolon_inside_an_option_is_kept() {
        assert_eq!(parse_semicolon_options("A. x; y;B. z"), vec!["x; y", "z"]);
    }

    #[test]
    fn python_list_with_both_quote_styles_and_escapes() {
        let parsed =
            parse_python_list(r#"['It\'s', "say \"hi\"", 'a\nb', '$\\frac{1}{2}$']"#).unwrap();
        assert_eq!(parsed, vec!["It's", "say \"hi\"", "a\nb", "$\\frac{1}{2}$"]);
    }

    #[test]
    fn python_list_empty_and_errors() {
        assert_eq!(parse_python_list("[]").unwrap(), Vec::<String>::new());
        assert!(parse_python_list("['a'").is_err());
        assert!(parse_python_list("['a', 3]").is_err());
        assert!(parse_python_list("not a list").is_err());
    }

    #[test]
    fn letter_labels_in_several_styles() {
        assert_eq!(strip_letter_label("A. x"), Some("x"));
        assert_eq!(strip_letter_label("(B) y"), Some("y"));
        assert_eq!(strip_letter_label("C: z"), Some("z"));
        assert_eq!(strip_letter_label("word"), None);
        assert_eq!(option_letter(9), 'J');
    }
}
